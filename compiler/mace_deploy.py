"""kan-deploy for MACE and MACE-KAN: a mace-torch model file -> the pair-style contract (compiler/contract.py).
Runs in the MACE environment (.venv-mace).

The file pair_style allegro-kan and the ASE KANCalculator run, with the same metadata and the same check
against the eager model before anything is written as for nequip models. A MACE is message passing
(``num_interactions`` layers): on several MPI ranks it takes a ghost shell as deep as its receptive field.

MACE computes edge vectors as ``positions[receiver] - positions[sender] + shifts`` and sums messages
at the receiver. The contract's edge (i, j) carries r_ij = x_j - x_i for centre i, whose energy the
neighbour j feeds: in MACE's terms sender j, receiver i, vector x_i - x_j = -r_ij. With every node at
the origin, that vector is the shift.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from e3nn.util.jit import compile_mode

from kan_mlip import __version__

from .contract import CONTRACT_VERSION, OPS_LIBRARY
from .files import DTYPES, forces_and_virial, write_deployed
from .graph import model_inputs, sample_structure

# eager vs compiled must agree to this (energy per atom in eV, forces in eV/Å)
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


@compile_mode("script")
class MACEPairPotential(torch.nn.Module):
    """A mace-torch model (MACE, ScaleShiftMACE, with or without KAN readouts) in the contract's signature."""

    num_types: int

    def __init__(self, model: torch.nn.Module, head: int = -1):
        """``head``: which of the model's heads gives the energy (default: the last, as MACE's LAMMPS export)."""
        super().__init__()
        self.model = model
        self.num_types = int(len(model.atomic_numbers))
        heads = list(getattr(model, "heads", None) or ["Default"])
        self.register_buffer("head", torch.tensor([range(len(heads))[head]], dtype=torch.long))
        self.dtype = next(model.parameters()).dtype
        for p in self.model.parameters():
            p.requires_grad_(False)

    def forward(self, edge_vectors: torch.Tensor, edge_index: torch.Tensor, atom_types: torch.Tensor,
                num_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        edge_vectors = edge_vectors.to(dtype=self.dtype, copy=True).requires_grad_(True)
        n = atom_types.shape[0]
        device = edge_vectors.device
        data: Dict[str, torch.Tensor] = {
            "positions": torch.zeros((n, 3), dtype=self.dtype, device=device),
            "shifts": -edge_vectors,
            "unit_shifts": torch.zeros_like(edge_vectors),
            "cell": torch.zeros((1, 3, 3), dtype=self.dtype, device=device),
            "edge_index": torch.stack([edge_index[1], edge_index[0]]),
            "node_attrs": torch.nn.functional.one_hot(atom_types, self.num_types).to(self.dtype),
            "batch": torch.zeros((n,), dtype=torch.long, device=device),
            "ptr": torch.tensor([0, n], dtype=torch.long, device=device),
            "head": self.head,
        }
        out = self.model(data, training=False, compute_force=False, compute_virials=False, compute_stress=False)
        node_energy = out["node_energy"]
        assert node_energy is not None
        atomic_energy = node_energy[:num_local]
        grads = torch.autograd.grad([atomic_energy.sum()], [edge_vectors], allow_unused=True)
        forces, virial = forces_and_virial(edge_vectors, grads[0], edge_index, n)
        return atomic_energy.detach(), forces.detach(), virial.detach()


def load_mace_model(path) -> torch.nn.Module:
    """A mace-torch model saved whole (``torch.save``, as mace_run_train writes ``*.model``)."""
    import mace

    import kan_mlip.mace  # noqa: F401  (KAN readout classes, for unpickling)
    from kan_mlip.nn.ops import fused_ops_available

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    fused_ops_available()
    try:
        model = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} does not load with this mace-torch ({mace.__version__}): a file written by another "
                         f"mace-torch version, or not a MACE model ({type(exc).__name__}: {exc})") from exc
    if not hasattr(model, "readouts") or not hasattr(model, "atomic_numbers") or not hasattr(model, "r_max"):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a mace-torch MACE model")
    return model.eval()


def _type_names(model) -> List[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in model.atomic_numbers]


def _kan_blocks(model) -> Dict[str, str]:
    bases = {m.basis_name for name, m in model.named_modules() if type(m).__name__ == "KANLinear"}
    return {"readout": "/".join(sorted(bases))} if bases else {}


