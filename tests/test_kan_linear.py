"""KANLinear numerics: exact first and second derivatives, smoothness off-grid, scripting, export."""

import math

import pytest
import torch

from kan_mlip.nn import BASES, KANLinear, KANMLP

BASIS_NAMES = sorted(BASES)


def _layer(basis, in_f=3, out_f=2, seed=0, **kw):
    torch.manual_seed(seed)
    return KANLinear(in_f, out_f, basis=basis, **kw).double()


def _inputs(n=6, in_f=3, scale=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, in_f, generator=g, dtype=torch.float64) * scale).requires_grad_(True)


@pytest.mark.parametrize("basis", BASIS_NAMES)
@pytest.mark.parametrize("scale", [0.7, 4.0, 40.0])  # inside the grid, around its edge, far outside
@pytest.mark.parametrize("zero_at_origin", [False, True])
def test_gradcheck_and_gradgradcheck(basis, scale, zero_at_origin):
    layer = _layer(basis, zero_at_origin=zero_at_origin)
    x = _inputs(scale=scale)
    params = tuple(p for p in layer.parameters())
    f = lambda x, *p: torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], p)), (x,))
    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("basis", BASIS_NAMES)
def test_force_matching_gradient_equals_finite_differences(basis):
    """d/dtheta of a loss on dE/dx -- what force training computes -- for every KAN parameter.

    A second derivative that silently returned zeros (or a detached first derivative) fails here.
    """
    layer = _layer(basis, in_f=3, out_f=1, zero_at_origin=True)
    x = _inputs(n=5, scale=1.5)
    target = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def loss_fn():
        energy = layer(x).sum()
        forces = -torch.autograd.grad(energy, x, create_graph=True)[0]
        return ((forces - target) ** 2).sum()

    loss = loss_fn()
    grads = torch.autograd.grad(loss, list(layer.parameters()))
    eps = 1e-6
    for (name, p), g in zip(layer.named_parameters(), grads):
        assert g.abs().max() > 0, f"{name}: force-matching gradient is identically zero"
        fd = torch.zeros_like(p)
        flat = p.data.view(-1)  # perturb in place; the loss itself needs autograd
        for i in range(p.numel()):
            flat[i] += eps
            up = loss_fn().item()
            flat[i] -= 2 * eps
            down = loss_fn().item()
            flat[i] += eps
            fd.view(-1)[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-7, msg=f"parameter {name}")


@pytest.mark.parametrize("basis", BASIS_NAMES)
def test_far_outside_the_grid_is_finite_and_smooth(basis):
    layer = _layer(basis)
    x = torch.tensor([[1e4, -1e4, 3.0], [-50.0, 50.0, -3.0]], dtype=torch.float64, requires_grad=True)
    y = layer(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(g).all() and torch.isfinite(gg).all()


@pytest.mark.parametrize("basis", ["bspline", "gaussian"])
def test_far_outside_only_the_base_branch_remains(basis):
    layer = _layer(basis)
    x = torch.tensor([[60.0, -70.0, 80.0]], dtype=torch.float64)
    expected = torch.nn.functional.silu(x) @ layer.base_weight.t()
    torch.testing.assert_close(layer(x), expected)


def test_bspline_derivative_continuous_across_outer_knot():
    """Cubic B-splines: value and slope continuous where the basis support ends (no clamping kink)."""
    layer = _layer("bspline", in_f=1, out_f=1, grid_size=5, spline_order=3, grid_range=(-1, 1))
    edge = layer.basis.grid[0, -1].item()
    x = torch.tensor([[edge - 1e-7], [edge + 1e-7]], dtype=torch.float64, requires_grad=True)
    y = layer(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert abs(y[0] - y[1]).item() < 1e-6 and abs(g[0] - g[1]).item() < 1e-5


@pytest.mark.parametrize("basis", BASIS_NAMES)
def test_zero_at_origin(basis):
    layer = _layer(basis, zero_at_origin=True, layer_norm=False)
    # exactly 0 on the reference path; the fused path subtracts phi(0).c after the contraction (rounding)
    assert layer(torch.zeros(4, 3, dtype=torch.float64)).abs().max() < 1e-15
    assert _layer(basis, zero_at_origin=False)(torch.zeros(1, 3, dtype=torch.float64)).abs().max() > 0


@pytest.mark.parametrize("basis", BASIS_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layer_norm", [False, True])  # gaussian: fused silu base / separate base branch
def test_dtypes_script_export_and_zero_rows(basis, dtype, layer_norm):
    torch.manual_seed(0)
    layer = KANLinear(3, 2, basis=basis, layer_norm=layer_norm).to(dtype)
    assert all(b.dtype == dtype for b in layer.buffers())
    x = torch.randn(7, 3, dtype=dtype) * 2
    y = layer(x)
    assert y.dtype == dtype
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), y)
    exported = torch.export.export(layer, (x,), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}})
    torch.testing.assert_close(exported.module()(x), y)
    for module in (layer, scripted, exported.module()):
        assert module(torch.zeros(0, 3, dtype=dtype)).shape == (0, 2)
    batched = layer(x.reshape(7, 1, 3)).reshape(7, 2)
    torch.testing.assert_close(batched, y)


