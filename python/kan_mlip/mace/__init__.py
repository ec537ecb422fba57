"""MACE-KAN: KAN readouts for mace-torch (``mace.modules``), the paper's Figure 4 placement.

Needs mace-torch (``make mace-setup``: .venv-mace, mace-torch 0.3.16 with its e3nn 0.4.4) and
``kan_mlip.nn``; never nequip or allegro. ``import mace`` comes first: it sets
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, without which e3nn 0.4.4 cannot load its constants under torch >= 2.6.
"""

import mace  # noqa: F401  (before e3nn, see above)

from .model import KAN_PLACEMENTS, build_mace_kan, to_mace_kan
from .readout import DEFAULT_BASIS_OPTIONS, KANNonLinearReadoutBlock, KANReadoutBlock, ReadoutKAN, kan_widths

__all__ = ["KANReadoutBlock", "KANNonLinearReadoutBlock", "ReadoutKAN", "kan_widths", "DEFAULT_BASIS_OPTIONS",
           "KAN_PLACEMENTS", "build_mace_kan", "to_mace_kan"]
