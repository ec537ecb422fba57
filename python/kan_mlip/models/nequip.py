"""KAN-augmented NequIP: nequip's model with the per-atom energy readout (output block) as a KAN."""

from typing import Any, Dict, Optional

from nequip.model import NequIPGNNModel, model_builder

from .placement import KANSpec, Placement, resolve_placement

NEQUIP_KAN_BLOCKS = ("readout",)
NEQUIP_KAN_PLACEMENTS = {"none": (), "readout": ("readout",)}


@model_builder
def KANNequIPModel(
    kan_placement: Placement = "readout",
    kan_basis: str = "gaussian",
    kan_options: Optional[Dict[str, Any]] = None,
    **kwargs,
):
    """NequIP (``nequip.model.NequIPGNNModel``, all of its arguments) with a KAN output block.

    Args:
        kan_placement: ``none`` (MLP baseline) or ``readout`` (default), or a list of blocks from ``readout``.
        kan_basis: ``gaussian`` (default), ``bspline`` or ``fourier``.
        kan_options: basis options (see ``kan_mlip.nn.KANLinear``).
    """
    blocks = resolve_placement(kan_placement, NEQUIP_KAN_BLOCKS, NEQUIP_KAN_PLACEMENTS)
    spec = KANSpec.create(kan_basis, kan_options)
    model = NequIPGNNModel(**kwargs)
    if "readout" in blocks:
        net = model.func
        net.per_atom_energy_readout = spec.scalar_kan_like(net.per_atom_energy_readout)
    return model
