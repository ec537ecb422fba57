"""The CUDA kernels (csrc/cuda/) without a GPU.

- Emulated: kan_kernels.cuh's kernels and launchers, compiled for the host with
  tests/cuda_emulation/cuda_on_host.h (a std::thread per CUDA thread, a barrier per block), must give
  the CPU ops' numbers for every basis, derivative order, weight and shape, zero rows included.
- Compiled: nvcc, where installed, must compile kan_ops_cuda.cu (the torch glue) for sm_80 and sm_90.
On a machine whose torch has CUDA, the ops tests also run on the GPU (test_ops_on_cuda_equal_cpu).
"""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kan_mlip.nn import KANLinear
from kan_mlip.nn.ops import BASE_SILU, BASIS_KIND
from test_kan_ops import derivatives  # values, forces and force-training gradients of a layer

ROOT = Path(__file__).resolve().parents[1]
EMULATION = ROOT / "tests" / "cuda_emulation"
OPS = {"forward": 0, "input_grad": 1, "coeff_grad": 2}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler")
    lib = tmp_path_factory.mktemp("cuda_emulation") / "libkan_emulated.so"
    subprocess.run([cxx, "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-o", str(lib),
                    str(EMULATION / "emulated_ops.cpp")], check=True)
    return ctypes.CDLL(str(lib))


def run_emulated(lib, op, x, coeff, weight, grad, grid, aux, kind, order, deriv, out, K):
    """One primitive through the emulated kernels (numpy in, numpy out)."""
    dtype = x.dtype
    fn = lib.kan_emulated_f64 if dtype == np.float64 else lib.kan_emulated_f32
    N, in_f = x.shape
    shape = {"forward": (N, out), "input_grad": (N, in_f), "coeff_grad": (out, in_f, K)}[op]
    result = np.zeros(shape, dtype) if op != "input_grad" else np.full(shape, np.nan, dtype)
    keep = []  # the arrays behind the pointers stay alive for the call

    def ptr(a):
        if a is None:
            return None
        a = np.ascontiguousarray(a, dtype)
        keep.append(a)
        return a.ctypes.data_as(ctypes.c_void_p)

    grid_stride = grid.shape[1] if grid.ndim == 2 else 0
    aux_stride = (aux.shape[1] if aux.ndim == 2 else 0) if aux.size else 0
    i64 = ctypes.c_int64
    rc = fn(ctypes.c_int(OPS[op]), ptr(x), ptr(coeff), ptr(weight), ptr(grad), ptr(grid), ptr(aux),
            result.ctypes.data_as(ctypes.c_void_p), i64(N), i64(in_f), i64(out), i64(K), i64(grid_stride),
            i64(grid.shape[-1]), i64(aux_stride), ctypes.c_int(kind), ctypes.c_int(order), ctypes.c_int(deriv))
    assert rc == 0
    return result


def case(basis, dtype, n, in_f, out_f, scale, seed, base, **kw):
    torch.manual_seed(seed)
    layer = KANLinear(in_f, out_f, basis=basis, fused=True, **kw).to(dtype)
    grid, aux = layer.basis.grid.detach(), layer.basis.aux.detach()
    kind = BASIS_KIND[basis] + (BASE_SILU if base else 0)
    K = layer.num_basis + (1 if base else 0)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_f, dtype=dtype, generator=gen) * scale
    coeff = torch.randn(out_f, in_f, K, dtype=dtype, generator=gen)
    weight = torch.randn(n, in_f, dtype=dtype, generator=gen)
    grad = torch.randn(n, out_f, dtype=dtype, generator=gen)
    return x, coeff, weight, grad, grid, aux, kind, layer.spline_order, K


def cpu(op, x, coeff, weight, grad, grid, aux, kind, order, deriv):
    ops = torch.ops.kan_mlip
    if op == "forward":
        return ops.kan_forward(x, coeff, weight, grid, aux, kind, order, deriv)
    if op == "input_grad":
        return ops.kan_input_grad(x, coeff, grad, grid, aux, kind, order, deriv)
    return ops.kan_coeff_grad(x, grad, weight, grid, aux, kind, order, deriv)


def assert_matches(got, want, dtype, phase=1.0):
    """Equal relative to the result's largest entry; `phase`: the largest trig argument f x, whose own
    rounding (|f x| eps) bounds how closely two evaluations of cos(f x) can agree"""
    want = want.numpy()
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    tol = (1e-12 if dtype == torch.float64 else 2e-5) * max(1.0, phase)
    np.testing.assert_allclose(got / scale, want / scale, rtol=tol, atol=tol)


@pytest.mark.parametrize("basis, kw", [("bspline", {}), ("bspline", {"spline_order": 1}),
                                        ("bspline", {"spline_order": 4, "grid_size": 3}),
                                        ("gaussian", {}), ("fourier", {})])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("base", [False, True])
