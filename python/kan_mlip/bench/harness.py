"""kan-bench: LAMMPS ms/step and memory for the paper's Allegro and NequIP configurations (its Table 4).

Within a family every configuration has the same widths and depths; only the blocks that are KAN
differ (Allegro: ModelSize; NequIP, whose only KAN block is the output block: NequIPSize). Each is
built (random weights: speed does not depend on them), deployed with kan-deploy and run in LAMMPS
(`pair_style allegro-kan`) on the 71-atom Ag vacancy cell and its replicas, on one MPI rank or
several. ms/step comes from LAMMPS' own Loop time of the timed run (warm-up excluded); the bare
model's energy+force call on the same periodic structure is timed too, so the pair style's own
overhead is visible. On one rank the pair style runs the same periodic graph as the bare call (a
message-passing model included); on several ranks each rank runs its atoms and the ghosts one cutoff
deep, a message-passing model exchanging node features between layers (or, with ghost_exchange
False, a ghost shell as deep as its receptive field), so the cost per atom-step against one rank
shows what the split costs.
"""

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..resources import lammps_input
from .lammps import LammpsError, loop_time, loop_times, run_lammps, run_lammps_measured

# name -> (kan_placement, label in the paper's Table 4)
CONFIGS: Dict[str, tuple] = {
    "mlp": ("none", "MLP (Allegro)"),
    "kan_readout": ("readout", "KAN output block"),
    "kan_embedding_latent": ("embedding_latent", "KAN embedding + latent"),
    "kan_all": ("all", "KAN everywhere"),
}
NEQUIP_CONFIGS: Dict[str, tuple] = {
    "mlp": ("none", "MLP (NequIP)"),
    "kan_readout": ("readout", "KAN output block (NequIP)"),
}
# family -> its configurations; Allegro first (the CI gate's rows)
FAMILIES: Dict[str, Dict[str, tuple]] = {"allegro": CONFIGS, "nequip": NEQUIP_CONFIGS}


@dataclass
class ModelSize:
    """The Allegro benchmark model: 2 layers, l_max 1, 64 scalar / 16 tensor features, MLP widths 64,
    readout width 32, r_max 4.5 Å."""
    family: ClassVar[str] = "allegro"
    r_max: float = 4.5
    l_max: int = 1
    num_layers: int = 2
    num_scalar_features: int = 64
    num_tensor_features: int = 16
    mlp_width: int = 64
    readout_width: int = 32


@dataclass
class NequIPSize:
    """The NequIP benchmark model (the paper's NequIP widths are not known to this project): 3
    interaction layers (nequip recommends 3-5; receptive field 3 x 4.5 = 13.5 Å), l_max 1 with parity,
    32 features per irrep (nequip's default), a radial MLP of one hidden layer of 64 (the Allegro
    benchmark's MLP width), 8 Bessel functions, r_max 4.5 Å, and an output block of one hidden layer of
    32 (the Allegro benchmark's readout width), an MLP or a KAN."""
    family: ClassVar[str] = "nequip"
    r_max: float = 4.5
    l_max: int = 1
    num_layers: int = 3
    num_features: int = 32
    radial_mlp_depth: int = 1
    radial_mlp_width: int = 64
    readout_width: int = 32


Size = Union[ModelSize, NequIPSize]
# family -> its benchmark size (kan-bench builds SIZES[family]())
SIZES = {"allegro": ModelSize, "nequip": NequIPSize}


@dataclass
class Record:
    config: str
    placement: str
    basis: str
    dtype: str
    natoms: int
    steps: int
    family: str = "allegro"
    procs: int = 1             # MPI ranks of the LAMMPS run
    threads_per_rank: int = 1  # torch threads of each rank (lammps_threads)
    status: str = "ok"
    error: str = ""
    ms_per_step: float = float("nan")
    atom_steps_per_s: float = float("nan")
    model_ms_per_call: float = float("nan")
    lammps_over_model: float = float("nan")
    cost_vs_one_rank: float = float("nan")  # ms per atom-step over the same point's on one rank (procs > 1)
    ghost_exchange: bool = True  # message-passing models on several ranks: node features exchanged, else a ghost shell
    peak_rss_mb: float = float("nan")  # one rank only (run_lammps_measured); NaN on several ranks
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


