"""Loads the fused C++ KAN ops (``torch.ops.kan_mlip.*``, built from csrc/ by ``make setup``).

KAN layers use them when they are loaded and fall back to the pure-PyTorch reference otherwise,
with the same numbers. ``KAN_MLIP_DISABLE_FUSED=1`` forces the reference (for comparisons);
``KAN_MLIP_OPS_LIBRARY`` loads another build of the library.
"""

import os
from pathlib import Path
from typing import Dict, Optional

import torch

# KAN_MLIP_OPS_LIBRARY: another build of the ops (tests of builds for other CPUs)
LIBRARY = Path(os.environ.get("KAN_MLIP_OPS_LIBRARY") or Path(__file__).resolve().parents[1] / "lib" / "libkan_mlip_ops.so")
BASIS_KIND = {"bspline": 0, "gaussian": 1, "fourier": 2}
# added to the kind: the ops append silu(x) as one more function per input (the base branch), so
# its weights are contracted in the same op (csrc/kan_basis.h)
BASE_SILU = 8
_loaded: Optional[bool] = None  # None: not tried yet


def _registered() -> bool:
    try:
        torch.ops.kan_mlip.kan_forward
        return True
    except (AttributeError, RuntimeError):
        return False


def fused_ops_available() -> bool:
    """True when the kan_mlip ops are registered with torch (loading the library on first call).

    Registered by anyone counts: a torch.package copy of this module (a nequip package) cannot
    locate the library itself, but sees the ops the installed kan_mlip loaded."""
    global _loaded
    if not _loaded:
        if _loaded is None and LIBRARY.exists():
            try:
                torch.ops.load_library(str(LIBRARY))
            except OSError:  # built against another torch: the reference is used
                pass
        _loaded = _registered()
    return _loaded


def fused_ops_have_cuda() -> bool:
    """True when the loaded ops have CUDA kernels (csrc/cuda, built when the installed torch has CUDA)."""
    return fused_ops_available() and torch._C._dispatch_has_kernel_for_dispatch_key("kan_mlip::kan_forward", "CUDA")


def use_fused_default() -> bool:
    return os.environ.get("KAN_MLIP_DISABLE_FUSED", "0") != "1" and fused_ops_available()


def scratch_bytes() -> int:
    """Bytes that the fused ops hold in per-thread scratch buffers (kept between calls, so a call does
    not page-fault them in afresh): memory that torch's allocator statistics do not count. 0 without
    the ops."""
    return int(torch.ops.kan_mlip.scratch_bytes()) if fused_ops_available() else 0


def path_counts() -> Dict[str, int]:
    """Calls of each fused CPU op path since the library was loaded, by stable name ("op:path", see
    KAN_PATHS in csrc/kan_ops.cpp): which contraction a layer shape takes. Empty without the ops."""
    if not fused_ops_available():
        return {}
    return dict(zip(torch.ops.kan_mlip.path_names(), torch.ops.kan_mlip.path_counts()))
