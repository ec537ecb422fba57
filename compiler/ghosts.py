"""Periodic structures as local + explicit ghost atoms: the input LAMMPS gives the pair style, built from ASE Atoms
for kan-deploy's check and the ASE calculator."""

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list


@dataclass
class GhostGraph:
    positions: np.ndarray  # (N, 3) local atoms, then ghost images
    edge_index: np.ndarray  # (2, E) centre (local) -> neighbour (local or ghost)
    owner: np.ndarray  # (N,) index of the local atom each atom is an image of
    num_local: int

    def inputs(self, types: np.ndarray, dtype: torch.dtype, device="cpu") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The model contract's (pos, edge_index, atom_types, num_local); ``types`` per local atom."""
        return (torch.tensor(self.positions, dtype=dtype, device=device), torch.tensor(self.edge_index, device=device),
                torch.tensor(np.asarray(types)[self.owner], dtype=torch.long, device=device), self.num_local)

    def fold(self, per_atom: np.ndarray) -> np.ndarray:
        """Sum values of ghost atoms (e.g. forces) onto the local atoms they are images of."""
        folded = np.zeros((self.num_local,) + per_atom.shape[1:])
        np.add.at(folded, self.owner, per_atom)
        return folded


def ghost_graph(atoms: Atoms, cutoff_matrix: np.ndarray, type_of_atom: np.ndarray) -> GhostGraph:
    """Full neighbour list within per-type-pair cutoffs, periodic neighbours as ghost atoms."""
    i, j, shift = neighbor_list("ijS", atoms, float(cutoff_matrix.max()))
    rij = atoms.positions[j] + shift @ atoms.cell.array - atoms.positions[i]
    keep = np.linalg.norm(rij, axis=1) < cutoff_matrix[type_of_atom[i], type_of_atom[j]]
    i, j, shift = i[keep], j[keep], shift[keep]
    n = len(atoms)
    image = np.any(shift != 0, axis=1)
    # one ghost per distinct (atom, shift) image
    keys, inverse = np.unique(np.column_stack([j[image], shift[image]]), axis=0, return_inverse=True)
    neighbour = j.copy()
    neighbour[image] = n + inverse.reshape(-1)
    ghost_pos = atoms.positions[keys[:, 0]] + keys[:, 1:] @ atoms.cell.array if len(keys) else np.zeros((0, 3))
    return GhostGraph(
        positions=np.concatenate([atoms.positions, ghost_pos]),
        edge_index=np.stack([i, neighbour]).astype(np.int64),
        owner=np.concatenate([np.arange(n), keys[:, 0] if len(keys) else np.zeros(0, dtype=int)]).astype(np.int64),
        num_local=n,
    )
