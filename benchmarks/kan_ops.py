"""Fused KAN ops vs the pure-PyTorch (materialising) reference, measured in one run.

For each basis, dtype, N, in, out: forward; forward + backward w.r.t. x (the MD force path);
forward + backward + double backward (force training: d/dtheta of a loss on dE/dx). Reports
ms per call for both implementations and their ratio, the MLP readout it replaces (64->32->1,
SiLU) at N=20k, in=64, and the machine's memory-copy bandwidth, all from this run.

    python benchmarks/kan_ops.py                       # N in {1k, 20k}, the full in/out/dtype grid
    python benchmarks/kan_ops.py --n 200000 --in 64 --out 1 --dtype float32
"""

import argparse
import os
import platform
import time

import torch

from kan_mlip.nn import KANLinear
from kan_mlip.nn.ops import fused_ops_available

MODES = ("forward", "force", "train")


def timed(fn, min_time=0.3, max_reps=50):
    fn()
    reps, t0 = 0, time.perf_counter()
    while reps < max_reps and (reps < 2 or time.perf_counter() - t0 < min_time):
        fn()
        reps += 1
    return 1e3 * (time.perf_counter() - t0) / reps


def workload(layer, x, mode):
    params = [p for p in layer.parameters()]

    def forward():
        with torch.no_grad():
            layer(x)

    def force():
        torch.autograd.grad(layer(x).sum(), x)

    def train():
        (dx,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        torch.autograd.grad(dx.square().sum(), params, allow_unused=True)

    return {"forward": forward, "force": force, "train": train}[mode]


def memcpy_bandwidth_gbs():
    src = torch.empty(64 * 2**20 // 4, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), min_time=0.5)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9  # read + write


def built_in(dtype, make):
    """A layer as a model of that dtype builds it (nequip sets the default dtype): grids computed in
    dtype. A float32 layer cast with .to(float64) carries float32-rounded, slightly uneven knots and
    centres, which take the kernels' general (slower) paths."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return make()
    finally:
        torch.set_default_dtype(previous)


def reference_bytes(n, in_f, k, dtype, mode):
    # basis tensor and Cox-de Boor / autograd intermediates: ~ (order + 4) copies, x3 for double backward
    return n * in_f * k * torch.finfo(dtype).bits // 8 * 8 * (3 if mode == "train" else 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--in", dest="in_f", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--out", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--basis", nargs="+", default=["bspline", "gaussian", "fourier"])
    parser.add_argument("--max-reference-gb", type=float, default=6.0, help="skip reference runs needing more memory")
    args = parser.parse_args()
    if not fused_ops_available():
        raise SystemExit("fused ops not built: make setup")
    print(f"# machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; memory copy {memcpy_bandwidth_gbs():.1f} GB/s (this run)")
    print("| basis | dtype | N | in | out | mode | reference ms | fused ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for basis in args.basis:
        for dtype_name in args.dtype:
            dtype = getattr(torch, dtype_name)
            for n in args.n:
                for in_f in args.in_f:
                    x = torch.randn(n, in_f, dtype=dtype, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
                    for out in args.out:
                        torch.manual_seed(0)
                        ref = built_in(dtype, lambda: KANLinear(in_f, out, basis=basis, fused=False))
                        fused = built_in(dtype, lambda: KANLinear(in_f, out, basis=basis, fused=True))
                        fused.load_state_dict(ref.state_dict())
                        for mode in MODES:
                            t_fused = timed(workload(fused, x, mode))
                            if reference_bytes(n, in_f, ref.num_basis, dtype, mode) > args.max_reference_gb * 2**30:
                                t_ref, ratio = float("nan"), "ref skipped (memory)"
                            else:
                                t_ref = timed(workload(ref, x, mode))
                                ratio = f"{t_ref / t_fused:.1f}x"
                            print(f"| {basis} | {dtype_name} | {n} | {in_f} | {out} | {mode} | {t_ref:.2f} | {t_fused:.2f} | {ratio} |",
                                  flush=True)
    # the MLP readout a KAN readout replaces, same N and input width
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        mlp = torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False), torch.nn.SiLU(), torch.nn.Linear(32, 1, bias=False)).to(dtype)
        x = torch.randn(20000, 64, dtype=dtype).requires_grad_(True)
        for mode in MODES:
            print(f"| MLP 64-32-1 SiLU | {dtype_name} | 20000 | 64 | 1 | {mode} | - | {timed(workload(mlp, x, mode)):.2f} | - |")


if __name__ == "__main__":
    main()
