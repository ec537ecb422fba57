"""``kan-mlip study``: train several configurations under one budget and report their accuracy.

A study file (YAML) names the data, the configurations (names of configs in --config-dir, by
default the shipped ones, which `kan-mlip examples` copies; or paths to config files), the seeds and
the budget. The data is split once (seeded) into a pool that nequip-train splits again for training /
early stopping, and a validation set held out from training; the report's numbers come from
evaluating each saved model on that held-out set.

    name: ag_emt
    data: ag_emt.extxyz            # extxyz (or .gz); DeePMD folders: convert with kan-mlip convert-deepmd
    validation_fraction: 0.1
    configs:                       # example config names, config file paths, or {name, config, overrides}
      - allegro_mlp
      - allegro_kan_readout
      - {name: kan_readout_bspline, config: allegro_kan_readout, overrides: [training_module.model.kan_basis=bspline]}
    seeds: [1, 2, 3]
    max_epochs: 5
    overrides: []                  # extra nequip-train overrides for every run
    validation_frames: 200         # optional: absolute held-out count (instead of validation_fraction)
    pool_frames: 300               # optional: a documented subset for training (default: all the rest)
    train_eval_frames: 100         # training-set errors are measured on this many pool frames
    energy_references: config      # config: the config's own energy shifts | least_squares: per-element
                                   # references fitted to the training pool (see energy_references())
    md_cost: {rounds: 5, steps: 50, warmup: 5}   # optional: LAMMPS ms/step of every configuration (below)
    paper_table: Table 5           # optional: the paper table the study repeats (named in the report)

A configs entry may also carry ``label`` (its name in the paper-layout table) and ``paper``: the paper's
values for that row, ``{energy_mae: eV/atom, force_mae: eV/Å}``; with them the report adds a table in
the paper's layout and units, our values beside the paper's and each row's force and energy MAE ratios
to its MLP beside the paper's ratios (and, when every held-out frame has N atoms, the energy MAE per
N-atom frame). ``control: true`` marks a control configuration (e.g. an MLP output block widened to the
KAN block's parameter count): every configuration that is not an MLP is also set against it. The report
ends with what agrees with the paper and what does not, decided from the per-seed ratios (held-out force
and energy MAE, and the epochs to reach a validation force MAE every run reached): a difference is
resolved when the 95% interval of the mean ratio over seeds (Student's t) excludes 1, and agrees with
the paper when it holds the paper's ratio.

With ``md_cost``, the report also gives the MD cost of every configuration: the best model of its
lowest-seed run deployed (kan-deploy, the training dtype) into models/, and the models timed taking turns
in one LAMMPS process on the first held-out frame (NVT); plotted against the held-out force error
(accuracy_vs_cost.png). The report also lists the per-seed force MAE ratios to the MLP, the runs that
stopped on their plateau (before max_epochs) and the training time and epochs each configuration took
to first reach a validation force MAE that every run reached.

Runs already finished in the output folder (a best.ckpt and a row in study.json or the run's own
result.json) are reused, and a run that was interrupted resumes from its last checkpoint (last.ckpt: model, optimizer, schedule and epoch),
so a long study can be carried out in pieces; the report is rewritten after every run. Each run's
learning curve (validation force and energy MAE against epoch and against training wall time) is kept
in study.json and plotted per configuration (curves_<config>.png) and all together (curves_all.png).
A run whose metrics turn NaN is reported as diverged; one whose validation force MAE rises above 10x
its untrained value is reported as unstable (listed with its numbers, not plotted).

``--jobs N`` trains N runs at a time, each in its own process (as ``--only`` below), then collects them
and writes the report: ``OMP_NUM_THREADS=1 kan-mlip study STUDY --jobs 2`` on a 2-core machine.

``--only CONFIG SEED`` trains and evaluates that one run (writing its result.json) and leaves the report
alone, so several runs of one study can train at the same time in separate processes; a later call
without ``--only`` collects them and writes the report. A process claims each run it trains (an flock
on runs/<run>/train.lock, gone when the process ends): a run another process is training is left to
it, and named in the report as missing, never trained twice at once. ``--status`` trains nothing and prints where every
run stands (state, epochs, best validation force MAE, learning rate, plateau count, training hours)
and about how many training hours are left.
``--report`` trains nothing: it writes the report from the runs finished so far (a long study's interim
report), naming every other run with where it stands; the MD cost is measured only by the collecting call.
``--reevaluate`` trains nothing either: it recomputes every finished run's numbers (parameters, held-out
and training-set errors) from its best.ckpt and sets them beside the recorded ones, exit status 1 if any
differs, so a recorded study's numbers can be checked from a clone without training.
"""

import contextlib
import fcntl
import gzip
import io
import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import yaml

EVALUATED = ("ok", "unstable")  # runs with a saved model and held-out errors

DEFAULTS = {"validation_fraction": 0.1, "validation_frames": None, "pool_frames": None, "train_eval_frames": 100,
            "seeds": [1], "max_epochs": 5, "overrides": [], "split_seed": 0, "energy_references": "config",
            "md_cost": None, "paper_table": None}
ENERGY_REFERENCES = ("config", "least_squares")


def load_study(path) -> Dict[str, Any]:
    spec = dict(DEFAULTS, **(yaml.safe_load(Path(path).read_text()) or {}))
    for key in ("name", "data", "configs"):
        if key not in spec:
            raise ValueError(f"study file {path} needs '{key}' (see `kan-mlip study --help`)")
    base = Path(path).resolve().parent
    spec["data"] = str((base / spec["data"]).resolve()) if not Path(spec["data"]).is_absolute() else spec["data"]
    if not Path(spec["data"]).exists():
        raise FileNotFoundError(f"study data not found: {spec['data']}")
    if not 0 < float(spec["validation_fraction"]) < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {spec['validation_fraction']}")
    if spec["energy_references"] not in ENERGY_REFERENCES:
        raise ValueError(f"energy_references must be one of {ENERGY_REFERENCES}, got {spec['energy_references']!r}")
    for key in ("validation_frames", "pool_frames"):
        if spec[key] is not None and int(spec[key]) < 1:
            raise ValueError(f"{key} must be a positive number of frames, got {spec[key]}")
    for item in spec["configs"]:
        _entry(item)  # every entry well formed, before any work
    return spec


def read_frames(path):
    from ase.io import read

    if str(path).endswith(".gz"):  # ase's extxyz reader seeks backwards: decompress into memory first
        with gzip.open(path, "rt") as fh:
            return read(io.StringIO(fh.read()), index=":", format="extxyz")
    return read(path, index=":")


