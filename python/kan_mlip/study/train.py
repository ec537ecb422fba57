"""Training a study: every run (or one, ``--only``; or N at a time in processes, ``--jobs``), its evaluation
on the held-out frames, the MD cost, and the checks that need no training (``--report``, ``--reevaluate``)."""

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from .folder import blow_up, claim, finished_runs, reread_run, resumable, study_status
from .report import write_report
from .spec import (EVALUATED, config_entry, energy_references, partition, run_folder, shift_override, split,
                   study_runs)


def run_study(spec: Dict[str, Any], outdir: Path, log=print, config_dir=None, only=None) -> List[Dict[str, Any]]:
    """Config names are looked up in ``config_dir`` (default: the shipped configs). ``only``: (config name,
    seed) of the one run to train and evaluate; the report is then not written."""
    from ..resources import find_config

    runs = study_runs(spec)
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
        overrides.append(shift_override(refs))
    rows, unfinished = [], []
    for k, (entry, seed) in enumerate(runs, 1):
        name, tag = entry["name"], f"[{k}/{len(runs)}] {entry['name']} seed {seed}"
        run_dir = run_folder(outdir, name, seed)
        with claim(run_dir) as holder:
            if holder is not None:
                log(f"{tag}: being trained by another process ({holder}), left to it")
                unfinished.append(f"{name} seed {seed} (being trained by another process)")
                continue
            row = finished_runs(outdir).get((name, seed))  # read under the claim: another process may just have finished it
            if row is not None:
                row = reread_run(row, run_dir)
                log(f"{tag}: already done, reused ({row['status']})")
            else:
                cfg_dir, cfg_name = found[entry["config"]]
                row = _train_and_evaluate(spec, entry, seed, run_dir, pool, overrides, cfg_dir, cfg_name, val, train_eval,
                                          tag, log)
                (run_dir / "result.json").write_text(json.dumps(row, indent=1, default=str))
        rows.append(row)
        if only is None:  # survives an interrupted study, naming the runs this call has not reached
            waiting = [f"{e['name']} seed {s} (not reached yet)" for e, s in runs[k:]]
            write_report(spec, rows, val, outdir, plots=False, unfinished=unfinished + waiting)
    if only is None:
        if spec["md_cost"]:
            measure_md_cost(spec, rows, val, outdir, log=log)
        write_report(spec, rows, val, outdir, unfinished=unfinished)
    return rows


def report_so_far(spec: Dict[str, Any], outdir: Path, log=print) -> List[Dict[str, Any]]:
    """``--report``: the report (report.md, its figures, study.json) from the runs finished so far, naming
    every other run with where it stands. Nothing is trained, and no MD cost is measured: the collecting
    call measures it once every run has finished."""
    outdir = Path(outdir).resolve()
    val, _ = partition(spec)
    finished = finished_runs(outdir)
    where = {(r["config"], r["seed"]): r for r in study_status(spec, outdir, done=finished)}
    rows, unfinished = [], []
    for entry, seed in study_runs(spec):
        key = (entry["name"], seed)
        if key in finished:
            rows.append(reread_run(finished[key], run_folder(outdir, *key)))
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

    done = finished_runs(Path(outdir).resolve())
    todo = [(e["name"], s) for s in spec["seeds"] for e in map(config_entry, spec["configs"]) if (e["name"], s) not in done]
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
    from ..training import learning_curve, read_val_metrics, relocate_checkpoint, run_nequip_train

    resume = resumable(run_dir, int(spec["max_epochs"]))
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
        row.update(blow_up(metrics))
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
    from ..evaluation import errors, load_checkpoint_model, predict

    model = load_checkpoint_model(checkpoint)
    pred = predict(model, val)
    if not all(np.isfinite(e) for e in pred["energy"]):
        raise FloatingPointError("the saved model predicts NaN/inf")
    return {"parameters": sum(p.numel() for p in model.parameters()), **errors(val, pred),
            **{f"train_{k}": v for k, v in errors(train_eval, predict(model, train_eval)).items()}}


def reevaluate(spec: Dict[str, Any], outdir: Path, log=print, rtol: float = 1e-4) -> bool:
    """Recompute every finished run's numbers from its best.ckpt on the study's held-out (and training-set)
    frames and set them beside the numbers its row records (result.json, study.json); trains and writes
    nothing. True when every recomputed number agrees with the recorded one to
    ``rtol`` (relative; the report prints 4-5 significant digits)."""
    outdir = Path(outdir).resolve()
    val, pool_frames = partition(spec)
    train_eval = pool_frames[: int(spec["train_eval_frames"])]
    finished, agree, checked = finished_runs(outdir), True, 0
    for entry, seed in study_runs(spec):
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


def measure_md_cost(spec, rows, val, outdir: Path, log=print) -> Dict[str, Dict[str, Any]]:
    """Deploy each configuration's best model of its lowest-seed ok run into OUTDIR/models/CONFIG.pt and
    time them in turn in LAMMPS on the first held-out frame; the rows of those runs get ``md_cost``."""
    from kan_mlip.compiler import deploy

    from ..bench.lammps import models_in_turn

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
