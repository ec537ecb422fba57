"""Run nequip-train on a config and read its validation metrics back."""

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import lightning

from .errors import TrainingFailed
from .resources import find_config


def run_nequip_train(config_name: str, run_dir: Path, overrides: Sequence[str] = (), config_dir: Optional[Path] = None,
                     quiet: bool = False, on_epoch: Optional[Callable[[int, float], None]] = None,
                     resume: bool = False) -> Path:
    """``nequip-train -cp CONFIG_DIR -cn CONFIG_NAME hydra.run.dir=RUN_DIR OVERRIDES...``; returns RUN_DIR.

    ``config_name`` is a config in ``config_dir`` (default: the shipped configs) or a path to a .yaml
    config; a missing one raises FileNotFoundError naming the known configs, before nequip-train starts.
    ``on_epoch(epoch, seconds)`` is called as each training epoch ends (read from the EpochTimer
    callback's file, which the example configs enable). Raises RuntimeError with the log's tail if
    training fails. ``resume``: the overrides continue an interrupted run in RUN_DIR (``++ckpt_path=...``):
    its log is appended to and only its new epochs are reported.
    """
    config_dir, config_name = find_config(config_name, config_dir)
    run_dir = Path(run_dir).resolve()
    exe = Path(sys.executable).with_name("nequip-train")  # the script of this environment, else its module
    launcher = [str(exe)] if exe.is_file() else [sys.executable, "-m", "nequip.scripts.train"]
    cmd = [*launcher, "-cp", str(config_dir), "-cn", config_name, f"hydra.run.dir={run_dir}", *overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "nequip-train.out"
    reported = 0
    if resume:
        try:
            reported = len(read_epoch_times(run_dir))
        except (OSError, ValueError, KeyError):
            pass
        _keep_earlier_metrics(run_dir)
    with open(log, "a" if resume else "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh if quiet else None, stderr=subprocess.STDOUT if quiet else None, env=os.environ.copy())
        try:
            while on_epoch is not None and proc.poll() is None:
                time.sleep(1.0)
                reported = _new_epochs(run_dir, reported, on_epoch)
            proc.wait()
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): do not leave nequip-train running
                proc.terminate()
                proc.wait()
        if on_epoch is not None:
            _new_epochs(run_dir, reported, on_epoch)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:] if quiet else ""
        raise TrainingFailed(f"nequip-train failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return run_dir


def _new_epochs(run_dir: Path, reported: int, on_epoch: Callable[[int, float], None]) -> int:
    try:
        times = read_epoch_times(run_dir)
    except (OSError, ValueError, KeyError):  # not written yet, or caught mid-write
        return reported
    for epoch in range(reported, len(times)):
        on_epoch(epoch + 1, times[epoch])
    return max(reported, len(times))


def read_val_metrics(run_dir: Path) -> List[Dict[str, float]]:
    """Validation rows of the CSVLogger's metrics.csv, in order: [{'step':..., 'forces_mae':...}, ...];
    for a resumed run, the rows of its earlier pieces (metrics.0.csv, metrics.1.csv, ...) first."""
    folder = Path(run_dir) / "csv" / "version_0"
    pieces = sorted(folder.glob("metrics.*.csv"), key=lambda f: int(f.suffixes[0][1:]))
    rows = []
    for path in [*pieces, folder / "metrics.csv"]:
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row.get("val0_epoch/forces_mae"):
                    rows.append({k.split("/", 1)[-1]: float(v) for k, v in row.items()
                                 if v != "" and (k.startswith("val0_epoch/") or k in ("epoch", "step"))})
    return rows


def relocate_checkpoint(ckpt: Path, run_dir: Path) -> bool:
    """Point the ModelCheckpoint states in ``ckpt`` at ``run_dir`` if the run was moved (a copied or cloned
    study folder). Lightning drops a checkpoint callback's best score when its folder changed, and the
    first epoch after resuming would then replace best.ckpt whether or not it is better. Returns whether
    the file was rewritten (atomically)."""
    import torch

    ckpt, new = Path(ckpt), str(Path(run_dir).resolve())
    state = torch.load(str(ckpt), map_location="cpu", weights_only=False)
    moved = False
    for key, cb in state.get("callbacks", {}).items():
        old = cb.get("dirpath") if key.startswith("ModelCheckpoint") else None
        if not old or old == new:
            continue
        here = lambda p: new + p[len(old):] if isinstance(p, str) and p.startswith(old) else p  # noqa: E731
        for field in ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path"):
            if field in cb:
                cb[field] = here(cb[field])
        if isinstance(cb.get("best_k_models"), dict):
            cb["best_k_models"] = {here(p): v for p, v in cb["best_k_models"].items()}
        moved = True
    if moved:
        tmp = ckpt.with_name(ckpt.name + ".relocating")
        torch.save(state, str(tmp))
        os.replace(tmp, ckpt)
    return moved


def _keep_earlier_metrics(run_dir: Path) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv when a resumed run opens it: keep each
    piece's as metrics.<k>.csv (k = 0, 1, ... in order), which read_val_metrics reads first."""
    for current in Path(run_dir).glob("csv/*/metrics.csv"):
        k = len(list(current.parent.glob("metrics.*.csv")))
        current.rename(current.with_name(f"metrics.{k}.csv"))


class EpochTimer(lightning.Callback):
    """Writes, per epoch, the wall time spent in training batches (validation excluded), the wall time
    since training began at the epoch's end (validation included), the epoch's validation metrics and
    its learning rate (``lr``) to ``path``: the learning curve.

    A run resumed from a checkpoint (``ckpt_path=last.ckpt``) keeps the epochs before it and counts on
    from their elapsed time: the time between interruption and resumption is not counted."""

    def __init__(self, path: str):
        super().__init__()
        self.path = Path(path)
        self.times: List[float] = []
        self.elapsed: List[float] = []
        self.validation: List[Dict[str, float]] = []
        self._epoch = 0.0
        self._t0 = 0.0
        self._start = 0.0
        self._before = 0.0

    def on_train_start(self, trainer, pl_module):
        done = trainer.current_epoch  # > 0 when resumed from a checkpoint
        self.times, self.elapsed, self.validation = [], [], []
        if done and self.path.is_file():
            saved = json.loads(self.path.read_text())
            # an interruption between the checkpoint and this file's update leaves an epoch unrecorded
            pad = lambda values, blank: (values[:done] + [blank] * done)[:done]
            self.times = pad(saved["train_seconds_per_epoch"], math.nan)
            self.elapsed = pad(saved.get("elapsed_seconds", []), math.nan)
            self.validation = pad(saved.get("validation", []), {})
        finite = [t for t in self.elapsed if math.isfinite(t)]
        self._before = finite[-1] if finite else 0.0
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._epoch += time.perf_counter() - self._t0

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(self._epoch)
        self.elapsed.append(self._before + time.perf_counter() - self._start)
        # this epoch's validation has run (Lightning validates before the epoch's end hooks)
        metrics = {key.split("/", 1)[1]: float(value) for key, value in trainer.callback_metrics.items()
                   if key.startswith("val0_epoch/")}
        if trainer.optimizers:  # the learning rate this epoch trained with (a schedule may lower it after)
            metrics["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.validation.append(metrics)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"train_seconds_per_epoch": self.times, "elapsed_seconds": self.elapsed,
                                         "validation": self.validation}))


def read_epoch_times(run_dir: Path) -> List[float]:
    return json.loads((Path(run_dir) / "epoch_times.json").read_text())["train_seconds_per_epoch"]


def learning_curve(run_dir: Path) -> List[Dict[str, float]]:
    """Per finished epoch: {epoch, elapsed_seconds, train_seconds, forces_mae, per_atom_energy_mae, ...}: the
    wall time since training began, the epoch's time in training batches and the validation after it
    (EpochTimer's record, which a resumed run continues)."""
    saved = json.loads((Path(run_dir) / "epoch_times.json").read_text())
    train = saved.get("train_seconds_per_epoch", [])
    return [dict(val, epoch=e + 1, elapsed_seconds=t, train_seconds=train[e] if e < len(train) else math.nan)
            for e, (t, val) in enumerate(zip(saved.get("elapsed_seconds", []), saved.get("validation", [])))]