def split(spec, workdir: Path):
    from ase.io import write

    frames = read_frames(spec["data"])
    order = np.random.default_rng(spec["split_seed"]).permutation(len(frames))
    n_val = int(spec["validation_frames"] or max(1, round(spec["validation_fraction"] * len(frames))))
    n_pool = int(spec["pool_frames"] or len(frames) - n_val)
    if n_val + n_pool > len(frames):
        raise ValueError(f"validation_frames + pool_frames = {n_val + n_pool} > {len(frames)} frames in {spec['data']}")
    val = [frames[i] for i in order[:n_val]]
    pool = [frames[i] for i in order[n_val:n_val + n_pool]]
    workdir.mkdir(parents=True, exist_ok=True)
    # written aside and renamed: studies running runs in parallel (--only) each write the same pool
    tmp = workdir / f".pool-{os.getpid()}.extxyz"
    write(tmp, pool, format="extxyz")
    os.replace(tmp, workdir / "pool.extxyz")
    return workdir / "pool.extxyz", val, pool


def energy_references(frames) -> Dict[str, float]:
    """Per-element energy references (eV per atom of each element): the least-squares fit of the frames'
    total energies to their compositions, E ≈ sum_Z n_Z(frame) e_Z. When the compositions do not determine
    every element's reference (e.g. all frames Hf32O64: only e_Hf + 2 e_O is fixed) the minimum-norm
    solution is taken; the sum over any frame's atoms, which is all the model uses, is the same."""
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    counts = np.array([[a.get_chemical_symbols().count(z) for z in elements] for a in frames], dtype=float)
    energies = np.array([a.get_potential_energy() for a in frames], dtype=float)
    refs, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(e) for z, e in zip(elements, refs)}


def _shift_override(refs: Dict[str, float]) -> str:
    return "++training_module.model.per_type_energy_shifts={" + ",".join(f"{z}:{e!r}" for z, e in refs.items()) + "}"


def _entry(item) -> Dict[str, Any]:
    """A configs entry: 'allegro_mlp', 'path/to/config.yaml' or {name, config, overrides}."""
    if isinstance(item, str):
        item = {"config": item}
    if "config" not in item:
        raise ValueError(f"a study configs entry needs 'config', got {item}")
    config = str(item["config"])
    paper = item.get("paper")
    if paper is not None and not (isinstance(paper, dict) and set(paper) <= {"energy_mae", "force_mae"}):
        raise ValueError(f"a configs entry's 'paper' takes energy_mae (eV/atom) and force_mae (eV/Å), got {paper!r}")
    if not isinstance(item.get("control", False), bool):
        raise ValueError(f"a configs entry's 'control' is true or false, got {item['control']!r}")
    name = item.get("name", Path(config).stem)
    return {"name": name, "config": config, "overrides": list(item.get("overrides", [])),
            "label": str(item.get("label", name)), "paper": paper, "control": item.get("control", False)}


def run_study(spec: Dict[str, Any], outdir: Path, log=print, config_dir=None, only=None) -> List[Dict[str, Any]]:
    """Config names are looked up in ``config_dir`` (default: the shipped configs). ``only``: (config name,
    seed) of the one run to train and evaluate; the report is then not written."""
    from .resources import find_config

    runs = _runs(spec)
    if only is not None:
        picked = [(e, s) for e, s in runs if (e["name"], s) == (only[0], int(only[1]))]
        if not picked:
            raise ValueError(f"--only {only[0]} {only[1]}: not a run of study {spec['name']} "
                             f"(configs {[e['name'] for e, _ in runs][::len(spec['seeds'])]}, seeds {spec['seeds']})")
        runs = picked
    found = {e["config"]: find_config(e["config"], config_dir) for e, _ in runs}  # every config exists, before any work
    outdir = Path(outdir).resolve()
    pool, val, pool_frames = split(spec, outdir / "data")
    train_eval = pool_frames[: int(spec["train_eval_frames"])]
    log(f"study {spec['name']}: {len(pool_frames)} frames for training ({pool}), {len(val)} held-out validation frames")
    overrides = list(spec["overrides"])
    if spec["energy_references"] == "least_squares":
        refs = energy_references(pool_frames)
        log("per-element energy references (least squares over the training pool): "
            + ", ".join(f"{z} {e:.4f} eV" for z, e in refs.items()))
        overrides.append(_shift_override(refs))
    rows, unfinished = [], []
    for k, (entry, seed) in enumerate(runs, 1):
        name, tag = entry["name"], f"[{k}/{len(runs)}] {entry['name']} seed {seed}"
        run_dir = _run_dir(outdir, name, seed)
        with claim(run_dir) as holder:
            if holder is not None:
                log(f"{tag}: being trained by another process ({holder}), left to it")
                unfinished.append(f"{name} seed {seed} (being trained by another process)")
                continue
            row = _finished_runs(outdir).get((name, seed))  # read under the claim: another process may just have finished it
            if row is not None:
                row = _reread(row, run_dir)
                log(f"{tag}: already done, reused ({row['status']})")
            else:
                cfg_dir, cfg_name = found[entry["config"]]
                row = _train_and_evaluate(spec, entry, seed, run_dir, pool, overrides, cfg_dir, cfg_name, val, train_eval,
                                          tag, log)
                (run_dir / "result.json").write_text(json.dumps(row, indent=1, default=str))
        rows.append(row)
        if only is None:
            write_report(spec, rows, val, outdir, plots=False, unfinished=unfinished)  # survives an interrupted study
    if only is None:
        if spec["md_cost"]:
            measure_md_cost(spec, rows, val, outdir, log=log)
        write_report(spec, rows, val, outdir, unfinished=unfinished)
    return rows


def _reread(row: Dict[str, Any], run_dir: Path) -> Dict[str, Any]:
    """A finished run's row with its blow-up flag and learning curve read again from the run's own record,
    as this version reads them."""
    from .training import learning_curve, read_val_metrics

    if row["status"] == "ok":
        row.update(_blow_up(read_val_metrics(run_dir)))
    if row.get("curve") and (run_dir / "epoch_times.json").is_file():
        row["curve"] = learning_curve(run_dir)
    return row


def report_so_far(spec: Dict[str, Any], outdir: Path, log=print) -> List[Dict[str, Any]]:
    """``--report``: the report (report.md, its figures, study.json) from the runs finished so far, naming
    every other run with where it stands. Nothing is trained, and no MD cost is measured: the collecting
    call measures it once every run has finished."""
    outdir = Path(outdir).resolve()
    _, val, _ = split(spec, outdir / "data")
    finished = _finished_runs(outdir)
    where = {(r["config"], r["seed"]): r for r in study_status(spec, outdir)}
    rows, unfinished = [], []
    for entry, seed in _runs(spec):
        key = (entry["name"], seed)
        if key in finished:
            rows.append(_reread(finished[key], _run_dir(outdir, *key)))
        else:
            unfinished.append(f"{entry['name']} seed {seed} ({where[key]['state']}, epoch "
                              f"{where[key]['epochs']}/{where[key]['max_epochs']})")
    write_report(spec, rows, val, outdir, unfinished=unfinished)
    log(f"report of {len(rows)} finished runs ({len(unfinished)} not finished): {outdir / 'report.md'}")
    return rows


