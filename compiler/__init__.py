"""kan-deploy: compile a trained KAN model into a self-describing file for LAMMPS and ASE.

Imported as ``kan_mlip.compiler`` (this folder is mapped into the package by pyproject.toml).
contract.py, files.py and graph.py need torch and ASE only; deploy.py and nequip_potential.py need
nequip, mace_deploy.py mace-torch. Where nequip is not installed (the MACE environment) the package
offers the rest.
"""

from .contract import CONTRACT_VERSION
from .files import load_deployed

try:
    from .deploy import deploy, load_trained_model
    from .nequip_potential import PairPotential
except ModuleNotFoundError as exc:
    if (exc.name or "").split(".")[0] != "nequip":
        raise

__all__ = ["CONTRACT_VERSION", "PairPotential", "deploy", "load_deployed", "load_trained_model"]
