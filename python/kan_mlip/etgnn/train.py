"""Training loop for ETGNN Born-charge models: seeded split, AdamW + plateau schedule, checkpoints, resume.

Follows the official ETGNN training (AdamW, ReduceLROnPlateau with factor 0.5 / patience 5, MSE loss over the
nine components, MAE as the metric) in a small loop instead of Lightning. Every epoch prints one progress line
(also appended to ``train.log``) and writes ``last.ckpt``; the model with the lowest validation MAE so far is
``best.ckpt``. Rerunning with the same output folder resumes from ``last.ckpt``.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data import (DEFAULT_KEY, Graph, batches, build_graph, collate, elements_of, model_inputs,
                   read_born_dataset, split_indices)
from .model import ETGNNBorn, count_parameters

CHECKPOINT_FORMAT = "kan_mlip.etgnn/1"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LOSSES = ("mse", "mae")


@dataclass
class TrainOptions:
    """Everything a run depends on (stored in its checkpoints)."""

    data: str
    out_dir: str
    key: str = DEFAULT_KEY
    head: str = "mlp"
    kan_placement: str = "heads"
    kan_options: Dict[str, Any] = field(default_factory=dict)
    model: Dict[str, Any] = field(default_factory=dict)  # further ETGNNBorn arguments (widths, blocks, ...)
    cutoff: float = 4.0
    sum_rule: bool = False
    seed: int = 0
    split_seed: int = 0
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    lr_decay: float = 0.5
    lr_patience: int = 5
    loss: str = "mse"
    dtype: str = "float32"
    max_seconds: Optional[float] = None  # stop after the epoch that passes this much training time
    max_structures: Optional[int] = None  # use only the first N structures (quick checks)
    threads: Optional[int] = None

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def load_graphs(path: str, cutoff: float, key: str = DEFAULT_KEY, max_structures: Optional[int] = None,
                fmt: Optional[str] = None) -> List[Graph]:
    frames = read_born_dataset(path, key, format=fmt)
    if max_structures:
        frames = frames[:max_structures]
    return [build_graph(a, cutoff, key, where=f"{path}, frame {i}: ") for i, a in enumerate(frames)]


def build_model(opts: TrainOptions, elements: Sequence[int]) -> ETGNNBorn:
    """The run's model, seeded, in the run's dtype."""
    torch.manual_seed(opts.seed)
    return ETGNNBorn(elements, cutoff=opts.cutoff, head=opts.head, kan_options=opts.kan_options,
                     kan_placement=opts.kan_placement, sum_rule=opts.sum_rule, **opts.model).to(DTYPES[opts.dtype])


@torch.no_grad()
def evaluate(model: torch.nn.Module, graphs: Sequence[Graph], indices: Sequence[int], batch_size: int = 32,
             dtype: torch.dtype = torch.float32, return_predictions: bool = False) -> Dict[str, Any]:
    """MAE and MSE over all tensor components (e), the sum-rule violation, and optionally the predictions."""
    model.eval()
    abs_sum, sq_sum, count, asr = 0.0, 0.0, 0, 0.0
    preds, targets = [], []
    for chunk in batches(indices, batch_size):
        b = collate([graphs[i] for i in chunk], dtype=dtype)
        z = model(*model_inputs(b))
        err = z - b["born_charges"]
        abs_sum += float(err.abs().sum())
        sq_sum += float((err * err).sum())
        count += err.numel()
        total = torch.zeros(len(chunk), 3, 3, dtype=z.dtype).index_add_(0, b["batch"], z)
        asr = max(asr, float(total.abs().max())) if len(chunk) else asr
        if return_predictions:
            preds.append(z.reshape(-1, 9).numpy())
            targets.append(b["born_charges"].reshape(-1, 9).numpy())
    out: Dict[str, Any] = {"mae": abs_sum / max(count, 1), "mse": sq_sum / max(count, 1),
                           "structures": len(indices), "components": count, "max_abs_sum_rule": asr}
    if return_predictions:
        out["predictions"] = np.concatenate(preds) if preds else np.zeros((0, 9))
        out["targets"] = np.concatenate(targets) if targets else np.zeros((0, 9))
    return out


def save_checkpoint(path: Path, model: ETGNNBorn, opts: TrainOptions, extra: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": model.config, "state_dict": model.state_dict(),
                "dtype": opts.dtype, "options": asdict(opts), **extra}, tmp)
    tmp.replace(path)  # never a half-written checkpoint


def load_checkpoint(path, map_location: str = "cpu") -> Tuple[ETGNNBorn, Dict[str, Any]]:
    """Model (in the checkpoint's dtype, eval mode) and the checkpoint dict."""
    ckpt = torch.load(str(path), map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a kan_mlip ETGNN checkpoint (expected format {CHECKPOINT_FORMAT})")
    model = ETGNNBorn(**ckpt["model_config"]).to(DTYPES[ckpt["dtype"]])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def _loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    err = pred - target
    return (err * err).mean() if kind == "mse" else err.abs().mean()


def _cpu_per_epoch(history: List[Dict[str, Any]]) -> Optional[float]:
    """Mean CPU seconds of this process per epoch (less sensitive than wall time to other work on the machine),
    over the epochs that recorded it."""
    values = [h["cpu_seconds"] for h in history if "cpu_seconds" in h]
    return sum(values) / len(values) if values else None


def train(opts: TrainOptions, graphs: Optional[List[Graph]] = None, log: Callable[[str], None] = print,
          resume: bool = True) -> Dict[str, Any]:
    """Train one model; returns the summary (also written to ``summary.json``).

    ``graphs``: the data set's graphs already built with ``opts.cutoff`` (the study shares them between runs)."""
    opts.check()
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    dtype = DTYPES[opts.dtype]
    logfile = open(out / "train.log", "a")

    def say(msg: str) -> None:
        log(msg)
        logfile.write(msg + "\n")
        logfile.flush()

    if graphs is None:
        t0 = time.perf_counter()
        graphs = load_graphs(opts.data, opts.cutoff, opts.key, opts.max_structures)
        say(f"read {len(graphs)} structures, built graphs (cutoff {opts.cutoff} A) in {time.perf_counter() - t0:.1f} s")
    elif opts.max_structures:
        graphs = graphs[:opts.max_structures]
    split = split_indices(len(graphs), opts.split_seed)
    model = build_model(opts, elements_of(graphs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=opts.lr_decay, patience=opts.lr_patience,
                                                           threshold=1e-6, min_lr=1e-6)
    state = {"epoch": 0, "best_val_mae": math.inf, "best_epoch": 0, "train_seconds": 0.0, "cpu_seconds": 0.0,
             "history": []}
    last = out / "last.ckpt"
    if resume and last.exists():
        ckpt = torch.load(str(last), map_location="cpu", weights_only=False)
        if ckpt.get("options", {}).get("head") != opts.head or ckpt.get("options", {}).get("seed") != opts.seed:
            raise ValueError(f"{last} belongs to another run (head/seed differ); use another output folder")
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        say(f"resumed from {last} after epoch {state['epoch']}")
    n_params = count_parameters(model)
    say(f"ETGNN head={opts.head} placement={opts.kan_placement} params={n_params} dtype={opts.dtype} "
        f"split train/val/test={len(split['train'])}/{len(split['validation'])}/{len(split['test'])} seed={opts.seed}")

    stopped = "epochs"
    while state["epoch"] < opts.epochs:
        if opts.max_seconds is not None and state["train_seconds"] >= opts.max_seconds:
            stopped = "time budget"
            break
        epoch = state["epoch"] + 1
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        loss_sum, n_batches = 0.0, 0
        rng = np.random.default_rng([opts.seed, epoch])
        for chunk in batches(split["train"], opts.batch_size, rng):
            b = collate([graphs[i] for i in chunk], dtype=dtype)
            loss = _loss(model(*model_inputs(b)), b["born_charges"], opts.loss)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss in epoch {epoch}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            n_batches += 1
        val = evaluate(model, graphs, split["validation"], dtype=dtype)
        scheduler.step(val["mae"])
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        state["train_seconds"] += seconds
        state["cpu_seconds"] = state.get("cpu_seconds", 0.0) + cpu_seconds
        state["epoch"] = epoch
        improved = val["mae"] < state["best_val_mae"]
        record = {"epoch": epoch, "train_loss": loss_sum / max(n_batches, 1), "val_mae": val["mae"],
                  "val_mse": val["mse"], "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
                  "cpu_seconds": cpu_seconds}
        state["history"].append(record)
        if improved:
            state["best_val_mae"], state["best_epoch"] = val["mae"], epoch
            save_checkpoint(out / "best.ckpt", model, opts, {"state": dict(state), "split": split})
        save_checkpoint(last, model, opts, {"state": state, "split": split, "optimizer": optimizer.state_dict(),
                                            "scheduler": scheduler.state_dict()})
        say(f"epoch {epoch:4d}/{opts.epochs}  train {opts.loss} {record['train_loss']:.5f}  val MAE "
            f"{val['mae']:.5f} e{' *' if improved else '  '}  lr {record['lr']:.2e}  {seconds:6.1f} s "
            f"({cpu_seconds:.1f} s CPU)")
    summary = {"head": opts.head, "seed": opts.seed, "parameters": n_params, "epochs_run": state["epoch"],
               "best_epoch": state["best_epoch"], "best_val_mae": state["best_val_mae"],
               "train_seconds": state["train_seconds"],
               "cpu_seconds_per_epoch": _cpu_per_epoch(state["history"]), "stopped_by": stopped,
               "history": state["history"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    say(f"done: best val MAE {state['best_val_mae']:.5f} e at epoch {state['best_epoch']}, "
        f"{state['train_seconds']:.0f} s of training")
    logfile.close()
    return summary