def train_in_parallel(study_file, spec: Dict[str, Any], outdir: Path, jobs: int, config_dir=None, log=print) -> List[tuple]:
    """Train the runs of a study not yet finished in up to ``jobs`` processes at once, each
    ``kan-mlip study STUDY_FILE -o OUTDIR --only CONFIG SEED`` (which claims its run, resumes it if it was
    interrupted and writes its result.json); seed by seed, so every configuration's first seed comes
    first. Their output is forwarded, each line prefixed by its run. Without OMP_NUM_THREADS in the
    environment, each process gets the machine's cores divided by ``jobs``. Returns the (run, exit code)
    of the processes that failed."""
    import subprocess
    import sys
    import threading

    done = _finished_runs(Path(outdir).resolve())
    todo = [(e["name"], s) for s in spec["seeds"] for e in map(_entry, spec["configs"]) if (e["name"], s) not in done]
    env = os.environ.copy()
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    log(f"study {spec['name']}: {len(todo)} runs to train, {jobs} at a time, OMP_NUM_THREADS={env['OMP_NUM_THREADS']} each")

    def forward(proc, tag):
        for line in proc.stdout:
            log(f"[{tag}] {line.rstrip()}")

    active, failed = [], []
    try:
        while todo or active:
            while todo and len(active) < jobs:
                name, seed = todo.pop(0)
                cmd = [sys.executable, "-m", "kan_mlip.cli", "study", str(study_file), "-o", str(outdir),
                       "--only", name, str(seed), *(["--config-dir", str(config_dir)] if config_dir else [])]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                reader = threading.Thread(target=forward, args=(proc, f"{name} {seed}"), daemon=True)
                reader.start()
                active.append((proc, reader, f"{name} seed {seed}"))
            time.sleep(0.5)
            for item in [a for a in active if a[0].poll() is not None]:
                item[1].join()
                active.remove(item)
                if item[0].returncode:
                    failed.append((item[2], item[0].returncode))
                    log(f"[{item[2]}] exited with code {item[0].returncode}")
    finally:
        for proc, _, _ in active:  # interrupted: stop the runs (each resumes from its last.ckpt next time)
            proc.terminate()
        for proc, _, _ in active:
            proc.wait()
    return failed


def _train_and_evaluate(spec, entry, seed, run_dir: Path, pool, overrides, cfg_dir, cfg_name, val, train_eval, tag,
                        log) -> Dict[str, Any]:
    """Train one run (resuming it from its last.ckpt if it was interrupted) and evaluate its best checkpoint
    on the held-out frames and on ``train_eval``: the run's row."""
    from .training import learning_curve, read_val_metrics, relocate_checkpoint, run_nequip_train

    resume = _resumable(run_dir, int(spec["max_epochs"]))
    if resume and relocate_checkpoint(resume[0], run_dir):
        log(f"{tag}: {resume[0].name} points at {run_dir} (the run was moved)")
    log(f"{tag}: " + (f"resuming after epoch {resume[1]}" if resume else "training")
        + f" (up to {spec['max_epochs']} epochs) in {run_dir}")
    row: Dict[str, Any] = {"config": entry["name"], "seed": seed, "status": "ok"}
    t0 = time.time()
    try:
        run_nequip_train(cfg_name, run_dir, [f"data_path={pool}", f"max_epochs={spec['max_epochs']}", f"seed={seed}",
                                             "trainer.enable_progress_bar=false", *overrides, *entry["overrides"],
                                             *([f"++ckpt_path={resume[0]}"] if resume else [])],
                         config_dir=cfg_dir, quiet=True, resume=bool(resume),
                         on_epoch=lambda e, sec: log(f"    epoch {e}/{spec['max_epochs']} trained ({sec:.0f} s)"))
        curve = learning_curve(run_dir)
        # training wall time over all pieces of an interrupted run (the pauses between them not counted)
        row["train_seconds"] = curve[-1]["elapsed_seconds"] if curve else time.time() - t0
        row["epochs"] = len(curve)
        row["stopped_early"] = len(curve) < int(spec["max_epochs"])
        row["curve"] = curve
        metrics = read_val_metrics(run_dir)
        if any(not math.isfinite(v) for m in metrics[1:] for v in m.values()):
            raise FloatingPointError("validation metrics became NaN/inf during training")
        row.update(_blow_up(metrics))
        row.update(evaluate_checkpoint(run_dir / "best.ckpt", val, train_eval))
        row["checkpoint"] = str(run_dir / "best.ckpt")
        log(f"{tag}: energy MAE {row['energy_mae_meV_per_atom']:.3f} meV/atom, "
            f"force MAE {row['force_mae_meV_per_A']:.2f} meV/Å, {row['train_seconds']:.0f} s"
            + (f" -- UNSTABLE: {row['error']}" if row["status"] == "unstable" else ""))
    except FloatingPointError as exc:
        row.update(status="diverged", error=str(exc), train_seconds=time.time() - t0)
        log(f"{tag}: DIVERGED ({exc})")
    except Exception as exc:  # the study goes on with the other configurations
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500], train_seconds=time.time() - t0)
        log(f"{tag}: FAILED {row['error'][:200]}")
    return row


def evaluate_checkpoint(checkpoint, val, train_eval) -> Dict[str, Any]:
    """A run's numbers from its saved model: its parameter count, its errors on the held-out frames ``val``
    and on the training-set frames ``train_eval`` (keys ``train_*``)."""
    from .evaluation import errors, load_checkpoint_model, predict

    model = load_checkpoint_model(checkpoint)
    pred = predict(model, val)
    if not all(np.isfinite(e) for e in pred["energy"]):
        raise FloatingPointError("the saved model predicts NaN/inf")
    return {"parameters": sum(p.numel() for p in model.parameters()), **errors(val, pred),
            **{f"train_{k}": v for k, v in errors(train_eval, predict(model, train_eval)).items()}}


