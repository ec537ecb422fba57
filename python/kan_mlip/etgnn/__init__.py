"""ETGNN (edge-based tensor prediction GNN) for Born effective charges, with MLP or KAN output heads.

``model`` depends on torch and ``kan_mlip.nn`` only; ``data``, ``train``, ``study``, ``predict`` and ``cli``
add ASE, numpy and matplotlib. Command line: ``kan-etgnn`` (train / study / deploy / predict / parity).
"""

from .model import HEADS, KAN_PLACEMENTS, ETGNNBorn

__all__ = ["ETGNNBorn", "HEADS", "KAN_PLACEMENTS", "BornChargePredictor", "ETGNNCalculator", "deploy", "load_model"]


def __getattr__(name):  # the predictor needs ASE: imported on first use
    if name in ("BornChargePredictor", "ETGNNCalculator", "deploy", "load_model"):
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
