"""Node-feature exchange between the message-passing layers of a NequIP model, for LAMMPS on several ranks.

A rank's graph is then its local atoms and the ghost atoms within one cutoff, with the edges of the
local atoms only. Each convolution updates the local nodes; before the next one reads its neighbours,
``kan_mlip::ghost_exchange`` (csrc/ghost_exchange.h) gives every ghost node its owner's features
through LAMMPS forward communication, and its backward returns their gradients by reverse
communication. Without it the graph needs a ghost shell as deep as the receptive field, and the
edges of every ghost within L - 1 hops (contract.py).

nequip's convolutions already follow this local/ghost protocol (written for LAMMPS ML-IAP): the
first layer embeds every node, each layer keeps ``num_local`` rows of its output, and a
``ghost_exchange`` module before each later layer's tensor product restores the ghost rows. In
TorchScript, nequip reads ``num_local`` from an object ML-IAP passes; here it reads a tensor in the
same key, and the no-op exchange modules become ``GhostExchange``.
"""

from typing import Dict, Optional

import torch
from nequip.data import AtomicDataDict


class GhostExchange(torch.nn.Module):
    """Drop-in for nequip's ``ghost_exchange`` modules: the local rows of ``field`` extended by the ghost
    rows their owners hold (identity on a graph without ghosts)."""

    def __init__(self, field: str):
        super().__init__()
        self.field = field

    def forward(self, data: AtomicDataDict.Type, ghost_included: bool = False) -> AtomicDataDict.Type:
        x = data[self.field]
        num_nodes = data[AtomicDataDict.ATOM_TYPE_KEY].size(0)
        if ghost_included:
            x = x[: int(data[AtomicDataDict.NUM_LOCAL_GHOST_NODES_KEY][0])]
        data[self.field] = torch.ops.kan_mlip.ghost_exchange(x, num_nodes)
        return data


class _NumLocalFromTensor:
    """Mixed into nequip's InteractionBlock: its reader of the ML-IAP object (@torch.jit.unused) replaced by
    one of the tensor [num_local, num_ghost]."""

    def _get_mliap_num_local(self, data: AtomicDataDict.Type) -> int:
        return int(data[AtomicDataDict.NUM_LOCAL_GHOST_NODES_KEY][0])


_local_ghost_classes: Dict[type, type] = {}


def _local_ghost_class(cls: type) -> type:
    """``cls`` (nequip's InteractionBlock, or a nequip package's copy of it) reading num_local from a tensor;
    one class per original, so that TorchScript compiles it once."""
    if cls not in _local_ghost_classes:
        _local_ghost_classes[cls] = type(cls.__name__, (_NumLocalFromTensor, cls), {"__module__": __name__})
    return _local_ghost_classes[cls]


def exchange_width(model: torch.nn.Module) -> Optional[int]:
    """Floats per node that the exchange of ``model`` (a nequip energy network) sends, or None when the
    model cannot take local-only graphs: no convolutions to exchange between, or a first layer that
    mixes every node's features with its output (a self-connection or resnet there, nequip's
    ``learnable_shift``)."""
    layers = [m for m in model.modules() if type(m).__name__ == "ConvNetLayer"]
    if len(layers) < 2:
        return None
    first = layers[0]
    if first.resnet or first.conv.sc is not None:
        return None
    return max(layer.conv.irreps_in[AtomicDataDict.NODE_FEATURES_KEY].dim for layer in layers[1:])


def enable_ghost_exchange(model: torch.nn.Module) -> int:
    """Make ``model`` (a nequip energy network, changed in place) exchange ghost-node features between
    its layers; returns the width the exchange needs (floats per node). ValueError if it cannot."""
    width = exchange_width(model)
    if width is None:
        raise ValueError("this model cannot exchange node features between layers (fewer than two convolutions, "
                         "or a self-connection or resnet in the first one)")
    for module in model.modules():
        if type(module).__name__ == "InteractionBlock":
            module.__class__ = _local_ghost_class(type(module))
        exchange = getattr(module, "ghost_exchange", None)
        if exchange is not None and type(exchange).__name__ == "NoOpGhostExchangeModule":
            module.ghost_exchange = GhostExchange(exchange.field)
    return width


def local_ghost_inputs(data: AtomicDataDict.Type, num_local: int) -> AtomicDataDict.Type:
    """The inputs that switch nequip's convolutions to local/ghost graphs: [num_local, num_ghost] (a
    tensor, in the key whose presence nequip checks too)."""
    counts = torch.tensor([num_local, data[AtomicDataDict.ATOM_TYPE_KEY].size(0) - num_local],
                          device=data[AtomicDataDict.ATOM_TYPE_KEY].device)
    data[AtomicDataDict.NUM_LOCAL_GHOST_NODES_KEY] = counts
    data[AtomicDataDict.LMP_MLIAP_DATA_KEY] = counts
    return data
