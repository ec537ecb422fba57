"""A study's output folder: where each run lives, which process trains it (a claim), which runs have
finished or can resume, and where every run stands (``--status``)."""

import contextlib
import fcntl
import json
import math
import os
import socket
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from .spec import EVALUATED, run_folder, study_runs


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


def finished_runs(outdir: Path) -> Dict[Any, Dict[str, Any]]:
    """Rows of an earlier (interrupted) study in outdir, and of runs trained alone (--only: their
    result.json), whose checkpoint still exists: in outdir's own runs/ folder, wherever the row was written."""
    rows = []
    if (outdir / "study.json").exists():
        rows += json.loads((outdir / "study.json").read_text())["runs"]
    rows += [json.loads(p.read_text()) for p in sorted(outdir.glob("runs/*/result.json"))]
    for r in rows:
        if r.get("checkpoint"):  # recorded as an absolute path: the study folder may have been moved or cloned since
            here = run_folder(outdir, r["config"], r["seed"]) / Path(r["checkpoint"]).name
            r["checkpoint"] = str(here if here.is_file() else r["checkpoint"])
    return {(r["config"], r["seed"]): r for r in rows
            if r["status"] not in EVALUATED or Path(r.get("checkpoint", "")).is_file()}


def reread_run(row: Dict[str, Any], run_dir: Path) -> Dict[str, Any]:
    """A finished run's row with its blow-up flag and learning curve read again from the run's own record,
    as this version reads them."""
    from ..training import learning_curve, read_val_metrics

    if row["status"] == "ok":
        row.update(blow_up(read_val_metrics(run_dir)))
    if row.get("curve") and (run_dir / "epoch_times.json").is_file():
        row["curve"] = learning_curve(run_dir)
    return row


BLOW_UP = 10.0  # validation force MAE above this multiple of the untrained model's: training blew up


def blow_up(metrics: List[Dict[str, float]]) -> Dict[str, Any]:
    """'unstable' when the validation force MAE rose above BLOW_UP x its pre-training value (finite, but
    the run left the basin: its numbers are reported, not plotted as a result)."""
    start, worst = metrics[0]["forces_mae"], max(m["forces_mae"] for m in metrics[1:])
    if worst > BLOW_UP * start:
        return {"status": "unstable", "error": f"validation force MAE rose from {1e3 * start:.1f} to {1e3 * worst:.1f} meV/Å "
                                               f"during training (> {BLOW_UP:g}x)"}
    return {}


def resumable(run_dir: Path, max_epochs: int):
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


def study_status(spec: Dict[str, Any], outdir: Path, done=None) -> List[Dict[str, Any]]:
    """Where every run of a study stands, read from its folder (nothing is trained or loaded but the
    checkpoint's counters): state (not started | training (by another process, now) | unfinished | finished |
    diverged | failed | unstable),
    epochs done, lowest validation force MAE and its epoch, learning rate of the last epoch, the plateau
    count (epochs since the stopping rule's monitor last improved, and its patience) and training hours.
    ``done``: :func:`finished_runs` of the folder, when the caller has read them already."""
    outdir = Path(outdir)
    done = finished_runs(outdir) if done is None else done  # what a collecting call would reuse
    out = []
    for entry, seed in study_runs(spec):
        name = entry["name"]
        run_dir = run_folder(outdir, name, seed)
        row: Dict[str, Any] = {"config": name, "seed": seed, "max_epochs": int(spec["max_epochs"]), "epochs": 0}
        row_done = done.get((name, seed))
        curve = row_done.get("curve") if row_done else None
        if curve is None and (run_dir / "epoch_times.json").is_file():
            from ..training import learning_curve

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
