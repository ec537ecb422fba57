"""Grids that stay exact when a layer is cast to a wider dtype.

A basis built in float32 and cast with ``.double()`` would hold float32 roundings of its knots: their
spacings then differ by ~1e-8 relative, and the fused ops, which take the closed-form path only for
knots uniform to 1e-10 in float64, fall back to the general one (B-spline 192 -> 32: 2x slower;
Gaussian: 17%). A grid still equal to what the constructor builds is built again in the new dtype
instead; a grid moved by ``set_grid_from_samples`` is only cast.
"""

from typing import Callable, Dict

import torch

# name of a buffer -> the constructor's value of it in a (dtype, device)
Builders = Dict[str, Callable[[torch.dtype, torch.device], torch.Tensor]]


def is_rounding_of(value: torch.Tensor, exact: torch.Tensor, source: torch.dtype) -> bool:
    """Whether value (cast from dtype source) is the rounding of exact: the same shape, equal to 4 eps
    of source. Used here and by kan-deploy, which rebuilds a float32 model in float64."""
    eps = torch.finfo(source).eps
    return exact.shape == value.shape and torch.allclose(value, exact, rtol=4 * eps, atol=4 * eps)


def apply_keeping_grids_exact(module: torch.nn.Module, apply, fn, recurse: bool, builders: Builders):
    """``module._apply(fn)`` through ``apply`` (the base class's), then the builders' buffers that gained
    precision and are still the rounding of the constructor's values (is_rounding_of) built again."""
    before = {name: getattr(module, name).dtype for name in builders}
    apply(fn, recurse)
    for name, build in builders.items():
        value, old = getattr(module, name), before[name]
        if not (value.is_floating_point() and old.is_floating_point):
            continue
        if torch.finfo(value.dtype).eps >= torch.finfo(old).eps:
            continue
        exact = build(value.dtype, value.device)
        if is_rounding_of(value, exact, old):
            module._buffers[name] = exact
    return module