def reevaluate(spec: Dict[str, Any], outdir: Path, log=print, rtol: float = 1e-4) -> bool:
    """Recompute every finished run's numbers from its best.ckpt on the study's held-out (and training-set)
    frames and set them beside the numbers its row records (result.json, study.json); trains nothing and
    writes nothing but the data split. True when every recomputed number agrees with the recorded one to
    ``rtol`` (relative; the report prints 4-5 significant digits)."""
    outdir = Path(outdir).resolve()
    _, val, pool_frames = split(spec, outdir / "data")
    train_eval = pool_frames[: int(spec["train_eval_frames"])]
    finished, agree, checked = _finished_runs(outdir), True, 0
    for entry, seed in _runs(spec):
        tag, row = f"{entry['name']} seed {seed}", finished.get((entry["name"], seed))
        if row is None or row["status"] not in EVALUATED:
            log(f"{tag}: {row['status'] if row else 'not finished'}, nothing to re-evaluate")
            continue
        new = evaluate_checkpoint(row["checkpoint"], val, train_eval)
        worst = max(abs(v - row[k]) / max(abs(row[k]), 1e-12) if k in row else math.inf for k, v in new.items())
        agree, checked = agree and worst <= rtol, checked + 1
        log(f"{tag}: {'agree' if worst <= rtol else 'DIFFER'} (largest relative difference {worst:.1e}); "
            "recorded -> recomputed: " + ", ".join(f"{k} {row.get(k, math.nan):.6g} -> {v:.6g}" for k, v in new.items()))
    log(f"{checked} runs re-evaluated from their best.ckpt on {len(val)} held-out frames: "
        + ("every number agrees with the record" if agree else f"numbers DIFFER from the record (rtol {rtol:g})"))
    return agree


LOCK = "train.lock"


