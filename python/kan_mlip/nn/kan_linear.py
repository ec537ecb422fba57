"""KANLinear: a Kolmogorov-Arnold layer, y_o = sum_i phi_oi(x_i).

Each univariate function is a base branch plus a linear combination of basis functions
(efficient-kan's parameterisation)::

    phi_oi(x) = W_base[o, i] * act(x) + scaler[o, i] * sum_k W_spline[o, i, k] * B_k(x)

so the layer is  y = act(x) @ W_base^T + B(x).flatten(1) @ (W_spline * scaler).flatten(1)^T.

Choices that the upstream KAN libraries do not make, and why:

* ``zero_at_origin``: B_k(x) is replaced by B_k(x) - B_k(0), so phi_oi(0) = 0 exactly. Interatomic
  potentials need this where a KAN replaces a bias-free MLP: Allegro's edge features vanish at the
  cutoff, and an edge energy that does not vanish with them makes the energy jump when an atom
  crosses r_max. Off by default (plain efficient-kan / FastKAN behaviour).
* No clamping anywhere: the layer is smooth and finite for inputs far outside the grid (see each
  basis for what remains there), because clamped inputs give discontinuous forces in MD.
* Pure tensor algebra: scriptable, exportable, float32/float64, and exactly differentiable to any
  order (forces are -dE/dx, and force training differentiates them once more).
* Initialisation: the base branch preserves the forward variance like nequip's ``ScalarMLP`` (deep
  Allegro latent stacks rely on it); the basis branch starts at the upstream libraries' scale.
"""

import math
from typing import Any, Dict, Final, Optional

import torch

from .bspline import BSplineBasis
from .fourier import FourierBasis
from .gaussian import GaussianBasis
from .ops import BASE_SILU, BASIS_KIND, fused_ops_available, fused_ops_have_cuda, use_fused_default

BASES: Dict[str, Any] = {"bspline": BSplineBasis, "gaussian": GaussianBasis, "fourier": FourierBasis}
BASIS_OPTIONS: Dict[str, tuple] = {
    "bspline": ("grid_size", "spline_order", "grid_range"),
    "gaussian": ("num_grids", "grid_range"),
    "fourier": ("num_frequencies",),
}
# base branch by default where the reference library has one (efficient-kan, FastKAN), not FourierKAN
DEFAULT_BASE_ACTIVATION = {"bspline": "silu", "gaussian": "silu", "fourier": None}
# initial size of the basis branch: efficient-kan and FastKAN start splines small (0.1) next to the
# base branch; FourierKAN has no base branch and starts at unit scale
DEFAULT_SCALE_SPLINE = {"bspline": 0.1, "gaussian": 0.1, "fourier": 1.0}
ACTIVATIONS: Dict[Optional[str], Any] = {"silu": torch.nn.SiLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}
_UNSET = "default"


def make_basis(basis: str, in_features: int, **options) -> torch.nn.Module:
    """Build a basis module by name, with a ValueError that lists what is allowed."""
    if basis not in BASES:
        raise ValueError(f"Unknown KAN basis {basis!r}: option 'basis' must be one of {sorted(BASES)}")
    unknown = sorted(set(options) - set(BASIS_OPTIONS[basis]))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for KAN basis {basis!r}; allowed options are {list(BASIS_OPTIONS[basis])}"
        )
    return BASES[basis](in_features, **options)


