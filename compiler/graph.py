"""The periodic graph of an ASE structure in the model contract's form (kan-deploy's check, the ASE
calculator, the bare-model benchmark): the atoms are the nodes, a neighbour across the boundary is
its owner atom, and the edge vector points to the image."""

from typing import Tuple

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list


def periodic_graph(atoms: Atoms, cutoff_matrix: np.ndarray, type_of_atom: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(edge_index (2, E) int64, edge_vectors (E, 3)): the full neighbour list within per-type-pair cutoffs."""
    i, j, d = neighbor_list("ijD", atoms, float(cutoff_matrix.max()))
    keep = np.linalg.norm(d, axis=1) < cutoff_matrix[type_of_atom[i], type_of_atom[j]]
    return np.stack([i[keep], j[keep]]).astype(np.int64), d[keep]


def model_inputs(atoms: Atoms, cutoff_matrix: np.ndarray, type_of_atom: np.ndarray,
                 device="cpu") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The contract's (edge_vectors, edge_index, atom_types, num_local) for ``atoms``; edge vectors in float64,
    as LAMMPS gives them (the model casts to its dtype)."""
    edge_index, edge_vectors = periodic_graph(atoms, cutoff_matrix, type_of_atom)
    return (torch.tensor(edge_vectors, dtype=torch.float64, device=device), torch.tensor(edge_index, device=device),
            torch.tensor(np.asarray(type_of_atom), dtype=torch.long, device=device), len(atoms))


def sample_structure(type_names, r_max: float, seed: int = 0) -> Atoms:
    """A rattled periodic fcc cell holding every type, dense enough that every atom has neighbours (kan-deploy's
    check of the compiled model against the eager one)."""
    from ase.build import bulk

    a = max(1.2 * r_max / np.sqrt(2), 2.0)
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 2, 2))
    atoms.set_chemical_symbols([type_names[i % len(type_names)] for i in range(len(atoms))])
    atoms.rattle(0.05 * a, seed=seed)
    return atoms
