"""The project's embedded default data: synthetic EMT Ag, 71-atom fcc cell with one vacancy.

The paper's Ag set is DFT (AIMD of a 71-atom fcc Ag cell with a vacancy); it is not obtainable
here. This generator reproduces its *setting* -- same cell, same vacancy, MD at 300-900 K -- but
labels frames with ASE's EMT potential. Every frame says so in ``info["dataset"]``. Numbers
obtained on it are not comparable with the paper's DFT numbers.

Like AIMD or DP-GEN training sets, it covers more than one volume: each frame's cell carries a
random homogeneous strain (isotropic lattice strain up to +-3 %, shears up to +-2 %), so a model
trained on it learns the equation of state and the stress that NPT molecular dynamics needs. The
labels are energy, forces and stress (virial) of every frame.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

DATASET_LABEL = "synthetic EMT Ag (ASE EMT labels, not DFT)"
AG_LATTICE_CONSTANT = 4.09  # Å, experimental fcc Ag
# default cell deformations: isotropic lattice strain within +-STRAIN, shear components within +-SHEAR
STRAIN, SHEAR = 0.03, 0.02


def ag_vacancy_cell(repeat: Sequence[int] = (3, 3, 2), a: float = AG_LATTICE_CONSTANT) -> Atoms:
    """fcc Ag, conventional cell repeated (3, 3, 2) = 72 sites, one vacancy: 71 atoms."""
    atoms = bulk("Ag", "fcc", a=a, cubic=True).repeat(tuple(repeat))
    del atoms[0]
    return atoms


def make_ag_data(
    n_frames: int = 1000,
    temperatures: Sequence[float] = (300, 400, 500, 600, 700, 800, 900),
    seed: int = 0,
    timestep_fs: float = 2.0,
    sample_every: int = 10,
    equilibration_steps: int = 200,
    strain: float = STRAIN,
    shear: float = SHEAR,
    progress: bool = True,
) -> List[Atoms]:
    """Langevin MD with EMT at each temperature in turn, in cells of several volumes and shapes.

    Frames are split evenly between temperatures. Each temperature starts from the a = 4.09 Å cell
    and runs ``equilibration_steps``; then, for every frame, the cell (atoms scaled with it) is set
    to the a = 4.09 Å cell deformed by a new random strain -- isotropic lattice strain uniform in
    [-strain, strain] (volume within about +-3*strain) and symmetric shear components uniform in
    [-shear, shear] -- and MD runs ``sample_every`` steps in that cell before the frame is taken.
    ``strain=0, shear=0`` samples the a = 4.09 Å cell only (the data reports/ag_emt was made with).
    Energy, forces and stress of every frame are EMT's; seeded and deterministic.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if len(temperatures) == 0 or min(temperatures) <= 0:
        raise ValueError(f"temperatures must be positive, got {list(temperatures)}")
    if not (0 <= strain < 0.2 and 0 <= shear < 0.2):
        raise ValueError(f"strain and shear must lie in [0, 0.2), got strain={strain}, shear={shear}")
    rng = np.random.default_rng(seed)
    per_t = np.diff(np.linspace(0, n_frames, len(temperatures) + 1).round().astype(int))
    frames: List[Atoms] = []
    bar = _progress(n_frames, progress)
    for temperature, count in zip(temperatures, per_t):
        atoms = ag_vacancy_cell()
        reference_cell = atoms.cell.array.copy()
        atoms.calc = EMT()
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
        dyn.run(equilibration_steps)
        for _ in range(count):
            if strain > 0 or shear > 0:
                atoms.set_cell(reference_cell @ _random_deformation(rng, strain, shear), scale_atoms=True)
            dyn.run(sample_every)
            frames.append(_labelled_copy(atoms, temperature))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return frames


