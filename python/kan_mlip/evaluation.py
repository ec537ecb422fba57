"""Evaluate a trained model (nequip-train checkpoint) on ase.Atoms frames."""

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
from ase import Atoms


def load_checkpoint_model(path) -> torch.nn.Module:
    """The GraphModel stored in a nequip-train checkpoint (its builder is re-run from the saved config)."""
    from nequip.model import ModelFromCheckpoint
    from nequip.utils.global_state import set_global_state

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    set_global_state()
    return ModelFromCheckpoint(str(path))["sole_model"].eval()


def predict(model: torch.nn.Module, frames: Sequence[Atoms]) -> Dict[str, list]:
    """Energies (eV) and forces (eV/Å) for each frame."""
    from nequip.data import AtomicDataDict

    from .data.graph import atoms_to_graph

    r_max = float(model.metadata["r_max"])
    type_names = model.metadata["type_names"].split(" ")  # nequip metadata values are strings
    dtype = next(model.parameters()).dtype
    energies, forces = [], []
    for atoms in frames:
        out = model(atoms_to_graph(atoms, r_max, type_names, dtype=dtype))
        energies.append(out[AtomicDataDict.TOTAL_ENERGY_KEY].detach().double().reshape(()).item())
        forces.append(out[AtomicDataDict.FORCE_KEY].detach().double().numpy())
    return {"energy": energies, "forces": forces}


def errors(frames: Sequence[Atoms], pred: Dict[str, list]) -> Dict[str, float]:
    """Energy MAE (meV/atom) and force MAE (meV/Å) against the frames' reference labels."""
    n = np.array([len(a) for a in frames])
    e_ref = np.array([a.get_potential_energy() for a in frames])
    f_ref = np.concatenate([a.get_forces() for a in frames])
    e_err = np.abs(np.array(pred["energy"]) - e_ref) / n
    f_err = np.abs(np.concatenate(pred["forces"]) - f_ref)
    return {"energy_mae_meV_per_atom": 1e3 * e_err.mean(), "force_mae_meV_per_A": 1e3 * f_err.mean()}


def parity_plot(frames: Sequence[Atoms], pred: Dict[str, list], path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([len(a) for a in frames])
    e_ref = np.array([a.get_potential_energy() for a in frames]) / n
    e_pred = np.array(pred["energy"]) / n
    f_ref = np.concatenate([a.get_forces() for a in frames]).ravel()
    f_pred = np.concatenate(pred["forces"]).ravel()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, ref, prd, label in ((axes[0], e_ref, e_pred, "energy (eV/atom)"), (axes[1], f_ref, f_pred, "force component (eV/Å)")):
        lo, hi = min(ref.min(), prd.min()), max(ref.max(), prd.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(ref, prd, s=4, alpha=0.5)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"model {label}")
        ax.set_title(f"MAE {1e3 * np.abs(ref - prd).mean():.2f} m{label.split(' (')[1][:-1]}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
