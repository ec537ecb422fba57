"""Loads the fused C++ KAN ops (``torch.ops.kan_mlip.*``, built from csrc/ by ``make setup``).

KAN layers use them when they are loaded and fall back to the pure-PyTorch reference otherwise,
with the same numbers. ``KAN_MLIP_DISABLE_FUSED=1`` forces the reference (for comparisons).
"""

import os
from pathlib import Path
from typing import Optional

import torch

LIBRARY = Path(__file__).resolve().parents[1] / "lib" / "libkan_mlip_ops.so"
BASIS_KIND = {"bspline": 0, "gaussian": 1, "fourier": 2}
_loaded: Optional[bool] = None


def fused_ops_available() -> bool:
    """True when the kan_mlip ops are registered with torch (loading the library on first call)."""
    global _loaded
    if _loaded is None:
        _loaded = False
        if LIBRARY.exists():
            try:
                torch.ops.load_library(str(LIBRARY))
                _loaded = True
            except OSError:  # built against another torch: use the reference
                _loaded = False
    return _loaded


def use_fused_default() -> bool:
    return os.environ.get("KAN_MLIP_DISABLE_FUSED", "0") != "1" and fused_ops_available()