def tag(family: str, name: str) -> str:
    """A configuration's name in file names: Allegro's plain (mlp), other families' prefixed (nequip_mlp)."""
    return name if family == "allegro" else f"{family}_{name}"


def config_label(family: str, name: str, procs: int = 1) -> str:
    """Its row label in the tables: the paper's (e.g. "KAN output block (NequIP)"), with the ranks if not one."""
    label = FAMILIES.get(family, {}).get(name, (name, name if family == "allegro" else f"{name} ({family})"))[1]
    return label if procs == 1 else f"{label}, {procs} ranks"


def pair_path(workdir: Path, name: str, basis: str, dtype: str, family: str = "allegro") -> Path:
    """The deployed file of a configuration, as run() writes it."""
    return workdir / f"{tag(family, name)}_{basis}_{dtype}.pt"


def log_path(logdir: Path, family: str, name: str, natoms: int, procs: int = 1) -> Path:
    """The kept LAMMPS log of a point's counted run, as run() writes it."""
    return logdir / (f"{tag(family, name)}_{natoms}" + ("" if procs == 1 else f"_{procs}ranks") + ".log")


def lammps_threads(procs: int) -> int:
    """Torch threads per rank of a LAMMPS run: OMP_NUM_THREADS where set; otherwise one rank gets
    torch's default (this process's, the same library) and several ranks one each (the pair style's
    rule), so that either way the ranks share the machine's cores."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return torch.get_num_threads() if procs == 1 else 1


def model_config(placement: str, basis: str, dtype: str, size: Size, seed: int = 1) -> dict:
    """The benchmark model of size's family (ModelSize: Allegro; NequIPSize: NequIP) with the KAN
    blocks of ``placement``."""
    common = {"seed": seed, "model_dtype": dtype, "type_names": ["Ag"], "r_max": size.r_max, "l_max": size.l_max,
              "num_layers": size.num_layers, "avg_num_neighbors": 18.0, "per_type_energy_shifts": {"Ag": 0.0},
              "per_type_energy_scales": {"Ag": 0.5}, "kan_placement": placement, "kan_basis": basis}
    if isinstance(size, NequIPSize):
        return {
            "_target_": "kan_mlip.models.KANNequIPModel", **common, "parity": True,
            "num_features": size.num_features, "num_bessels": 8, "polynomial_cutoff_p": 6,
            "radial_mlp_depth": size.radial_mlp_depth, "radial_mlp_width": size.radial_mlp_width,
            "readout_mlp_hidden_layers_depth": 1, "readout_mlp_hidden_layers_width": size.readout_width,
        }
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


def run(configs: Optional[List[str]], reps: List[int], basis: str, dtype: str, steps: int, warmup: int, workdir: Path,
        size: Union[Size, Sequence[Size]], repeats: int = 1, log=print, logdir: Optional[Path] = None,
        nprocs: Sequence[int] = (1,), ghost_exchange: bool = True) -> List[Record]:
    """All (family, config, replica, ranks) runs; a failing configuration becomes a failed record and
    the rest go on. The LAMMPS log of each point's counted run goes to logdir (default: workdir).

    size: one model size or several, one per family (ModelSize: Allegro, NequIPSize: NequIP).
    configs: the configuration names, run in every family given (a name a family does not have
    becomes a failed row); None: each family's own (FAMILIES).
    nprocs: MPI ranks; every point runs once per entry, the entries back to back. One rank gives
    ms/step and memory (run_lammps_measured); several ranks ms/step only (mpirun, memory NaN) and
    their cost per atom-step against one rank where nprocs has 1 too. The bare model call is one
    process whatever the ranks. ghost_exchange: deploy message-passing models with it (else a ghost
    shell; compiler/contract.py).

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

    sizes = [size] if isinstance(size, (ModelSize, NequIPSize)) else list(size)
    nprocs = list(dict.fromkeys(nprocs))
    if not sizes or not nprocs or min(nprocs) < 1:
        raise ValueError(f"run() needs at least one model size and MPI ranks >= 1 (got {sizes}, {nprocs})")
    workdir.mkdir(parents=True, exist_ok=True)
    logdir = logdir or workdir
    logdir.mkdir(parents=True, exist_ok=True)
    sha = git_sha()
    records: Dict[tuple, Record] = {}  # (family, name, rep, procs) -> its record
    pairs: Dict[tuple, Path] = {}      # (family, name) -> its deployed file
    points = []
    for sz in sizes:
        family = sz.family
        for name in (configs if configs is not None else list(FAMILIES[family])):
            placement = FAMILIES[family][name][0] if name in FAMILIES[family] else name
            pair = pair_path(workdir, name, basis, dtype, family)
            try:
                others = [f for f, known in FAMILIES.items() if f != family and name in known]
                if name not in FAMILIES[family] and others:
                    raise ValueError(f"{family} has no configuration {name!r} (only {'/'.join(others)} has; "
                                     f"{family}'s: {' '.join(FAMILIES[family])})")
                cfg = model_config(placement, basis, dtype, sz)
                src = save_model(pair.with_suffix(".pth"), cfg, build_model(cfg))
                deploy(src, pair, ghost_exchange=ghost_exchange, log=lambda *_: None)
                pairs[family, name] = pair
                build_error = ""
            except Exception as exc:  # reported as a failed row; the other configurations still run
                build_error = f"{type(exc).__name__}: {exc}"
            for rep in reps:
                for procs in nprocs:
                    rec = Record(config=name, placement=placement, basis=basis, dtype=dtype, natoms=cell_atoms(rep),
                                 steps=steps, family=family, procs=procs, threads_per_rank=lammps_threads(procs),
                                 ghost_exchange=ghost_exchange, git_sha=sha)
                    if build_error:
                        rec.status, rec.error = "failed", build_error
                    else:
                        points.append((family, name, rep, procs))
                    records[family, name, rep, procs] = rec

    fastest: Dict[tuple, tuple] = {}  # (family, name, rep, procs) -> (timing, LAMMPS log) of its fastest run
    rss_runs: Dict[tuple, List[float]] = {}   # ... -> peak RSS of every one-rank run, MB
    anon_runs: Dict[tuple, List[float]] = {}  # ... -> the same less shared libraries' pages, MB
    bare: Dict[tuple, float] = {}        # (family, name, rep) -> its fastest bare model call, ms
    model_peak: Dict[tuple, float] = {}  # (family, name, rep) -> peak memory of a bare model call, MB
    total, done = len(points) * repeats, 0
    for round_ in range(repeats):
        called = set()  # (family, name, rep) whose bare model call this round has timed
        for key in points:
            family, name, rep, procs = key
            rec = records[key]
            done += 1
            if rec.status != "ok":  # failed in an earlier round
                continue
            variables = {"model": pairs[family, name], "rep": rep, "warmup": warmup, "steps": steps}
            try:
                if procs == 1:
                    out, rss, anon = run_lammps_measured(lammps_input("in.bench"), variables, cwd=workdir)
                else:
                    out = run_lammps(lammps_input("in.bench"), variables, nprocs=procs, cwd=workdir)
                    rss = anon = float("nan")
                timing = loop_time(out)
                if timing["procs"] != procs:
                    raise LammpsError(f"asked for {procs} MPI ranks, LAMMPS ran on {timing['procs']}")
                model_ms = float("nan")
                if (family, name, rep) not in called:
                    model_ms, model_mb = bare_model_call(pairs[family, name], rep)
                    called.add((family, name, rep))
                    bare[family, name, rep] = min(model_ms, bare.get((family, name, rep), float("inf")))
                    model_peak[family, name, rep] = model_mb
            except Exception as exc:
                rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
                log(f"[{done}/{total}] {_point(family, name, procs):30s} {rec.natoms:6d} atoms: FAILED {rec.error[:200]}")
                continue
            if procs == 1:
                rss_runs.setdefault(key, []).append(rss)
                anon_runs.setdefault(key, []).append(anon)
            if key not in fastest or timing["ms_per_step"] < fastest[key][0]["ms_per_step"]:
                fastest[key] = (timing, out)
            log(f"[{done}/{total}] {_point(family, name, procs):30s} {rec.natoms:6d} atoms: {timing['ms_per_step']:9.2f} "
                f"ms/step" + (f" (bare model {model_ms:8.2f} ms)" if model_ms == model_ms else "")
                + (f", peak RSS {rss:.0f} MB" if procs == 1 else "")
                + (f" (round {round_ + 1})" if repeats > 1 else ""))

    for key, rec in records.items():
        family, name, rep, procs = key
        if rec.status != "ok":
            continue
        if (family, name, rep) not in bare:  # its bare model call failed, in the record of another ranks' run
            rec.status, rec.error = "failed", "the bare model call failed (see the one-rank row)"
            continue
        timing, out = fastest[key]
        log_path(logdir, family, name, rec.natoms, procs).write_text(out)
        rec.ms_per_step = timing["ms_per_step"]
        rec.atom_steps_per_s = rec.natoms * 1e3 / timing["ms_per_step"]
        if procs == 1:
            rec.peak_rss_mb_runs = rss_runs[key]
            rec.peak_rss_mb = float(np.median(rss_runs[key]))
            rec.peak_anon_mb_runs = anon_runs[key]
            rec.peak_anon_mb = float(np.median(anon_runs[key]))
        rec.lammps_version = next((line.strip() for line in out.splitlines() if line.startswith("LAMMPS (")), "")
        rec.model_ms_per_call = bare[family, name, rep]
        rec.model_peak_mb = model_peak[family, name, rep]
        rec.lammps_over_model = rec.ms_per_step / rec.model_ms_per_call
    for (family, name, rep, procs), rec in records.items():
        one = records.get((family, name, rep, 1))
        if procs != 1 and rec.status == "ok" and one is not None and one.status == "ok":
            rec.cost_vs_one_rank = rec.ms_per_step / one.ms_per_step
    for rec in records.values():
        point = _point(rec.family, rec.config, rec.procs)
        if rec.status == "ok":
            log(f"{point:30s} {rec.natoms:6d} atoms: {rec.ms_per_step:9.2f} ms/step (bare model "
                f"{rec.model_ms_per_call:8.2f} ms, x{rec.lammps_over_model:.2f})"
                + (f", peak RSS {rec.peak_rss_mb:.0f} MB ({rec.peak_anon_mb:.0f} less libraries), "
                   f"model call peak {rec.model_peak_mb:.1f} MB" if rec.procs == 1 else
                   f", {rec.procs} ranks x {rec.threads_per_rank} thread" + ("s" if rec.threads_per_rank != 1 else "")
                   + (f": {rec.cost_vs_one_rank:.2f}x one rank's ms per atom-step"
                      if rec.cost_vs_one_rank == rec.cost_vs_one_rank else "")))
        else:
            log(f"{point:30s} {rec.natoms:6d} atoms: FAILED {rec.error[:200]}")
    return list(records.values())


