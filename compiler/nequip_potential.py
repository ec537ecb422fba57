"""The model contract (contract.py) for nequip GraphModels: Allegro, NequIP and their KAN variants."""

from typing import Tuple

import torch
from nequip.data import AtomicDataDict

from .exchange import local_ghost_inputs
from .files import forces_and_virial


class PairPotential(torch.nn.Module):
    """Wraps the energy network of a nequip GraphModel (Allegro, NequIP, ...) in the contract above."""

    exchanges: bool

    def __init__(self, energy_model: torch.nn.Module, dtype: torch.dtype, exchanges: bool = False):
        """``exchanges``: the energy model's convolutions take local/ghost graphs (exchange.py)."""
        super().__init__()
        self.energy_model = energy_model
        self.dtype = dtype
        self.exchanges = exchanges

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
        if self.exchanges:
            data = local_ghost_inputs(data, num_local)
        data = self.energy_model(data)
        atomic_energy = data[AtomicDataDict.PER_ATOM_ENERGY_KEY].reshape(-1)[:num_local]
        grads = torch.autograd.grad([atomic_energy.sum()], [edge_vectors], allow_unused=True)
        forces, virial = forces_and_virial(edge_vectors, grads[0], edge_index, atom_types.shape[0])
        return atomic_energy.detach(), forces.detach(), virial.detach()