def deploy_mace(source, output, dtype: Optional[str] = None, device: str = "cpu", log=print) -> Dict[str, Any]:
    """Compile the mace-torch model file ``source`` into ``output``; returns the metadata. Writes nothing
    unless the compiled model equals the eager one on a sample structure."""
    from e3nn.util import jit

    def build():
        model = load_mace_model(source)
        model_dtype = {torch.float64: "float64", torch.float32: "float32"}[next(model.parameters()).dtype]
        want = dtype or model_dtype
        if want not in DTYPES:
            raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {want!r}")
        if want != model_dtype:
            raise ValueError(f"--dtype {want} differs from the MACE model's {model_dtype}; convert the model with "
                             "mace's own tools (mace_convert_dtype or model.to(dtype)) first")
        if device != "cpu":
            raise ValueError(f"--device {device}: MACE models deploy for the CPU here")
        try:
            compiled = torch.jit.freeze(jit.compile(MACEPairPotential(_copy(model)).eval()))
            check = _check(model, compiled, model_dtype)
        except Exception as exc:  # a model object this mace-torch's code cannot run
            import mace

            raise ValueError(f"{source} does not run with this mace-torch ({mace.__version__}): a model written by "
                             f"another mace-torch version? ({type(exc).__name__}: {exc})") from exc
        log(f"check: eager mace-torch model vs compiled on a {check['natoms']}-atom periodic cell: "
            f"|dE|/atom = {check['energy_err']:.2e} eV, max |dF| = {check['force_err']:.2e} eV/Å "
            f"(tolerance {check['tolerance']:.0e}) -> {'OK' if check['ok'] else 'FAILED'}")
        if not check["ok"]:
            raise RuntimeError("compiled model disagrees with the eager model beyond tolerance; nothing written")
        r_max = float(model.r_max)
        type_names = _type_names(model)
        layers = int(model.num_interactions)
        metadata = {
            "contract": CONTRACT_VERSION,
            "r_max": r_max,
            "cutoff_matrix": np.full((len(type_names), len(type_names)), r_max).tolist(),
            "type_names": type_names,
            "num_types": len(type_names),
            "model_dtype": model_dtype,
            "device": device,
            "message_passing_layers": layers,
            "receptive_field": layers * r_max,
            "exchange_width": 0,
            "kan_blocks": _kan_blocks(model),
            "kan_mlip_version": __version__,
            "torch_version": torch.__version__.split("+")[0],
            "custom_op_library": OPS_LIBRARY if any(getattr(m, "fused", False) for m in model.modules()) else "",
            "source": f"mace-torch {_mace_version()} model: {Path(source).name}",
        }
        return compiled, metadata

    metadata = write_deployed(build, source, output)
    log(f"wrote {output}: MACE, types {metadata['type_names']}, r_max {metadata['r_max']:g} Å, "
        f"{metadata['message_passing_layers']} interactions: receptive field {metadata['receptive_field']:g} Å, "
        f"{metadata['model_dtype']}, KAN blocks: {metadata['kan_blocks'] or 'none (MLP readouts)'}")
    return metadata


def _mace_version() -> str:
    import mace

    return mace.__version__


def _copy(model):
    import copy

    return copy.deepcopy(model)


def mace_energy_forces(model, atoms) -> Tuple[float, np.ndarray]:
    """Energy and forces of ``atoms`` from the eager mace-torch model, through MACE's own data pipeline."""
    from mace import data as mace_data
    from mace.tools import torch_geometric, utils

    from kan_mlip.mace.model import _default_dtype

    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    config = mace_data.config_from_atoms(atoms)
    with _default_dtype(next(model.parameters()).dtype):  # MACE's pipeline builds tensors in the default dtype
        graph = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=float(model.r_max))
    batch = next(iter(torch_geometric.dataloader.DataLoader([graph], batch_size=1, shuffle=False)))
    out = model(batch.to_dict(), training=False, compute_force=True)
    return float(out["energy"].detach().sum()), out["forces"].detach().double().numpy()


def _check(model, compiled, dtype: str) -> Dict[str, Any]:
    type_names = _type_names(model)
    r_max = float(model.r_max)
    atoms = sample_structure(type_names, r_max)
    e_ref, f_ref = mace_energy_forces(model, atoms)
    types = np.array([type_names.index(s) for s in atoms.get_chemical_symbols()])
    cutoffs = np.full((len(type_names), len(type_names)), r_max)
    energies, forces, _ = compiled(*model_inputs(atoms, cutoffs, types))
    forces = forces.double().numpy()
    e_err = abs(energies.double().sum().item() - e_ref) / len(atoms)
    f_err = float(np.abs(forces - f_ref).max())
    tol = TOLERANCE[dtype]
    return {"natoms": len(atoms), "energy_err": e_err, "force_err": f_err, "tolerance": tol,
            "ok": bool(e_err <= tol and f_err <= tol * max(1.0, np.abs(f_ref).max()) and np.isfinite(forces).all())}
