"""``kan-mlip mace-study``: MACE-MLP vs MACE-KAN on carbon in the layout of the paper's Table 7.

Each configuration (``mlp``: MACE's own readouts; ``kan``: KAN readouts, the paper's Figure 4) is trained
with each seed by ``kan-mlip mace-train`` (MACE's training loop) on one seeded split, with the same MACE
arguments and budget. The table's test RMSE of forces (meV/Å), energy (meV/atom) and stress (meV/Å^3) are
recomputed from each run's written model (``<name>.model``, the lowest validation loss) with MACE's own
``MACECalculator``; the training time is the run's wall time. Runs live in ``OUT/runs/<config>-seed<s>/``;
an interrupted study resumes there (``--restart_latest``), finished runs are reused.

Outputs: ``study.json`` (every number, the split, the command and the machine), ``report.md`` (the table),
``parity.png`` and ``models/`` (every run's model file).
"""

import argparse
import gzip
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

CONFIGS = {"mlp": ["--kan_placement", "none"], "kan": ["--kan_placement", "all", "--kan_basis", "bspline"]}
LABELS = {"mlp": "MACE-MLP", "kan": "MACE-KAN (B-spline, all readouts)"}
# the MACE model and budget of every run (a small model: see the report for what that means)
DEFAULT_MACE_ARGS = ["--model", "MACE", "--hidden_irreps", "16x0e+16x1o", "--r_max", "4.5", "--correlation", "2",
                     "--num_interactions", "2", "--max_L", "1", "--E0s", "average", "--batch_size", "8",
                     "--valid_batch_size", "16", "--lr", "0.01", "--device", "cpu", "--default_dtype", "float64"]


def split(frames: Sequence, seed: int, test_fraction: float, valid_fraction: float) -> Dict[str, List[int]]:
    """Seeded permutation: the first test_fraction of it test, the next valid_fraction validation, the rest train."""
    order = np.random.default_rng(seed).permutation(len(frames)).tolist()
    n_test = int(round(test_fraction * len(frames)))
    n_valid = int(round(valid_fraction * len(frames)))
    return {"test": sorted(order[:n_test]), "valid": sorted(order[n_test:n_test + n_valid]),
            "train": sorted(order[n_test + n_valid:])}


def labelled(atoms):
    """A copy with MACE's default label keys: REF_energy, REF_forces, REF_stress (ASE's Voigt order, eV/Å^3)."""
    b = atoms.copy()
    b.calc = None
    b.info = {"REF_energy": atoms.get_potential_energy()}
    b.arrays["REF_forces"] = atoms.get_forces()
    if "stress" in atoms.calc.results:
        b.info["REF_stress"] = atoms.get_stress(voigt=True)
    return b


def read_frames(path: Path):
    from ase.io import read

    with gzip.open(path, "rt") if str(path).endswith(".gz") else open(path) as fh:
        return read(io.StringIO(fh.read()), index=":", format="extxyz")


def run_one(out: Path, config: str, seed: int, max_epochs: int, mace_args: List[str], log=print) -> Dict[str, Any]:
    """Train one configuration with one seed (resuming from its checkpoints); its run record."""
    run_dir = out / "runs" / f"{config}-seed{seed}"
    record_file = run_dir / "run.json"
    if record_file.exists():
        return json.loads(record_file.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    cmd = [sys.executable, "-m", "kan_mlip.cli", "mace-train", "--name", config, "--seed", str(seed),
           "--train_file", str(data / "train.xyz"), "--valid_file", str(data / "valid.xyz"),
           "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress",
           "--max_num_epochs", str(max_epochs), "--work_dir", str(run_dir), "--restart_latest",
           *mace_args, *CONFIGS[config]]
    previous = json.loads((run_dir / "elapsed.json").read_text())["seconds"] if (run_dir / "elapsed.json").exists() else 0.0
    log(f"{config} seed {seed}: training ({max_epochs} epochs) in {run_dir}")
    start = time.time()
    with open(run_dir / "train.log", "a") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT,
                              env=dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"))
    seconds = previous + time.time() - start
    (run_dir / "elapsed.json").write_text(json.dumps({"seconds": seconds}))
    if proc.returncode != 0:
        raise RuntimeError(f"{config} seed {seed}: mace-train failed (exit {proc.returncode}); see {run_dir / 'train.log'}")
    record = {"config": config, "seed": seed, "train_seconds": seconds, "model": str(run_dir / f"{config}.model"),
              "command": cmd}
    record_file.write_text(json.dumps(record, indent=1))
    return record


def evaluate(model_file: str, frames) -> Dict[str, Any]:
    """Test RMSE of forces (meV/Å, over components), energy (meV/atom) and stress (meV/Å^3, frames that have
    it) with MACECalculator, and the predictions for parity plots."""
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=model_file, device="cpu", default_dtype="float64")
    de, df, ds, e_pairs, f_pairs = [], [], [], [], []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        n = len(a)
        e_ref, f_ref = atoms.info["REF_energy"], atoms.arrays["REF_forces"]
        e, f = a.get_potential_energy(), a.get_forces()
        de.append((e - e_ref) / n)
        df.append((f - f_ref).ravel())
        e_pairs.append((e_ref / n, e / n))
        f_pairs.append(np.stack([f_ref.ravel(), f.ravel()], 1))
        if "REF_stress" in atoms.info:
            ds.append(a.get_stress(voigt=True) - np.asarray(atoms.info["REF_stress"]))
    rmse = lambda x: float(np.sqrt(np.mean(np.square(np.concatenate([np.ravel(v) for v in x]))))) if x else float("nan")  # noqa: E731
    return {"rmse_f_meV_per_A": 1e3 * rmse(df), "rmse_e_meV_per_atom": 1e3 * rmse([de]),
            "rmse_stress_meV_per_A3": 1e3 * rmse(ds), "stress_frames": len(ds),
            "energy_pairs": e_pairs, "force_pairs": np.concatenate(f_pairs).tolist()}


