"""A study's figures: learning curves per configuration and all together, accuracy against MD cost,
held-out errors and the best model's parity plot."""

import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


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
        written.append(save_figure(fig, outdir / f"curves_{name}.png", dpi=110))
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
    return save_figure(fig, outdir / "curves_all.png", dpi=110)


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
    return save_figure(fig, outdir / "accuracy_vs_cost.png", dpi=120)


def save_figure(fig, path: Path, dpi: int) -> Path:
    """Lay out, write and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_errors(spec, rows, table, val, outdir: Path) -> None:
    """errors.png: every configuration's held-out energy and force MAE (mean ± std over seeds; MLPs grey), and
    parity_best.png: the best run's predictions on the held-out frames against the reference."""
    ok = [t for t in table if t["ok"] and t["status"] == "ok"]
    if not ok:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluation import load_checkpoint_model, parity_plot, predict

    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(ok) + 3), 4))
    for ax, key, label in ((axes[0], "energy_mae_meV_per_atom", "energy MAE (meV/atom)"),
                           (axes[1], "force_mae_meV_per_A", "force MAE (meV/Å)")):
        ax.bar(range(len(ok)), [t[key] for t in ok], yerr=[t[key + "_std"] for t in ok], capsize=4,
               color=["0.6" if "mlp" in t["config"] else "tab:blue" for t in ok])
        ax.set_xticks(range(len(ok)), [t["config"] for t in ok], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
    fig.suptitle(f"study {spec['name']}: held-out validation errors")
    save_figure(fig, outdir / "errors.png", dpi=120)
    best = min((r for r in rows if r["status"] == "ok"), key=lambda r: r["force_mae_meV_per_A"])
    model = load_checkpoint_model(best["checkpoint"])
    parity_plot(val, predict(model, val), outdir / "parity_best.png", title=f"best: {best['config']} seed {best['seed']}")
