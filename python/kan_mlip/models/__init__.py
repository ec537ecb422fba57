"""Model builders (nequip / nequip-allegro) with KAN blocks, usable as Hydra ``_target_``s."""

from .allegro import ALLEGRO_KAN_BLOCKS, ALLEGRO_KAN_PLACEMENTS, KANAllegroModel
from .nequip import NEQUIP_KAN_BLOCKS, NEQUIP_KAN_PLACEMENTS, KANNequIPModel
from .scalar_kan import ScalarKAN

__all__ = ["KANAllegroModel", "KANNequIPModel", "ScalarKAN", "ALLEGRO_KAN_BLOCKS", "ALLEGRO_KAN_PLACEMENTS",
           "NEQUIP_KAN_BLOCKS", "NEQUIP_KAN_PLACEMENTS"]