@pytest.mark.parametrize("basis", BASIS_NAMES)
def test_float32_matches_float64(basis):
    layer64 = _layer(basis)
    layer32 = KANLinear(3, 2, basis=basis).float()  # explicit: nequip's global state makes float64 the default
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    x = torch.randn(20, 3, dtype=torch.float64)
    torch.testing.assert_close(layer32(x.float()).double(), layer64(x), rtol=1e-5, atol=1e-5)


def test_bspline_matches_efficient_kan_formula():
    """Partition of unity inside the grid and the efficient-kan knot layout."""
    layer = _layer("bspline", in_f=2, grid_size=5, spline_order=3, grid_range=(-1, 1))
    h = 2 / 5
    expected = torch.arange(-3, 5 + 3 + 1, dtype=torch.float64) * h - 1
    torch.testing.assert_close(layer.basis.grid[0], expected)
    x = torch.linspace(-0.999, 0.999, 50, dtype=torch.float64).reshape(25, 2)
    torch.testing.assert_close(layer.basis(x).sum(-1), torch.ones(25, 2, dtype=torch.float64))


def test_gaussian_matches_fastkan_formula():
    layer = _layer("gaussian", in_f=1, out_f=1, num_grids=8, grid_range=(-2, 2))
    x = torch.tensor([[0.3]], dtype=torch.float64)
    centres = torch.linspace(-2, 2, 8, dtype=torch.float64)
    expected = torch.exp(-(((0.3 - centres) / (4 / 7)) ** 2))
    torch.testing.assert_close(layer.basis(x)[0, 0], expected)


def test_fourier_matches_fourierkan_formula():
    layer = _layer("fourier", in_f=1, out_f=1, num_frequencies=3)
    x = torch.tensor([[0.4]], dtype=torch.float64)
    k = torch.arange(1, 4, dtype=torch.float64)
    torch.testing.assert_close(layer.basis(x)[0, 0], torch.cat([torch.cos(k * 0.4), torch.sin(k * 0.4)]))


@pytest.mark.parametrize("basis", ["bspline", "gaussian"])
def test_update_grid_moves_grid_to_data_and_keeps_the_function(basis):
    layer = _layer(basis, in_f=2, out_f=3)
    x = torch.rand(400, 2, dtype=torch.float64) * 6 - 3  # data wider than the initial grid
    layer.update_grid(x)
    lo, hi = layer.basis.grid.min(dim=1).values, layer.basis.grid.max(dim=1).values
    assert (lo <= x.min(0).values).all() and (hi >= x.max(0).values).all()
    # a second update on the same data finds the function already in the span: unchanged
    before = layer(x)
    layer.update_grid(x)
    torch.testing.assert_close(layer(x), before, rtol=1e-7, atol=1e-7)


def test_update_grid_refit_is_close_when_data_is_in_range():
    layer = _layer("bspline", in_f=2, out_f=3, grid_size=8)
    x = torch.rand(2000, 2, dtype=torch.float64) * 1.8 - 0.9
    before = layer(x)
    layer.update_grid(x)
    err = (layer(x) - before).abs().max() / before.abs().max()
    assert err < 0.05


