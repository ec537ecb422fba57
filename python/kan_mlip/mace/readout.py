"""KAN readout blocks for mace-torch (``mace.modules``), drop-in for its readout classes.

The placement is the one of the paper's Figure 4, as the mace-kan fork (Hongyu-yu/mace-kan) implements
it: every readout gets a KAN on its scalar channels beside a linear skip path.

* ``KANReadoutBlock`` replaces ``LinearReadoutBlock`` (the readouts of all layers but the last)::

      E_i = linear(h_i) + KAN(kan_in(h_i))

  ``linear`` is MACE's own linear readout (irreps_in -> irrep_out), ``kan_in`` an equivariant linear map
  onto ``MLP_irreps`` (scalars only, so it reads the 0e channels of h_i), and the KAN has widths
  [m, m // 2, m // 4, n_out] with m = dim(MLP_irreps): [16, 8, 4, 1] for MACE's default 16x0e.
* ``KANNonLinearReadoutBlock`` replaces ``NonLinearReadoutBlock`` (the last readout)::

      x = gate(linear_1(h_i))   (masked per head as in MACE)
      E_i = linear_2(x) + KAN(x)

  with KAN widths [m, m // 2, m // 4, n_out], m = dim(hidden irreps).

What follows mace-kan: the two block roles, where the KAN sits (on the scalars after ``kan_in`` /
after the gate, summed with the linear path), the widths [m, m // 2, m // 4, n_out], and the default
basis: cubic B-splines on 3 grid intervals. What differs: the KAN layers are ``kan_mlip.nn.KANLinear``
(efficient-kan's parameterisation of pykan's layer, y = W_base silu(x) + sum scaler * c_k B_k(x),
with its fused C++ ops and exact derivatives of any order) instead of pykan's ``MultKAN``, so the
blocks script with e3nn's ``compile_mode("script")`` instead of being traced; Gaussian (FastKAN) and
Fourier bases are available; the skip path of ``KANReadoutBlock`` is named ``linear`` (mace-kan:
``linear_2``) so that a trained MACE readout's weights load into it unchanged; and the KAN layers use
``zero_at_origin=True`` by default (every phi_oi(0) = 0), so the block maps zero features to zero like
MACE's own readouts (bias-free linear maps, silu(0) = 0), and channels that MACE's multi-head masking
sets to zero add nothing to the KAN's output.

The blocks subclass MACE's readouts and keep their constructor contracts (the KAN options are
keyword-only), so code that checks ``isinstance(readout, NonLinearReadoutBlock)`` or builds a readout
from ``readout_cls`` positionally keeps working. Energies stay invariant and forces equivariant exactly as
in MACE: the KAN only ever sees l = 0 channels.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from mace.modules.blocks import LinearReadoutBlock, NonLinearReadoutBlock
from mace.modules.irreps_tools import mask_head
from mace.modules.wrapper_ops import Linear

from kan_mlip.nn import BASES, BASIS_OPTIONS, KANLinear

# mace-kan's MultKAN(grid=3, k=3): cubic B-splines on 3 intervals of pykan's default range (-1, 1)
DEFAULT_BASIS_OPTIONS: Dict[str, Dict[str, Any]] = {
    "bspline": {"grid_size": 3, "spline_order": 3, "grid_range": (-1.0, 1.0)},
    "gaussian": {},
    "fourier": {},
}


def kan_widths(in_dim: int, out_dim: int, hidden: Optional[Sequence[int]] = None) -> List[int]:
    """[in, *hidden, out]; hidden defaults to mace-kan's [in // 2, in // 4] ([16, 8, 4, 1] for 16 -> 1)."""
    hidden_widths = [in_dim // 2, in_dim // 4] if hidden is None else [int(w) for w in hidden]
    widths = [int(in_dim)] + hidden_widths + [int(out_dim)]
    if min(widths) < 1:
        raise ValueError(
            f"KAN readout widths {widths} (input {in_dim}, output {out_dim}) need every width >= 1: the default "
            f"hidden widths [in // 2, in // 4] need a scalar input of at least 4 channels; pass kan_hidden=[...]"
        )
    return widths


def scalar_dim(irreps: o3.Irreps, what: str) -> int:
    """The dimension of irreps that must be scalars only (the KAN reads them channel by channel)."""
    irreps = o3.Irreps(irreps)
    if any(ir.l != 0 for _, ir in irreps) or irreps.dim == 0:
        raise ValueError(f"{what} must be scalars (e.g. 16x0e) for a KAN readout, got {irreps}")
    return irreps.dim


class ReadoutKAN(torch.nn.Module):
    """A stack of ``KANLinear`` layers of the given widths, no activation between them (each is nonlinear)."""

    widths: List[int]

    def __init__(
        self,
        widths: Sequence[int],
        basis: str = "bspline",
        basis_options: Optional[Dict[str, Any]] = None,
        zero_at_origin: bool = True,
        fused: Optional[bool] = None,
    ):
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"Unknown KAN basis {basis!r}: option 'basis' must be one of {sorted(BASES)}")
        options = dict(DEFAULT_BASIS_OPTIONS[basis])
        options.update(basis_options or {})
        unknown = sorted(set(options) - set(BASIS_OPTIONS[basis]))
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for KAN basis {basis!r}; allowed: {list(BASIS_OPTIONS[basis])}")
        if "grid_range" in options:
            options["grid_range"] = tuple(float(v) for v in options["grid_range"])
        self.widths = [int(w) for w in widths]
        self.basis_name = basis
        self.layers = torch.nn.ModuleList(
            [KANLinear(d_in, d_out, basis=basis, zero_at_origin=zero_at_origin, fused=fused, **options)
             for d_in, d_out in zip(self.widths, self.widths[1:])]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def extra_repr(self) -> str:
        return f"widths={self.widths}, basis={self.basis_name}"


@compile_mode("script")
class KANReadoutBlock(LinearReadoutBlock):
    """MACE's ``LinearReadoutBlock`` plus a KAN on ``MLP_irreps`` scalars: E = linear(h) + KAN(kan_in(h)).

    Args (positional ones as ``LinearReadoutBlock``):
        irreps_in: node feature irreps of this layer.
        irrep_out: ``Nx0e``, one channel per head.
        cueq_config, oeq_config: as MACE (passed to MACE's ``Linear``).
        MLP_irreps: scalars the KAN reads (mace-kan: the model's MLP_irreps, default 16x0e).
        kan_hidden: hidden widths of the KAN (default [m // 2, m // 4], m = dim(MLP_irreps)).
        basis: ``"bspline"`` (default, 3 intervals, cubic), ``"gaussian"`` or ``"fourier"``.
        basis_options: overrides of the basis options (``kan_mlip.nn.BASIS_OPTIONS``).
        zero_at_origin: every KAN function vanishes at 0 (see the module docstring).
        fused: use kan_mlip's fused ops (default: when built).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irrep_out: o3.Irreps = o3.Irreps("0e"),
        cueq_config: Optional[Any] = None,
        oeq_config: Optional[Any] = None,
        *,
        MLP_irreps: o3.Irreps = o3.Irreps("16x0e"),
        kan_hidden: Optional[Sequence[int]] = None,
        basis: str = "bspline",
        basis_options: Optional[Dict[str, Any]] = None,
        zero_at_origin: bool = True,
        fused: Optional[bool] = None,
    ):
        super().__init__(irreps_in, irrep_out, cueq_config, oeq_config)
        self.hidden_irreps = o3.Irreps(MLP_irreps)
        width_in = scalar_dim(self.hidden_irreps, "MLP_irreps")
        width_out = scalar_dim(o3.Irreps(irrep_out), "irrep_out")
        self.kan_in = Linear(irreps_in=irreps_in, irreps_out=self.hidden_irreps, cueq_config=cueq_config)
        self.kan = ReadoutKAN(kan_widths(width_in, width_out, kan_hidden), basis, basis_options, zero_at_origin, fused)

    def forward(self, x: torch.Tensor, heads: Optional[torch.Tensor] = None) -> torch.Tensor:  # [n_nodes, irreps]
        return self.linear(x) + self.kan(self.kan_in(x))  # [n_nodes, n_heads]


@compile_mode("script")
class KANNonLinearReadoutBlock(NonLinearReadoutBlock):
    """MACE's ``NonLinearReadoutBlock`` plus a KAN on its gated hidden scalars: E = linear_2(x) + KAN(x).

    Args (positional ones as ``NonLinearReadoutBlock``):
        irreps_in, MLP_irreps, gate, irrep_out, num_heads, cueq_config, oeq_config: as MACE
            (MLP_irreps here is the hidden irreps, len(heads) * the model's MLP_irreps, scalars only).
        kan_hidden, basis, basis_options, zero_at_origin, fused: as ``KANReadoutBlock``; the KAN reads the
            hidden scalars x (width m = dim(MLP_irreps)).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        MLP_irreps: o3.Irreps,
        gate: Optional[Callable],
        irrep_out: o3.Irreps = o3.Irreps("0e"),
        num_heads: int = 1,
        cueq_config: Optional[Any] = None,
        oeq_config: Optional[Any] = None,
        *,
        kan_hidden: Optional[Sequence[int]] = None,
        basis: str = "bspline",
        basis_options: Optional[Dict[str, Any]] = None,
        zero_at_origin: bool = True,
        fused: Optional[bool] = None,
    ):
        width_in = scalar_dim(MLP_irreps, "MLP_irreps")
        width_out = scalar_dim(o3.Irreps(irrep_out), "irrep_out")
        super().__init__(irreps_in, MLP_irreps, gate, irrep_out, num_heads, cueq_config, oeq_config)
        self.kan = ReadoutKAN(kan_widths(width_in, width_out, kan_hidden), basis, basis_options, zero_at_origin, fused)

    def forward(self, x: torch.Tensor, heads: Optional[torch.Tensor] = None) -> torch.Tensor:  # [n_nodes, irreps]
        x = self.non_linearity(self.linear_1(x))
        if self.num_heads > 1 and heads is not None:
            x = mask_head(x, heads, self.num_heads)
        return self.linear_2(x) + self.kan(x)  # [n_nodes, n_heads]
