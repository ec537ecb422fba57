"""B-spline basis with efficient-kan semantics.

For each input feature i the grid holds ``grid_size + 2 * spline_order + 1`` knots, uniformly spaced
over ``grid_range`` and extended by ``spline_order`` knots on both sides. The Cox-de Boor recursion
gives ``grid_size + spline_order`` basis functions B_k(x) of degree ``spline_order``.

Outside the extended knots every B_k is exactly zero, and at the outermost knots each B_k vanishes
with its first ``spline_order - 1`` derivatives, so a layer built on this basis is C^(k-1) smooth
everywhere: far from the grid only the base branch (silu) remains. No clamping is done, because
clamping would make forces discontinuous.
"""

from typing import List, Sequence

import torch

from .exact_grids import apply_keeping_grids_exact


class BSplineBasis(torch.nn.Module):
    """``B(x)[n, i, k] = B_k(x[n, i])`` on a per-feature knot vector (buffer ``grid``)."""

    spline_order: int
    grid_size: int
    num_basis: int

    def __init__(
        self,
        in_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
    ):
        super().__init__()
        if int(grid_size) < 1:
            raise ValueError(f"bspline option 'grid_size' must be an integer >= 1, got {grid_size!r}")
        if int(spline_order) < 0:
            raise ValueError(f"bspline option 'spline_order' must be an integer >= 0, got {spline_order!r}")
        lo, hi = _check_range("bspline", "grid_range", grid_range)
        self.grid_size = int(grid_size)
        self.spline_order = int(spline_order)
        self.num_basis = self.grid_size + self.spline_order
        self.grid_range = (lo, hi)
        self.register_buffer("grid", self._uniform_grid(in_features, torch.get_default_dtype(), torch.device("cpu")))
        self.register_buffer("aux", torch.zeros(0))  # unused by this basis; the fused op's signature has it

    def _uniform_grid(self, in_features: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        lo, hi = self.grid_range
        h = (hi - lo) / self.grid_size
        knots = torch.arange(-self.spline_order, self.grid_size + self.spline_order + 1, dtype=dtype, device=device) * h + lo
        return knots.expand(in_features, -1).contiguous()

    def _apply(self, fn, recurse=True):
        if not hasattr(self, "grid_range"):  # pickled before grids were kept exact
            return super()._apply(fn, recurse)
        in_features = self.grid.shape[0]
        return apply_keeping_grids_exact(self, super()._apply, fn, recurse,
                                         {"grid": lambda dtype, device: self._uniform_grid(in_features, dtype, device)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.grid  # (in, grid_size + 2k + 1)
        x = x.unsqueeze(-1)  # (N, in, 1)
        # degree 0: indicator of the knot interval [g_j, g_{j+1})
        bases = ((x >= g[:, :-1]) & (x < g[:, 1:])).to(x.dtype)
        # Cox-de Boor: B_{j,p} = (x - g_j)/(g_{j+p} - g_j) B_{j,p-1} + (g_{j+p+1} - x)/(g_{j+p+1} - g_{j+1}) B_{j+1,p-1}
        for p in range(1, self.spline_order + 1):
            left = (x - g[:, : -(p + 1)]) / (g[:, p:-1] - g[:, : -(p + 1)])
            right = (g[:, p + 1 :] - x) / (g[:, p + 1 :] - g[:, 1:-p])
            bases = left * bases[..., :-1] + right * bases[..., 1:]
        return bases

    @torch.jit.unused
    def set_grid_from_samples(self, x: torch.Tensor, grid_eps: float = 0.02, margin: float = 0.01) -> None:
        """efficient-kan ``update_grid``: knots at sample quantiles blended with a uniform grid."""
        xs = torch.sort(x, dim=0).values  # (N, in)
        n = xs.shape[0]
        idx = torch.linspace(0, n - 1, self.grid_size + 1, device=x.device).long()
        adaptive = xs[idx]  # (G+1, in)
        step = (xs[-1] - xs[0] + 2 * margin) / self.grid_size  # (in,)
        uniform = torch.arange(self.grid_size + 1, device=x.device, dtype=x.dtype)[:, None] * step + xs[0] - margin
        inner = grid_eps * uniform + (1 - grid_eps) * adaptive
        k = self.spline_order
        ext = torch.arange(1, k + 1, device=x.device, dtype=x.dtype)[:, None] * step
        knots = torch.cat([inner[:1] - ext.flip(0), inner, inner[-1:] + ext], dim=0)
        self.grid.copy_(knots.T)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, spline_order={self.spline_order}"


def _check_range(basis: str, name: str, value: Sequence[float]) -> List[float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{basis} option '{name}' must be a pair (low, high), got {value!r}") from None
    if not hi > lo:
        raise ValueError(f"{basis} option '{name}' must have low < high, got {value!r}")
    return [lo, hi]
