"""``kan-mlip``: data generation and the end-to-end demo."""

import argparse
import sys
import time
from pathlib import Path


def _make_ag_data(args) -> int:
    from ase.io import write

    from .data import DATASET_LABEL, make_ag_data

    frames = make_ag_data(n_frames=args.frames, temperatures=args.temperatures, seed=args.seed, strain=args.strain,
                          shear=args.shear)
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
    if args.status:
        from .study import format_status, study_status

        print(format_status(spec, study_status(spec, outdir), outdir))
        return 0
    if args.reevaluate:
        from .study import reevaluate

        return 0 if reevaluate(spec, outdir) else 1
    if args.report:
        from .study import report_so_far

        report_so_far(spec, outdir)
        return 0
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs > 1 and args.only:
        raise ValueError("--jobs trains several runs at once; --only trains one: give one of them")
    if args.jobs > 1:
        from .study import train_in_parallel

        for run, code in train_in_parallel(args.study, spec, outdir, args.jobs, config_dir=args.config_dir):
            print(f"run {run} failed (exit code {code}); collecting the others", file=sys.stderr)
    rows = run_study(spec, outdir, config_dir=args.config_dir, only=args.only)
    if args.only and not rows:
        print(f"run {args.only[0]} seed {args.only[1]} is being trained by another process: nothing done")
    elif args.only:
        print(f"run {args.only[0]} seed {args.only[1]} done: {outdir / 'runs'}; the report: the same command without --only")
    else:
        print(f"report: {outdir / 'report.md'} (plots: errors.png, parity_best.png; data: study.json)")
    return 0


def _examples(args) -> int:
    from .resources import EXAMPLE_FOLDERS, copy_examples

    try:
        written = copy_examples(Path(args.dir))
    except FileExistsError as exc:
        print(f"kan-mlip examples: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} files copied to {args.dir}/ ({', '.join(EXAMPLE_FOLDERS)}); files already there kept")
    return 0


