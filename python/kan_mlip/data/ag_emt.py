"""The project's embedded default data: synthetic EMT Ag, 71-atom fcc cell with one vacancy.

The paper's Ag set is DFT (AIMD of a 71-atom fcc Ag cell with a vacancy); it is not obtainable
here. This generator reproduces its *setting* -- same cell, same vacancy, MD at 300-900 K -- but
labels frames with ASE's EMT potential. Every frame says so in ``info["dataset"]``. Numbers
obtained on it are not comparable with the paper's DFT numbers.
"""

from typing import List, Optional, Sequence

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

DATASET_LABEL = "synthetic EMT Ag (ASE EMT labels, not DFT)"
AG_LATTICE_CONSTANT = 4.09  # Å, experimental fcc Ag


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
    progress: bool = True,
) -> List[Atoms]:
    """Langevin MD with EMT at each temperature in turn; frames split evenly between temperatures."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if len(temperatures) == 0 or min(temperatures) <= 0:
        raise ValueError(f"temperatures must be positive, got {list(temperatures)}")
    rng = np.random.default_rng(seed)
    per_t = np.diff(np.linspace(0, n_frames, len(temperatures) + 1).round().astype(int))
    frames: List[Atoms] = []
    bar = _progress(n_frames, progress)
    for temperature, count in zip(temperatures, per_t):
        atoms = ag_vacancy_cell()
        atoms.calc = EMT()
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
        dyn.run(equilibration_steps)
        for _ in range(count):
            dyn.run(sample_every)
            frames.append(_labelled_copy(atoms, temperature))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return frames


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
