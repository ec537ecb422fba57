"""The paper's Table 1 rows as named model variants (Wang, Yu, Zhong, Xiang, J. Mater. Inf. 2024).

One source of truth for the example configs, the tests, the benchmark and the accuracy study.
"""

from typing import Dict

ALLEGRO_VARIANTS: Dict[str, Dict[str, str]] = {
    "allegro_mlp": {"kan_placement": "none"},
    "allegro_kan_all_bspline": {"kan_placement": "all", "kan_basis": "bspline"},
    "allegro_kan_all_gaussian": {"kan_placement": "all", "kan_basis": "gaussian"},
    "allegro_kan_all_fourier": {"kan_placement": "all", "kan_basis": "fourier"},
    "allegro_kan_readout": {"kan_placement": "readout", "kan_basis": "gaussian"},
    "allegro_kan_embedding_latent": {"kan_placement": "embedding_latent", "kan_basis": "gaussian"},
}

NEQUIP_VARIANTS: Dict[str, Dict[str, str]] = {
    "nequip_mlp": {"kan_placement": "none"},
    "nequip_kan_readout_gaussian": {"kan_placement": "readout", "kan_basis": "gaussian"},
    "nequip_kan_readout_bspline": {"kan_placement": "readout", "kan_basis": "bspline"},
}
