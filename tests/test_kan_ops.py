"""Fused C++ KAN ops (csrc/) against the pure-PyTorch reference: values, gradients, gradients of gradients."""

import math

import numpy as np
import pytest
import torch

from kan_mlip.nn import KANLinear
from kan_mlip.nn.ops import BASE_SILU, BASIS_KIND, fused_ops_available

BASES = ["bspline", "gaussian", "fourier"]


def test_ops_library_is_built_and_loaded():
    assert fused_ops_available(), "libkan_mlip_ops.so missing: `make setup` builds it"
    assert KANLinear(2, 1).fused  # the default when the library is there


def pair(basis, in_f, out_f, dtype, seed=0, **kw):
    torch.manual_seed(seed)
    ref = KANLinear(in_f, out_f, basis=basis, fused=False, **kw).to(dtype)
    fused = KANLinear(in_f, out_f, basis=basis, fused=True, **kw).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def derivatives(layer, x):
    """Output, force-like input gradient, and the second-order gradients force training needs."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (dx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    second = torch.autograd.grad((dx * dx).sum() + y.sum(), [x, *layer.parameters()], allow_unused=True)
    return [y, dx, *[torch.zeros(()) if g is None else g for g in second]]


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
# (50, 32, 9): wide output, whole vectors of inputs; (150, 11, 70): outputs in several register panels (wide
# B-splines: 4 vectors each), inputs a partial vector
@pytest.mark.parametrize("n, in_f, out_f", [(0, 3, 2), (1, 1, 1), (7, 4, 3), (300, 16, 1), (130, 5, 17), (50, 32, 9), (150, 11, 70)])
@pytest.mark.parametrize("scale", [0.8, 30.0])  # inside the grid / far outside
def test_fused_equals_reference_to_second_order(basis, dtype, n, in_f, out_f, scale):
    ref, fused = pair(basis, in_f, out_f, dtype, zero_at_origin=True)
    x = torch.randn(n, in_f, dtype=dtype, generator=torch.Generator().manual_seed(n + in_f)) * scale
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    for a, b in zip(derivatives(ref, x), derivatives(fused, x)):
        scale_ab = max(1.0, a.abs().max().item()) if a.numel() else 1.0
        torch.testing.assert_close(b / scale_ab, a / scale_ab, **tol)


@pytest.mark.parametrize("basis", BASES)
def test_gradcheck_and_gradgradcheck_of_every_primitive(basis):
    torch.manual_seed(1)
    layer = KANLinear(3, 2, basis=basis, fused=True).double()
    grid, aux = layer.basis.grid, layer.basis.aux
    kind, order = BASIS_KIND[basis], layer.spline_order
    K = layer.num_basis
    x = (torch.randn(5, 3, dtype=torch.float64) * 1.5).requires_grad_(True)
    c = torch.randn(2, 3, K, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    ops = torch.ops.kan_mlip
    for d in (0, 1):
        cases = [
            (lambda x, c, w: ops.kan_forward(x, c, w, grid, aux, kind, order, d), (x, c, w)),
            (lambda x, c: ops.kan_forward(x, c, None, grid, aux, kind, order, d), (x, c)),
            (lambda x, c, g: ops.kan_input_grad(x, c, g, grid, aux, kind, order, d), (x, c, g)),
            (lambda x, g, w: ops.kan_coeff_grad(x, g, w, grid, aux, kind, order, d), (x, g, w)),
        ]
        for fn, args in cases:
            assert torch.autograd.gradcheck(fn, args)
            assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("out", [1, 2, 9])  # narrow (GEMM) / wide (B-splines: bspline_wide.h) outputs
def test_fused_silu_base_values_and_derivatives_to_fourth_order(basis, out):
    """kind + BASE_SILU: silu(x) is function K, contracted in the same op as the basis (the layer's base
    branch): in the Gaussian pass, as a dense term beside the B-spline and Fourier paths."""
    torch.manual_seed(3)
    layer = KANLinear(3, out, basis=basis, fused=True).double()
    grid, aux, ops = layer.basis.grid, layer.basis.aux, torch.ops.kan_mlip
    kind, K, order = BASIS_KIND[basis] + BASE_SILU, layer.num_basis + 1, layer.spline_order
    x = (torch.randn(6, 3, dtype=torch.float64) * 3).requires_grad_(True)
    # only the base column: y = silu(x) @ W^T, and its derivatives by autograd through torch's silu
    c = torch.zeros(out, 3, K, dtype=torch.float64)
    c[:, :, -1] = torch.randn(out, 3, dtype=torch.float64)
    g = torch.randn(6, out, dtype=torch.float64)
    f = lambda x: torch.nn.functional.silu(x)
    for d in range(4):
        expected = f(x) @ c[:, :, -1].t()
        torch.testing.assert_close(ops.kan_forward(x, c, None, grid, aux, kind, order, d), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ops.kan_input_grad(x, c, g, grid, aux, kind, order, d), f(x) * (g @ c[:, :, -1]),
                                   rtol=1e-12, atol=1e-12)
        f = lambda x, f=f: torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    cr = torch.randn(out, 3, K, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    gr = g.clone().requires_grad_(True)
    for d in (0, 2):
        for fn, args in [
            (lambda x, c, w: ops.kan_forward(x, c, w, grid, aux, kind, order, d), (x, cr, w)),
            (lambda x, c, g: ops.kan_input_grad(x, c, g, grid, aux, kind, order, d), (x, cr, gr)),
            (lambda x, g, w: ops.kan_coeff_grad(x, g, w, grid, aux, kind, order, d), (x, gr, w)),
        ]:
            assert torch.autograd.gradcheck(fn, args)
            assert torch.autograd.gradgradcheck(fn, args)


def test_fused_base_is_used_by_the_default_gaussian_layer_and_matches_its_reference():
    ref, fused = pair("gaussian", 5, 3, torch.float64)
    assert fused.fused_base and not ref.fused_base
    x = torch.randn(40, 5, dtype=torch.float64) * 2
    for a, b in zip(derivatives(ref, x), derivatives(fused, x)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    assert not KANLinear(5, 3, basis="gaussian", layer_norm=True).fused_base  # the base sees x, the basis u
    assert not KANLinear(5, 3, basis="gaussian", base_activation="tanh").fused_base


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("out", [3, 9])  # narrow (GEMM) / wide (bspline_wide.h), both on de Boor's values
def test_fused_bspline_on_non_uniform_knots(dtype, out):
    """Knots moved by update_grid are not evenly spaced, to second order."""
    ref, fused = pair("bspline", 4, out, dtype)
    gen = torch.Generator().manual_seed(5)
    knots = torch.sort(torch.rand(4, ref.basis.grid.shape[1], generator=gen) * 4 - 2, dim=1).values.to(dtype)
    for layer in (ref, fused):
        layer.basis.grid.copy_(knots)
    x = torch.randn(200, 4, dtype=dtype, generator=gen) * 1.5
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    for a, b in zip(derivatives(ref, x), derivatives(fused, x)):
        torch.testing.assert_close(b, a, **tol)


def test_bspline_derivatives_beyond_the_degree_vanish_and_third_is_piecewise_constant():
    layer = KANLinear(1, 1, basis="bspline", fused=True, spline_order=3).double()
    grid, aux = layer.basis.grid, layer.basis.aux
    x = torch.linspace(-0.9, 0.9, 50, dtype=torch.float64).reshape(-1, 1)
    c = torch.randn(1, 1, layer.num_basis, dtype=torch.float64)
    fourth = torch.ops.kan_mlip.kan_forward(x, c, None, grid, aux, 0, 3, 4)
    assert fourth.abs().max() == 0
    # third derivative by finite differences of the second, away from the knots
    h = 1e-6
    x0 = torch.tensor([[0.1], [-0.5]], dtype=torch.float64)
    second = lambda x: torch.ops.kan_mlip.kan_forward(x, c, None, grid, aux, 0, 3, 2)
    fd = (second(x0 + h) - second(x0 - h)) / (2 * h)
    torch.testing.assert_close(torch.ops.kan_mlip.kan_forward(x0, c, None, grid, aux, 0, 3, 3), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("out", [1, 3, 9])
def test_high_order_bspline_equals_reference(dtype, out):
    """Order 7: de Boor's values; wide outputs take the sparse kernels with a run-time function count."""
    ref, fused = pair("bspline", 5, out, dtype, seed=3, spline_order=7, grid_size=4)
    x = torch.randn(150, 5, dtype=dtype, generator=torch.Generator().manual_seed(4)) * 1.5  # some outside the grid
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    for a, b in zip(derivatives(ref, x), derivatives(fused, x)):
        scale = max(1.0, a.abs().max().item())
        torch.testing.assert_close(b / scale, a / scale, **tol)


