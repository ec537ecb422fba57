"""A study file (YAML, see ``kan_mlip.study``): its defaults and checks, its runs, and the data split."""

import gzip
import io
import os
from pathlib import Path
from typing import Any, Dict, List

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
        config_entry(item)  # every entry well formed, before any work
    return spec


def config_entry(item) -> Dict[str, Any]:
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


def study_runs(spec: Dict[str, Any]) -> List[tuple]:
    """The study's runs, (configs entry, seed), configuration by configuration in the study file's order."""
    return [(config_entry(c), s) for c in spec["configs"] for s in spec["seeds"]]


def run_folder(outdir: Path, name: str, seed) -> Path:
    """Where the run of configs entry ``name`` with ``seed`` trains and keeps its checkpoints and records."""
    return Path(outdir) / "runs" / f"{name}_seed{seed}"


def read_frames(path):
    from ase.io import read

    if str(path).endswith(".gz"):  # ase's extxyz reader seeks backwards: decompress into memory first
        with gzip.open(path, "rt") as fh:
            return read(io.StringIO(fh.read()), index=":", format="extxyz")
    return read(path, index=":")


def partition(spec):
    """(held-out frames, training pool frames) of a study: the same frames on every call, drawn from
    ``spec['data']`` by ``split_seed``; nothing is written."""
    frames = read_frames(spec["data"])
    order = np.random.default_rng(spec["split_seed"]).permutation(len(frames))
    n_val = int(spec["validation_frames"] or max(1, round(spec["validation_fraction"] * len(frames))))
    n_pool = int(spec["pool_frames"] or len(frames) - n_val)
    if n_val + n_pool > len(frames):
        raise ValueError(f"validation_frames + pool_frames = {n_val + n_pool} > {len(frames)} frames in {spec['data']}")
    return [frames[i] for i in order[:n_val]], [frames[i] for i in order[n_val:n_val + n_pool]]


def split(spec, workdir: Path):
    """:func:`partition`, with the pool written to WORKDIR/pool.extxyz for training: (its path, held-out
    frames, pool frames)."""
    from ase.io import write

    val, pool = partition(spec)
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


def shift_override(refs: Dict[str, float]) -> str:
    return "++training_module.model.per_type_energy_shifts={" + ",".join(f"{z}:{e!r}" for z, e in refs.items()) + "}"
