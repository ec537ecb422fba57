"""Gaussian radial basis with FastKAN semantics: phi_k(x) = exp(-((x - c_k) / h)^2).

``num_grids`` centres are spread uniformly over ``grid_range`` (FastKAN: (-2, 2), 8 centres) and
h is the spacing between neighbouring centres. Far outside the grid every phi_k decays to zero
smoothly, so a layer built on this basis reduces to its base branch there.
"""

from typing import Sequence

import torch

from .bspline import _check_range
from .exact_grids import apply_keeping_grids_exact


class GaussianBasis(torch.nn.Module):
    """``phi(x)[n, i, k] = exp(-((x[n, i] - c[i, k]) / h[i])^2)``; centres and widths are buffers."""

    num_basis: int

    def __init__(self, in_features: int, num_grids: int = 8, grid_range: Sequence[float] = (-2.0, 2.0)):
        super().__init__()
        if int(num_grids) < 2:
            raise ValueError(f"gaussian option 'num_grids' must be an integer >= 2, got {num_grids!r}")
        lo, hi = _check_range("gaussian", "grid_range", grid_range)
        self.num_basis = int(num_grids)
        self.grid_range = (lo, hi)
        dtype, cpu = torch.get_default_dtype(), torch.device("cpu")
        self.register_buffer("grid", self._uniform_centres(in_features, dtype, cpu))
        self.register_buffer("inv_width", self._uniform_inv_width(in_features, dtype, cpu))

    def _uniform_centres(self, in_features: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        lo, hi = self.grid_range
        return torch.linspace(lo, hi, self.num_basis, dtype=dtype, device=device).expand(in_features, -1).contiguous()

    def _uniform_inv_width(self, in_features: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        lo, hi = self.grid_range
        return torch.full((in_features, 1), (self.num_basis - 1) / (hi - lo), dtype=dtype, device=device)

    def _apply(self, fn, recurse=True):
        if not hasattr(self, "grid_range"):  # pickled before grids were kept exact
            return super()._apply(fn, recurse)
        n = self.grid.shape[0]
        return apply_keeping_grids_exact(self, super()._apply, fn, recurse, {
            "grid": lambda dtype, device: self._uniform_centres(n, dtype, device),
            "inv_width": lambda dtype, device: self._uniform_inv_width(n, dtype, device)})

    @property
    def aux(self) -> torch.Tensor:
        """Per-feature inverse widths, as the fused op takes them."""
        return self.inv_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.unsqueeze(-1) - self.grid) * self.inv_width
        return torch.exp(-z * z)

    @torch.jit.unused
    def set_grid_from_samples(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.01) -> None:
        """Centres at sample quantiles blended with a uniform grid over the sample range."""
        xs = torch.sort(x, dim=0).values
        idx = torch.linspace(0, xs.shape[0] - 1, self.num_basis, device=x.device).long()
        lo, hi = xs[0] - margin, xs[-1] + margin
        uniform = lo + (hi - lo) * torch.linspace(0, 1, self.num_basis, device=x.device, dtype=x.dtype)[:, None]
        centres = grid_eps * uniform + (1 - grid_eps) * xs[idx]
        self.grid.copy_(centres.T)
        self.inv_width.copy_(((self.num_basis - 1) / (hi - lo))[:, None])

    def extra_repr(self) -> str:
        return f"num_grids={self.num_basis}"