def test_update_grid_rejects_fourier_and_bad_shapes():
    with pytest.raises(ValueError, match="fourier"):
        _layer("fourier").update_grid(torch.randn(50, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        _layer("bspline").update_grid(torch.randn(50, 4, dtype=torch.float64))


def test_regularization_loss_matches_efficient_kan():
    layer = _layer("bspline")
    l1 = layer.spline_weight.abs().mean(-1)
    p = l1 / l1.sum()
    expected = 2.0 * l1.sum() + 0.5 * -(p * p.log()).sum()
    torch.testing.assert_close(layer.regularization_loss(2.0, 0.5), expected)
    mlp = KANMLP(3, 1, 1, 4, basis="bspline")
    assert mlp.regularization_loss().requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(basis="chebyshev"), "basis"),
        (dict(basis="bspline", num_grids=4), "num_grids"),
        (dict(basis="bspline", grid_size=0), "grid_size"),
        (dict(basis="bspline", spline_order=-1), "spline_order"),
        (dict(basis="bspline", grid_range=(1, -1)), "grid_range"),
        (dict(basis="gaussian", num_grids=1), "num_grids"),
        (dict(basis="gaussian", grid_range=(0,)), "grid_range"),
        (dict(basis="fourier", num_frequencies=0), "num_frequencies"),
        (dict(basis="gaussian", base_activation="relu6"), "base_activation"),
    ],
)
def test_bad_options_raise_value_error_naming_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KANLinear(3, 2, **kwargs)


def test_kan_mlp_dims_contract():
    mlp = KANMLP(5, 1, hidden_layers_depth=2, hidden_layers_width=4, basis="fourier")
    assert mlp.dims == [5, 4, 4, 1]
    assert KANMLP.from_dims([5, 4, 4, 1]).dims == [5, 4, 4, 1]
    with pytest.raises(ValueError, match="hidden_layers_width"):
        KANMLP(5, 1, hidden_layers_depth=1)
    assert math.isfinite(mlp(torch.randn(3, 5)).sum().item())


@pytest.mark.parametrize("basis", BASIS_NAMES)
def test_univariate_functions_are_the_layer_on_one_hot_inputs(basis):
    """With zero_at_origin every other input contributes 0, so y_o(x e_i) = phi_oi(x) exactly."""
    layer = _layer(basis, in_f=3, out_f=2, zero_at_origin=True)
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)
    phi = layer.univariate(x)
    assert phi.shape == (2, 3, 11)
    for i in range(3):
        inputs = torch.zeros(11, 3, dtype=torch.float64)
        inputs[:, i] = x
        torch.testing.assert_close(layer(inputs).t(), phi[:, i], rtol=1e-12, atol=1e-12)


def _built_in(dtype, **kw):
    default = torch.get_default_dtype()  # the tests run with nequip's global state: float64
    torch.set_default_dtype(dtype)
    try:
        return KANLinear(**kw)
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("basis", ["bspline", "gaussian"])
def test_cast_to_float64_builds_the_grid_again_exactly(basis):
    # cast float32 knots are uniform only to ~1e-8, which sends the fused ops down their general paths
    # (B-spline 192 -> 32: 2x slower): a grid still at its constructor's values is built again in float64
    cast = _built_in(torch.float32, in_features=8, out_features=4, basis=basis).double()
    built = _built_in(torch.float64, in_features=8, out_features=4, basis=basis)
    for name, buffer in built.basis.named_buffers():
        assert getattr(cast.basis, name).dtype == torch.float64 and torch.equal(getattr(cast.basis, name), buffer), name
    spacing = cast.basis.grid.diff(dim=1)
    assert (spacing - spacing[:, :1]).abs().max() <= 1e-14
    # a grid moved to data is the layer's own: cast, not replaced
    moved = _built_in(torch.float32, in_features=8, out_features=4, basis=basis)
    moved.update_grid(torch.rand(200, 8, dtype=torch.float32) * 3 - 1)
    grid32 = moved.basis.grid.clone()
    assert torch.equal(moved.double().basis.grid, grid32.double())
    # and back to float32: a cast as always
    assert torch.equal(cast.float().basis.grid, built.basis.grid.float())
