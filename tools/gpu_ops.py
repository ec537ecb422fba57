"""The fused KAN ops on a device: checked against a float64 CPU reference, and timed (tools/gpu_check.py).

    python tools/gpu_ops.py check --device cuda --json checks.json [--quick] [--sanitizer]
    python tools/gpu_ops.py bench --device cuda --json ops_bench.json --md ops_bench.md [--quick] [--max-seconds S]

check: for every basis (B-spline of orders 1, 3, 4; Gaussian; Fourier), float32 and float64, shapes from no
rows to 20000 x 64 and 5000 x 192 -> 32, inputs inside the grid and 20x outside: a KANLinear on the device
(its CUDA kernels; the check fails if the layer would take the reference path) gives the output, the
input gradient (forces) and the second-order gradients of force training (d/dx and d/dtheta of
|dy/dx|^2 + sum y), compared with the same layer in float64 on the CPU (the fused CPU ops, which the test
suite holds to the materialising reference) on the same float32-rounded inputs, as ||got - ref|| / ||ref||:
at most 1e-10 in float64 and 1e-4 in float32, never NaN. Fresh random inputs for every case. Before each
device call the allocator's cached memory is filled with NaN, so an output element no kernel writes shows
up. The larger cases run three times: results that move between runs by more than the tolerance mean a
race. --sanitizer: small cases, no poisoning (for compute-sanitizer with torch's caching off).

bench: the device's copy bandwidth; the KAN output block (192 -> 32 -> 1, Gaussian, as in Allegro's
readout) against the MLP it replaces (192 -> 32 -> 1, SiLU) on as many edges as the 71-atom Ag cell and its
2^3, 4^3, 8^3 replicas have (17.75 per atom), forward + input gradient; then the fused ops against the
materialising reference per basis, dtype, rows, widths and mode (forward; force: + input gradient;
train: + second order). On CUDA the calls are timed with CUDA events, on the CPU with a host clock; each
number is the median of at least 5 calls after 3 untimed ones.
"""

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from typing import Callable

import torch

from kan_mlip.nn import KANLinear, KANMLP
from kan_mlip.nn.ops import fused_ops_available, fused_ops_have_cuda

# the op benchmark's layers, workloads and reference memory model are benchmarks/kan_ops.py's
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "benchmarks"))
from kan_ops import built_in, reference_bytes, workload  # noqa: E402

BASES = [("bspline", {}), ("bspline", {"spline_order": 1}), ("bspline", {"spline_order": 4, "grid_size": 3}),
         ("gaussian", {}), ("fourier", {})]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
EDGES_PER_ATOM = 17.75  # the 71-atom Ag vacancy cell at r_max 4.5: 1260 edges