@contextlib.contextmanager
def claim(run_dir: Path):
    """Hold RUN_DIR/train.lock (an flock, released when the process ends, however it ends) while this
    process trains or collects the run. Yields None when the claim is ours, else the holder's description
    (another process is training the run: it must not be trained twice at once)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+") as fh:
        if not _try_lock(fh):
            fh.seek(0)
            yield fh.read().strip() or "pid unknown"
            return
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
            yield None
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _claimed_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds the run's claim right now (training it)."""
    if not (Path(run_dir) / LOCK).is_file():
        return False
    with open(Path(run_dir) / LOCK, "a+") as fh:
        if not _try_lock(fh):
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _try_lock(fh) -> bool:
    """Take the exclusive flock on an open file without waiting; False if another open file holds it."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def measure_md_cost(spec, rows, val, outdir: Path, log=print) -> Dict[str, Dict[str, Any]]:
    """Deploy each configuration's best model of its lowest-seed ok run into OUTDIR/models/CONFIG.pt and
    time them in turn in LAMMPS on the first held-out frame; the rows of those runs get ``md_cost``."""
    from kan_mlip.compiler import deploy

    from .bench.lammps import models_in_turn

    opts = dict({"rounds": 5, "steps": 50, "warmup": 5}, **(spec["md_cost"] or {}))
    picked = {}
    for r in sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["seed"]):
        picked.setdefault(r["config"], r)
    if not picked:
        return {}
    (outdir / "models").mkdir(parents=True, exist_ok=True)
    pairs, types = {}, None
    for name, r in picked.items():
        pairs[name] = outdir / "models" / f"{name}.pt"
        meta = deploy(r["checkpoint"], pairs[name], log=lambda *_: None)
        types = meta["type_names"]
        log(f"deployed {name} seed {r['seed']} -> {pairs[name]} ({meta['model_dtype']})")
    atoms = val[0]
    log(f"LAMMPS ms/step of {len(pairs)} models in turn on a {len(atoms)}-atom held-out frame "
        f"({opts['rounds']} rounds x {opts['steps']} steps)")
    with tempfile.TemporaryDirectory(prefix="study-md-") as tmp:
        times = models_in_turn(pairs, atoms, types, Path(tmp), rounds=int(opts["rounds"]), steps=int(opts["steps"]),
                               warmup=int(opts["warmup"]))
    first = next(iter(times))
    cost = {}
    for name, ms in times.items():
        cost[name] = {"ms_per_step": ms, "median_ms_per_step": float(np.median(ms)), "atoms": len(atoms),
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset (torch's default)"),
                      "seed": picked[name]["seed"], "deployed": str(pairs[name]), "reference": first,
                      "ratio_to_reference": float(np.median([b / a for a, b in zip(times[first], ms)]))}
        picked[name]["md_cost"] = cost[name]
        log(f"    {name}: {cost[name]['median_ms_per_step']:.2f} ms/step, {cost[name]['ratio_to_reference']:.3f} x {first}")
    return cost


BLOW_UP = 10.0  # validation force MAE above this multiple of the untrained model's: training blew up


def _blow_up(metrics: List[Dict[str, float]]) -> Dict[str, Any]:
    """'unstable' when the validation force MAE rose above BLOW_UP x its pre-training value (finite, but
    the run left the basin: its numbers are reported, not plotted as a result)."""
    start, worst = metrics[0]["forces_mae"], max(m["forces_mae"] for m in metrics[1:])
    if worst > BLOW_UP * start:
        return {"status": "unstable", "error": f"validation force MAE rose from {1e3 * start:.1f} to {1e3 * worst:.1f} meV/Å "
                                               f"during training (> {BLOW_UP:g}x)"}
    return {}


def _resumable(run_dir: Path, max_epochs: int):
    """(last.ckpt, epochs it holds) of an interrupted run, else None (none there, unreadable, or a run that
    had finished its epochs: trained again)."""
    last = run_dir / "last.ckpt"
    if not last.is_file():
        return None
    try:
        import torch

        epochs = int(torch.load(str(last), map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception:  # a checkpoint cut short by the interruption: start the run again
        return None
    return (last, epochs) if epochs < max_epochs else None


def study_status(spec: Dict[str, Any], outdir: Path) -> List[Dict[str, Any]]:
    """Where every run of a study stands, read from its folder (nothing is trained or loaded but the
    checkpoint's counters): state (not started | training (by another process, now) | unfinished | finished |
    diverged | failed | unstable),
    epochs done, lowest validation force MAE and its epoch, learning rate of the last epoch, the plateau
    count (epochs since the stopping rule's monitor last improved, and its patience) and training hours."""
    outdir = Path(outdir)
    done = _finished_runs(outdir)  # what a collecting call would reuse
    out = []
    for entry, seed in _runs(spec):
        name = entry["name"]
        run_dir = _run_dir(outdir, name, seed)
        row: Dict[str, Any] = {"config": name, "seed": seed, "max_epochs": int(spec["max_epochs"]), "epochs": 0}
        row_done = done.get((name, seed))
        curve = row_done.get("curve") if row_done else None
        if curve is None and (run_dir / "epoch_times.json").is_file():
            from .training import learning_curve

            curve = learning_curve(run_dir)
        if row_done:
            row["state"] = "finished" if row_done["status"] == "ok" else row_done["status"]
            row["stopped_early"] = bool(row_done.get("stopped_early"))
        elif _claimed_elsewhere(run_dir):
            row["state"] = "training"
        else:
            row["state"] = "unfinished" if curve else "not started"
        if curve:
            forces = [p.get("forces_mae", math.nan) for p in curve]
            best = int(np.nanargmin(forces)) if np.isfinite(forces).any() else None
            row.update(epochs=len(curve), hours=curve[-1]["elapsed_seconds"] / 3600, lr=curve[-1].get("lr"),
                       best_force_mae=forces[best] if best is not None else math.nan,
                       best_epoch=best + 1 if best is not None else None)
        if row["state"] in ("unfinished", "training"):
            row.update(_plateau_count(run_dir / "last.ckpt"))
        out.append(row)
    return out


def _plateau_count(last: Path) -> Dict[str, int]:
    """{plateau_wait, plateau_patience} from an EarlyStopping callback's state in a checkpoint, if any."""
    if not last.is_file():
        return {}
    try:
        import torch

        callbacks = torch.load(str(last), map_location="cpu", weights_only=False).get("callbacks", {})
    except Exception:  # being written right now, or cut short: no count
        return {}
    for key, state in callbacks.items():
        if key.startswith("EarlyStopping") and "wait_count" in state:
            return {"plateau_wait": int(state["wait_count"]), "plateau_patience": int(state["patience"])}
    return {}


def format_status(spec, rows: List[Dict[str, Any]], outdir: Path) -> str:
    counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
    lines = [f"study {spec['name']} ({outdir}): {len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()),
             f"{'run':<44} {'state':<12} {'epochs':>8} {'best val force MAE':>23} {'lr':>8} {'plateau':>8} {'train h':>8}"]
    for r in rows:
        best = (f"{1e3 * r['best_force_mae']:.1f} meV/Å (ep {r['best_epoch']})"
                if r.get("best_epoch") else "-")
        plateau = f"{r['plateau_wait']}/{r['plateau_patience']}" if "plateau_patience" in r else "-"
        state = r["state"] + (" *" if r.get("stopped_early") else "")
        lines.append(f"{r['config'] + ' seed ' + str(r['seed']):<44} {state:<12} "
                     f"{str(r['epochs']) + '/' + str(r['max_epochs']):>8} {best:>23} "
                     f"{(format(r['lr'], '.2g') if r.get('lr') else '-'):>8} {plateau:>8} "
                     f"{(format(r['hours'], '.2f') if 'hours' in r else '-'):>8}")
    lines.append("* stopped on its validation plateau before max_epochs. plateau: epochs since the stopping rule's "
                 "monitor last improved / its patience. An unfinished run resumes from its last.ckpt on the next "
                 "call without --status.")
    left = remaining_hours(rows)
    if left:
        hours, took = left
        lines.append(f"About {hours:.1f} run-hours of training left (divide by the runs trained at a time), if every "
                     f"run takes as long as the finished ones ({min(took):.2f}-{max(took):.2f} h).")
    return "\n".join(lines)


def remaining_hours(rows: List[Dict[str, Any]]):
    """(training hours left over all runs, the finished runs' hours): each run not finished is taken to need
    the finished runs' mean hours, less what it has trained already; None until some run has finished."""
    took = [r["hours"] for r in rows if r["state"] == "finished" and "hours" in r]
    if not took:
        return None
    mean = float(np.mean(took))
    left = [max(0.0, mean - r.get("hours", 0.0)) for r in rows if r["state"] in ("not started", "unfinished", "training")]
    return sum(left), took


def _runs(spec: Dict[str, Any]) -> List[tuple]:
    """The study's runs, (configs entry, seed), configuration by configuration in the study file's order."""
    return [(_entry(c), s) for c in spec["configs"] for s in spec["seeds"]]


def _run_dir(outdir: Path, name: str, seed) -> Path:
    """Where the run of configs entry ``name`` with ``seed`` trains and keeps its checkpoints and records."""
    return Path(outdir) / "runs" / f"{name}_seed{seed}"


def _finished_runs(outdir: Path) -> Dict[Any, Dict[str, Any]]:
    """Rows of an earlier (interrupted) study in outdir, and of runs trained alone (--only: their
    result.json), whose checkpoint still exists: in outdir's own runs/ folder, wherever the row was written."""
    rows = []
    if (outdir / "study.json").exists():
        rows += json.loads((outdir / "study.json").read_text())["runs"]
    rows += [json.loads(p.read_text()) for p in sorted(outdir.glob("runs/*/result.json"))]
    for r in rows:
        if r.get("checkpoint"):  # recorded as an absolute path: the study folder may have been moved or cloned since
            here = _run_dir(outdir, r["config"], r["seed"]) / Path(r["checkpoint"]).name
            r["checkpoint"] = str(here if here.is_file() else r["checkpoint"])
    return {(r["config"], r["seed"]): r for r in rows
            if r["status"] not in EVALUATED or Path(r.get("checkpoint", "")).is_file()}


def paired_ratios(rows, config: str, baseline: str, key: str = "force_mae_meV_per_A") -> List[tuple]:
    """(seed, key(config) / key(baseline)) for every seed both have evaluated (same seed, same split) and
    give the key."""
    done = [r for r in rows if r["status"] in EVALUATED and r.get(key) is not None]
    base = {r["seed"]: r[key] for r in done if r["config"] == baseline}
    return [(r["seed"], r[key] / base[r["seed"]]) for r in done if r["config"] == config and r["seed"] in base]


def force_ratio_spread(rows, config: str, baseline: str) -> float:
    """Standard deviation over seeds of force MAE(config) / force MAE(baseline), pairing equal seeds."""
    ratios = [q for _, q in paired_ratios(rows, config, baseline)]
    return float(np.std(ratios, ddof=1)) if len(ratios) > 1 else 0.0


def ratio_interval(ratios: List[float], level: float = 0.95):
    """(mean, low, high): the mean of per-seed ratios and its ``level`` confidence interval, Student's t
    over the seeds (n - 1 degrees of freedom); low and high are None with fewer than two seeds."""
    mean = float(np.mean(ratios))
    if len(ratios) < 2:
        return mean, None, None
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(ratios) - 1) * np.std(ratios, ddof=1) / math.sqrt(len(ratios)))
    return mean, mean - half, mean + half


