"""``kan-etgnn``: train, study, deploy and use ETGNN Born-charge models (MLP or KAN heads).

    kan-etgnn train --head gaussian -o runs/gaussian            # one model on the substitute data set
    kan-etgnn study -o reports/bec                              # MLP / Gaussian / B-spline x 3 seeds, Table 9 layout
    kan-etgnn deploy runs/gaussian/best.ckpt -o bec.pt          # TorchScript file
    kan-etgnn predict bec.pt POSCAR                             # prints Z* of every atom
    kan-etgnn predict bec.pt structures.extxyz -o with_bec.extxyz   # writes them as the per-atom array born_charges
    kan-etgnn parity runs/gaussian/best.ckpt -o parity.png      # predicted vs DFT on the test split
"""

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from .data import DEFAULT_DATA, DEFAULT_KEY, BornDataError
from .model import HEADS, KAN_PLACEMENTS

EPILOG = ("Data: extended XYZ (also .extxyz.gz) with the per-atom array born_charges, (N, 9) row-major or "
          "(N, 3, 3); default: the substitute set " + str(DEFAULT_DATA) + " (only where it exists).")


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _add_common(p: argparse.ArgumentParser, study: bool = False) -> None:
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="training data (extxyz, .gz read in memory); default: %(default)s")
    p.add_argument("--key", default=DEFAULT_KEY, help="per-atom array with the Born charges (default: %(default)s)")
    p.add_argument("--cutoff", type=float, default=4.25,
                   help="bond cutoff in Angstrom (default: %(default)s; every atom of the substitute set has a "
                        "neighbour within 4.13 A)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="structures per batch (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--loss", choices=("mse", "mae"), default="mse", help="training loss (default: %(default)s)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="(default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 6:2:2 split (default: %(default)s)")
    p.add_argument("--sum-rule", action="store_true",
                   help="subtract each structure's mean tensor, so the charges of a structure sum to zero")
    p.add_argument("--kan-placement", choices=KAN_PLACEMENTS, default="heads",
                   help="where KANs replace MLPs for a KAN head: the Born output heads, the edge-update residual "
                        "MLPs, or all (default: %(default)s)")
    p.add_argument("--kan-options", type=_json_dict, default={},
                   help='KAN basis options as JSON, e.g. \'{"num_grids": 8, "grid_range": [-2, 2]}\'')
    p.add_argument("--model", type=_json_dict, default={},
                   help='further model sizes as JSON, e.g. \'{"hidden_channels": 64, "num_blocks": 3}\' '
                        "(names of kan_mlip.etgnn.ETGNNBorn)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop a run after the epoch that passes this much training time")
    p.add_argument("--max-structures", type=int, default=None, help="use only the first N structures (quick checks)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kan-etgnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one model (resumes from OUT/last.ckpt)", epilog=EPILOG)
    _add_common(p)
    p.add_argument("--head", choices=HEADS, default="mlp", help="scalar heads: MLP or KAN basis (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="model initialisation / batch order seed (default: %(default)s)")
    p.add_argument("-o", "--out", required=True, help="output folder: train.log, last.ckpt, best.ckpt, summary.json")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.ckpt exists")

    p = sub.add_parser("study", help="heads x seeds on one split, Table 9 layout report", epilog=EPILOG)
    _add_common(p, study=True)
    p.add_argument("--heads", nargs="+", choices=HEADS, default=["mlp", "gaussian", "bspline"],
                   help="heads to compare (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: %(default)s)")
    p.add_argument("-o", "--out", default="reports/bec",
                   help="study folder: runs/, models/, study.json, study.csv, report.md, parity.png "
                        "(default: %(default)s)")
    p.add_argument("--report-only", action="store_true",
                   help="only re-evaluate the saved best models and rewrite the report")

    p = sub.add_parser("deploy", help="write a TorchScript file from a checkpoint")
    p.add_argument("checkpoint", help="best.ckpt or last.ckpt of a run")
    p.add_argument("-o", "--out", required=True, help="TorchScript file to write")
    p.add_argument("--dtype", choices=("float32", "float64"), default="",
                   help="precision of the deployed model (default: the checkpoint's)")

    p = sub.add_parser("predict", help="Born charges of the structures in a file (CIF, POSCAR, extxyz, ...)")
    p.add_argument("model", help="TorchScript file from deploy, or a checkpoint")
    p.add_argument("structures", help="structure file; every frame is predicted")
    p.add_argument("--format", default=None, help="ASE format name when the file name does not tell it")
    p.add_argument("-o", "--out", default=None,
                   help="write instead of printing: .json (nested lists), .npy (one frame) or any ASE format "
                        "with per-atom arrays (extxyz: the array born_charges, (N, 9) row-major)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="", help="(default: the model's)")

    p = sub.add_parser("parity", help="parity plot of a model on a split of a data set")
    p.add_argument("model", help="TorchScript file or checkpoint")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="data set (default: %(default)s)")
    p.add_argument("--key", default=DEFAULT_KEY, help="per-atom array with the Born charges (default: %(default)s)")
    p.add_argument("--split", choices=("train", "validation", "test", "all"), default="test",
                   help="which part of the seeded 6:2:2 split (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("-o", "--out", default="parity.png", help="(default: %(default)s)")
    return parser


def _train(args) -> None:
    from .train import TrainOptions, train

    opts = TrainOptions(data=args.data, out_dir=args.out, key=args.key, head=args.head,
                        kan_placement=args.kan_placement, kan_options=args.kan_options, model=args.model,
                        cutoff=args.cutoff, sum_rule=args.sum_rule, seed=args.seed, split_seed=args.split_seed,
                        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, loss=args.loss, dtype=args.dtype,
                        max_seconds=args.max_seconds, max_structures=args.max_structures, threads=args.threads)
    train(opts, resume=not args.no_resume)


def _study(args, argv: List[str]) -> None:
    from .study import StudyOptions, run_study, write_results

    opts = StudyOptions(data=args.data, out_dir=args.out, heads=args.heads, seeds=args.seeds,
                        split_seed=args.split_seed, epochs=args.epochs, cutoff=args.cutoff, batch_size=args.batch_size,
                        lr=args.lr, loss=args.loss, dtype=args.dtype, sum_rule=args.sum_rule,
                        kan_placement=args.kan_placement, kan_options=args.kan_options, model=args.model, key=args.key,
                        max_seconds=args.max_seconds, max_structures=args.max_structures, threads=args.threads)
    # the command that trains the runs (--report-only rewrites the report of that same study)
    command = "kan-etgnn " + " ".join(shlex.quote(a) for a in argv if a != "--report-only")
    if args.report_only:
        write_results(opts, command=command)
    else:
        run_study(opts, command=command)


def _predict(args) -> None:
    import numpy as np

    from .data import read_frames
    from .predict import BornChargePredictor

    predictor = BornChargePredictor(args.model, dtype=args.dtype)
    frames = read_frames(args.structures, format=args.format)
    results = [predictor.predict(atoms) for atoms in frames]
    if args.out is None:
        np.set_printoptions(precision=4, suppress=True)
        for k, (atoms, z) in enumerate(zip(frames, results)):
            print(f"# frame {k}: {atoms.get_chemical_formula()}, Born effective charges Z*[a, b] in e "
                  f"(sum over atoms: max |.| = {np.abs(z.sum(0)).max():.2e})")
            for i, (sym, zi) in enumerate(zip(atoms.get_chemical_symbols(), z)):
                rows = "  ".join(" ".join(f"{v:8.4f}" for v in row) for row in zi)
                print(f"{i:4d} {sym:3s} {rows}")
        return
    out = Path(args.out)
    if out.suffix == ".json":
        out.write_text(json.dumps([{"formula": a.get_chemical_formula(), "born_charges": z.tolist()}
                                   for a, z in zip(frames, results)], indent=1))
    elif out.suffix == ".npy":
        if len(results) != 1:
            raise BornDataError(f"{args.structures} has {len(results)} frames: write .json or .extxyz instead")
        np.save(out, results[0])
    else:
        from ase.io import write

        for atoms, z in zip(frames, results):
            atoms.arrays["born_charges"] = z.reshape(len(atoms), 9)
        write(str(out), frames)
    print(f"wrote Born charges of {len(frames)} structure(s) to {out}")


def _parity(args) -> None:
    import numpy as np
    import torch

    from .data import collate, model_inputs, split_indices
    from .predict import BornChargePredictor
    from .study import plot_parity
    from .train import load_graphs

    predictor = BornChargePredictor(args.model)
    graphs = load_graphs(args.data, predictor.cutoff, args.key)
    idx = list(range(len(graphs))) if args.split == "all" else split_indices(len(graphs), args.split_seed)[args.split]
    pred, target = [], []
    with torch.no_grad():
        for s in range(0, len(idx), 32):
            b = collate([graphs[i] for i in idx[s:s + 32]], dtype=predictor.dtype)
            pred.append(predictor.model(*model_inputs(b)).reshape(-1, 9).double().numpy())
            target.append(b["born_charges"].reshape(-1, 9).double().numpy())
    p, t = np.concatenate(pred), np.concatenate(target)
    mae = float(np.abs(p - t).mean())
    panel = {"pred": p, "target": t, "seed": "-", "test_mae": mae, "metric": f"{args.split} MAE"}
    plot_parity({predictor.metadata["head"]: panel}, Path(args.out),
                title=f"Born effective charges, {args.split} split of {Path(args.data).name}")
    print(f"{args.split} split: {len(idx)} structures, MAE {mae:.5f} e; wrote {args.out}")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "study":
            _study(args, argv)
        elif args.command == "deploy":
            from .predict import deploy

            print(f"wrote {deploy(args.checkpoint, args.out, args.dtype)}")
        elif args.command == "predict":
            _predict(args)
        elif args.command == "parity":
            _parity(args)
    except (BornDataError, ValueError, FileNotFoundError) as err:
        print(f"kan-etgnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
