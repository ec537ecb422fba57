"""KAN layers and ops. Depends on torch alone, so MACE/ETGNN environments without nequip can use it.

``ScalarKAN`` (the nequip graph-module wrapper) lives in ``kan_mlip.models`` and is re-exported
here lazily: importing this package never imports nequip.
"""

from .bspline import BSplineBasis
from .fourier import FourierBasis
from .gaussian import GaussianBasis
from .kan_linear import BASES, BASIS_OPTIONS, KANLinear, make_basis
from .kan_mlp import KANMLP

__all__ = ["BSplineBasis", "GaussianBasis", "FourierBasis", "KANLinear", "KANMLP", "ScalarKAN", "BASES",
           "BASIS_OPTIONS", "make_basis"]


def __getattr__(name):
    if name == "ScalarKAN":
        from ..models.scalar_kan import ScalarKAN

        return ScalarKAN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