def _demo(args) -> int:
    import json

    import numpy as np
    from ase.calculators.emt import EMT
    from ase.io import read, write

    from .data import (DATASET_LABEL, SHEAR, STRAIN, ag_equation_of_state, ag_npt_volumes, ag_vacancy_cell, make_ag_data,
                       plot_equation_of_state)
    from .evaluation import errors, load_checkpoint_model, parity_plot, predict
    from .resources import find_config, lammps_input
    from .training import read_val_metrics, run_nequip_train

    if args.npt_steps < 100:
        raise ValueError(f"--npt-steps must be >= 100, got {args.npt_steps}")
    config_dir, config = find_config(args.config, args.config_dir)  # a wrong name fails here, not after the data
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    strain, shear = STRAIN, SHEAR  # in the file names, so that a cached file matches them
    data = work / f"ag_emt_{args.frames}_strain{strain}_shear{shear}.extxyz"
    print(f"[1/7] data: {DATASET_LABEL}, {args.frames} frames of MD at 300-900 K in cells strained by up to "
          f"+-{100 * strain:g} % (shear +-{100 * shear:g} %), with stress -> {data}", flush=True)
    if not data.exists():
        write(data, make_ag_data(n_frames=args.frames, seed=0, strain=strain, shear=shear), format="extxyz")
    test = work / f"ag_emt_test_strain{strain}_shear{shear}.extxyz"
    if not test.exists():
        write(test, make_ag_data(n_frames=50, seed=1, temperatures=(300, 600, 900), strain=strain, shear=shear,
                                 progress=False), format="extxyz")

    loss = "energy + forces" + (f" + {args.stress_weight:g} x stress" if args.stress_weight > 0 else "")
    print(f"[2/7] training {args.config} for {args.epochs} epochs with nequip-train, loss: {loss}", flush=True)
    overrides = [f"data_path={data}", f"max_epochs={args.epochs}"]
    if args.stress_weight > 0:  # the config's energy + force loss, plus the stress (virial) term
        overrides += ["training_module.loss._target_=nequip.train.EnergyForceStressLoss",
                      f"++training_module.loss.coeffs.stress={args.stress_weight}"]
    run = run_nequip_train(config, work / "train", overrides, config_dir=config_dir)
    val = read_val_metrics(run)
    print(f"      validation force MAE: before training {1e3 * val[0]['forces_mae']:.1f} meV/Å, "
          f"best {1e3 * min(r['forces_mae'] for r in val):.1f} meV/Å", flush=True)

    print("[3/7] evaluating the best checkpoint on 50 independent test frames", flush=True)
    model = load_checkpoint_model(run / "best.ckpt")
    frames = read(test, index=":")
    pred = predict(model, frames)
    err = errors(frames, pred)
    png = parity_plot(frames, pred, work / "parity.png", title=f"{args.config} on {DATASET_LABEL}")
    print(f"      test energy MAE {err['energy_mae_meV_per_atom']:.2f} meV/atom, force MAE {err['force_mae_meV_per_A']:.1f} meV/Å"
          f" (parity plot: {png})", flush=True)

    print("[4/7] kan-deploy best.ckpt -> pair.pt", flush=True)
    from kan_mlip.compiler import deploy

    pair = work / "pair.pt"
    deploy(run / "best.ckpt", pair, log=lambda msg: print("      " + msg, flush=True))

    print("[5/7] equation of state: deployed model vs EMT, vacancy cell scaled from a = 4.09 Å (V0), atoms on "
          "lattice sites", flush=True)
    from kan_mlip.ase import KANCalculator

    eos = {"EMT": ag_equation_of_state(EMT()), "model": ag_equation_of_state(KANCalculator(pair))}
    e0 = {name: next(r["energy_per_atom"] for r in rows if r["volume_ratio"] == 1.0) for name, rows in eos.items()}
    print("      V/V0   volume (Å^3)   E - E(V0), EMT / model (meV/atom)   P, EMT / model (kbar)")
    for ref, mod in zip(eos["EMT"], eos["model"]):
        print(f"      {ref['volume_ratio']:4.2f}   {ref['volume']:12.1f}   {1e3 * (ref['energy_per_atom'] - e0['EMT']):12.2f} / "
              f"{1e3 * (mod['energy_per_atom'] - e0['model']):6.2f}            {ref['pressure_kbar']:7.1f} / "
              f"{mod['pressure_kbar']:6.1f}")
    de = [1e3 * (m["energy_per_atom"] - e0["model"] - r["energy_per_atom"] + e0["EMT"]) for r, m in zip(eos["EMT"], eos["model"])]
    dp = [m["pressure_kbar"] - r["pressure_kbar"] for r, m in zip(eos["EMT"], eos["model"])]
    png = plot_equation_of_state(eos, work / "eos.png", title=f"{args.config} (deployed) vs EMT, 71-atom Ag vacancy cell")
    print(f"      model - EMT: E(V0) {1e3 * (e0['model'] - e0['EMT']):+.2f} meV/atom, E - E(V0) {min(de):+.2f} .. "
          f"{max(de):+.2f} meV/atom, pressure {min(dp):+.1f} .. {max(dp):+.1f} kbar (plot: {png})", flush=True)

    print(f"[6/7] LAMMPS: {args.steps} NVT steps at 300 K, 71-atom Ag vacancy cell, pair_style allegro-kan", flush=True)
    from kan_mlip.bench.lammps import LammpsError, loop_time, run_lammps, thermo_table

    out = run_lammps(lammps_input("in.ag_nvt"), {"model": pair, "steps": args.steps}, cwd=work)
    (work / "lammps_nvt.log").write_text(out)
    for row in thermo_table(out)[:: max(1, len(thermo_table(out)) // 5)]:
        print(f"      step {int(row['Step']):5d}  T {row['Temp']:7.1f} K  PE {row['PotEng']:10.4f} eV  Etot {row['TotEng']:10.4f} eV")
    timing = loop_time(out)
    print(f"      LAMMPS speed: {timing['ms_per_step']:.2f} ms/step ({timing['atoms']} atoms, {timing['procs']} MPI rank,"
          f" {timing['atoms'] * timing['steps'] / timing['seconds']:.0f} atom-steps/s); log: {work / 'lammps_nvt.log'}")

    print(f"[7/7] NPT at 300 K, 0 bar, {args.npt_steps} steps of 1 fs from a = 4.09 Å: LAMMPS with the model "
          "(in.ag_npt) vs ASE with EMT (same MTK barostat)", flush=True)
    try:
        out = run_lammps(lammps_input("in.ag_npt"), {"model": pair, "steps": args.npt_steps}, cwd=work)
    except LammpsError as exc:  # e.g. the box blew up: the model does not hold the volume
        print(f"kan-mlip demo: error: the NPT run failed, the model does not hold the volume: {exc}", file=sys.stderr)
        return 1
    (work / "lammps_npt.log").write_text(out)
    rows = thermo_table(out)
    for row in rows[:: max(1, len(rows) // 5)]:
        print(f"      step {int(row['Step']):5d}  T {row['Temp']:7.1f} K  P {row['Press']:9.1f} bar  V {row['Volume']:8.1f} Å^3")
    v_model = float(np.mean([r["Volume"] for r in rows if r["Step"] > args.npt_steps / 2]))
    volumes = ag_npt_volumes(EMT(), steps=args.npt_steps)
    v_emt = float(volumes[len(volumes) // 2:].mean())
    diff = 100 * (v_model / v_emt - 1)
    print(f"      mean volume over the second half: model {v_model:.1f} Å^3, EMT {v_emt:.1f} Å^3 (V0 = "
          f"{ag_vacancy_cell().get_volume():.1f} Å^3): model {diff:+.1f} % -- {'within' if abs(diff) <= 3 else 'NOT within'} "
          f"3 % of EMT; log: {work / 'lammps_npt.log'}")
    summary = {"config": args.config, "epochs": args.epochs, "frames": args.frames, "stress_weight": args.stress_weight,
               "test_errors": err, "eos": eos, "npt_volume_model": v_model, "npt_volume_emt": v_emt,
               "npt_volume_diff_percent": diff, "lammps_ms_per_step": timing["ms_per_step"]}
    (work / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"demo done in {time.time() - t0:.0f} s (numbers: {work / 'summary.json'})")
    return 0


def _mace_command(command: str, argv) -> int:
    import importlib

    try:
        run = importlib.import_module({"mace-train": ".mace.train", "mace-study": ".mace.study"}[command], __package__).main
    except ImportError as exc:
        print(f"kan-mlip {command}: error: runs in the MACE environment (make mace-setup; .venv-mace/bin/kan-mlip "
              f"{command} ...): {exc}", file=sys.stderr)
        return 2
    return run(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["mace-train"], ["mace-study"]):  # MACE's environment; mace-train: MACE's own arguments
        return _mace_command(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="kan-mlip", description="KAN-augmented interatomic potentials (kan-mlip).")
    sub = parser.add_subparsers(dest="command", required=True)

    from .data.ag_emt import SHEAR, STRAIN

    p = sub.add_parser("make-ag-data", help="generate the synthetic EMT Ag data set (71-atom fcc cell, one vacancy)",
                       description="Langevin MD of a 71-atom fcc Ag cell with one vacancy, labelled with ASE's EMT "
                                   "potential (a stand-in for the paper's DFT Ag set, which is not obtainable here). "
                                   "Like AIMD or DP-GEN training sets it covers several volumes and cell shapes: every "
                                   "frame's cell is the a = 4.09 Å cell under a new random strain (isotropic lattice "
                                   "strain within +-STRAIN, shears within +-SHEAR), and MD runs 10 steps in it before "
                                   "the frame is taken. Labels: energy, forces and stress. Seeded: the same arguments "
                                   "give the same frames.")
    p.add_argument("-o", "--output", default="ag_emt.extxyz", help="output extended-XYZ file (default: %(default)s)")
    p.add_argument("-n", "--frames", type=int, default=1000, help="number of frames (default: %(default)s)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[300, 400, 500, 600, 700, 800, 900],
                   help="MD temperatures in K; frames are split evenly (default: 300..900 in steps of 100)")
    p.add_argument("--strain", type=float, default=STRAIN,
                   help="largest isotropic lattice strain, volumes within about +-3x this (default: %(default)s)")
    p.add_argument("--shear", type=float, default=SHEAR, help="largest shear strain component (default: %(default)s); "
                                                             "--strain 0 --shear 0 samples the a = 4.09 Å cell only, as "
                                                             "for reports/ag_emt")
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
    p.add_argument("--config-dir", default=None, help="where config names are looked up (default: the shipped configs, "
                                                      "`kan-mlip examples` copies them)")
    p.add_argument("--only", nargs=2, metavar=("CONFIG", "SEED"), default=None,
                   help="train and evaluate this one run, leave the report alone (run several at once in separate "
                        "processes; then call again without --only to collect them and write the report)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at a time, each in its own process (seed by seed), then collect them and write "
                        "the report; set OMP_NUM_THREADS (e.g. 1 with N = cores), else each gets cores / N (default: 1)")
    mode = p.add_mutually_exclusive_group()  # what the call does instead of training
    mode.add_argument("--status", action="store_true",
                      help="train nothing: print where every run stands (state, epochs, best validation force MAE, "
                           "learning rate, plateau count, training hours) and about how many training hours are left, "
                           "read from the output folder")
    mode.add_argument("--reevaluate", action="store_true",
                      help="train nothing: recompute every finished run's numbers (held-out and training-set errors, "
                           "parameters) from its saved best.ckpt and compare them with the recorded ones; exit status 1 "
                           "if any differs")
    mode.add_argument("--report", action="store_true",
                      help="train nothing: write the report (report.md, figures, study.json) from the runs finished so "
                           "far, naming the others with where they stand; no MD cost (measured when the last run "
                           "finishes)")
    p.set_defaults(func=_study)

    p = sub.add_parser("demo", help="EMT Ag data -> train a KAN-readout Allegro -> evaluate -> kan-deploy -> equation of "
                                    "state and LAMMPS NVT / NPT, against EMT",
                       description="Generate EMT Ag data, train a KAN-readout Allegro on energy, forces and stress, "
                                   "evaluate it on independent frames, kan-deploy it, compare its equation of state "
                                   "(demo/eos.png) with EMT's, run LAMMPS NVT (ms/step) and NPT at 300 K, 0 bar, and "
                                   "compare the NPT volume with EMT's own NPT volume.")
    p.add_argument("--workdir", default="demo", help="where data, checkpoints and plots go (default: %(default)s)")
    p.add_argument("--config", default="allegro_kan_readout", help="config name in --config-dir, or a .yaml file (default: %(default)s)")
    p.add_argument("--config-dir", default=None, help="where --config is looked up (default: the shipped configs)")
    p.add_argument("--frames", type=int, default=300, help="EMT Ag frames to generate, 80%% train / 20%% validation (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    p.add_argument("--stress-weight", type=float, default=100.0,
                   help="weight of the stress term in the loss, on (eV/Å^3)^2 errors; 0: the config's energy + force "
                        "loss only (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="LAMMPS NVT steps (default: %(default)s)")
    p.add_argument("--npt-steps", type=int, default=2000, help="NPT steps, LAMMPS and EMT each (default: %(default)s)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("examples", help="copy the shipped configs, LAMMPS inputs and study files into a folder",
                       description="Copy kan-mlip's nequip-train configs (configs/), LAMMPS inputs (lammps/) and study "
                                   "files (studies/) into DIR, to run and edit them. Files already there are never "
                                   "overwritten.")
    p.add_argument("dir", nargs="?", default="examples", help="destination folder (default: %(default)s)")
    p.set_defaults(func=_examples)

    sub.add_parser("mace-train", add_help=False,
                   help="MACE's mace_run_train with KAN readouts (--kan_placement, --kan_basis, --kan_hidden, "
                        "--kan_grid_size; in .venv-mace): kan-mlip mace-train --help")
    sub.add_parser("mace-study", add_help=False,
                   help="MACE-MLP vs MACE-KAN on carbon, the paper's Table 7 layout (in .venv-mace): "
                        "kan-mlip mace-study --help")

    args = parser.parse_args(argv)
    from .errors import TrainingFailed

    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TrainingFailed) as exc:
        print(f"kan-mlip {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
