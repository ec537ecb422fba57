"""``kan-bench``: LAMMPS ms/step and memory for MLP vs KAN Allegro and NequIP configurations."""

import argparse
import json
import sys
from pathlib import Path

from .harness import (FAMILIES, SIZES, cell_atoms, interleaved_ratio, markdown_table, pair_path, run, training_cost,
                      write_outputs)

FAMILY_NAMES = {"allegro": "", "nequip": "NequIP "}  # prefix of a family's lines in the --check messages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="kan-bench",
        description="Benchmark pair_style allegro-kan: MLP vs KAN Allegro and NequIP (same widths within a family), "
                    "LAMMPS NVT on the 71-atom Ag vacancy cell and its replicas, on one MPI rank or several. Writes "
                    "bench.json, bench.md (the paper's Table 4 layout, then LAMMPS / bare model and the cost per "
                    "atom-step on N ranks against one), bench.png and, beside them, the LAMMPS log of each counted "
                    "run.")
    parser.add_argument("--family", nargs="+", default=["allegro"], choices=list(FAMILIES),
                        help="model families (default: allegro). Allegro: 2 layers, l_max 1, 64 scalar / 16 tensor "
                             "features, MLP widths 64, readout width 32. NequIP: 3 interaction layers (receptive "
                             "field 13.5 A), l_max 1, 32 features, radial MLP width 64, output block of one hidden "
                             "layer of 32. Both r_max 4.5 A, float64 by default, random weights")
    parser.add_argument("--configs", nargs="+", default=None,
                        help="configurations, run in every --family; default: each family's own: "
                             + "; ".join(f"{f}: {' '.join(c)}" for f, c in FAMILIES.items())
                             + ". A name a family does not have becomes a failed row")
    parser.add_argument("--basis", default="gaussian", choices=["gaussian", "bspline", "fourier"],
                        help="basis of every KAN block (default: %(default)s)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                        help="dtype of the deployed models (default: %(default)s)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4],
                        help="replicate the 71-atom cell r x r x r (default: 1 2 4 = 71, 568, 4544 atoms)")
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1],
                        help="MPI ranks of the LAMMPS runs (default: 1); several values run every point once per "
                             "value, back to back (e.g. --nprocs 1 2). One rank: ms/step and peak memory; several "
                             "ranks (the environment's mpirun): ms/step only, and with 1 among the values the cost "
                             "per atom-step against one rank. Several ranks run one torch thread each unless "
                             "OMP_NUM_THREADS is set; one rank torch's default (all cores)")
    parser.add_argument("--no-ghost-exchange", dest="ghost_exchange", action="store_false",
                        help="deploy message-passing models (NequIP) with a ghost shell as deep as the receptive field "
                             "instead of exchanging node features between layers (kan-deploy's flag of the same name): "
                             "the comparison for several ranks")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed warm-up steps (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="LAMMPS runs per point, interleaved across configurations (round by round); the fastest "
                             "counts for ms/step, the median for peak RSS (default: %(default)s)")
    parser.add_argument("-o", "--outdir", default="outputs/bench", help="output directory (default: %(default)s)")
    parser.add_argument("--train-frames", type=int, default=0,
                        help="also time training (s/epoch) of each configuration's example config on this many EMT "
                             "Ag frames (default: 0, skip)")
    parser.add_argument("--train-epochs", type=int, default=3, help="epochs for --train-frames (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless KAN-output-block / MLP ms/step <= --max-kan-ratio (per family) and "
                             "LAMMPS ms/step / bare model ms/call <= --max-overhead (one-rank runs; ratios from "
                             "this run). The KAN / MLP ratio is the median over --check-rounds rounds in which the "
                             "two models take turns in one LAMMPS process on one rank (written to check.json and "
                             "check_<atoms>.log, check_nequip_<atoms>.log)")
    parser.add_argument("--check-rounds", type=int, default=10, help="rounds of the --check A/B run (default: %(default)s)")
    parser.add_argument("--check-steps", type=int, default=50,
                        help="timed steps per model and round of the --check A/B run (default: %(default)s)")
    parser.add_argument("--max-kan-ratio", type=float, default=1.75,
                        help="--check's limit on KAN output block / MLP ms/step (default: %(default)s)")
    parser.add_argument("--max-overhead", type=float, default=1.5,
                        help="--check's limit on LAMMPS ms/step / bare model ms/call, one rank (default: %(default)s)")
    args = parser.parse_args(argv)
    if min(args.nprocs) < 1:
        parser.error(f"--nprocs: MPI ranks must be >= 1, got {args.nprocs}")
    families = list(dict.fromkeys(args.family))

    outdir = Path(args.outdir).resolve()
    records = run(args.configs, args.replicas, args.basis, args.dtype, args.steps, args.warmup, outdir / "work",
                  [SIZES[f]() for f in families], repeats=args.repeats, logdir=outdir, nprocs=args.nprocs,
                  ghost_exchange=args.ghost_exchange)
    paths = write_outputs(records, outdir)
    print(markdown_table(records))
    print(f"wrote {paths['json']}, {paths['table']}, {paths['plot']}")
    if args.train_frames:
        cost = {}
        for family in families:
            cost.update(training_cost(args.configs or list(FAMILIES[family]), args.train_frames, args.train_epochs,
                                      outdir / "work", family=family, basis=args.basis))
        (outdir / "train_cost.json").write_text(json.dumps(cost, indent=1))
        print(f"wrote {outdir / 'train_cost.json'}")
    if not args.check:
        return 0
    failures, checks = [], []
    by = {(r.family, r.config, r.natoms, r.procs): r for r in records}
    for (family, name, natoms, procs), r in by.items():
        point = f"{FAMILY_NAMES[family]}{name} {natoms}" + ("" if procs == 1 else f" ({procs} ranks)")
        if r.status != "ok":
            failures.append(f"{point}: {r.error}")
            continue
        if procs == 1 and r.lammps_over_model > args.max_overhead:
            failures.append(f"{point} atoms: LAMMPS/bare model = {r.lammps_over_model:.2f} > {args.max_overhead}")
    work = outdir / "work"
    for family in families:
        prefix = FAMILY_NAMES[family]
        for rep in args.replicas:
            natoms = cell_atoms(rep)
            mlp, kan = by.get((family, "mlp", natoms, 1)), by.get((family, "kan_readout", natoms, 1))
            if not (mlp and kan and mlp.status == kan.status == "ok"):
                continue
            try:
                ab = interleaved_ratio(pair_path(work, "mlp", args.basis, args.dtype, family),
                                       pair_path(work, "kan_readout", args.basis, args.dtype, family), rep,
                                       args.check_rounds, args.check_steps, args.warmup, work)
            except Exception as exc:
                failures.append(f"{prefix}A/B run at {natoms} atoms: {type(exc).__name__}: {exc}")
                continue
            log_name = f"check_{natoms}.log" if family == "allegro" else f"check_{family}_{natoms}.log"
            (outdir / log_name).write_text(ab.pop("log"))
            checks.append({"family": family, **ab})
            ratio = ab["median_ratio"]
            print(f"check: {prefix}KAN output block / MLP = {ratio:.3f} at {natoms} atoms (limit {args.max_kan_ratio}; "
                  f"median of {len(ab['ratios'])} A/B rounds: {' '.join(f'{x:.2f}' for x in ab['ratios'])})")
            if ratio > args.max_kan_ratio:
                failures.append(f"{prefix}KAN output block / MLP = {ratio:.3f} > {args.max_kan_ratio} at {natoms} atoms")
    (outdir / "check.json").write_text(json.dumps({"basis": args.basis, "dtype": args.dtype, "ab": checks,
                                                   "failures": failures}, indent=1))
    for f in failures:
        print(f"kan-bench check FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
