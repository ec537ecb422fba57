"""report.md from a study's rows: the table, the per-seed ratios, the plateau and training-speed table,
the MD cost, the paper's layout and what agrees with the paper and what does not."""

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .folder import BLOW_UP
from .plots import plot_accuracy_vs_cost, plot_errors, plot_learning_curves
from .spec import EVALUATED, config_entry


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


def paired_ratios(rows, config: str, baseline: str, key: str = "force_mae_meV_per_A") -> List[tuple]:
    """(seed, key(config) / key(baseline)) for every seed both have evaluated (same seed, same split) and
    give the key."""
    done = [r for r in rows if r["status"] in EVALUATED and r.get(key) is not None]
    base = {r["seed"]: r[key] for r in done if r["config"] == baseline}
    return [(r["seed"], r[key] / base[r["seed"]]) for r in done if r["config"] == config and r["seed"] in base]


def matched_ratio(rows, config: str, baseline: str, key: str = "force_mae_meV_per_A") -> Optional[float]:
    """mean key(config) / mean key(baseline), both means over the seeds both have evaluated (an interim
    report or a failed seed leaves rows with different seeds); None when they share none."""
    done = [r for r in rows if r["status"] in EVALUATED and r.get(key) is not None]
    base = {r["seed"]: r[key] for r in done if r["config"] == baseline}
    pairs = [(r[key], base[r["seed"]]) for r in done if r["config"] == config and r["seed"] in base]
    return float(np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs])) if pairs else None


def force_ratio_spread(rows, config: str, baseline: str) -> float:
    """Standard deviation over seeds of force MAE(config) / force MAE(baseline), pairing equal seeds."""
    ratios = [q for _, q in paired_ratios(rows, config, baseline)]
    return float(np.std(ratios, ddof=1)) if len(ratios) > 1 else 0.0


def ratio_interval(ratios: List[float], level: float = 0.95):
    """(mean, low, high): the mean of per-seed ratios and its ``level`` confidence interval, Student's t
    over the seeds (n - 1 degrees of freedom); low and high are None with fewer than two seeds. A ratio of
    positive quantities is positive: the lower end is clipped at 0."""
    mean = float(np.mean(ratios))
    if len(ratios) < 2:
        return mean, None, None
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(ratios) - 1) * np.std(ratios, ddof=1) / math.sqrt(len(ratios)))
    return mean, max(mean - half, 0.0), mean + half


def write_report(spec, rows, val, outdir: Path, plots: bool = True, unfinished=()) -> None:
    """report.md (and with ``plots`` its figures) from the rows; ``unfinished``: the runs not finished (each
    with where it stands), named in the report as missing from it."""
    table = summary(rows)
    (outdir / "study.json").write_text(json.dumps({"spec": spec, "runs": rows, "summary": table}, indent=1, default=str))

    entries = {e["name"]: e for e in map(config_entry, spec["configs"])}  # configs entries by name

    def baseline(name: str):  # the MLP run of the same model family (allegro_*, nequip_*), else the first MLP
        mlps = [t for t in table if "mlp" in t["config"] and t["ok"] and not entries.get(t["config"], {}).get("control")]
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
        if mlp and t["ok"] and matched_ratio(rows, t["config"], mlp["config"]) is not None:
            ratio = f"{matched_ratio(rows, t['config'], mlp['config']):.3f}"
            spread = force_ratio_spread(rows, t["config"], mlp["config"])
            ratio += f" ± {spread:.3f}" if spread else ""
        lines.append(f"| {t['config']} | {_pm(t, 'energy_mae_meV_per_atom', 3)} | "
                     f"{_pm(t, 'force_mae_meV_per_A', 2)} | {ratio} | "
                     f"{t['train_energy_mae_meV_per_atom']:.3f} | {t['train_force_mae_meV_per_A']:.2f} | "
                     f"{t['train_seconds']:.0f} | {t['parameters']:.0f} | {t['ok']}/{t['runs']} | {t['status']} |")
    lines += ["", f"Training-set errors: the first {spec['train_eval_frames']} frames of the training pool. "
              "Force MAE / its MLP: ratio of the means, over the seeds both evaluated, to the MLP of the same model "
              "family (allegro_*, nequip_*); "
              "± is the standard deviation of the per-seed ratios (same seed, same split). "
              f"Status 'unstable': the validation force MAE rose above {BLOW_UP:g}x its untrained value during "
              "training; such rows are listed but not plotted."]
    lines += _paired_ratio_lines(rows, table, baseline) + _plateau_lines(spec, rows, table) + _cost_lines(rows, table)
    lines += _paper_lines(spec, entries, rows, table, baseline, sizes={len(a) for a in val})
    lines += _verdict_lines(entries, rows, table, baseline)
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
        plot_errors(spec, rows, table, val, outdir)


