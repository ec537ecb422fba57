"""Build, check and write a deployed model (TorchScript, scripted + frozen, metadata as extra files)."""

import copy
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from kan_mlip import __version__

from .contract import CONTRACT_VERSION, METADATA_KEYS, OPS_LIBRARY
from .exchange import enable_ghost_exchange, exchange_width
from .files import DTYPES, load_deployed, write_deployed
from .graph import model_inputs, sample_structure
from .nequip_potential import PairPotential

__all__ = ["DTYPES", "METADATA_KEYS", "deploy", "load_deployed", "load_trained_model", "sample_structure"]
# eager vs compiled must agree to this (energy per atom in eV, forces in eV/Å)
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def load_trained_model(path) -> Tuple[torch.nn.Module, str, Optional[Dict[str, Any]]]:
    """(GraphModel, kind, builder config or None) from a nequip-train checkpoint, a nequip package or a
    kan_mlip model.pth."""
    from nequip.utils.global_state import set_global_state

    from kan_mlip.nn.ops import fused_ops_available

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    set_global_state()
    fused_ops_available()  # register kan_mlip::* before unpickling layers that call them
    name = path.name
    try:
        if name.endswith(".ckpt"):
            from nequip.model import ModelFromCheckpoint

            config = torch.load(str(path), map_location="cpu", weights_only=False)["hyper_parameters"]["model"]
            return ModelFromCheckpoint(str(path))["sole_model"], "nequip-train checkpoint", dict(config)
        if name.endswith(".zip"):
            from nequip.model import ModelFromPackage

            return ModelFromPackage(str(path))["sole_model"], "nequip package", None
        from kan_mlip.models.io import load_model_and_config

        model, config = load_model_and_config(path)
        return model, "kan_mlip model file", config
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # torch / pickle / zip errors: say what the file is not
        raise ValueError(f"{path} is not a trained model (.ckpt, nequip package .zip, or kan_mlip model.pth): "
                         f"{type(exc).__name__}: {exc}") from exc


def _in_dtype(model, config: Optional[Dict[str, Any]], dtype: str) -> torch.nn.Module:
    """The same model in another dtype. nequip modules fix their dtype when built, so rebuild and load."""
    if model.metadata["model_dtype"] == dtype:
        return model
    if config is None:
        raise ValueError(f"--dtype {dtype} differs from the model's {model.metadata['model_dtype']} and this source "
                         "has no builder config to rebuild from; deploy from the .ckpt or a kan_mlip model.pth")
    from kan_mlip.models.io import build_model

    rebuilt = build_model(dict(config, model_dtype=dtype))
    from kan_mlip.nn.exact_grids import is_rounding_of

    exact = rebuilt.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    source = DTYPES[model.metadata["model_dtype"]]
    upcast = torch.finfo(source).eps > torch.finfo(DTYPES[dtype]).eps
    state = {}
    for key, value in model.state_dict().items():
        value = value.to(DTYPES[dtype]) if value.is_floating_point() else value
        # A buffer the builder computes (a KAN grid, Bessel roots) is, in a float32 source, the rounding of what
        # the float64 rebuild holds exactly: take the exact one. Cast float32 knots are uniform only to ~1e-8,
        # which would send B-spline layers down the general path (2x slower) instead of the uniform-knot one.
        if upcast and key in buffers and value.is_floating_point() and key in exact and is_rounding_of(value, exact[key], source):
            value = exact[key]
        state[key] = value
    rebuilt.load_state_dict(state)
    return rebuilt


def message_passing_layers(model: torch.nn.Module) -> int:
    """How many times node features pass between neighbours: NequIP's convolutions (1 for a strictly local
    model such as Allegro). The energy of an atom depends on atoms up to this many cutoffs away.

    Matched by class name: models from a nequip package carry torch.package copies of the classes."""
    return max(1, sum(type(m).__name__ == "ConvNetLayer" for m in model.modules()))


def kan_blocks(model: torch.nn.Module) -> Dict[str, str]:
    """Which blocks hold KAN layers, and with which basis.

    Matched by class name: models from a nequip package carry torch.package copies of the classes."""
    found: Dict[str, str] = {}
    names = {"scalar_embed_mlp": "two_body_embed", "latents": "latent", "edge_readout": "readout",
             "per_atom_energy_readout": "readout"}
    for name, module in model.named_modules():
        if type(module).__name__ == "KANLinear":
            for part in name.split("."):
                if part in names:
                    found[names[part]] = module.basis_name
    return found


def _cutoff_matrix(model) -> np.ndarray:
    meta = model.metadata
    type_names = meta["type_names"].split(" ")
    r_max = float(meta["r_max"])
    mat = np.full((len(type_names), len(type_names)), r_max)
    per_type = meta.get("per_edge_type_cutoff")
    if per_type:
        from nequip.nn.embedding.utils import cutoff_str_to_fulldict

        full = cutoff_str_to_fulldict(per_type, type_names)
        for a, ta in enumerate(type_names):
            for b, tb in enumerate(type_names):
                mat[a, b] = float(full[ta][tb])
    if not np.allclose(mat, mat.T):
        raise ValueError(f"per_edge_type_cutoff must be symmetric for LAMMPS (cutoff[a][b] == cutoff[b][a]); got {full}")
    return mat


