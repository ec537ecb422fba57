"""The deployed model's contract, shared by pair_style allegro-kan, the ASE calculator and tests.

    forward(edge_vectors, edge_index, atom_types, num_local) -> (atomic_energy, forces, virial)

    edge_vectors (E, 3)  r_ij = x_j - x_i of every edge, Å (float64; cast to the model dtype inside)
    edge_index   (2, E)  int64 node indices; row 0 = centre i, row 1 = neighbour j. Every pair within
                         the cutoff appears once per centre (full list)
    atom_types   (N,)    int64 model type index of each node; N is the number of nodes
    num_local    int     nodes [0, num_local) are the ones whose energies count

    atomic_energy (num_local,) per-node energies of those nodes (their sum is the energy)
    forces        (N, 3)       -dE/dx of every node
    virial        (6,)         sum over edges of -r_ij (x) dE/dr_ij, order xx yy zz xy xz yz (LAMMPS)

A node is an atom; the edge vectors carry the geometry. Two graphs of the same structure give the
same numbers:

* periodic: the nodes are the atoms of the cell and a neighbour across the boundary is its owner
  atom, the edge vector pointing to the image (ASE; LAMMPS on one MPI rank, where every ghost atom is
  an image of a local one). The cost is that of the cell, whatever the receptive field.
* domain: the nodes are the local atoms, then ghost atoms (LAMMPS on several ranks; the caller sums
  ghost forces onto their owners by reverse communication). For a model with L message-passing
  layers the ghosts are those within L hops of a local atom, and the edges those of atoms within
  L - 1 hops: the local energies depend on exactly these. A strictly local model (L = 1) needs only
  the edges of local atoms.

Only plain tensors and an int cross the boundary, so an AOTInductor ``.pt2`` export can implement the
same signature.
"""

from typing import Tuple

import torch
from nequip.data import AtomicDataDict

# Written twice, checked equal by tests/test_constants.py: pair_styles/pair_allegro_kan.cpp reads them too
CONTRACT_VERSION = "kan_mlip.pair.v2"
# the deployed file's metadata (TorchScript extra files, JSON unless a plain string)
METADATA_KEYS = ("contract", "r_max", "cutoff_matrix", "type_names", "num_types", "model_dtype", "device",
                 "message_passing_layers", "receptive_field", "kan_blocks", "kan_mlip_version", "torch_version",
                 "custom_op_library", "source")
# custom_op_library of a model that calls the fused kan_mlip::* ops (the library CMakeLists.txt builds)
OPS_LIBRARY = "libkan_mlip_ops.so"


class PairPotential(torch.nn.Module):
    """Wraps the energy network of a nequip GraphModel (Allegro, NequIP, ...) in the contract above."""

    def __init__(self, energy_model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.energy_model = energy_model
        self.dtype = dtype

    def forward(self, edge_vectors: torch.Tensor, edge_index: torch.Tensor, atom_types: torch.Tensor,
                num_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # edge vectors are the leaf we differentiate: forces and virial from one backward pass. A copy, so
        # the caller's tensor is left as it was (freezing drops a detach())
        edge_vectors = edge_vectors.to(dtype=self.dtype, copy=True).requires_grad_(True)
        data: AtomicDataDict.Type = {
            AtomicDataDict.EDGE_INDEX_KEY: edge_index,
            AtomicDataDict.ATOM_TYPE_KEY: atom_types,
            AtomicDataDict.EDGE_VECTORS_KEY: edge_vectors,
        }
        data = self.energy_model(data)
        atomic_energy = data[AtomicDataDict.PER_ATOM_ENERGY_KEY].reshape(-1)[:num_local]
        grads = torch.autograd.grad([atomic_energy.sum()], [edge_vectors], allow_unused=True)
        dE_dr = grads[0]
        if dE_dr is None:  # no edges
            dE_dr = torch.zeros_like(edge_vectors)
        # r_ij = x_j - x_i  =>  dE/dx_j += dE/dr_ij, dE/dx_i -= dE/dr_ij
        forces = torch.zeros((atom_types.shape[0], 3), dtype=dE_dr.dtype, device=dE_dr.device)
        forces.index_add_(0, edge_index[0], dE_dr)
        forces.index_add_(0, edge_index[1], -dE_dr)
        w = -(edge_vectors.detach().unsqueeze(-1) * dE_dr.unsqueeze(-2)).sum(0)
        virial = torch.stack([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
        return atomic_energy.detach(), forces.detach(), virial.detach()