def mean_std(values: Sequence[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def write_report(out: Path, study: Dict[str, Any]) -> None:
    runs = study["runs"]
    lines = [f"| model | seed | RMSE F (meV/Å) | RMSE E (meV/atom) | RMSE stress (meV/Å³) | training time (min) |",
             "|---|---|---|---|---|---|"]
    for config in study["configs"]:
        rows = [r for r in runs if r["config"] == config]
        for r in rows:
            lines.append(f"| {LABELS[config]} | {r['seed']} | {r['rmse_f_meV_per_A']:.2f} | {r['rmse_e_meV_per_atom']:.2f} | "
                         f"{r['rmse_stress_meV_per_A3']:.3f} | {r['train_seconds'] / 60:.1f} |")
        if len(rows) > 1:
            lines.append(f"| {LABELS[config]} | mean ± std | {mean_std([r['rmse_f_meV_per_A'] for r in rows])} | "
                         f"{mean_std([r['rmse_e_meV_per_atom'] for r in rows])} | "
                         f"{mean_std([r['rmse_stress_meV_per_A3'] for r in rows])} | "
                         f"{mean_std([r['train_seconds'] / 60 for r in rows])} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, study: Dict[str, Any], pairs: Dict[tuple, tuple]) -> None:
    """Parity of forces and energies of each configuration's best seed (lowest force RMSE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for config in study["configs"]:
        best = min((r for r in study["runs"] if r["config"] == config), key=lambda r: r["rmse_f_meV_per_A"])
        e, f = (np.asarray(p) for p in pairs[config, best["seed"]])
        axes[0].plot(f[:, 0], f[:, 1], ".", ms=2, alpha=0.5, label=f"{LABELS[config]} (seed {best['seed']})")
        axes[1].plot(e[:, 0], e[:, 1], "o", ms=3, alpha=0.7, label=f"{LABELS[config]} (seed {best['seed']})")
    for ax, what in zip(axes, ["force component (eV/Å)", "energy (eV/atom)"]):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
        ax.set_xlabel(f"DFT {what}")
        ax.set_ylabel(f"model {what}")
        ax.legend(fontsize=7)
    fig.suptitle("GAP-17 carbon test frames (seeded split of the 450-frame test set)")
    fig.tight_layout()
    fig.savefig(out / "parity.png", dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="kan-mlip mace-study", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", default="reports/mace_carbon", help="study folder (default: %(default)s)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "carbon"
                                              / "carbon_gap17_test450.extxyz.gz"),
                        help="extended XYZ (.gz) with energies, forces and stresses (default: the GAP-17 test split)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="configurations (default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1111, 2222, 3333], help="seeds (default: the paper's)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/valid/test split (default: 0)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="test frames (default: %(default)s)")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="validation frames (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=20, help="epochs of every run (default: %(default)s)")
    parser.add_argument("--mace-args", default=" ".join(DEFAULT_MACE_ARGS),
                        help="mace_run_train arguments of every run (default: '%(default)s')")
    parser.add_argument("--only", nargs=2, metavar=("CONFIG", "SEED"), default=None,
                        help="train this one run and stop (to run several in parallel); the report needs all")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = out / "data"
    frames = read_frames(Path(args.data))
    parts = split(frames, args.split_seed, args.test_fraction, args.valid_fraction)
    if not (data / "test.xyz").exists():
        from ase.io import write

        data.mkdir(parents=True, exist_ok=True)
        for name, idx in parts.items():
            write(data / f"{name}.xyz", [labelled(frames[i]) for i in idx], format="extxyz")
    mace_args = args.mace_args.split()
    if args.only:
        run_one(out, args.only[0], int(args.only[1]), args.max_epochs, mace_args)
        return 0
    from ase.io import read

    test = read(data / "test.xyz", index=":")
    runs = []
    for config in args.configs:
        for seed in args.seeds:
            record = run_one(out, config, seed, args.max_epochs, mace_args)
            runs.append({**record, **evaluate(record["model"], test)})
            print(f"{config} seed {seed}: RMSE F {runs[-1]['rmse_f_meV_per_A']:.1f} meV/Å, "
                  f"E {runs[-1]['rmse_e_meV_per_atom']:.2f} meV/atom, {record['train_seconds'] / 60:.1f} min")
    models = out / "models"
    models.mkdir(exist_ok=True)
    for r in runs:
        shutil.copy(r["model"], models / f"{r['config']}-seed{r['seed']}.model")
    pairs = {(r["config"], r["seed"]): (r.pop("energy_pairs"), r.pop("force_pairs")) for r in runs}
    study = {"data": Path(args.data).name, "split_seed": args.split_seed,
             "frames": {k: len(v) for k, v in parts.items()}, "split": parts, "configs": args.configs,
             "seeds": args.seeds, "max_epochs": args.max_epochs, "mace_args": mace_args,
             "command": "kan-mlip mace-study " + " ".join(argv if argv is not None else sys.argv[1:]),
             "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
             "runs": runs}
    (out / "study.json").write_text(json.dumps(study, indent=1))
    write_report(out, study)
    plot(out, study, pairs)
    print(f"wrote {out / 'study.json'}, {out / 'table.md'}, {out / 'parity.png'}")
    return 0
