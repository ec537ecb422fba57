"""``kan-bench``: LAMMPS ms/step and memory for MLP vs KAN Allegro configurations."""

import argparse
import sys
from pathlib import Path

import json

from .harness import (CONFIGS, ModelSize, cell_atoms, interleaved_ratio, markdown_table, pair_path, run, training_cost,
                      write_outputs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="kan-bench",
        description="Benchmark pair_style allegro-kan: MLP vs KAN Allegro (same widths), LAMMPS NVT on the 71-atom "
                    "Ag vacancy cell and its replicas. Writes bench.json, bench.md (the paper's Table 4 layout), "
                    "bench.png and, beside them, the LAMMPS log of each counted run.")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help=f"from {list(CONFIGS)} (default: all)")
    parser.add_argument("--basis", default="gaussian", choices=["gaussian", "bspline", "fourier"])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4],
                        help="replicate the 71-atom cell r x r x r (default: 1 2 4 = 71, 568, 4544 atoms)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up steps (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="LAMMPS runs per point, interleaved across configurations (round by round); the fastest counts for ms/step, the median for peak RSS")
    parser.add_argument("-o", "--outdir", default="outputs/bench", help="output directory (default: %(default)s)")
    parser.add_argument("--train-frames", type=int, default=0,
                        help="also time training (s/epoch) of each configuration's example config on this many EMT "
                             "Ag frames (default: 0, skip)")
    parser.add_argument("--train-epochs", type=int, default=3, help="epochs for --train-frames (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless KAN-output-block / MLP ms/step <= --max-kan-ratio and LAMMPS ms/step / "
                             "bare model ms/call <= --max-overhead (ratios from this run). The KAN / MLP ratio is "
                             "the median over --check-rounds rounds in which the two models take turns in one "
                             "LAMMPS process (written to check.json and check_<atoms>.log)")
    parser.add_argument("--check-rounds", type=int, default=10, help="rounds of the --check A/B run (default: %(default)s)")
    parser.add_argument("--check-steps", type=int, default=50,
                        help="timed steps per model and round of the --check A/B run (default: %(default)s)")
    parser.add_argument("--max-kan-ratio", type=float, default=1.75, help="(default: %(default)s)")
    parser.add_argument("--max-overhead", type=float, default=1.5, help="(default: %(default)s)")
    args = parser.parse_args(argv)

    outdir = Path(args.outdir).resolve()
    records = run(args.configs, args.replicas, args.basis, args.dtype, args.steps, args.warmup, outdir / "work",
                  ModelSize(), repeats=args.repeats, logdir=outdir)
    paths = write_outputs(records, outdir)
    print(markdown_table(records))
    print(f"wrote {paths['json']}, {paths['table']}, {paths['plot']}")
    if args.train_frames:
        cost = training_cost(args.configs, args.train_frames, args.train_epochs, outdir / "work")
        (outdir / "train_cost.json").write_text(json.dumps(cost, indent=1))
        print(f"wrote {outdir / 'train_cost.json'}")
    if not args.check:
        return 0
    failures, checks = [], []
    by = {(r.config, r.natoms): r for r in records}
    for (name, natoms), r in by.items():
        if r.status != "ok":
            failures.append(f"{name} {natoms}: {r.error}")
            continue
        if r.lammps_over_model > args.max_overhead:
            failures.append(f"{name} {natoms} atoms: LAMMPS/bare model = {r.lammps_over_model:.2f} > {args.max_overhead}")
    for rep in args.replicas:
        natoms = cell_atoms(rep)
        mlp, kan = by.get(("mlp", natoms)), by.get(("kan_readout", natoms))
        if not (mlp and kan and mlp.status == kan.status == "ok"):
            continue
        work = outdir / "work"
        try:
            ab = interleaved_ratio(pair_path(work, "mlp", args.basis, args.dtype),
                                   pair_path(work, "kan_readout", args.basis, args.dtype), rep, args.check_rounds,
                                   args.check_steps, args.warmup, work)
        except Exception as exc:
            failures.append(f"A/B run at {natoms} atoms: {type(exc).__name__}: {exc}")
            continue
        (outdir / f"check_{natoms}.log").write_text(ab.pop("log"))
        checks.append(ab)
        ratio = ab["median_ratio"]
        print(f"check: KAN output block / MLP = {ratio:.3f} at {natoms} atoms (limit {args.max_kan_ratio}; median of "
              f"{len(ab['ratios'])} A/B rounds: {' '.join(f'{x:.2f}' for x in ab['ratios'])})")
        if ratio > args.max_kan_ratio:
            failures.append(f"KAN output block / MLP = {ratio:.3f} > {args.max_kan_ratio} at {natoms} atoms")
    (outdir / "check.json").write_text(json.dumps({"basis": args.basis, "dtype": args.dtype, "ab": checks,
                                                   "failures": failures}, indent=1))
    for f in failures:
        print(f"kan-bench check FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
