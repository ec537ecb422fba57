"""kan-mlip: Kolmogorov-Arnold Network layers in machine-learning interatomic potentials."""

__version__ = "0.1.0"
