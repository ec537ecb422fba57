"""ase.Atoms -> nequip AtomicDataDict with neighbour list and model atom types."""

from typing import Dict, Sequence

import torch
from ase import Atoms
from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase


def atoms_to_graph(atoms: Atoms, r_max: float, type_names: Sequence[str], dtype: torch.dtype = torch.float64) -> Dict[str, torch.Tensor]:
    """Graph of ``atoms`` for a model with ``type_names`` (chemical symbols) and cutoff ``r_max``."""
    symbols = atoms.get_chemical_symbols()
    unknown = sorted(set(symbols) - set(type_names))
    if unknown:
        raise ValueError(f"Elements {unknown} are not among the model's type_names {list(type_names)}")
    index = {name: i for i, name in enumerate(type_names)}
    data = from_ase(atoms, include_keys=[], exclude_keys=["energy", "forces", "stress", "free_energy", "energies"])
    data = compute_neighborlist_(data, r_max=r_max)
    data[AtomicDataDict.ATOM_TYPE_KEY] = torch.tensor([index[s] for s in symbols], dtype=torch.long)
    for key in (AtomicDataDict.POSITIONS_KEY, AtomicDataDict.CELL_KEY, AtomicDataDict.EDGE_CELL_SHIFT_KEY):
        if key in data:
            data[key] = data[key].to(dtype)
    return data