def summary(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for name in dict.fromkeys(r["config"] for r in rows):
        ok = [r for r in rows if r["config"] == name and r["status"] in EVALUATED]
        entry = {"config": name, "runs": sum(r["config"] == name for r in rows), "ok": len(ok),
                 "status": ", ".join(sorted({r["status"] for r in rows if r["config"] == name}))}
        for key in ("energy_mae_meV_per_atom", "force_mae_meV_per_A", "train_energy_mae_meV_per_atom",
                    "train_force_mae_meV_per_A", "train_seconds", "parameters"):
            values = np.array([r.get(key, np.nan) for r in ok], dtype=float)
            entry[key] = float(values.mean()) if len(values) else float("nan")
            entry[key + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out


def write_report(spec, rows, val, outdir: Path, plots: bool = True, unfinished=()) -> None:
    """report.md (and with ``plots`` its figures) from the rows; ``unfinished``: the runs not finished (each
    with where it stands), named in the report as missing from it."""
    import matplotlib

    from .evaluation import load_checkpoint_model, parity_plot, predict

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(rows)
    (outdir / "study.json").write_text(json.dumps({"spec": spec, "runs": rows, "summary": table}, indent=1, default=str))
    def baseline(name: str):  # the MLP run of the same model family (allegro_*, nequip_*), else the first MLP
        mlps = [t for t in table if "mlp" in t["config"] and t["ok"]]
        same = [t for t in mlps if t["config"].split("_")[0] == name.split("_")[0]]
        return (same or mlps or [None])[0]

    lines = [f"# Study {spec['name']}", ""]
    if unfinished:
        lines += [f"Interim report: {len(rows)} of {len(rows) + len(unfinished)} runs finished; the others are listed "
                  "at the end.", ""]
    lines += [f"Data: `{Path(spec['data']).name}`; {len(val)} held-out validation frames (split seed "
              f"{spec['split_seed']}); "
              f"at most {spec['max_epochs']} epochs; seeds {spec['seeds']}. Errors from evaluating each saved best model "
              "on the held-out set; mean ± standard deviation over seeds (the value alone for one run).", "",
              "| configuration | energy MAE (meV/atom) val | force MAE (meV/Å) val | force MAE / its MLP | "
              "energy MAE train | force MAE train | train time (s) | parameters | runs evaluated | status |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        ratio, mlp = "-", baseline(t["config"])
        if mlp and t["ok"]:
            ratio = f"{t['force_mae_meV_per_A'] / mlp['force_mae_meV_per_A']:.3f}"
            spread = force_ratio_spread(rows, t["config"], mlp["config"])
            ratio += f" ± {spread:.3f}" if spread else ""
        lines.append(f"| {t['config']} | {_pm(t, 'energy_mae_meV_per_atom', 3)} | "
                     f"{_pm(t, 'force_mae_meV_per_A', 2)} | {ratio} | "
                     f"{t['train_energy_mae_meV_per_atom']:.3f} | {t['train_force_mae_meV_per_A']:.2f} | "
                     f"{t['train_seconds']:.0f} | {t['parameters']:.0f} | {t['ok']}/{t['runs']} | {t['status']} |")
    lines += ["", f"Training-set errors: the first {spec['train_eval_frames']} frames of the training pool. "
              "Force MAE / its MLP: ratio of the seed means to the MLP of the same model family (allegro_*, nequip_*); "
              "± is the standard deviation of the per-seed ratios (same seed, same split). "
              f"Status 'unstable': the validation force MAE rose above {BLOW_UP:g}x its untrained value during "
              "training; such rows are listed but not plotted."]
    lines += _paired_ratio_lines(rows, table, baseline) + _plateau_lines(spec, rows, table) + _cost_lines(rows, table)
    lines += _paper_lines(spec, rows, table, baseline, sizes={len(a) for a in val})
    lines += _verdict_lines(spec, rows, table, baseline)
    if unfinished:
        lines += ["", f"Not in this report: {len(unfinished)} runs not finished when it was written: "
                      + ", ".join(unfinished) + "."]
    notes = [r for r in rows if r["status"] != "ok"]
    if notes:
        lines += ["", "Runs not ok:", ""] + [f"- {r['config']} seed {r['seed']}: {r['status']}: {r.get('error', '')}" for r in notes]
    (outdir / "report.md").write_text("\n".join(lines) + "\n")

    if plots:
        plot_learning_curves(rows, outdir)
        plot_accuracy_vs_cost(rows, table, outdir)
    ok = [t for t in table if t["ok"] and t["status"] == "ok"]
    if ok and plots:
        fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(ok) + 3), 4))
        for ax, key, label in ((axes[0], "energy_mae_meV_per_atom", "energy MAE (meV/atom)"),
                               (axes[1], "force_mae_meV_per_A", "force MAE (meV/Å)")):
            ax.bar(range(len(ok)), [t[key] for t in ok], yerr=[t[key + "_std"] for t in ok], capsize=4,
                   color=["0.6" if "mlp" in t["config"] else "tab:blue" for t in ok])
            ax.set_xticks(range(len(ok)), [t["config"] for t in ok], rotation=30, ha="right", fontsize=8)
            ax.set_ylabel(label)
        fig.suptitle(f"study {spec['name']}: held-out validation errors")
        _save(fig, outdir / "errors.png", dpi=120)
        best = min((r for r in rows if r["status"] == "ok"), key=lambda r: r["force_mae_meV_per_A"])
        model = load_checkpoint_model(best["checkpoint"])
        parity_plot(val, predict(model, val), outdir / "parity_best.png", title=f"best: {best['config']} seed {best['seed']}")


def _pm(t: Dict[str, Any], key: str, digits: int, scale: float = 1.0) -> str:
    """A summary entry's mean ± standard deviation over its evaluated runs (the mean alone for one run)."""
    mean = f"{scale * t[key]:.{digits}f}"
    return mean + f" ± {scale * t[key + '_std']:.{digits}f}" if t["ok"] > 1 else mean


def _paper_lines(spec, rows, table, baseline, sizes=frozenset()) -> List[str]:
    """The table in the paper's layout (eV/atom, eV/Å; one row per configuration, by its label), beside
    the paper's values where the study file gives them (configs entries' ``paper``), and each row's force
    and energy MAE ratios to its MLP next to the paper's ratios. ``sizes``: the held-out frames' atom
    counts; when they are all N, the energy MAE per N-atom frame is given too."""
    entries = {e["name"]: e for e in map(_entry, spec["configs"])}
    if not any(e["paper"] for e in entries.values()):
        return []
    cost = {r["config"]: r["md_cost"]["median_ms_per_step"] for r in rows if r.get("md_cost")}
    n = next(iter(sizes)) if len(sizes) == 1 else None
    lines = ["", f"In the paper's layout ({spec['paper_table'] or 'the paper'}): mean ± standard deviation over "
                 "seeds on the held-out frames (the value alone for one run); the paper's values beside ours."
             + (f" Every held-out frame has {n} atoms: the energy MAE per frame is {n}x the one per atom. The "
                "paper labels its energy column eV/atom; compare its values with both of ours." if n else ""), "",
             "| model | energy MAE (eV/atom) | " + (f"energy MAE (eV per {n}-atom frame) | " if n else "")
             + "force MAE (eV/Å) | parameters | LAMMPS ms/step | "
             "paper: energy MAE (eV/atom) | paper: force MAE (eV/Å) | force MAE / MLP | paper: force MAE / MLP | "
             "energy MAE / MLP | paper: energy MAE / MLP |",
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if n else "")]
    for t in (t for t in table if t["ok"]):
        entry, mlp = entries.get(t["config"], {}), baseline(t["config"])
        paper, mlp_paper = entry.get("paper") or {}, (entries.get(mlp["config"], {}).get("paper") or {}) if mlp else {}
        ratios = []
        for ours, key in (("force_mae_meV_per_A", "force_mae"), ("energy_mae_meV_per_atom", "energy_mae")):
            ratios += [f"{t[ours] / mlp[ours]:.3f}" if mlp else "-",
                       f"{paper[key] / mlp_paper[key]:.3f}" if key in paper and key in mlp_paper else "-"]
        per_frame = f"{_pm(t, 'energy_mae_meV_per_atom', 3, n / 1e3)} | " if n else ""
        lines.append(f"| {entry.get('label', t['config'])} | {_pm(t, 'energy_mae_meV_per_atom', 4, 1e-3)} | "
                     f"{per_frame}{_pm(t, 'force_mae_meV_per_A', 4, 1e-3)} | {t['parameters']:,.0f} | "
                     f"{format(cost[t['config']], '.1f') if t['config'] in cost else '-'} | "
                     f"{paper.get('energy_mae', '-')} | {paper.get('force_mae', '-')} | {' | '.join(ratios)} |")
    return lines


