"""KAN layers and ops. Depends on torch alone, so MACE/ETGNN environments without nequip can use it.

The nequip graph module built from these layers, ``ScalarKAN``, is in ``kan_mlip.models``.
"""

from .bspline import BSplineBasis
from .fourier import FourierBasis
from .gaussian import GaussianBasis
from .kan_linear import BASES, BASIS_OPTIONS, KANLinear, make_basis
from .kan_mlp import KANMLP

__all__ = ["BSplineBasis", "GaussianBasis", "FourierBasis", "KANLinear", "KANMLP", "BASES", "BASIS_OPTIONS",
           "make_basis"]
