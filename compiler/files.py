"""Deployed files: the contract's forces and virial from dE/dr, writing a compiled model with its metadata
(atomically), and loading one. Torch and the standard library only, so that every model family's
environment (nequip's, mace-torch's) deploys and loads through the same code."""

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch

from .contract import CONTRACT_VERSION, METADATA_KEYS

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def forces_and_virial(edge_vectors: torch.Tensor, dE_dr: Optional[torch.Tensor], edge_index: torch.Tensor,
                      num_nodes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The contract's forces (N, 3) and virial (6,) from dE/dr_ij of every edge (None: no edges).

    r_ij = x_j - x_i  =>  dE/dx_j += dE/dr_ij, dE/dx_i -= dE/dr_ij; the virial is the sum over edges of
    -r_ij (x) dE/dr_ij, in LAMMPS' order xx yy zz xy xz yz."""
    if dE_dr is None:
        dE_dr = torch.zeros_like(edge_vectors)
    forces = torch.zeros((num_nodes, 3), dtype=dE_dr.dtype, device=dE_dr.device)
    forces.index_add_(0, edge_index[0], dE_dr)
    forces.index_add_(0, edge_index[1], -dE_dr)
    w = -(edge_vectors.detach().unsqueeze(-1) * dE_dr.unsqueeze(-2)).sum(0)
    virial = torch.stack([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
    return forces, virial


def write_deployed(build: Callable[[], Tuple[torch.jit.ScriptModule, Dict[str, Any]]], source, output) -> Dict[str, Any]:
    """Save the (compiled model, metadata) that ``build()`` returns as ``output``, the metadata as JSON extra
    files; returns the metadata. ``output`` is claimed before ``build`` runs (output_file), so an output
    that cannot be written fails before the compile, and nothing is written if ``build`` raises."""
    with output_file(source, output) as tmp:
        compiled, metadata = build()
        if tuple(metadata) != METADATA_KEYS:
            raise ValueError(f"deployed metadata must have the keys {METADATA_KEYS}, got {tuple(metadata)}")
        extra = {key: (json.dumps(value) if not isinstance(value, str) else value) for key, value in metadata.items()}
        torch.jit.save(compiled, str(tmp), _extra_files=extra)
    return metadata


@contextmanager
def output_file(source, output) -> Iterator[Path]:
    """A new file beside ``output``, created before any work so that an output which cannot be written fails
    first; renamed onto ``output`` when the block succeeds (never a half-written file), removed when it fails.
    Its mode is 0666 less the umask, as for any new file."""
    if str(output).endswith(os.sep) or os.path.isdir(output):
        raise ValueError(f"output {output} is a directory; give the file to write, e.g. {Path(output) / 'pair.pt'}")
    output = Path(output)
    if output.exists() and Path(source).exists() and os.path.samefile(source, output):
        raise ValueError(f"output {output} is the model being deployed ({source}) and would be overwritten; "
                         "write to another file, e.g. pair.pt")
    created = [p for p in (output.parent, *output.parent.parents) if not p.exists()]  # deepest first
    tmp = output.parent / f".{output.name}.{secrets.token_hex(4)}.tmp"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        _remove(None, created)
        raise OSError(f"cannot write {output}: {exc.strerror or exc}") from exc
    try:
        yield tmp
        os.replace(tmp, output)
    except BaseException:
        _remove(tmp, created)
        raise


def _remove(tmp: Optional[Path], created) -> None:
    """Remove a failed output's temporary file and the folders made for it."""
    if tmp is not None and tmp.exists():
        tmp.unlink()
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def load_deployed(path, device: str = "cpu") -> Tuple[torch.jit.ScriptModule, Dict[str, Any]]:
    """Load a kan-deploy file and its metadata (json-decoded)."""
    from kan_mlip.nn.ops import fused_ops_available

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such deployed model: {path}")
    fused_ops_available()  # register kan_mlip::* ops before loading a model that calls them
    extra = {key: "" for key in METADATA_KEYS}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:
        raise ValueError(f"{path} is not a kan-deploy model file: {exc}") from exc
    meta: Dict[str, Any] = {}
    for key, raw in extra.items():
        raw = raw.decode() if isinstance(raw, bytes) else raw
        try:
            meta[key] = json.loads(raw)
        except json.JSONDecodeError:
            meta[key] = raw
    if meta["exchange_width"] == "":  # deployed before the exchange existed
        meta["exchange_width"] = 0
    if meta["contract"] != CONTRACT_VERSION:
        raise ValueError(f"{path}: model contract {meta['contract']!r}, this kan_mlip needs {CONTRACT_VERSION!r}; "
                         "re-deploy it with this kan_mlip's kan-deploy")
    return module, meta