def test_force_matching_gradient_equals_reference_and_is_not_zero():
    """The quantity force training differentiates: d/dc of a loss on dE/dx (needs the double backward)."""
    grads = []
    for fused in (False, True):
        torch.manual_seed(2)
        layer = KANLinear(4, 1, basis="bspline", fused=fused, zero_at_origin=True).double()
        x = torch.randn(64, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        (forces,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        loss = (forces - 0.3).square().sum()
        grads.append(torch.autograd.grad(loss, layer.spline_weight)[0])
    assert grads[1].abs().max() > 1e-3
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_bad_op_arguments_raise_not_crash():
    assert fused_ops_available()
    ops = torch.ops.kan_mlip
    x = torch.randn(4, 3, dtype=torch.float64)
    grid = torch.randn(3, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="coeff must be"):
        ops.kan_forward(x, torch.randn(2, 3, 5, dtype=torch.float64), None, grid, torch.ones(3, 1, dtype=torch.float64), 1, 0, 0)
    with pytest.raises(RuntimeError, match="basis kind"):
        ops.kan_forward(x, torch.randn(2, 3, 8, dtype=torch.float64), None, grid, torch.zeros(0), 7, 0, 0)
    with pytest.raises(RuntimeError, match=r"coeff must be \(out, 3, 5\)"):  # cubic B-splines on 8 knots + silu base
        ops.kan_forward(x, torch.randn(2, 3, 4, dtype=torch.float64), None, grid, torch.zeros(0, dtype=torch.float64), 8, 3, 0)
    with pytest.raises(RuntimeError, match="inverse widths"):
        ops.kan_forward(x, torch.randn(2, 3, 8, dtype=torch.float64), None, grid, torch.zeros(0, dtype=torch.float64), 1, 0, 0)
    with pytest.raises(RuntimeError, match="grid"):
        ops.kan_forward(x, torch.randn(2, 3, 8, dtype=torch.float64), None, grid[:2], torch.zeros(0, dtype=torch.float64), 0, 3, 0)
    aux, c = torch.ones(3, 1, dtype=torch.float64), torch.randn(2, 3, 8, dtype=torch.float64)
    for w in (torch.ones(4, 2, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float32)):  # wrong shape / dtype
        with pytest.raises(RuntimeError, match="weight must be like x"):
            ops.kan_forward(x, c, w, grid, aux, 1, 0, 0)
        with pytest.raises(RuntimeError, match="weight must be like x"):
            ops.kan_coeff_grad(x, torch.randn(4, 2, dtype=torch.float64), w, grid, aux, 1, 0, 0)


def test_layer_unpickled_without_the_ops_falls_back_to_the_reference(monkeypatch):
    import io

    import kan_mlip.nn.kan_linear as kl

    layer = KANLinear(3, 2, basis="bspline", fused=True).double()
    x = torch.randn(9, 3, dtype=torch.float64)
    expected = layer(x)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    monkeypatch.setattr(kl, "fused_ops_available", lambda: False)
    restored = torch.load(buffer, weights_only=False)
    assert not restored.fused
    torch.testing.assert_close(restored(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_fourier_with_any_frequencies(dtype):
    # non-harmonic frequencies take the per-element path (two trig calls per function)
    ref, fused = pair("fourier", 4, 3, dtype, zero_at_origin=True)
    for layer in (ref, fused):
        layer.basis.frequencies.copy_(torch.tensor([0.5, 1.3, 2.7, 4.0, 6.1], dtype=dtype))
    x = torch.randn(50, 4, dtype=dtype, generator=torch.Generator().manual_seed(3))
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    for a, b in zip(derivatives(ref, x), derivatives(fused, x)):
        torch.testing.assert_close(b, a, **tol)


def gaussian_derivative(x, centres, s, d):
    """(-s)^d H_d(z) exp(-z^2), z = (x - c) s: the d-th derivative of each Gaussian, shape (N, in, K)."""
    z = (x[:, :, None] - centres[None]) * s[None]
    h_prev, h = torch.ones_like(z), 2 * z
    if d == 0:
        h = h_prev
    for m in range(1, d):
        h_prev, h = h, 2 * z * h - 2 * m * h_prev
    return (-s[None]) ** d * h * torch.exp(-z * z)


@pytest.mark.parametrize("grid_kind", ["uniform", "float32_cast", "jittered"])
@pytest.mark.parametrize("out", [1, 2, 9])
def test_gaussian_recurrence_equals_closed_form(grid_kind, out):
    """Uniform centres take the product recurrence (gaussian_rows.h), centres a float32 linspace cast to
    float64 take it with the offset correction, jittered ones one exp per value; rows across the band edge
    (|z_m| ~ 16) and far outside mix the paths. Every derivative order against the closed form."""
    assert fused_ops_available()
    torch.manual_seed(5)
    n_in, K = 3, 8
    base = torch.linspace(-2, 2, K, dtype=torch.float64)
    centres = {"uniform": base, "float32_cast": base.float().double(),
               "jittered": base + 0.05 * torch.randn(K, dtype=torch.float64)}[grid_kind]
    grid = centres.expand(n_in, K).contiguous()
    s = torch.full((n_in, 1), (K - 1) / 4.0, dtype=torch.float64)
    x = torch.linspace(-14, 14, 241, dtype=torch.float64)[:, None] + torch.tensor([0.0, 0.4, -0.9], dtype=torch.float64)
    x = torch.cat([x, 0.3 * torch.randn(50, n_in, dtype=torch.float64)])
    c = torch.randn(out, n_in, K, dtype=torch.float64)
    g = torch.randn(len(x), out, dtype=torch.float64)
    kind, ops = BASIS_KIND["gaussian"], torch.ops.kan_mlip
    for d in range(4):
        phi = gaussian_derivative(x, grid, s, d)
        scale = phi.abs().max()
        torch.testing.assert_close(ops.kan_forward(x, c, None, grid, s, kind, 0, d), torch.einsum("nik,oik->no", phi, c),
                                   rtol=1e-12, atol=1e-13 * scale)
        torch.testing.assert_close(ops.kan_input_grad(x, c, g, grid, s, kind, 0, d), torch.einsum("nik,oik,no->ni", phi, c, g),
                                   rtol=1e-12, atol=1e-13 * scale)
        torch.testing.assert_close(ops.kan_coeff_grad(x, g, None, grid, s, kind, 0, d), torch.einsum("nik,no->oik", phi, g),
                                   rtol=1e-12, atol=1e-12 * scale)
        if d <= 2:  # float32 against the float64 closed form: a few ulp of the largest term
            y32 = ops.kan_forward(x.float(), c.float(), None, grid.float(), s.float(), kind, 0, d).double()
            expected = torch.einsum("nik,oik->no", phi, c)
            assert (y32 - expected).abs().max() <= 2e-6 * scale * c.abs().sum(dim=(1, 2)).max()


@pytest.mark.parametrize("out", [1, 9])  # narrow (dense block + GEMM) / wide (bspline_wide.h)
@pytest.mark.parametrize("order", [2, 3, 4])
def test_uniform_bspline_derivatives_equal_cox_de_boor_by_autograd(order, out):
    """Uniform knots built in float64 (exactly evenly spaced): cubics take the closed forms
    (Basis::cubic_uniform, CubicRows), other orders de Boor's triangle; each derivative
    order against autograd through the reference Cox-de Boor recursion, with points in every knot
    interval and outside."""
    from kan_mlip.nn.bspline import BSplineBasis

    assert fused_ops_available()
    basis = BSplineBasis(2, grid_size=5, spline_order=order).double()
    basis.grid.copy_(torch.cat([basis.grid[:1], basis.grid[:1] * 1.5 + 0.1]))  # two inputs, two spacings
    torch.manual_seed(11)
    c = torch.randn(out, 2, basis.num_basis, dtype=torch.float64)
    x = torch.cat([torch.linspace(-3.3, 3.3, 157, dtype=torch.float64)[:, None].expand(-1, 2),
                   torch.rand(200, 2, dtype=torch.float64) * 4 - 2]).contiguous()
    x = x + 1e-7  # off the knots, where the derivatives of a spline jump
    xr = x.clone().requires_grad_(True)
    # per output o, autograd through the reference: y_o(x) = sum_i f_oi(x_i) is separable, so the
    # gradient of the sum over rows of the (d-1)-th derivative, summed over i, is the d-th derivative
    fs = [torch.einsum("nik,ik->n", basis(xr), c[o]).sum() for o in range(out)]
    for d in range(order + 1):
        if d > 0:
            grads = [torch.autograd.grad(f, xr, create_graph=True)[0] for f in fs]
            expected = torch.stack([g.sum(dim=1) for g in grads], dim=1)
            fs = [g.sum() for g in grads]
        else:
            expected = torch.einsum("nik,oik->no", basis(x), c)
        got = torch.ops.kan_mlip.kan_forward(x, c, None, basis.grid, basis.aux, BASIS_KIND["bspline"], order, d)
        torch.testing.assert_close(got, expected.detach(), rtol=1e-9, atol=1e-9 * max(1.0, expected.abs().max().item()))


@pytest.mark.parametrize("out", [1, 2, 9])
def test_fourier_derivative_of_every_order_is_the_derivative_of_the_previous(out):
    """The d-th derivative columns (phase d mod 4 of the angle-addition block) to fourth order: the
    central difference of order d equals order d + 1, narrow and wide outputs."""
    assert fused_ops_available()
    torch.manual_seed(4)
    layer = KANLinear(5, out, basis="fourier").double()
    grid, aux, ops, kind = layer.basis.grid, layer.basis.aux, torch.ops.kan_mlip, BASIS_KIND["fourier"]
    c = torch.randn(out, 5, layer.num_basis, dtype=torch.float64)
    x = torch.randn(37, 5, dtype=torch.float64)
    h = 1e-5
    for d in range(5):
        f = lambda x: ops.kan_forward(x, c, None, grid, aux, kind, 0, d)
        # the layer is a sum of one-input functions: shifting all inputs at once sums their derivatives
        fd = (f(x + h) - f(x - h)) / (2 * h)
        nxt = ops.kan_forward(x, c, None, grid, aux, kind, 0, d + 1)
        torch.testing.assert_close(fd, nxt, rtol=1e-7, atol=1e-8 * nxt.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fourier_sin_cos_within_an_ulp_for_any_argument(dtype):
    """The Fourier rows use our own SIMD sin/cos (csrc/vec_sincos.h): within an ulp or two of the exact
    value (float64 torch) on the grid's scale, at multiples of pi/2 (cancellation in the reduction), far
    out (up to the fast path's bound, 1e6 / 8192, and past it) and at inf / NaN (propagated as NaN)."""
    assert fused_ops_available()
    gen = torch.Generator().manual_seed(11)
    far = 1e5 if dtype == torch.float64 else 4e3
    x = torch.cat([torch.linspace(-10, 10, 20001, dtype=torch.float64),
                   torch.randn(20000, dtype=torch.float64, generator=gen) * far,
                   torch.arange(1, 5000, dtype=torch.float64) * (math.pi / 2),
                   torch.tensor([0.0, -0.0, 8191.0, 9000.0, 9.99e5, 1.5e6, -3e7, 1e30, math.inf, -math.inf, math.nan],
                                dtype=torch.float64)]).to(dtype)[:, None]
    freqs, aux = torch.tensor([1.0], dtype=dtype), torch.zeros(0, dtype=dtype)
    for column, fn in [(0, torch.cos), (1, torch.sin)]:
        c = torch.zeros(1, 1, 2, dtype=dtype)
        c[0, 0, column] = 1.0
        y = torch.ops.kan_mlip.kan_forward(x, c, None, freqs, aux, BASIS_KIND["fourier"], 0, 0)[:, 0].double()
        expected = fn(x[:, 0].double())  # exact to float64 for the (float32-rounded) input itself
        assert torch.equal(torch.isnan(y), torch.isnan(expected))
        finite = torch.isfinite(expected)
        assert (y - expected)[finite].abs().max() <= 1.5 * torch.finfo(dtype).eps


@pytest.mark.parametrize("basis", BASES)
def test_high_silu_derivatives_in_float32_keep_their_digits_far_from_the_origin(basis):
    """The base's 3rd..6th derivatives, x sigmoid^(d) + d sigmoid^(d-1), in float32 against float64 where
    sigmoid(x) -> 1: written as polynomials in sigmoid(x) they lost every digit there (40% off at d = 5)."""
    layer = KANLinear(1, 1, basis=basis, fused=True).double()
    grid, aux = layer.basis.grid, layer.basis.aux
    kind, order, K = BASIS_KIND[basis] + BASE_SILU, layer.spline_order, layer.num_basis + 1
    x = torch.linspace(-16, 16, 129, dtype=torch.float64).reshape(-1, 1)
    c = torch.zeros(1, 1, K, dtype=torch.float64)
    c[..., -1] = 1.0  # the base function alone
    for d in range(3, 7):
        want = torch.ops.kan_mlip.kan_forward(x, c, None, grid, aux, kind, order, d)
        got = torch.ops.kan_mlip.kan_forward(x.float(), c.float(), None, grid.float(), aux.float(), kind, order, d)
        # sigmoid^(n) ~ e^{-|x|} out there: relative accuracy where the value is above float32's noise
        scale = want.abs().max()
        torch.testing.assert_close(got.double() / scale, want / scale, rtol=0, atol=3e-6)
        far = want.abs() > 1e-4 * scale
        torch.testing.assert_close(got.double()[far], want[far], rtol=1e-4, atol=0)