def _paired_ratio_lines(rows, table, baseline) -> List[str]:
    """Per-seed force MAE ratios of every configuration to its MLP (same seed, same split)."""
    lines = []
    for t in table:
        mlp = baseline(t["config"])
        if not mlp or mlp["config"] == t["config"]:
            continue
        pairs = paired_ratios(rows, t["config"], mlp["config"])
        if pairs:
            lines.append(f"- {t['config']} / {mlp['config']}: " + ", ".join(f"seed {s} {q:.3f}" for s, q in pairs))
    return ["", "Force MAE ratio per seed (held-out frames):", ""] + lines if lines else []


def _verdict_lines(spec, rows, table, baseline) -> List[str]:
    """What agrees with the paper and what does not, decided from the per-seed ratios: every configuration
    against its MLP (beside the paper's ratio where the study file gives both rows' values) and every
    configuration that is not an MLP against each control (configs entries with ``control: true``)."""
    entries = {e["name"]: e for e in map(_entry, spec["configs"])}
    label = {name: e["label"] for name, e in entries.items()}
    paper = {name: e["paper"] or {} for name, e in entries.items()}
    controls = [t["config"] for t in table if entries.get(t["config"], {}).get("control") and t["ok"]]
    pairs = []
    for t in (t for t in table if t["ok"]):
        mlp = baseline(t["config"])
        if mlp and mlp["config"] != t["config"]:
            pairs.append((t["config"], mlp["config"]))
        pairs += [(t["config"], c) for c in controls if "mlp" not in t["config"]]
    quantities = [("force_mae_meV_per_A", "force_mae", "Held-out force MAE"),
                  ("energy_mae_meV_per_atom", "energy_mae", "Held-out energy MAE")]
    target = _common_target(rows)
    if target is not None:  # training speed: the epochs each run took to first reach what every run reached
        rows = [dict(r, epochs_to_target=(time_to_reach(r.get("curve") or [], target) or (None,))[0]) for r in rows]
        quantities.append(("epochs_to_target", None, f"Epochs to reach a validation force MAE of {1e3 * target:.1f} meV/Å"))
    lines = []
    for config, ref in pairs:
        for key, paper_key, quantity in quantities:
            seeds = paired_ratios(rows, config, ref, key)
            if not seeds:
                continue
            mean, low, high = ratio_interval([q for _, q in seeds])
            text = (f"- {quantity}, {label.get(config, config)} / {label.get(ref, ref)}: {mean:.3f} "
                    f"(per seed {', '.join(f'{q:.3f}' for _, q in seeds)}")
            if low is None:
                lines.append(text + "). One seed: no interval, nothing decided.")
                continue
            text += f"; 95% interval of the mean {low:.3f} to {high:.3f}). "
            text += ("Lower: resolved." if high < 1 else "Higher: resolved." if low > 1 else
                     f"No difference resolved with {len(seeds)} seeds.")
            if paper_key in paper.get(config, {}) and paper_key in paper.get(ref, {}):
                p = paper[config][paper_key] / paper[ref][paper_key]
                text += (f" The paper's ratio, {p:.3f}, lies inside the interval: agrees with the paper." if low <= p <= high
                         else f" The paper's ratio, {p:.3f}, lies outside the interval: disagrees with the paper.")
            lines.append(text)
    if not lines:
        return []
    return ["", "## What agrees with the paper and what does not", "",
            "Decided from the per-seed ratios (same seed, same split, held-out frames): a difference counts as "
            "resolved when the 95% interval of the mean ratio (Student's t over the seeds) excludes 1, and the "
            "paper's ratio agrees when it lies inside that interval. Training speed: the epochs each run took to "
            "first reach a validation force MAE (nequip-train's split) that every run reached.", ""] + lines


