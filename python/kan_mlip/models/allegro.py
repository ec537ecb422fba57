"""KAN-augmented Allegro: nequip-allegro's model with chosen MLP blocks replaced by KAN layers.

The blocks follow the paper's Table 1 (Wang, Yu, Zhong, Xiang, J. Mater. Inf. 2024):

* ``two_body_embed`` -- the MLP after the two-body radial-chemical embedding (``scalar_embed_mlp``);
* ``latent``         -- the latent MLP of every Allegro layer (``allegro.latents``); the first-layer
  env-embedding projection stays linear, as Allegro requires;
* ``readout``        -- the output block, the edge-energy MLP (``edge_readout``).
"""

from typing import Any, Dict, Optional

from allegro.model import AllegroModel
from nequip.model import model_builder

from .placement import KANSpec, Placement, resolve_placement

ALLEGRO_KAN_BLOCKS = ("two_body_embed", "latent", "readout")
ALLEGRO_KAN_PLACEMENTS = {
    "none": (),  # the MLP baseline
    "readout": ("readout",),  # the paper's best: KAN only in the output block
    "embedding_latent": ("two_body_embed", "latent"),
    "all": ALLEGRO_KAN_BLOCKS,
}


@model_builder
def KANAllegroModel(
    kan_placement: Placement = "readout",
    kan_basis: str = "gaussian",
    kan_options: Optional[Dict[str, Any]] = None,
    **kwargs,
):
    """Allegro (``allegro.model.AllegroModel``, all of its arguments) with KAN blocks.

    Args:
        kan_placement: a preset -- ``none`` (MLP baseline), ``readout`` (default), ``embedding_latent``,
            ``all`` -- or a list of blocks from ``two_body_embed``, ``latent``, ``readout``.
        kan_basis: ``gaussian`` (default), ``bspline`` or ``fourier``.
        kan_options: basis options, e.g. ``{num_grids: 8, grid_range: [-2, 2]}`` for gaussian.

    KAN blocks keep the widths and depths of the MLPs they replace.
    """
    blocks = resolve_placement(kan_placement, ALLEGRO_KAN_BLOCKS, ALLEGRO_KAN_PLACEMENTS)
    spec = KANSpec.create(kan_basis, kan_options)
    model = AllegroModel(**kwargs)  # inner build: runs under the outer builder's seed and dtype
    net = model.func
    if "two_body_embed" in blocks:
        net.scalar_embed_mlp = spec.scalar_kan_like(net.scalar_embed_mlp)
    if "latent" in blocks:
        latents = net.allegro.latents
        for i in range(len(latents)):
            latents[i] = spec.kan_mlp_like(latents[i])
    if "readout" in blocks:
        net.edge_readout = spec.scalar_kan_like(net.edge_readout)
    return model