def ag_equation_of_state(calc, volume_ratios: Sequence[float] = (0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06)) -> List[Dict[str, float]]:
    """Static E(V), P(V) of the vacancy cell under ``calc``, scaled isotropically from a = 4.09 Å.

    One row per volume ratio V/V0: ``volume_ratio``, ``volume`` (Å^3), ``energy_per_atom`` (eV),
    ``pressure_kbar`` (-trace(stress)/3).
    """
    rows = []
    for ratio in volume_ratios:
        if ratio <= 0:
            raise ValueError(f"volume ratios must be positive, got {ratio}")
        atoms = ag_vacancy_cell(a=AG_LATTICE_CONSTANT * float(ratio) ** (1 / 3))
        atoms.calc = calc
        rows.append({"volume_ratio": float(ratio), "volume": atoms.get_volume(),
                     "energy_per_atom": atoms.get_potential_energy() / len(atoms),
                     "pressure_kbar": -atoms.get_stress()[:3].mean() / (units.GPa / 10)})
    return rows


def plot_equation_of_state(curves: Dict[str, List[Dict[str, float]]], path, title: str = ""):
    """E(V) - E(V0) and P(V) side by side for ``{label: ag_equation_of_state(...) rows}``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_e, ax_p) = plt.subplots(1, 2, figsize=(9, 3.6))
    for (label, rows), style in zip(curves.items(), ("k-", "o--", "s:", "^-.")):
        v = [r["volume"] for r in rows]
        e0 = rows[int(np.argmin([abs(r["volume_ratio"] - 1) for r in rows]))]["energy_per_atom"]
        ax_e.plot(v, [1e3 * (r["energy_per_atom"] - e0) for r in rows], style, label=label)
        ax_p.plot(v, [r["pressure_kbar"] for r in rows], style, label=label)
    ax_e.set(xlabel="cell volume (Å$^3$)", ylabel="E - E(V$_0$) (meV/atom)")
    ax_p.set(xlabel="cell volume (Å$^3$)", ylabel="pressure (kbar)")
    ax_p.axhline(0, color="grey", lw=0.5)
    ax_e.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ag_npt_volumes(calc, temperature_K: float = 300.0, pressure_bar: float = 0.0, steps: int = 2000,
                   timestep_fs: float = 1.0, tdamp_fs: float = 100.0, pdamp_fs: float = 500.0, seed: int = 0,
                   every: int = 20) -> np.ndarray:
    """Cell volumes (Å^3, every ``every`` steps) of isotropic MTK NPT of the vacancy cell under ``calc``.

    ASE's ``IsotropicMTKNPT`` -- the Nose-Hoover thermostat and barostat of LAMMPS' ``fix npt ... iso`` --
    started, like examples/lammps/in.ag_npt, from a = 4.09 Å with Maxwell-Boltzmann velocities.
    """
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    if steps < every or every < 1:
        raise ValueError(f"need steps >= every >= 1, got steps={steps}, every={every}")
    atoms = ag_vacancy_cell()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = IsotropicMTKNPT(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                          pressure_au=pressure_bar * units.bar, tdamp=tdamp_fs * units.fs, pdamp=pdamp_fs * units.fs)
    volumes = []
    for _ in range(steps // every):
        dyn.run(every)
        volumes.append(atoms.get_volume())
    return np.array(volumes)


def _random_deformation(rng: np.random.Generator, strain: float, shear: float) -> np.ndarray:
    """(1 + e) (I + S): e uniform in [-strain, strain], S symmetric, off-diagonal, entries in [-shear, shear]."""
    e = rng.uniform(-strain, strain)
    xy, xz, yz = rng.uniform(-shear, shear, size=3)
    s = np.array([[0.0, xy, xz], [xy, 0.0, yz], [xz, yz, 0.0]])
    return (1.0 + e) * (np.eye(3) + s)


def _labelled_copy(atoms: Atoms, temperature: float) -> Atoms:
    frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    frame.info["dataset"] = DATASET_LABEL
    frame.info["temperature_K"] = float(temperature)
    frame.calc = SinglePointCalculator(
        frame,
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces(),
        stress=atoms.get_stress(),
    )
    return frame


def _progress(total: int, enabled: bool) -> Optional[object]:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="EMT Ag MD frames", unit="frame")
