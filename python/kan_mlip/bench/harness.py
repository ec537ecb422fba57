"""kan-bench: LAMMPS ms/step and memory for the paper's Allegro configurations (its Table 4).

Every configuration has the same widths and depths; only the blocks that are KAN differ. Each is
built (random weights: speed does not depend on them), deployed with kan-deploy and run in LAMMPS
(`pair_style allegro-kan`) on the 71-atom Ag vacancy cell and its replicas. ms/step comes from
LAMMPS' own Loop time of the timed run (warm-up excluded); the bare model's energy+force call on
the same structure is timed too, so the pair style's own overhead is visible.
"""

import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..resources import lammps_input
from .lammps import LammpsError, loop_time, loop_times, run_lammps_measured

# name -> (kan_placement, label in the paper's Table 4)
CONFIGS: Dict[str, tuple] = {
    "mlp": ("none", "MLP (Allegro)"),
    "kan_readout": ("readout", "KAN output block"),
    "kan_embedding_latent": ("embedding_latent", "KAN embedding + latent"),
    "kan_all": ("all", "KAN everywhere"),
}


@dataclass
class ModelSize:
    r_max: float = 4.5
    l_max: int = 1
    num_layers: int = 2
    num_scalar_features: int = 64
    num_tensor_features: int = 16
    mlp_width: int = 64
    readout_width: int = 32


@dataclass
class Record:
    config: str
    placement: str
    basis: str
    dtype: str
    natoms: int
    steps: int
    status: str = "ok"
    error: str = ""
    ms_per_step: float = float("nan")
    atom_steps_per_s: float = float("nan")
    model_ms_per_call: float = float("nan")
    lammps_over_model: float = float("nan")
    peak_rss_mb: float = float("nan")
    peak_rss_mb_runs: List[float] = field(default_factory=list)
    peak_anon_mb: float = float("nan")  # peak RSS less shared libraries' pages (run_lammps_measured), median
    peak_anon_mb_runs: List[float] = field(default_factory=list)
    model_peak_mb: float = float("nan")  # one bare model call: torch's tensors at their peak + KAN op scratch
    gpu_peak_mb: Optional[float] = None
    device: str = "cpu"
    torch_version: str = torch.__version__
    lammps_version: str = ""
    git_sha: str = ""
    machine: str = field(default_factory=lambda: f"{platform.machine()}, {torch.get_num_threads()} torch threads")


def cell_atoms(rep: int) -> int:
    """Atoms of the 71-atom Ag vacancy cell replicated rep x rep x rep times."""
    return 71 * rep**3


def pair_path(workdir: Path, name: str, basis: str, dtype: str) -> Path:
    """The deployed file of a configuration, as run() writes it."""
    return workdir / f"{name}_{basis}_{dtype}.pt"


def model_config(placement: str, basis: str, dtype: str, size: ModelSize, seed: int = 1) -> dict:
    return {
        "_target_": "kan_mlip.models.KANAllegroModel", "seed": seed, "model_dtype": dtype, "type_names": ["Ag"],
        "r_max": size.r_max, "l_max": size.l_max, "num_layers": size.num_layers,
        "num_scalar_features": size.num_scalar_features, "num_tensor_features": size.num_tensor_features,
        "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8},
        "scalar_embed_mlp_hidden_layers_width": size.mlp_width, "allegro_mlp_hidden_layers_width": size.mlp_width,
        "readout_mlp_hidden_layers_width": size.readout_width, "avg_num_neighbors": 18.0,
        "per_type_energy_shifts": {"Ag": 0.0}, "per_type_energy_scales": {"Ag": 0.5},
        "kan_placement": placement, "kan_basis": basis,
    }


