"""DeePMD npy data (type.raw, type_map.raw, set.*/coord.npy, box.npy, energy.npy, force.npy,
virial.npy) as ase.Atoms, and conversion to extended XYZ.

Units are DeePMD's: Å, eV, eV/Å, virial in eV. Stress is -virial / volume (ASE convention), and the
virial is kept in ``info["virial"]``. A root directory may hold many systems (any folder with a
type.raw); frames come out system by system, set by set, in stored order.
"""

from pathlib import Path
from typing import Iterator, List, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols

REQUIRED = ("coord.npy", "box.npy", "energy.npy", "force.npy")


def find_systems(root) -> List[Path]:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such DeePMD data directory: {root}")
    systems = sorted({p.parent for p in root.rglob("type.raw")})
    if not systems:
        raise ValueError(f"{root} holds no DeePMD system (no type.raw found)")
    return systems


def read_system(system) -> Iterator[Atoms]:
    """Frames of one DeePMD system directory."""
    system = Path(system)
    types = np.loadtxt(system / "type.raw", dtype=int, ndmin=1)
    map_file = system / "type_map.raw"
    if not map_file.exists():
        raise ValueError(f"{system}: type_map.raw is missing (element names of the type indices)")
    type_map = map_file.read_text().split()
    unknown = [name for name in type_map if name not in chemical_symbols[1:]]
    if unknown:
        raise ValueError(f"{system}: type_map.raw names unknown elements {unknown}")
    if types.min() < 0 or types.max() >= len(type_map):
        raise ValueError(f"{system}: type.raw uses types up to {types.max()}, but type_map.raw names {len(type_map)}")
    symbols = [type_map[t] for t in types]
    natoms = len(types)
    sets = sorted(system.glob("set.*"))
    if not sets:
        raise ValueError(f"{system}: no set.* directories")
    for set_dir in sets:
        missing = [name for name in REQUIRED if not (set_dir / name).exists()]
        if missing:
            raise ValueError(f"{set_dir}: missing labels {missing} (needs {list(REQUIRED)}, virial.npy optional)")
        coord = np.load(set_dir / "coord.npy")
        nframes = coord.shape[0]
        arrays = {
            "coord": (coord, (nframes, natoms * 3)),
            "box": (np.load(set_dir / "box.npy"), (nframes, 9)),
            "energy": (np.load(set_dir / "energy.npy"), (nframes,)),
            "force": (np.load(set_dir / "force.npy"), (nframes, natoms * 3)),
        }
        if (set_dir / "virial.npy").exists():
            arrays["virial"] = (np.load(set_dir / "virial.npy"), (nframes, 9))
        for name, (value, shape) in arrays.items():
            if value.shape[0] != nframes or value.size != int(np.prod(shape)):
                raise ValueError(f"{set_dir}/{name}.npy has shape {value.shape}; expected {shape} "
                                 f"for {nframes} frames of {natoms} atoms (type.raw)")
        for f in range(nframes):
            cell = arrays["box"][0][f].reshape(3, 3)
            atoms = Atoms(symbols, positions=arrays["coord"][0][f].reshape(natoms, 3), cell=cell, pbc=True)
            labels = {"energy": float(np.ravel(arrays["energy"][0])[f]),
                      "forces": arrays["force"][0][f].reshape(natoms, 3)}
            if "virial" in arrays:
                virial = arrays["virial"][0][f].reshape(3, 3)
                atoms.info["virial"] = virial
                stress = -virial / atoms.get_volume()
                labels["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]  # Voigt xx yy zz yz xz xy
            atoms.info["source"] = str(set_dir)
            atoms.info["source_frame"] = f
            atoms.calc = SinglePointCalculator(atoms, **labels)
            yield atoms


def read_deepmd(root) -> List[Atoms]:
    """Every frame of every system under ``root``."""
    return [atoms for system in find_systems(root) for atoms in read_system(system)]


def convert_deepmd(root, output) -> int:
    """DeePMD npy -> extended XYZ; returns the number of frames written."""
    from ase.io import write

    frames = read_deepmd(root)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    write(output, frames, format="extxyz")
    return len(frames)


def write_deepmd(frames: Sequence[Atoms], system, type_map: Sequence[str]) -> Path:
    """Frames (same atoms, same order) -> one DeePMD system with a single set.000 (used by tests)."""
    system = Path(system)
    (system / "set.000").mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(type_map)}
    np.savetxt(system / "type.raw", [index[s] for s in frames[0].get_chemical_symbols()], fmt="%d")
    (system / "type_map.raw").write_text("\n".join(type_map) + "\n")
    s = system / "set.000"
    np.save(s / "coord.npy", np.array([a.positions.ravel() for a in frames]))
    np.save(s / "box.npy", np.array([a.cell.array.ravel() for a in frames]))
    np.save(s / "energy.npy", np.array([a.get_potential_energy() for a in frames]))
    np.save(s / "force.npy", np.array([a.get_forces().ravel() for a in frames]))
    np.save(s / "virial.npy", np.array([-a.get_stress(voigt=False).ravel() * a.get_volume() for a in frames]))
    return system
