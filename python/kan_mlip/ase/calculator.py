"""ASE calculator for files written by kan-deploy."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from kan_mlip.compiler.files import load_deployed
from kan_mlip.compiler.graph import model_inputs


class KANCalculator(Calculator):
    """Energy, forces, stress and per-atom energies from a deployed ``pair.pt``.

    Uses the same model contract as ``pair_style allegro-kan`` (the periodic graph: atoms are nodes,
    edge vectors point to periodic images), so it is the reference the LAMMPS tests compare against.
    Message-passing models (NequIP) cost the cell, whatever their receptive field. Structures the
    model cannot describe (no atoms, a periodic axis without a cell) and non-finite model output
    raise ValueError.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, path, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.model, self.metadata = load_deployed(path, device=device)
        self.device = device
        self.type_names = self.metadata["type_names"]
        self.cutoff_matrix = np.array(self.metadata["cutoff_matrix"])

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        _check_structure(self.atoms)
        symbols = self.atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.type_names))
        if unknown:
            raise ValueError(f"Elements {unknown} are not in the model (type_names {self.type_names})")
        types = np.array([self.type_names.index(s) for s in symbols])
        inputs = model_inputs(self.atoms, self.cutoff_matrix, types, self.device)
        outputs = self.model(*inputs)
        energies, forces, virial = (t.detach().double().cpu().numpy() for t in outputs)
        if not (np.isfinite(energies).all() and np.isfinite(forces).all() and np.isfinite(virial).all()):
            raise ValueError(_not_finite(inputs[0].cpu().numpy(), inputs[1].cpu().numpy(), energies, forces))
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = forces
        if self.atoms.cell.rank == 3:
            xx, yy, zz, xy, xz, yz = virial
            # ASE stress (Voigt xx yy zz yz xz xy) = -virial / volume
            self.results["stress"] = -np.array([xx, yy, zz, yz, xz, xy]) / self.atoms.get_volume()


def _check_structure(atoms) -> None:
    if len(atoms) == 0:
        raise ValueError("KANCalculator: the Atoms object has no atoms")
    periodic = atoms.cell.array[atoms.pbc]
    # a periodic axis needs a cell vector, independent of the other periodic ones (else images coincide)
    if len(periodic) and np.linalg.svd(periodic, compute_uv=False).min() < 1e-6:
        raise ValueError(f"KANCalculator: pbc={atoms.pbc.tolist()} but the cell {atoms.cell.array.tolist()} is zero or "
                         "degenerate along the periodic axes; set the cell (atoms.set_cell) or pbc=False for open axes")


def _not_finite(edge_vectors: np.ndarray, edge_index: np.ndarray, energies: np.ndarray, forces: np.ndarray) -> str:
    """Which atoms the model gave non-finite output for, and the closest pair of atoms."""
    bad = np.flatnonzero(~np.isfinite(energies) | ~np.isfinite(forces).all(axis=1))
    listed = bad[:20].tolist() + (["..."] if len(bad) > 20 else [])
    msg = f"KANCalculator: the model's energy or forces are not finite (atoms {', '.join(map(str, listed))})"
    i, j = edge_index
    if len(i):
        d = np.linalg.norm(edge_vectors, axis=1)
        k = int(np.argmin(d))
        msg += f"; the closest pair is atoms {i[k]} and {j[k]} at {d[k]:.3g} Å"
        if d[k] < 1e-3:
            msg += " (two atoms at the same position?)"
    return msg