# (70, 3, 5): three forward blocks of 32 rows, a partial last one; (37, 20, 2): 20 inputs of 8 or 9
# functions exceed one shared-memory tile of 128 columns; (0, ...): no rows, no launch
@pytest.mark.parametrize("n, in_f, out_f", [(0, 3, 2), (1, 1, 1), (70, 3, 5), (37, 20, 2)])
def test_emulated_kernels_equal_cpu_ops(emulated, basis, kw, dtype, base, n, in_f, out_f):
    x, coeff, weight, grad, grid, aux, kind, order, K = case(basis, dtype, n, in_f, out_f, 1.5, n + in_f, base, **kw)
    derivs = range(order + 2) if basis == "bspline" else range(4)
    for scale in (1.0, 20.0):  # inside the grid / far outside
        xs = x * scale
        for d in derivs:
            for op in OPS:
                for w in ((None, weight) if op != "input_grad" else (None,)):
                    want = cpu(op, xs, coeff, w, grad, grid, aux, kind, order, d)
                    got = run_emulated(emulated, op, xs.numpy(), coeff.numpy(), None if w is None else w.numpy(),
                                       grad.numpy(), grid.numpy(), aux.numpy(), kind, order, d, out_f, K)
                    phase = float(xs.abs().max()) * float(grid.max()) if basis == "fourier" and n else 1.0
                    assert_matches(got, want, dtype, phase)


def test_emulated_bspline_on_non_uniform_knots(emulated):
    layer = KANLinear(4, 3, basis="bspline", fused=True).double()
    grid = layer.basis.grid.detach().clone()
    grid += torch.rand(grid.shape, generator=torch.Generator().manual_seed(0), dtype=grid.dtype) * 0.2
    grid = grid.sort(dim=1).values
    x, coeff, weight, grad, _, aux, kind, order, K = case("bspline", torch.float64, 45, 4, 3, 1.2, 7, False)
    for d in range(order + 1):
        for op in OPS:
            want = cpu(op, x, coeff, weight, grad, grid, aux, kind, order, d)
            got = run_emulated(emulated, op, x.numpy(), coeff.numpy(), weight.numpy(), grad.numpy(), grid.numpy(),
                               aux.numpy(), kind, order, d, 3, K)
            assert_matches(got, want, torch.float64)


def test_emulated_forward_is_not_trivially_zero(emulated):
    """Guards the comparison itself: a real problem gives a nonzero result."""
    x, coeff, weight, grad, grid, aux, kind, order, K = case("gaussian", torch.float64, 40, 3, 4, 1.0, 1, True)
    got = run_emulated(emulated, "forward", x.numpy(), coeff.numpy(), None, grad.numpy(), grid.numpy(), aux.numpy(),
                       kind, order, 0, 4, K)
    assert np.abs(got).max() > 0.1


def nvcc_command(out: Path, shim: Path):
    from torch.utils.cpp_extension import include_paths
    return ["nvcc", "-std=c++17", "-c", str(ROOT / "csrc" / "cuda" / "kan_ops_cuda.cu"), "-o", str(out),
            *[f"-I{p}" for p in include_paths()], f"-I{shim}", "-D_GLIBCXX_USE_CXX11_ABI=1", "--expt-relaxed-constexpr",
            "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90", "-w"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_ops_compile_with_nvcc(tmp_path):
    """The torch glue and kernels compile for Ampere and Hopper. With a CPU torch, the one header its
    build generates for CUDA (c10/cuda/impl/cuda_cmake_macros.h) is supplied here."""
    shim = tmp_path / "shim"
    (shim / "c10" / "cuda" / "impl").mkdir(parents=True)
    (shim / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    proc = subprocess.run(nvcc_command(tmp_path / "kan_ops_cuda.o", shim), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("basis", ["bspline", "gaussian", "fourier"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ops_on_cuda_equal_cpu(basis, dtype):
    x, coeff, weight, grad, grid, aux, kind, order, K = case(basis, dtype, 300, 16, 9, 1.5, 0, True)
    for d in range(3):
        for op in OPS:
            want = cpu(op, x, coeff, weight, grad, grid, aux, kind, order, d)
            got = cpu(op, *(t.cuda() for t in (x, coeff, weight, grad, grid, aux)), kind, order, d).cpu()
            assert_matches(got.numpy(), want, dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("basis", ["bspline", "gaussian", "fourier"])
def test_kan_layer_on_cuda_equals_cpu_to_second_order(basis):
    """A KANLinear moved to the GPU: its ops' CUDA kernels when built (layer.fused_cuda), else the
    reference; either way the CPU's values, forces and force-training gradients."""
    torch.manual_seed(0)
    layer = KANLinear(16, 9, basis=basis).double()
    x = torch.randn(200, 16, dtype=torch.float64) * 1.5

    want = derivatives(layer, x)
    got = derivatives(layer.cuda(), x.cuda())
    for a, b in zip(want, got):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-10)