def _common_target(rows) -> Optional[float]:
    """The validation force MAE (eV/Å) every evaluated run with a learning curve reached: the worst of their best."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("curve")]
    return max(min(p.get("forces_mae", math.inf) for p in r["curve"]) for r in ok) if ok else None


def time_to_reach(curve: List[Dict[str, float]], target: float):
    """(epoch, training wall seconds) at which the validation force MAE first fell to ``target`` (eV/Å), or None."""
    for p in curve:
        if p.get("forces_mae", math.inf) <= target:
            return p["epoch"], p["elapsed_seconds"]
    return None


def _plateau_lines(spec, rows, table) -> List[str]:
    """Runs stopped by their plateau, and the time each configuration took to first reach a validation
    force MAE that every run reached (the worst of the runs' best values)."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("curve")]
    if not ok:
        return []
    lines = ["", "| configuration | stopped on its plateau | epochs | validation force MAE reached (meV/Å) | "
                 "epochs to reach it | training hours to reach it | median s per training epoch |",
             "|---|---|---|---|---|---|---|"]
    target = _common_target(rows)
    for t in table:
        runs = [r for r in ok if r["config"] == t["config"]]
        if not runs:
            continue
        reached = [time_to_reach(r["curve"], target) for r in runs]
        lines.append(f"| {t['config']} | {sum(bool(r.get('stopped_early')) for r in runs)}/{len(runs)} | "
                     f"{' '.join(str(r['epochs']) for r in runs)} | {1e3 * target:.1f} | "
                     f"{np.mean([e for e, _ in reached]):.0f} | {np.mean([sec for _, sec in reached]) / 3600:.2f} | "
                     f"{_median_epoch_seconds(runs):.0f} |")
    lines += ["", f"A run that ends before max_epochs ({spec['max_epochs']}) stopped on its validation plateau (the "
              "config's stopping rule); one that reached max_epochs did not meet it. Validation here: "
              "nequip-train's split of the training pool, as in the learning curves (curves_*.png). Hours are "
              "wall time and carry the machine's load while the runs trained; the median time of a training "
              "epoch (batches only, over all epochs of all seeds) is the steadier measure of training cost."]
    return lines


def _median_epoch_seconds(runs) -> float:
    seconds = [p.get("train_seconds", math.nan) for r in runs for p in r["curve"]]
    return float(np.nanmedian(seconds)) if np.isfinite(seconds).any() else math.nan


def _cost_lines(rows, table) -> List[str]:
    cost = {r["config"]: r["md_cost"] for r in rows if r.get("md_cost")}
    if not cost:
        return []
    ref = next(iter(cost.values()))
    lines = ["", f"MD cost: LAMMPS ms/step of each configuration's deployed best model (lowest seed), the models "
                 f"taking turns in one LAMMPS process on a {ref['atoms']}-atom held-out frame, NVT, 1 MPI rank, "
                 f"OMP_NUM_THREADS {ref.get('omp_num_threads')}:", "",
             f"| configuration | ms/step (median over rounds) | / {ref['reference']} (median per-round ratio) | "
             "force MAE (meV/Å) |", "|---|---|---|---|"]
    for t in table:
        if t["config"] in cost:
            c = cost[t["config"]]
            lines.append(f"| {t['config']} | {c['median_ms_per_step']:.2f} | {c['ratio_to_reference']:.3f} | "
                         f"{_pm(t, 'force_mae_meV_per_A', 1)} |")
    return lines


def plot_accuracy_vs_cost(rows, table, outdir: Path):
    """accuracy_vs_cost.png: held-out force MAE (mean ± std over seeds) against LAMMPS ms/step."""
    cost = {r["config"]: r["md_cost"] for r in rows if r.get("md_cost")}
    points = [t for t in table if t["config"] in cost and t["ok"]]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for k, t in enumerate(points):  # named in the legend (labels beside the points run off the axes)
        ax.errorbar(cost[t["config"]]["median_ms_per_step"], t["force_mae_meV_per_A"], yerr=t["force_mae_meV_per_A_std"],
                    fmt="s" if "mlp" in t["config"] else "o", capsize=4, color=f"C{k % 10}", label=t["config"])
    ax.legend(fontsize=8, title="square: MLP output block", title_fontsize=8)
    ax.margins(0.15)
    ax.set_xlabel(f"LAMMPS ms/step ({cost[points[0]['config']]['atoms']} atoms, 1 rank)")
    ax.set_ylabel("held-out force MAE (meV/Å)")
    ax.grid(alpha=0.3)
    ax.set_title("accuracy against MD cost (lower left is better)")
    return _save(fig, outdir / "accuracy_vs_cost.png", dpi=120)


def plot_learning_curves(rows: List[Dict[str, Any]], outdir: Path) -> List[Path]:
    """curves_<config>.png: validation force and energy MAE of every seed against epoch and against
    training wall time (log scale), the learning rate of each epoch (dotted, where recorded) and each run's
    lowest validation force MAE (circle); a run that stopped on its plateau before max_epochs is marked.
    With more than one configuration also curves_all.png (every configuration's force MAE together)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written, runs_of = [], {}
    for name in dict.fromkeys(r["config"] for r in rows):
        runs = [r for r in rows if r["config"] == name and r.get("curve")  # a diverged run's curve may be all NaN
                and any(math.isfinite(p.get("forces_mae", math.nan)) for p in r["curve"])]
        if not runs:
            continue
        if all(r["status"] == "ok" for r in runs):  # an unstable run's curve would squash the others'
            runs_of[name] = runs
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharey="row")
        lr_axis = axes[1, 0].twinx() if any(p.get("lr", 0) > 0 for r in runs for p in r["curve"]) else None
        for r in runs:
            c = r["curve"]
            epoch = [p["epoch"] for p in c]
            hours = [p["elapsed_seconds"] / 3600 for p in c]
            label = f"seed {r['seed']}" + (" (plateau stop)" if r.get("stopped_early") else "")
            for row, key, scale in ((0, "forces_mae", 1e3), (1, "per_atom_energy_mae", 1e3)):
                values = [scale * p.get(key, np.nan) for p in c]
                line, = axes[row, 0].plot(epoch, values, label=label)
                axes[row, 1].plot(hours, values, label=label)
                best = int(np.nanargmin(values)) if np.isfinite(values).any() else None
                if row == 0 and best is not None:  # the epoch best.ckpt comes from (lowest validation force MAE)
                    axes[0, 0].plot(epoch[best], values[best], "o", mfc="none", color=line.get_color())
            if lr_axis is not None:
                lr_axis.plot(epoch, [p.get("lr", np.nan) for p in c], ":", color=line.get_color())
        if lr_axis is not None:
            lr_axis.set_yscale("log")
            lr_axis.set_ylabel("learning rate (dotted)")
        for ax in axes.flat:
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("validation force MAE (meV/Å)")
        axes[1, 0].set_ylabel("validation energy MAE (meV/atom)")
        axes[1, 0].set_xlabel("epoch")
        axes[1, 1].set_xlabel("training wall time (h)")
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{name}: learning curves (nequip-train's validation split)")
        written.append(_save(fig, outdir / f"curves_{name}.png", dpi=110))
    if len(runs_of) > 1:
        written.append(_plot_curves_together(runs_of, outdir))
    return written


def _plot_curves_together(runs_of: Dict[str, List[Dict[str, Any]]], outdir: Path) -> Path:
    """curves_all.png: every run's validation force MAE against epoch and against training wall time, one
    colour per configuration, so that which trains faster and which ends lower is seen at a glance."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for k, (name, runs) in enumerate(runs_of.items()):
        for j, r in enumerate(runs):
            values = [1e3 * p.get("forces_mae", np.nan) for p in r["curve"]]
            label = name if j == 0 else None
            axes[0].plot([p["epoch"] for p in r["curve"]], values, color=f"C{k % 10}", lw=1, label=label)
            axes[1].plot([p["elapsed_seconds"] / 3600 for p in r["curve"]], values, color=f"C{k % 10}", lw=1)
    best = [1e3 * min(p.get("forces_mae", np.inf) for p in r["curve"]) for runs in runs_of.values() for r in runs]
    axes[0].set_ylim(0.97 * min(best), 1.5 * max(best))  # the approach to the plateau; the first epochs run off the top
    for ax, xlabel in zip(axes, ("epoch", "training wall time (h)")):
        ax.grid(alpha=0.3)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("validation force MAE (meV/Å)")
    axes[0].legend(fontsize=8, title="one line per seed", title_fontsize=8)
    fig.suptitle("learning curves of every configuration (nequip-train's validation split)")
    return _save(fig, outdir / "curves_all.png", dpi=110)


def _save(fig, path: Path, dpi: int) -> Path:
    """Lay out, write and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