def derivatives(layer, x):
    """Output, input gradient (forces), and the second-order gradients force training needs."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (dx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    params = [p for p in layer.parameters()]
    second = torch.autograd.grad((dx * dx).sum() + y.sum(), [x, *params], allow_unused=True)
    names = ["y", "dy/dx", "d2/dx"] + [f"d2/d{n}" for n, _ in layer.named_parameters()]
    values = [y, dx] + [torch.zeros((), dtype=x.dtype, device=x.device) if g is None else g for g in second]
    return list(zip(names, values))


def poison(device):
    """Fill cached device memory with NaN, so that outputs carved from it show unwritten elements."""
    if device != "cuda":
        return
    big = torch.full((64 * 2**20 // 8,), float("nan"), dtype=torch.float64, device=device)
    small = [torch.full((2**16,), float("nan"), dtype=torch.float64, device=device) for _ in range(64)]
    del big, small


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not torch.isfinite(got).all():
        return float("nan")
    if want.numel() == 0:
        return 0.0
    return float((got - want).norm() / max(float(want.norm()), 1e-300))


def check(args) -> dict:
    device = args.device
    if not fused_ops_available():
        raise SystemExit("gpu_ops: the kan_mlip ops are not built")
    if device == "cuda" and not fused_ops_have_cuda():
        return {"status": "failed", "cases": 0, "failed": 1, "device": device,
                "failures": ["the ops have no CUDA kernels: KAN layers on the GPU would take the reference path"],
                "line": "no CUDA kernels"}
    shapes = [(0, 3, 2), (1, 1, 1), (70, 3, 5), (37, 20, 2), (1000, 16, 9), (20000, 64, 1), (5000, 192, 32)]
    scales = (1.0, 20.0)
    if args.quick or args.sanitizer:
        shapes = [(0, 3, 2), (1, 1, 1), (70, 3, 5), (37, 20, 2), (300, 16, 9)]
    if args.sanitizer:
        scales = (1.0,)
    seed0 = int(time.time_ns() % 2**31) if args.seed is None else args.seed
    rows, failures = [], []
    worst = {}
    idx = 0
    for basis, kw in BASES:
        for dtype in (torch.float32, torch.float64):
            for n, in_f, out_f in shapes:
                for scale in scales:
                    idx += 1
                    seed = seed0 + idx
                    torch.manual_seed(seed)
                    layer = built_in(dtype, lambda: KANLinear(in_f, out_f, basis=basis, zero_at_origin=True,
                                                              fused=True, **kw))
                    ref = copy.deepcopy(layer).double()
                    gen = torch.Generator().manual_seed(seed)
                    x = (torch.randn(n, in_f, dtype=torch.float64, generator=gen) * scale).to(dtype)
                    want = derivatives(ref, x.double())
                    dev = layer.to(device)
                    name = f"{basis}{kw or ''} {str(dtype)[6:]} {n}x{in_f}->{out_f} scale {scale:g}"
                    if device == "cuda" and not dev.fused_cuda:
                        failures.append(f"{name}: the layer takes the reference path on the GPU")
                        continue
                    if not args.sanitizer:
                        poison(device)
                    got = derivatives(dev, x.to(device))
                    errs = {k: rel_err(g, w) for (k, g), (_, w) in zip(got, want)}
                    err = max(errs.values(), key=lambda e: (math.isnan(e), e))
                    spread = 0.0
                    if n >= 1000 and not args.sanitizer:  # the same inputs again: a race moves results
                        for _ in range(2):
                            poison(device)
                            again = derivatives(dev, x.to(device))
                            spread = max([spread] + [rel_err(a, g) for (_, a), (_, g) in zip(again, got)],
                                         key=lambda e: (math.isnan(e), e))
                    tol = TOL[dtype]
                    ok = err <= tol and spread <= tol
                    key = str(dtype)[6:]
                    worst[key] = max(worst.get(key, 0.0), err) if not math.isnan(err) else float("nan")
                    rows.append({"case": name, "seed": seed, "max_rel_err": err, "errors": errs, "spread": spread,
                                 "tol": tol, "ok": ok})
                    if not ok:
                        bad = {k: f"{v:.2e}" for k, v in errs.items() if not v <= tol}
                        failures.append(f"{name} (seed {seed}): {bad or ''} spread {spread:.2e} (tol {tol:g})")
    cases = len(rows) + sum(1 for f in failures if "reference path" in f)
    status = "ok" if not failures and rows else "failed"
    line = (f"{cases} cases on {device}, {len(failures)} failed; worst ||got - ref|| / ||ref||: "
            + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    return {"status": status, "device": device, "torch": torch.__version__, "seed": seed0, "cases": cases,
            "failed": len(failures), "failures": failures, "worst": worst, "line": line, "rows": rows}


# ---------------------------------------------------------------- bench

def timer(device: str, min_time: float) -> Callable[[Callable[[], None]], float]:
    def cuda_time(fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times, total = [], 0.0
        while len(times) < 5 or (total < min_time * 1e3 and len(times) < 200):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
            total += times[-1]
        return float(torch.tensor(times).median())

    def cpu_time(fn):
        for _ in range(3):
            fn()
        times, total = [], 0.0
        while len(times) < 5 or (total < min_time * 1e3 and len(times) < 200):
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
            total += times[-1]
        return float(torch.tensor(times).median())

    return cuda_time if device == "cuda" else cpu_time


def copy_bandwidth_gbs(device: str, measure) -> float:
    n = (2**30 if device == "cuda" else 64 * 2**20) // 4
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = measure(lambda: dst.copy_(src))
    return 2 * n * 4 / (ms * 1e-3) / 1e9  # read + write


def bench(args) -> dict:
    device = args.device
    t_start = time.monotonic()
    measure = timer(device, 0.05 if args.quick else 0.2)
    cuda_kernels = fused_ops_have_cuda() if device == "cuda" else None
    copy_gbs = copy_bandwidth_gbs(device, measure)
    head = (f"{torch.cuda.get_device_name(0) if device == 'cuda' else platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; device copy "
            f"{copy_gbs:.0f} GB/s (read + write, this run)")
    readout = []
    atoms = [71, 568] if args.quick else [71, 568, 4544, 36352]
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        mlp = built_in(dtype, lambda: torch.nn.Sequential(torch.nn.Linear(192, 32, bias=False), torch.nn.SiLU(),
                                                          torch.nn.Linear(32, 1, bias=False))).to(device)
        kan = built_in(dtype, lambda: KANMLP(192, 1, hidden_layers_depth=1, hidden_layers_width=32,
                                             basis="gaussian")).to(device)
        for n_atoms in atoms:
            edges = round(EDGES_PER_ATOM * n_atoms)
            x = torch.randn(edges, 192, dtype=dtype, device=device).requires_grad_(True)
            mlp_ms, kan_ms = measure(workload(mlp, x, "force")), measure(workload(kan, x, "force"))
            readout.append({"dtype": str(dtype)[6:], "natoms": n_atoms, "edges": edges, "mlp_ms": mlp_ms,
                            "kan_ms": kan_ms, "ratio": kan_ms / mlp_ms})
    rows, truncated = [], False
    ns = [2000] if args.quick else [20000, 200000]
    widths = [(64, 1), (192, 32)] if args.quick else [(64, 1), (64, 32), (192, 32)]
    for basis in ("bspline", "gaussian", "fourier"):
        for dtype in (torch.float32, torch.float64):
            for n in ns:
                for in_f, out_f in widths:
                    if time.monotonic() - t_start > args.max_seconds:
                        truncated = True
                        break
                    gen = torch.Generator().manual_seed(n + in_f)
                    x = torch.randn(n, in_f, dtype=dtype, generator=gen).to(device).requires_grad_(True)
                    torch.manual_seed(0)
                    ref = built_in(dtype, lambda: KANLinear(in_f, out_f, basis=basis, fused=False)).to(device)
                    fused = built_in(dtype, lambda: KANLinear(in_f, out_f, basis=basis, fused=True)).to(device)
                    fused.load_state_dict(ref.state_dict())
                    for mode in ("forward", "force", "train"):
                        t_fused = measure(workload(fused, x, mode))
                        if reference_bytes(n, in_f, ref.num_basis, dtype, mode) > args.max_reference_gb * 2**30:
                            t_ref = None
                        else:
                            t_ref = measure(workload(ref, x, mode))
                        size = torch.finfo(dtype).bits // 8
                        k = fused.num_basis + 1
                        gbs = ((n * in_f + n * out_f + out_f * in_f * k) * size / (t_fused * 1e-3) / 1e9
                               if mode == "forward" else None)
                        rows.append({"basis": basis, "dtype": str(dtype)[6:], "n": n, "in": in_f, "out": out_f,
                                     "mode": mode, "fused_ms": t_fused, "reference_ms": t_ref,
                                     "speedup": t_ref / t_fused if t_ref else None, "fused_min_bytes_gbs": gbs})
    r71 = [r for r in readout if r["natoms"] == 71]
    line = ("KAN / MLP readout at 71 atoms: " + ", ".join(f"{r['dtype']} {r['ratio']:.2f}" for r in r71) +
            f"; {len(rows)} op timings" + (" (truncated by --max-seconds)" if truncated else ""))
    return {"device": device, "head": head, "copy_gbs": copy_gbs, "cuda_kernels": cuda_kernels, "readout": readout,
            "rows": rows, "truncated": truncated, "line": line}


def bench_markdown(result: dict) -> str:
    out = [f"# Fused KAN ops on {result['device']}", "", result["head"] + ".", ""]
    if result["device"] == "cuda" and not result["cuda_kernels"]:
        out += ["**The ops have no CUDA kernels: 'fused' is the reference here.**", ""]
    out += ["## KAN output block vs MLP readout (192 -> 32 -> 1; forward + input gradient)", "",
            "| dtype | atoms | edges | MLP ms | KAN ms | KAN / MLP |", "|---|---|---|---|---|---|"]
    for r in result["readout"]:
        out.append(f"| {r['dtype']} | {r['natoms']} | {r['edges']} | {r['mlp_ms']:.3f} | {r['kan_ms']:.3f} | {r['ratio']:.2f} |")
    out += ["", "## Fused ops vs the materialising reference", "",
            "forward GB/s: the fewest bytes a forward call must move (x, y, coefficients) over its time.", "",
            "| basis | dtype | N | in | out | mode | reference ms | fused ms | speed-up | forward GB/s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ref = "skipped (memory)" if r["reference_ms"] is None else f"{r['reference_ms']:.3f}"
        sp = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
        gbs = f"{r['fused_min_bytes_gbs']:.0f}" if r["fused_min_bytes_gbs"] else "-"
        out.append(f"| {r['basis']} | {r['dtype']} | {r['n']} | {r['in']} | {r['out']} | {r['mode']} | {ref} | "
                   f"{r['fused_ms']:.3f} | {sp} | {gbs} |")
    if result["truncated"]:
        out += ["", "(stopped early: --max-seconds)"]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["check", "bench"])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--json", required=True, help="result file")
    parser.add_argument("--md", help="bench: markdown tables")
    parser.add_argument("--quick", action="store_true", help="small shapes (a CPU dry run)")
    parser.add_argument("--sanitizer", action="store_true",
                        help="check: small cases, no memory poisoning (under compute-sanitizer)")
    parser.add_argument("--seed", type=int, default=None, help="check: first seed (default: from the clock)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="bench: stop adding op timings after this many seconds (default: %(default)s)")
    parser.add_argument("--max-reference-gb", type=float, default=24.0,
                        help="bench: skip reference runs needing more memory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_ops: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 3
    result = check(args) if args.what == "check" else bench(args)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1)
    if args.what == "bench" and args.md:
        with open(args.md, "w") as fh:
            fh.write(bench_markdown(result))
    print(result["line"])
    for failure in result.get("failures", [])[:20]:
        print("FAILED:", failure)
    return 0 if result.get("status", "ok") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
