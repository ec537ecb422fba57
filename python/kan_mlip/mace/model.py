"""MACE -> MACE-KAN: put KAN readouts into a mace-torch model (or build one from MACE's constructor arguments).

Placements:

* ``"all"`` (the paper's Figure 4, mace-kan's ``KAN_readout=True``): every ``LinearReadoutBlock`` becomes a
  ``KANReadoutBlock`` and the ``NonLinearReadoutBlock`` a ``KANNonLinearReadoutBlock``.
* ``"last"``: only the last readout (the nonlinear one; the only one of a one-layer MACE) gets a KAN.

A converted readout keeps the original's linear maps (their weights are copied), so before training a
MACE-KAN is the MACE model plus the KAN branches. The KAN weights are drawn from torch's generator, so
``torch.manual_seed`` fixes them.
"""

import contextlib
import copy
from typing import Any, Dict, Iterator, List, Optional, Sequence, Type

import torch
from e3nn import o3
from mace.modules.blocks import LinearReadoutBlock, NonLinearReadoutBlock
from mace.modules.models import MACE

from kan_mlip.nn import BASES

from .readout import KANNonLinearReadoutBlock, KANReadoutBlock

KAN_PLACEMENTS = ("all", "last")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _gate_of(block: NonLinearReadoutBlock):
    """The gate a NonLinearReadoutBlock was built with (e3nn's Activation wraps it in normalize2mom)."""
    act = block.non_linearity.acts[0]
    return None if act is None else getattr(act, "f", act)


def _model_MLP_irreps(model: torch.nn.Module) -> Optional[o3.Irreps]:
    """MACE's MLP_irreps from its nonlinear readout (hidden irreps = len(heads) x MLP_irreps)."""
    for block in model.readouts:
        if isinstance(block, NonLinearReadoutBlock):
            heads = int(getattr(block, "num_heads", 1))
            mul, ir = o3.Irreps(block.hidden_irreps).simplify()[0]
            return o3.Irreps([(mul // heads, ir)])
    return None


def _kan_block(block: torch.nn.Module, MLP_irreps: Optional[o3.Irreps], options: Dict[str, Any]) -> torch.nn.Module:
    if isinstance(block, (KANReadoutBlock, KANNonLinearReadoutBlock)):
        raise ValueError(f"this readout already has a KAN ({type(block).__name__}): the model is a MACE-KAN already")
    param = next(block.parameters())
    with _default_dtype(param.dtype):
        if type(block) is LinearReadoutBlock:
            linear = block.linear
            new = KANReadoutBlock(linear.irreps_in, linear.irreps_out, MLP_irreps=MLP_irreps or o3.Irreps("16x0e"),
                                  **options)
        elif type(block) is NonLinearReadoutBlock:
            new = KANNonLinearReadoutBlock(block.linear_1.irreps_in, block.hidden_irreps, _gate_of(block),
                                           block.linear_2.irreps_out, int(getattr(block, "num_heads", 1)), **options)
        else:
            raise ValueError(
                f"no KAN readout for {type(block).__name__}: MACE-KAN replaces LinearReadoutBlock and "
                f"NonLinearReadoutBlock (the readouts of MACE / ScaleShiftMACE)"
            )
    missing, unexpected = new.load_state_dict(block.state_dict(), strict=False)
    if unexpected or any(not key.startswith("kan") for key in missing):
        raise RuntimeError(f"readout weights did not carry over: missing {missing}, unexpected {unexpected}")
    return new.to(param.device)


def to_mace_kan(
    model: torch.nn.Module,
    placement: str = "all",
    basis: str = "bspline",
    basis_options: Optional[Dict[str, Any]] = None,
    kan_hidden: Optional[Sequence[int]] = None,
    MLP_irreps: Optional[Any] = None,
    zero_at_origin: bool = True,
    fused: Optional[bool] = None,
    in_place: bool = False,
) -> torch.nn.Module:
    """A MACE model with KAN readouts (a copy unless ``in_place``).

    Args:
        model: a ``mace.modules.MACE`` (or ScaleShiftMACE, any model whose ``readouts`` are MACE's
            Linear/NonLinearReadoutBlock).
        placement: ``"all"`` (every readout, the paper's) or ``"last"`` (the last readout only).
        basis: ``"bspline"`` (default: cubic, 3 intervals on (-1, 1), as mace-kan), ``"gaussian"``, ``"fourier"``.
        basis_options: basis overrides, e.g. ``{"grid_size": 5}`` or ``{"num_grids": 8, "grid_range": [-2, 2]}``.
        kan_hidden: hidden KAN widths (default [m // 2, m // 4] from the KAN's input width m).
        MLP_irreps: scalars the linear readouts' KANs read (default: the model's MLP_irreps, taken from its
            nonlinear readout; 16x0e when it has none).
        zero_at_origin, fused: ``KANLinear`` options.
    """
    if placement not in KAN_PLACEMENTS:
        raise ValueError(f"Unknown KAN placement {placement!r}: option 'placement' must be one of {list(KAN_PLACEMENTS)}")
    if basis not in BASES:
        raise ValueError(f"Unknown KAN basis {basis!r}: option 'basis' must be one of {sorted(BASES)}")
    readouts = getattr(model, "readouts", None)
    if not isinstance(readouts, torch.nn.ModuleList) or len(readouts) == 0:
        raise ValueError(f"{type(model).__name__} has no MACE readouts (model.readouts) to put KANs into")
    if not in_place:
        model = copy.deepcopy(model)
    MLP_irreps = o3.Irreps(MLP_irreps) if MLP_irreps is not None else _model_MLP_irreps(model)
    options = dict(kan_hidden=kan_hidden, basis=basis, basis_options=basis_options, zero_at_origin=zero_at_origin,
                   fused=fused)
    which: List[int] = list(range(len(model.readouts))) if placement == "all" else [len(model.readouts) - 1]
    for i in which:
        model.readouts[i] = _kan_block(model.readouts[i], MLP_irreps, options)
    return model


def build_mace_kan(
    placement: str = "all",
    basis: str = "bspline",
    basis_options: Optional[Dict[str, Any]] = None,
    kan_hidden: Optional[Sequence[int]] = None,
    zero_at_origin: bool = True,
    fused: Optional[bool] = None,
    model_cls: Type[torch.nn.Module] = MACE,
    **mace_kwargs,
) -> torch.nn.Module:
    """``model_cls(**mace_kwargs)`` (MACE's constructor arguments, as ``mace.modules.MACE`` takes them) with KAN
    readouts; the linear readouts' KANs read the model's ``MLP_irreps``."""
    model = model_cls(**mace_kwargs)
    MLP_irreps = mace_kwargs.get("MLP_irreps")
    return to_mace_kan(model, placement, basis, basis_options, kan_hidden,
                       MLP_irreps=o3.Irreps(MLP_irreps) if MLP_irreps is not None else None,
                       zero_at_origin=zero_at_origin, fused=fused, in_place=True)
