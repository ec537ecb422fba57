"""ASE calculator for files written by kan-deploy."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .ghosts import ghost_graph


class KANCalculator(Calculator):
    """Energy, forces, stress and per-atom energies from a deployed ``pair.pt``.

    Uses the same model contract as ``pair_style allegro-kan`` (local + ghost atoms, full
    neighbour list), so it is the reference the LAMMPS tests compare against.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, path, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        from kan_mlip.compiler.deploy import DTYPES, load_deployed

        self.model, self.metadata = load_deployed(path, device=device)
        self.device = device
        self.type_names = self.metadata["type_names"]
        self.cutoff_matrix = np.array(self.metadata["cutoff_matrix"])
        self.dtype = DTYPES[self.metadata["model_dtype"]]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        symbols = self.atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.type_names))
        if unknown:
            raise ValueError(f"Elements {unknown} are not in the model (type_names {self.type_names})")
        types = np.array([self.type_names.index(s) for s in symbols])
        g = ghost_graph(self.atoms, self.cutoff_matrix, types)
        energies, forces, virial = self.model(*g.inputs(types, self.dtype, self.device))
        energies = energies.detach().double().cpu().numpy()
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = g.fold(forces.detach().double().cpu().numpy())
        if self.atoms.cell.rank == 3:
            xx, yy, zz, xy, xz, yz = virial.detach().double().cpu().numpy()
            # ASE stress (Voigt xx yy zz yz xz xy) = -virial / volume
            self.results["stress"] = -np.array([xx, yy, zz, yz, xz, xy]) / self.atoms.get_volume()
