"""``kan-mlip``: data generation and the end-to-end demo."""

import argparse
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _make_ag_data(args) -> int:
    from ase.io import write

    from .data import DATASET_LABEL, make_ag_data

    frames = make_ag_data(n_frames=args.frames, temperatures=args.temperatures, seed=args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write(args.output, frames, format="extxyz")
    print(f"wrote {len(frames)} frames of {len(frames[0])} atoms to {args.output} -- {DATASET_LABEL}")
    return 0


def _convert_deepmd(args) -> int:
    from .data.deepmd import convert_deepmd

    n = convert_deepmd(args.source, args.output)
    print(f"wrote {n} frames from DeePMD data {args.source} to {args.output}")
    return 0


def _plot_kan(args) -> int:
    from kan_mlip.compiler import load_trained_model

    from .plotting import plot_kan_functions

    model, _, _ = load_trained_model(args.model)
    path = plot_kan_functions(model, args.output, block=args.block, top=args.top)
    print(f"wrote {path}")
    return 0


def _study(args) -> int:
    from .study import load_study, run_study

    spec = load_study(args.study)
    outdir = Path(args.outdir or Path("reports") / spec["name"])
    run_study(spec, outdir)
    print(f"report: {outdir / 'report.md'} (plots: errors.png, parity_best.png; data: study.json)")
    return 0


def _demo(args) -> int:
    from ase.io import read, write

    from .data import DATASET_LABEL, make_ag_data
    from .evaluation import errors, load_checkpoint_model, parity_plot, predict
    from .training import read_val_metrics, run_nequip_train

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = work / f"ag_emt_{args.frames}.extxyz"
    print(f"[1/6] data: {DATASET_LABEL}, {args.frames} frames -> {data}", flush=True)
    if not data.exists():
        write(data, make_ag_data(n_frames=args.frames, seed=0), format="extxyz")
    test = work / "ag_emt_test.extxyz"
    if not test.exists():
        write(test, make_ag_data(n_frames=50, seed=1, temperatures=(300, 600, 900), progress=False), format="extxyz")

    print(f"[2/6] training {args.config} for {args.epochs} epochs with nequip-train", flush=True)
    run = run_nequip_train(args.config, work / "train", [f"data_path={data}", f"max_epochs={args.epochs}"])
    val = read_val_metrics(run)
    print(f"      validation force MAE: before training {1e3 * val[0]['forces_mae']:.1f} meV/Å, "
          f"best {1e3 * min(r['forces_mae'] for r in val):.1f} meV/Å", flush=True)

    print("[3/6] evaluating the best checkpoint on 50 independent test frames", flush=True)
    model = load_checkpoint_model(run / "best.ckpt")
    frames = read(test, index=":")
    pred = predict(model, frames)
    err = errors(frames, pred)
    png = parity_plot(frames, pred, work / "parity.png", title=f"{args.config} on {DATASET_LABEL}")
    print(f"      test energy MAE {err['energy_mae_meV_per_atom']:.2f} meV/atom, force MAE {err['force_mae_meV_per_A']:.1f} meV/Å"
          f" (parity plot: {png})", flush=True)

    print("[4/6] kan-deploy best.ckpt -> pair.pt", flush=True)
    from kan_mlip.compiler import deploy

    pair = work / "pair.pt"
    deploy(run / "best.ckpt", pair, log=lambda msg: print("      " + msg, flush=True))

    print(f"[5/6] LAMMPS: {args.steps} NVT steps at 300 K, 71-atom Ag vacancy cell, pair_style allegro-kan", flush=True)
    from kan_mlip.bench.lammps import loop_time, run_lammps, thermo_table

    out = run_lammps(EXAMPLES / "lammps" / "in.ag_nvt", {"model": pair, "steps": args.steps}, cwd=work)
    (work / "lammps_nvt.log").write_text(out)
    for row in thermo_table(out)[:: max(1, len(thermo_table(out)) // 5)]:
        print(f"      step {int(row['Step']):5d}  T {row['Temp']:7.1f} K  PE {row['PotEng']:10.4f} eV  Etot {row['TotEng']:10.4f} eV")
    timing = loop_time(out)
    print(f"[6/6] LAMMPS speed: {timing['ms_per_step']:.2f} ms/step ({timing['atoms']} atoms, {timing['procs']} MPI rank,"
          f" {timing['atoms'] * timing['steps'] / timing['seconds']:.0f} atom-steps/s); log: {work / 'lammps_nvt.log'}")
    print(f"demo done in {time.time() - t0:.0f} s")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kan-mlip", description="KAN-augmented interatomic potentials (kan-mlip).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-ag-data", help="generate the synthetic EMT Ag data set (71-atom fcc cell, one vacancy)",
                       description="Langevin MD of a 71-atom fcc Ag cell with one vacancy, labelled with ASE's EMT "
                                   "potential (a stand-in for the paper's DFT Ag set, which is not obtainable here).")
    p.add_argument("-o", "--output", default="ag_emt.extxyz", help="output extended-XYZ file (default: %(default)s)")
    p.add_argument("-n", "--frames", type=int, default=1000, help="number of frames (default: %(default)s)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[300, 400, 500, 600, 700, 800, 900],
                   help="MD temperatures in K; frames are split evenly (default: 300..900 in steps of 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=_make_ag_data)

    p = sub.add_parser("convert-deepmd", help="DeePMD npy data (type.raw, set.*/coord.npy, ...) -> extended XYZ",
                       description="Convert every DeePMD system under SOURCE (folders with type.raw, type_map.raw and "
                                   "set.*/{coord,box,energy,force}.npy, virial.npy optional) to one extended-XYZ file.")
    p.add_argument("source", help="a DeePMD system directory, or a folder holding several")
    p.add_argument("-o", "--output", required=True, help="extended-XYZ file to write")
    p.set_defaults(func=_convert_deepmd)

    p = sub.add_parser("plot-kan", help="plot the learned univariate functions of a trained model's KAN block",
                       description="Plot the functions phi_oi of each KAN layer in a block of a trained model "
                                   "(.ckpt, nequip package .zip or kan_mlip model.pth), most important first.")
    p.add_argument("model", help="trained model file")
    p.add_argument("-o", "--output", default="kan_functions.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--block", default="readout", choices=["readout", "latent", "two_body_embed"])
    p.add_argument("--top", type=int, default=12, help="functions per layer (default: %(default)s)")
    p.set_defaults(func=_plot_kan)

    from .study import __doc__ as study_doc

    p = sub.add_parser("study", help="train configurations under one budget and report their accuracy",
                       description=study_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="study file (YAML)")
    p.add_argument("-o", "--outdir", default=None, help="report directory (default: reports/NAME)")
    p.set_defaults(func=_study)

    p = sub.add_parser("demo", help="EMT Ag data -> train a KAN-readout Allegro -> evaluate -> kan-deploy -> LAMMPS NVT, with ms/step")
    p.add_argument("--workdir", default="demo", help="where data, checkpoints and plots go (default: %(default)s)")
    p.add_argument("--config", default="allegro_kan_readout", help="config in examples/configs (default: %(default)s)")
    p.add_argument("--frames", type=int, default=300, help="EMT Ag frames to generate, 80%% train / 20%% validation (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="LAMMPS NVT steps (default: %(default)s)")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"kan-mlip {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
