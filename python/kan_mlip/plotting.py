"""Plots of learned KAN functions: what pykan users look at to interpret a KAN."""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch


def kan_layers(model: torch.nn.Module, block: str = "readout"):
    """(name, KANLinear) pairs of one block: readout, latent or two_body_embed."""
    parts = {"readout": ("edge_readout", "per_atom_energy_readout"), "latent": ("latents",), "two_body_embed": ("scalar_embed_mlp",)}
    if block not in parts:
        raise ValueError(f"block must be one of {sorted(parts)}, got {block!r}")
    found = [(n, m) for n, m in model.named_modules()
             if type(m).__name__ == "KANLinear" and any(p in n.split(".") for p in parts[block])]
    if not found:
        raise ValueError(f"the model has no KAN layers in its {block} block")
    return found


def plot_kan_functions(model: torch.nn.Module, path, block: str = "readout", top: int = 12,
                       x_range: Optional[Tuple[float, float]] = None) -> Path:
    """For each KAN layer of ``block``: the ``top`` functions phi_oi with the largest L1 norm on the
    plotted range (efficient-kan's importance measure), each in its own panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = kan_layers(model, block)
    fig, axes = plt.subplots(len(layers), top, figsize=(1.9 * top, 1.9 * len(layers)), squeeze=False)
    for row, (name, layer) in enumerate(layers):
        lo, hi = x_range or (float(layer.basis.grid.min()), float(layer.basis.grid.max()))
        x = torch.linspace(lo, hi, 200, dtype=layer.spline_weight.dtype)
        phi = layer.univariate(x)  # (out, in, M)
        importance = phi.abs().mean(-1).flatten()
        order = torch.argsort(importance, descending=True)[:top]
        for col in range(top):
            ax = axes[row, col]
            if col >= len(order):
                ax.axis("off")
                continue
            o, i = divmod(int(order[col]), layer.in_features)
            ax.plot(x.numpy(), phi[o, i].numpy(), lw=1.2)
            ax.axhline(0, color="0.8", lw=0.6)
            ax.set_title(f"phi[{o},{i}]", fontsize=8)
            ax.tick_params(labelsize=6)
        axes[row, 0].set_ylabel(f"{name.replace('model.func.', '')}\n{layer.basis_name}", fontsize=7)
    fig.suptitle(f"learned univariate functions of the KAN {block} block (largest mean |phi| first)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