def _pm(t: Dict[str, Any], key: str, digits: int, scale: float = 1.0) -> str:
    """A summary entry's mean ± standard deviation over its evaluated runs (the mean alone for one run)."""
    mean = f"{scale * t[key]:.{digits}f}"
    return mean + f" ± {scale * t[key + '_std']:.{digits}f}" if t["ok"] > 1 else mean


def _paper_lines(spec, entries, rows, table, baseline, sizes=frozenset()) -> List[str]:
    """The table in the paper's layout (eV/atom, eV/Å; one row per configuration, by its label), beside
    the paper's values where the study file gives them (configs entries' ``paper``), and each row's force
    and energy MAE ratios to its MLP next to the paper's ratios. ``sizes``: the held-out frames' atom
    counts; when they are all N, the energy MAE per N-atom frame is given too."""
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
            ours_ratio = matched_ratio(rows, t["config"], mlp["config"], ours) if mlp else None
            ratios += [f"{ours_ratio:.3f}" if ours_ratio is not None else "-",
                       f"{paper[key] / mlp_paper[key]:.3f}" if key in paper and key in mlp_paper else "-"]
        per_frame = f"{_pm(t, 'energy_mae_meV_per_atom', 3, n / 1e3)} | " if n else ""
        lines.append(f"| {entry.get('label', t['config'])} | {_pm(t, 'energy_mae_meV_per_atom', 5, 1e-3)} | "
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


def _verdict_lines(entries, rows, table, baseline) -> List[str]:
    """What agrees with the paper and what does not, decided from the per-seed ratios: every configuration
    against its MLP (beside the paper's ratio where the study file gives both rows' values) and every
    configuration that is not an MLP against each control (configs entries with ``control: true``)."""
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
            resolved = high < 1 or low > 1
            text += ("Lower: resolved." if high < 1 else "Higher: resolved." if low > 1 else
                     f"No difference resolved with {len(seeds)} seeds.")
            if paper_key in paper.get(config, {}) and paper_key in paper.get(ref, {}):
                p = paper[config][paper_key] / paper[ref][paper_key]
                if not low <= p <= high:
                    text += f" The paper's ratio, {p:.3f}, lies outside the interval: disagrees with the paper."
                elif not resolved:  # the interval holds both: it cannot tell the paper's effect from none
                    text += (f" The interval holds both the paper's ratio, {p:.3f}, and 1 (no effect): too wide to "
                             f"tell; undecided with {len(seeds)} seeds.")
                else:
                    text += f" The paper's ratio, {p:.3f}, lies inside the interval: agrees with the paper."
            lines.append(text)
    if not lines:
        return []
    return ["", "## What agrees with the paper and what does not", "",
            "Decided from the per-seed ratios (same seed, same split, held-out frames): a difference counts as "
            "resolved when the 95% interval of the mean ratio (Student's t over the seeds, clipped at 0) excludes "
            "1; the paper's ratio agrees when it lies inside that interval and the interval excludes 1, disagrees "
            "when it lies outside, and is undecided when the interval holds both it and 1. Training speed: the "
            "epochs each run took to first reach a validation force MAE (nequip-train's split) that every run reached.", ""] + lines


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