def _point(family: str, name: str, procs: int) -> str:
    """A point's name in the progress lines: mlp, nequip_mlp, nequip_mlp x2 ranks."""
    return tag(family, name) + ("" if procs == 1 else f" x{procs} ranks")


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


def _rows(records: List[Record]) -> List[tuple]:
    """(family, config, procs) of the table rows, in the records' order."""
    return list(dict.fromkeys((r.family, r.config, r.procs) for r in records))


def _ok(value: float) -> bool:
    return value == value  # not NaN


def markdown_table(records: List[Record]) -> str:
    """The paper's Table 4 layout: one row per configuration (and MPI ranks, where not one); ms/step,
    peak RSS of LAMMPS (all of it, and less the shared libraries' pages; one rank only) and the peak
    memory of a bare model call per system size, each also as a ratio to the same family's MLP at that
    size and ranks. Below it, overhead_table."""
    sizes = sorted({r.natoms for r in records})
    mlp = {(r.family, r.procs, r.natoms): r for r in records if r.config == "mlp" and r.status == "ok"}
    columns = [("ms/step", "ms_per_step", "{:.2f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
               ("peak RSS less libraries MB", "peak_anon_mb", "{:.0f}"),
               ("model call peak MB", "model_peak_mb", "{:.1f}")]
    head = "| configuration | " + " | ".join(" | ".join(f"{title} ({n} atoms)" for n in sizes) + " | vs MLP"
                                             for title, _, _ in columns) + " |"
    lines = [head, "|" + "---|" * (1 + len(columns) * (len(sizes) + 1))]
    for family, name, procs in _rows(records):
        rows = {r.natoms: r for r in records if (r.family, r.config, r.procs) == (family, name, procs)}
        cells = []
        for _, attr, fmt in columns:
            values, ratios = [], []
            for n in sizes:
                r = rows.get(n)
                if r is None or r.status != "ok":
                    values.append("-" if r is None else (f"failed: {r.error[:60]}" if attr == "ms_per_step" else "failed"))
                    continue
                value = getattr(r, attr)
                values.append(fmt.format(value) if _ok(value) else "-")
                base = mlp.get((family, procs, n))
                if base is not None and _ok(value) and _ok(getattr(base, attr)):
                    ratios.append(f"{value / getattr(base, attr):.3f}")
            cells += values + [" / ".join(ratios) or "-"]
        lines.append(f"| {config_label(family, name, procs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + overhead_table(records)


def overhead_table(records: List[Record]) -> str:
    """One row per configuration: LAMMPS ms/step over the bare model's call on the same structure, per
    system size and MPI ranks, and, for several ranks, the cost per atom-step against one rank (the
    same system's ms/step on N ranks over one rank's: above 1, the ranks' ghost atoms and
    communication cost more than they share)."""
    sizes = sorted({r.natoms for r in records})
    procs = sorted({r.procs for r in records})
    by = {(r.family, r.config, r.procs, r.natoms): r for r in records if r.status == "ok"}

    def ranks(p: int) -> str:
        return "1 rank" if p == 1 else f"{p} ranks"

    columns = [(f"LAMMPS / bare, {ranks(p)}", p, "lammps_over_model") for p in procs]
    columns += [(f"{ranks(p)} / 1 rank per atom-step", p, "cost_vs_one_rank") for p in procs if p != 1 and 1 in procs]
    head = "| configuration | " + " | ".join(f"{title} ({n} atoms)" for title, _, _ in columns for n in sizes) + " |"
    lines = [head, "|" + "---|" * (1 + len(columns) * len(sizes))]
    for family, name in dict.fromkeys((r.family, r.config) for r in records):
        cells = []
        for _, p, attr in columns:
            for n in sizes:
                r = by.get((family, name, p, n))
                cells.append(f"{getattr(r, attr):.2f}" if r is not None and _ok(getattr(r, attr)) else "-")
        lines.append(f"| {config_label(family, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: List[Record], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for family, name, procs in _rows(records):
        ok = sorted((r.natoms, r.ms_per_step) for r in records
                    if (r.family, r.config, r.procs) == (family, name, procs) and r.status == "ok")
        if ok:
            ax.plot(*zip(*ok), "o-", label=config_label(family, name, procs))
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


# example configs (examples/configs) per family and benchmark configuration ({basis}: --basis)
TRAIN_CONFIGS = {"mlp": "allegro_mlp", "kan_readout": "allegro_kan_readout",
                 "kan_embedding_latent": "allegro_kan_embedding_latent", "kan_all": "allegro_kan_all_gaussian"}
FAMILY_TRAIN_CONFIGS = {"allegro": TRAIN_CONFIGS,
                        "nequip": {"mlp": "nequip_mlp", "kan_readout": "nequip_kan_readout_{basis}"}}


def training_cost(configs: List[str], frames: int, epochs: int, workdir: Path, log=print, family: str = "allegro",
                  basis: str = "gaussian") -> Dict[str, dict]:
    """Training seconds per epoch of each configuration's example config on the same EMT Ag data,
    keyed by tag(family, name)."""
    from ase.io import write

    from kan_mlip.data import make_ag_data
    from kan_mlip.resources import known_configs
    from kan_mlip.training import read_epoch_times, run_nequip_train

    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"ag_emt_{frames}.extxyz"
    if not data.exists():
        write(data, make_ag_data(n_frames=frames, seed=0, progress=False), format="extxyz")
    out = {}
    for name in configs:
        key = tag(family, name)
        config = FAMILY_TRAIN_CONFIGS.get(family, {}).get(name, "").format(basis=basis)
        if not config or config not in known_configs():
            out[key] = {"status": "failed", "error": f"no example config for {family} {name!r}"
                                                       + (f" ({config}.yaml)" if config else "")}
            continue
        try:
            run = run_nequip_train(config, workdir / f"train_{key}",
                                   [f"data_path={data}", f"max_epochs={epochs}", "trainer.enable_progress_bar=false"],
                                   quiet=True)
            times = read_epoch_times(run)
            out[key] = {"status": "ok", "train_seconds_per_epoch": times, "mean": float(np.mean(times[1:] or times)),
                        "frames": frames, "config": config}
            log(f"train {key:22s}: {out[key]['mean']:.2f} s/epoch ({frames} frames x 0.8 train, epochs {times})")
        except Exception as exc:
            out[key] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
            log(f"train {key:22s}: FAILED {out[key]['error'][:200]}")
    return out
