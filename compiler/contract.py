"""The deployed model's contract, shared by pair_style allegro-kan, the ASE calculator and tests.

    forward(pos, edge_index, atom_types, num_local) -> (atomic_energy, forces, virial)

    pos          (N, 3)  positions of local atoms followed by ghost (image) atoms, model dtype
    edge_index   (2, E)  int64; row 0 = centre (a local atom), row 1 = neighbour (any atom);
                         every pair within the cutoff appears once per centre (full list)
    atom_types   (N,)    int64 model type index of each atom
    num_local    int     atoms [0, num_local) are local; the rest are ghosts

    atomic_energy (num_local,) per-atom energies of local atoms (their sum is the energy)
    forces        (N, 3)       -dE/dpos for every atom, ghosts included (the caller folds ghost
                               forces back onto their owners: LAMMPS reverse communication)
    virial        (6,)         sum over edges of -r_ij (x) dE/dr_ij, order xx yy zz xy xz yz (LAMMPS)

Periodic images are explicit ghost atoms, never cell shifts, so the same tensors serve LAMMPS
(any number of MPI ranks) and ASE. Only positions, indices and plain tensor outputs cross the
boundary, so an AOTInductor ``.pt2`` export can implement the same signature.
"""

from typing import Tuple

import torch
from nequip.data import AtomicDataDict

# Written twice, checked equal by tests/test_constants.py: pair_styles/pair_allegro_kan.cpp reads them too
CONTRACT_VERSION = "kan_mlip.pair.v1"
# the deployed file's metadata (TorchScript extra files, JSON unless a plain string)
METADATA_KEYS = ("contract", "r_max", "cutoff_matrix", "type_names", "num_types", "model_dtype", "device", "kan_blocks",
                 "kan_mlip_version", "torch_version", "custom_op_library", "source")
# custom_op_library of a model that calls the fused kan_mlip::* ops (the library CMakeLists.txt builds)
OPS_LIBRARY = "libkan_mlip_ops.so"


class PairPotential(torch.nn.Module):
    """Wraps the energy network of a nequip GraphModel (strictly local, e.g. Allegro)."""

    def __init__(self, energy_model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.energy_model = energy_model
        self.dtype = dtype

    def forward(self, pos: torch.Tensor, edge_index: torch.Tensor, atom_types: torch.Tensor, num_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = pos.to(self.dtype)
        # edge vectors are the leaf we differentiate: forces and virial from one backward pass
        edge_vectors = (torch.index_select(pos, 0, edge_index[1]) - torch.index_select(pos, 0, edge_index[0])).detach()
        edge_vectors.requires_grad_(True)
        data: AtomicDataDict.Type = {
            AtomicDataDict.POSITIONS_KEY: pos,
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
        # r_ij = pos_j - pos_i  =>  dE/dpos_j += dE/dr_ij, dE/dpos_i -= dE/dr_ij
        forces = torch.zeros_like(pos)
        forces.index_add_(0, edge_index[0], dE_dr)
        forces.index_add_(0, edge_index[1], -dE_dr)
        w = -(edge_vectors.detach().unsqueeze(-1) * dE_dr.unsqueeze(-2)).sum(0)
        virial = torch.stack([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
        return atomic_energy.detach(), forces.detach(), virial.detach()
