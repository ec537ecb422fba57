"""kan-deploy: compile a trained KAN model into a self-describing file for LAMMPS and ASE.

Imported as ``kan_mlip.compiler`` (this folder is mapped into the package by pyproject.toml).
"""

from .contract import CONTRACT_VERSION, PairPotential
from .deploy import deploy, load_deployed, load_trained_model

__all__ = ["CONTRACT_VERSION", "PairPotential", "deploy", "load_deployed", "load_trained_model"]