def bare_model_call(pair: Path, rep: int, reps: int = 10) -> Tuple[float, float]:
    """The deployed model's energy+force call alone, on the same replicated cell, in a fresh Python
    process (model_call.py): (ms per call, the call's peak memory in MB). Fresh, so that the KAN ops'
    scratch it counts is this model's, not that of models deployed or timed before in this process."""
    out = subprocess.run([sys.executable, "-m", "kan_mlip.bench.model_call", str(pair), str(rep), str(reps)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bare model call of {pair} failed: {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["ms_per_call"], result["peak_mb"]


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return ""


def run(configs: List[str], reps: List[int], basis: str, dtype: str, steps: int, warmup: int, workdir: Path,
        size: ModelSize, repeats: int = 1, log=print, logdir: Optional[Path] = None) -> List[Record]:
    """All (config, replica) runs; a failing configuration becomes a failed record and the rest go on.
    The LAMMPS log of each point's counted run goes to logdir (default: workdir).

    With repeats > 1 the runs are interleaved (round 1: every configuration, round 2: again, ...) and
    the fastest of each point counts: a slow spell of a shared machine then costs every configuration
    alike instead of skewing their ratio. Peak RSS is the median of the repeats (all of them are kept
    in peak_rss_mb_runs): the same model's peak moves by ~20 MB at 71 atoms and ~90 MB at 568 from run
    to run, as where glibc's heap can grow depends on where the libraries were mapped (address
    randomisation). The same for peak_anon_mb, the peak less the shared libraries' pages, whose
    number depends on the page cache. The model call peak (model_call.py) is the number that
    repeats."""
    from kan_mlip.compiler import deploy
    from kan_mlip.models.io import build_model, save_model

    workdir.mkdir(parents=True, exist_ok=True)
    logdir = logdir or workdir
    logdir.mkdir(parents=True, exist_ok=True)
    sha = git_sha()
    records: Dict[tuple, Record] = {}
    pairs: Dict[str, Path] = {}
    for name in configs:
        placement = CONFIGS[name][0] if name in CONFIGS else name
        pair = pair_path(workdir, name, basis, dtype)
        try:
            cfg = model_config(placement, basis, dtype, size)
            src = save_model(pair.with_suffix(".pth"), cfg, build_model(cfg))
            deploy(src, pair, log=lambda *_: None)
            pairs[name] = pair
            build_error = ""
        except Exception as exc:  # reported as a failed row; the other configurations still run
            build_error = f"{type(exc).__name__}: {exc}"
        for rep in reps:
            rec = Record(config=name, placement=placement, basis=basis, dtype=dtype, natoms=cell_atoms(rep), steps=steps,
                         git_sha=sha)
            if build_error:
                rec.status, rec.error = "failed", build_error
            records[(name, rep)] = rec

    fastest: Dict[tuple, tuple] = {}  # (name, rep) -> (timing, LAMMPS log) of its fastest run
    bare: Dict[tuple, float] = {}     # (name, rep) -> its fastest bare model call, ms
    rss_runs: Dict[tuple, List[float]] = {}  # (name, rep) -> peak RSS of every run, MB
    anon_runs: Dict[tuple, List[float]] = {}  # (name, rep) -> the same less shared libraries' pages, MB
    model_peak: Dict[tuple, float] = {}      # (name, rep) -> peak memory of a bare model call, MB
    points = [(name, rep) for name in configs for rep in reps if records[(name, rep)].status == "ok"]
    total, done = len(points) * repeats, 0
    for round_ in range(repeats):
        for name, rep in points:
            rec = records[(name, rep)]
            done += 1
            if rec.status != "ok":  # failed in an earlier round
                continue
            try:
                out, rss, anon = run_lammps_measured(lammps_input("in.bench"), {"model": pairs[name], "rep": rep, "warmup": warmup,
                                                                         "steps": steps}, cwd=workdir)
                timing = loop_time(out)
                model_ms, model_mb = bare_model_call(pairs[name], rep)
            except Exception as exc:
                rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
                log(f"[{done}/{total}] {name:22s} {rec.natoms:6d} atoms: FAILED {rec.error[:200]}")
                continue
            key = (name, rep)
            bare[key] = min(model_ms, bare.get(key, float("inf")))
            model_peak[key] = model_mb
            rss_runs.setdefault(key, []).append(rss)
            anon_runs.setdefault(key, []).append(anon)
            if key not in fastest or timing["ms_per_step"] < fastest[key][0]["ms_per_step"]:
                fastest[key] = (timing, out)
            log(f"[{done}/{total}] {name:22s} {rec.natoms:6d} atoms: {timing['ms_per_step']:9.2f} ms/step "
                f"(bare model {model_ms:8.2f} ms), peak RSS {rss:.0f} MB" + (f" (round {round_ + 1})" if repeats > 1 else ""))

    for key, rec in records.items():
        if rec.status != "ok":
            continue
        timing, out = fastest[key]
        (logdir / f"{rec.config}_{rec.natoms}.log").write_text(out)
        rec.ms_per_step = timing["ms_per_step"]
        rec.atom_steps_per_s = rec.natoms * 1e3 / timing["ms_per_step"]
        rec.peak_rss_mb_runs = rss_runs[key]
        rec.peak_rss_mb = float(np.median(rss_runs[key]))
        rec.peak_anon_mb_runs = anon_runs[key]
        rec.peak_anon_mb = float(np.median(anon_runs[key]))
        rec.lammps_version = out.splitlines()[0].strip() if out else ""
        rec.model_ms_per_call = bare[key]
        rec.model_peak_mb = model_peak[key]
        rec.lammps_over_model = rec.ms_per_step / rec.model_ms_per_call
    for rec in records.values():
        if rec.status == "ok":
            log(f"{rec.config:22s} {rec.natoms:6d} atoms: {rec.ms_per_step:9.2f} ms/step (bare model "
                f"{rec.model_ms_per_call:8.2f} ms, x{rec.lammps_over_model:.2f}), peak RSS {rec.peak_rss_mb:.0f} MB "
                f"({rec.peak_anon_mb:.0f} less libraries), "
                f"model call peak {rec.model_peak_mb:.1f} MB")
        else:
            log(f"{rec.config:22s} {rec.natoms:6d} atoms: FAILED {rec.error[:200]}")
    return list(records.values())


def interleaved_ratio(pair_a: Path, pair_b: Path, rep: int, rounds: int, steps: int, warmup: int,
                      workdir: Path) -> dict:
    """ms/step of model b over model a, the two taking turns in one LAMMPS process (in.bench_ab).

    Each round runs a, then b (warm-up steps untimed), a second or so apart, so a shared machine's slow
    spells (here: the same model's ms/step moving 1.5x within minutes) hit both alike; the median of the
    per-round ratios then discards the rounds that straddle a change of speed."""
    out = run_lammps_measured(lammps_input("in.bench_ab"), {"a": pair_a, "b": pair_b, "rep": rep, "rounds": rounds,
                                                           "steps": steps, "warmup": warmup}, cwd=workdir).output
    runs = [r["ms_per_step"] for r in loop_times(out)]
    if len(runs) != 4 * rounds:
        raise LammpsError(f"expected {4 * rounds} runs (warm-up and timed, a and b, {rounds} rounds), "
                          f"LAMMPS reported {len(runs)}")
    ms_a, ms_b = runs[1::4], runs[3::4]
    ratios = [b / a for a, b in zip(ms_a, ms_b)]
    return {"a": str(pair_a), "b": str(pair_b), "natoms": cell_atoms(rep), "rounds": rounds, "steps": steps,
            "ms_per_step_a": ms_a, "ms_per_step_b": ms_b, "ratios": ratios,
            "median_ratio": float(np.median(ratios)), "log": out}


def markdown_table(records: List[Record]) -> str:
    """The paper's Table 4 layout: one row per configuration; ms/step, peak RSS of LAMMPS (all of it, and
    less the shared libraries' pages) and the peak memory of a bare model call per system size, each
    also as a ratio to the MLP's at that size."""
    sizes = sorted({r.natoms for r in records})
    names = list(dict.fromkeys(r.config for r in records))
    mlp = {r.natoms: r for r in records if r.config == "mlp" and r.status == "ok"}
    columns = [("ms/step", "ms_per_step", "{:.2f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
               ("peak RSS less libraries MB", "peak_anon_mb", "{:.0f}"),
               ("model call peak MB", "model_peak_mb", "{:.1f}")]
    head = "| configuration | " + " | ".join(" | ".join(f"{title} ({n} atoms)" for n in sizes) + " | vs MLP"
                                             for title, _, _ in columns) + " |"
    lines = [head, "|" + "---|" * (1 + len(columns) * (len(sizes) + 1))]
    for name in names:
        rows = {r.natoms: r for r in records if r.config == name}
        label = CONFIGS.get(name, (name, name))[1]
        cells = []
        for _, attr, fmt in columns:
            values, ratios = [], []
            for n in sizes:
                r = rows.get(n)
                if r is None or r.status != "ok":
                    values.append("-" if r is None else (f"failed: {r.error[:60]}" if attr == "ms_per_step" else "failed"))
                    continue
                values.append(fmt.format(getattr(r, attr)))
                if n in mlp:
                    ratios.append(f"{getattr(r, attr) / getattr(mlp[n], attr):.3f}")
            cells += values + [" / ".join(ratios) or "-"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: List[Record], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name in dict.fromkeys(r.config for r in records):
        ok = sorted((r.natoms, r.ms_per_step) for r in records if r.config == name and r.status == "ok")
        if ok:
            ax.plot(*zip(*ok), "o-", label=CONFIGS.get(name, (name, name))[1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("LAMMPS ms/step")
    ax.set_title("pair_style allegro-kan, NVT, Ag vacancy cell replicas")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(records: List[Record], outdir: Path) -> Dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"json": outdir / "bench.json", "table": outdir / "bench.md", "plot": outdir / "bench.png"}
    paths["json"].write_text(json.dumps([asdict(r) for r in records], indent=1))
    paths["table"].write_text(markdown_table(records) + "\n")
    if any(r.status == "ok" for r in records):
        plot(records, paths["plot"])
    return paths


# Allegro example configs (examples/configs) per benchmark configuration
TRAIN_CONFIGS = {"mlp": "allegro_mlp", "kan_readout": "allegro_kan_readout",
                 "kan_embedding_latent": "allegro_kan_embedding_latent", "kan_all": "allegro_kan_all_gaussian"}


def training_cost(configs: List[str], frames: int, epochs: int, workdir: Path, log=print) -> Dict[str, dict]:
    """Training seconds per epoch of each configuration's example config on the same EMT Ag data."""
    from ase.io import write

    from kan_mlip.data import make_ag_data
    from kan_mlip.training import read_epoch_times, run_nequip_train

    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"ag_emt_{frames}.extxyz"
    if not data.exists():
        write(data, make_ag_data(n_frames=frames, seed=0, progress=False), format="extxyz")
    out = {}
    for name in configs:
        if name not in TRAIN_CONFIGS:
            out[name] = {"status": "failed", "error": f"no example config for {name!r}"}
            continue
        try:
            run = run_nequip_train(TRAIN_CONFIGS[name], workdir / f"train_{name}",
                                   [f"data_path={data}", f"max_epochs={epochs}", "trainer.enable_progress_bar=false"],
                                   quiet=True)
            times = read_epoch_times(run)
            out[name] = {"status": "ok", "train_seconds_per_epoch": times, "mean": float(np.mean(times[1:] or times)),
                         "frames": frames, "config": TRAIN_CONFIGS[name]}
            log(f"train {name:22s}: {out[name]['mean']:.2f} s/epoch ({frames} frames x 0.8 train, epochs {times})")
        except Exception as exc:
            out[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
            log(f"train {name:22s}: FAILED {out[name]['error'][:200]}")
    return out