class KANLinear(torch.nn.Module):
    """Kolmogorov-Arnold layer with a selectable basis.

    Args:
        in_features, out_features: layer widths.
        basis: ``"bspline"`` (efficient-kan: grid_size=5, spline_order=3, grid_range=(-1, 1)),
            ``"gaussian"`` (FastKAN: num_grids=8, grid_range=(-2, 2)) or
            ``"fourier"`` (FourierKAN: num_frequencies=5).
        base_activation: ``"silu"``, ``"tanh"``, ``"gelu"`` or ``None`` (no base branch);
            default per basis: silu for bspline and gaussian, none for fourier.
        layer_norm: LayerNorm on the basis input (FastKAN's option); off by default.
        standalone_scale: learn the per-function ``scaler`` (efficient-kan's default).
        zero_at_origin: make every phi_oi vanish at x = 0 (see module docstring).
        fused: use the fused C++ ops (default: when they are built and KAN_MLIP_DISABLE_FUSED != 1).
        scale_base, scale_spline: initial scale of the base and basis branches (scale_spline: 0.1
            for bspline / gaussian as in efficient-kan / FastKAN; fourier coefficients are scaled
            so that phi' has unit variance).
        **basis_options: passed to the basis (see ``BASIS_OPTIONS``).
    """

    in_features: int
    out_features: int
    num_basis: int
    zero_at_origin: bool
    basis_name: str
    # fixed at construction; TorchScript drops the branch not taken, so a model scripts with or
    # without the op library loaded
    fused: Final[bool]
    fused_base: Final[bool]
    fused_cuda: Final[bool]
    basis_kind: Final[int]
    base_silu_kind: Final[int]
    spline_order: Final[int]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: str = "bspline",
        base_activation: Optional[str] = _UNSET,
        layer_norm: bool = False,
        standalone_scale: bool = True,
        zero_at_origin: bool = False,
        scale_base: float = 1.0,
        scale_spline: Optional[float] = None,
        fused: Optional[bool] = None,
        **basis_options,
    ):
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"KANLinear needs in_features, out_features >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.basis_name = basis
        self.basis = make_basis(basis, self.in_features, **basis_options)
        self.zero_at_origin = bool(zero_at_origin)
        if fused is None:
            fused = use_fused_default()
        elif fused and not fused_ops_available():
            raise ValueError("KANLinear(fused=True), but the kan_mlip ops library is not built (make setup)")
        self.fused = bool(fused)
        self.basis_kind = BASIS_KIND[basis]
        self.base_silu_kind = BASIS_KIND[basis] + BASE_SILU
        self.spline_order = int(getattr(self.basis, "spline_order", 0))
        self.num_basis = num_basis = int(self.basis.num_basis)

        if base_activation == _UNSET:
            base_activation = DEFAULT_BASE_ACTIVATION[basis]
        if base_activation in (None, "None", "null", "none"):
            base_activation = None
        if base_activation not in ACTIVATIONS and base_activation is not None:
            raise ValueError(
                f"Unknown option 'base_activation'={base_activation!r}; allowed: {sorted(ACTIVATIONS)} or None"
            )
        self.base_activation_name = base_activation
        self.base_activation = ACTIVATIONS[base_activation]() if base_activation else torch.nn.Identity()
        self.norm = torch.nn.LayerNorm(self.in_features) if layer_norm else torch.nn.Identity()

        bound = math.sqrt(3.0) * scale_base / math.sqrt(self.in_features)
        if base_activation is None:
            self.register_parameter("base_weight", None)
        else:
            self.base_weight = torch.nn.Parameter(torch.empty(self.out_features, self.in_features).uniform_(-bound, bound))
        # unit-variance basis sums: Var(sum_k c_k B_k) ~ scale^2 / in_features
        # the ops contract a silu base branch in the same op as the basis (it acts on x, so not after a
        # LayerNorm, which only the basis sees)
        self.fused_base = bool(self.fused and base_activation == "silu" and not layer_norm)
        # inputs on a device the ops have no kernels for (a CPU-only build under a CUDA torch) take the reference
        self.fused_cuda = bool(self.fused and fused_ops_have_cuda())
        if scale_spline is None:
            scale_spline = DEFAULT_SCALE_SPLINE[basis]
        fan_in = self.in_features
        if basis == "fourier":
            # Var(phi') = sum_k k^2 (a_k^2 + b_k^2): unit derivative variance. FourierKAN's
            # 1/sqrt(in*K) lets derivatives grow ~K per layer, which explodes forces in deep stacks.
            fan_in *= sum(k * k for k in range(1, num_basis // 2 + 1))
        std = scale_spline / math.sqrt(fan_in)
        self.spline_weight = torch.nn.Parameter(torch.randn(self.out_features, self.in_features, num_basis) * std)
        if standalone_scale:
            self.spline_scaler = torch.nn.Parameter(torch.ones(self.out_features, self.in_features))
        else:
            self.register_parameter("spline_scaler", None)

    def __setstate__(self, state):
        # a layer pickled with the fused ops, unpickled where they are not built: same numbers by the reference
        super().__setstate__(state)
        self.__dict__.setdefault("fused_base", False)
        if self.__dict__.get("fused", False) and not fused_ops_available():
            self.fused = False
            self.fused_base = False
        self.fused_cuda = bool(self.__dict__.get("fused", False) and fused_ops_have_cuda())

    def scaled_spline_weight(self) -> torch.Tensor:
        if self.spline_scaler is None:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def _origin(self, x: torch.Tensor) -> torch.Tensor:
        # from the weights, not x: in a frozen (deployed) model the origin's basis values are then constants
        return torch.zeros(1, self.in_features, dtype=self.spline_weight.dtype, device=self.spline_weight.device)

    def basis_values(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in) -> (N, in, num_basis): the basis the coefficients multiply (shifted if zero_at_origin)."""
        u = self.norm(x)
        phi = self.basis(u)
        if self.zero_at_origin:
            phi = phi - self.basis(self.norm(self._origin(x)))
        return phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        coeff = self.scaled_spline_weight()
        base_weight: Optional[torch.Tensor] = self.base_weight
        if self.fused and (x.device.type == "cpu" or (x.is_cuda and self.fused_cuda)):
            # y = sum_{i,k} c[o,i,k] phi_k(u[n,i]) without the (N, in, K) basis tensor
            u = self.norm(x)
            kind = self.basis_kind
            if self.fused_base and base_weight is not None:  # silu(x) as function K, weights W_base
                coeff_all = torch.cat([coeff, base_weight.unsqueeze(-1)], dim=-1)
                kind = self.base_silu_kind
                base_weight = None
            else:
                coeff_all = coeff
            y = torch.ops.kan_mlip.kan_forward(u, coeff_all, None, self.basis.grid, self.basis.aux, kind,
                                               self.spline_order, 0)
            if self.zero_at_origin:
                phi0 = self.basis(self.norm(self._origin(x)))[0]  # (in, K)
                y = y - (coeff * phi0).sum(dim=(1, 2))
        else:
            phi = self.basis_values(x)
            flat = self.in_features * self.num_basis  # explicit sizes: N may be 0
            y = torch.mm(phi.reshape(phi.shape[0], flat), coeff.reshape(self.out_features, flat).t())
        if base_weight is not None:
            y = y + torch.mm(self.base_activation(x), base_weight.t())
        return y.reshape(lead + (self.out_features,))

    @torch.jit.unused
    @torch.no_grad()
    def univariate(self, x: torch.Tensor) -> torch.Tensor:
        """The learned functions phi_oi on points x (M,): a tensor (out, in, M), y_o = sum_i phi_oi(x_i).

        Not defined with layer_norm=True (the functions then depend on all inputs jointly)."""
        if not isinstance(self.norm, torch.nn.Identity):
            raise ValueError("univariate functions are not defined with layer_norm=True")
        x = x.to(self.spline_weight.dtype).reshape(-1, 1).expand(-1, self.in_features)  # (M, in)
        phi = self.basis_values(x)  # (M, in, K), shifted if zero_at_origin
        out = torch.einsum("mik,oik->oim", phi, self.scaled_spline_weight())
        if self.base_weight is not None:
            out = out + self.base_weight.unsqueeze(-1) * self.base_activation(x).t().unsqueeze(0)
        return out

    @torch.jit.unused
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.01) -> None:
        """Move the grid to the data (efficient-kan ``update_grid``) and refit the coefficients.

        The basis part of every phi_oi is kept as close as least squares allows: the coefficients
        on the new grid are fitted to the old functions' values at the samples ``x`` (N, in).
        """
        if not hasattr(self.basis, "set_grid_from_samples"):
            raise ValueError(f"KAN basis {self.basis_name!r} has no grid to update (grid update: bspline, gaussian)")
        if x.dim() != 2 or x.shape[1] != self.in_features or x.shape[0] < self.basis.num_basis:
            raise ValueError(
                f"update_grid needs samples of shape (N >= {self.basis.num_basis}, {self.in_features}), got {tuple(x.shape)}"
            )
        if not isinstance(self.norm, torch.nn.Identity):
            raise ValueError("update_grid is not defined with layer_norm=True (the grid lives in normalised space)")
        coeff = self.scaled_spline_weight()  # (out, in, K)
        old = torch.einsum("nik,oik->ino", self.basis_values(x), coeff)  # per-function values
        self.basis.set_grid_from_samples(x.to(self.spline_weight.dtype), grid_eps=grid_eps, margin=margin)
        a = self.basis_values(x).permute(1, 0, 2)  # (in, N, K)
        fit = torch.linalg.lstsq(a, old).solution  # (in, K, out)
        new = fit.permute(2, 0, 1)
        if self.spline_scaler is not None:
            # efficient-kan copies the scaled fit into spline_weight; dividing keeps phi unchanged
            new = new / torch.where(self.spline_scaler == 0, torch.ones_like(self.spline_scaler), self.spline_scaler).unsqueeze(-1)
        self.spline_weight.copy_(new)

    @torch.jit.unused
    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> torch.Tensor:
        """efficient-kan's L1 + entropy regulariser on the coefficient magnitudes (off unless called)."""
        l1 = self.spline_weight.abs().mean(-1)  # (out, in)
        total = l1.sum()
        p = l1 / total
        entropy = -torch.sum(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)))
        return regularize_activation * total + regularize_entropy * entropy

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, basis={self.basis_name}, "
            f"base={self.base_activation_name}, zero_at_origin={self.zero_at_origin}, fused={self.fused}"
        )