def deploy(source, output, dtype: Optional[str] = None, device: str = "cpu", ghost_exchange: bool = True,
           log=print) -> Dict[str, Any]:
    """Compile ``source`` into ``output``; returns the metadata. Writes nothing unless the check passes.

    ``ghost_exchange``: a message-passing model exchanges node features between its layers when LAMMPS
    runs on several ranks (exchange.py), where it can; False keeps a ghost shell as deep as its
    receptive field instead (contract.py). An output that cannot be written (a directory, a folder
    without write access, the source itself) is refused before the compile."""
    nparams = []

    def build():
        compiled, metadata, n = _compile(source, dtype, device, ghost_exchange, log)
        nparams.append(n)
        return compiled, metadata

    metadata = write_deployed(build, source, output)
    layers = metadata["message_passing_layers"]
    reach = ""
    if layers > 1:
        reach = (f", {layers} message-passing layers: receptive field {metadata['receptive_field']:g} Å, on several "
                 + ("ranks node features exchanged between layers" if metadata["exchange_width"] else
                    "ranks a ghost shell that deep"))
    log(f"wrote {output}: {nparams[0]} parameters, types {metadata['type_names']}, r_max {metadata['r_max']:g} Å{reach}, "
        f"{metadata['model_dtype']} on {metadata['device']}, KAN blocks: {metadata['kan_blocks'] or 'none (MLP model)'}")
    return metadata


def _compile(source, dtype: Optional[str], device: str, ghost_exchange: bool,
             log) -> Tuple[torch.jit.ScriptModule, Dict[str, Any], int]:
    """(compiled model, metadata, parameter count), checked against the eager model."""
    from e3nn.util.jit import script
    from nequip.utils.compile import prepare_model_for_compile

    from kan_mlip.nn.ops import fused_ops_available

    model, kind, config = load_trained_model(source)
    model_dtype = model.metadata["model_dtype"]
    dtype = dtype or model_dtype
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but this torch has no usable CUDA device")
    type_names = model.metadata["type_names"].split(" ")
    cutoffs = _cutoff_matrix(model)
    blocks = kan_blocks(model)
    layers = message_passing_layers(model)
    exchanges = ghost_exchange and exchange_width(model) is not None
    if exchanges and not (fused_ops_available() and hasattr(torch.ops.kan_mlip, "ghost_exchange")):
        raise ValueError("exchanging node features needs the kan_mlip ops library (make plugin); "
                         "or deploy with --no-ghost-exchange")
    # the pair style links this library; recorded so a loader knows the model calls kan_mlip::* ops
    ops_library = OPS_LIBRARY if exchanges or any(getattr(m, "fused", False) for m in model.modules()) else ""

    # reference: nequip's own GraphModel (cell + shifts, autograd forces) in the model's own dtype
    reference = copy.deepcopy(model).eval()
    target = prepare_model_for_compile(_in_dtype(model, config, dtype), device)
    energy_model = target.model.func  # GraphModel -> ForceStressOutput -> energy network
    width = enable_ghost_exchange(energy_model) if exchanges else 0
    # script a copy: e3nn's script converts submodules in place
    compiled = torch.jit.freeze(script(PairPotential(energy_model, DTYPES[dtype], exchanges).eval(), in_place=False))
    check = _check(reference, compiled, type_names, cutoffs, dtype, device)
    log(f"check: eager nequip model ({model_dtype}) vs compiled ({dtype}) on a {check['natoms']}-atom periodic cell: "
        f"|dE|/atom = {check['energy_err']:.2e} eV, max |dF| = {check['force_err']:.2e} eV/Å "
        f"(tolerance {check['tolerance']:.0e}) -> {'OK' if check['ok'] else 'FAILED'}")
    if not check["ok"]:
        raise RuntimeError("compiled model disagrees with the eager model beyond tolerance; nothing written")

    metadata = {
        "contract": CONTRACT_VERSION,
        "r_max": float(cutoffs.max()),
        "cutoff_matrix": cutoffs.tolist(),
        "type_names": type_names,
        "num_types": len(type_names),
        "model_dtype": dtype,
        "device": device,
        "message_passing_layers": layers,
        "receptive_field": layers * float(cutoffs.max()),
        "exchange_width": width,
        "kan_blocks": blocks,
        "kan_mlip_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "custom_op_library": ops_library,
        "source": f"{kind}: {Path(source).name}",
    }
    return compiled, metadata, sum(p.numel() for p in energy_model.parameters())


def _check(model, compiled, type_names, cutoffs, dtype, device) -> Dict[str, Any]:
    from nequip.data import AtomicDataDict

    from kan_mlip.data.graph import atoms_to_graph

    atoms = sample_structure(type_names, float(cutoffs.max()))
    ref = model(atoms_to_graph(atoms, float(cutoffs.max()), type_names, dtype=DTYPES[model.metadata["model_dtype"]]))
    e_ref = ref[AtomicDataDict.TOTAL_ENERGY_KEY].detach().double().sum().item()
    f_ref = ref[AtomicDataDict.FORCE_KEY].detach().double().numpy()
    types = np.array([type_names.index(s) for s in atoms.get_chemical_symbols()])
    energies, forces, _ = compiled(*model_inputs(atoms, cutoffs, types, device))
    forces = forces.double().cpu().numpy()
    e_err = abs(energies.double().sum().item() - e_ref) / len(atoms)
    f_err = float(np.abs(forces - f_ref).max())
    tol = max(TOLERANCE[dtype], TOLERANCE[model.metadata["model_dtype"]])    # a float32 side limits the agreement
    return {"natoms": len(atoms), "energy_err": e_err, "force_err": f_err, "tolerance": tol,
            "ok": bool(e_err <= tol and f_err <= tol * max(1.0, np.abs(f_ref).max()) and np.isfinite(forces).all())}
