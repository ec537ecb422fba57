"""Born-charge data: extended XYZ with a per-atom ``born_charges`` array, periodic graphs, batches, splits.

Born effective charges are read from ``atoms.arrays[key]`` as (N, 9) (row-major 3x3, as extended XYZ stores
them) or (N, 3, 3). Graphs are ASE periodic neighbour lists: every bond shorter than the cutoff, in both
directions, with the integer cell offset of the far atom's image.
"""

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

DEFAULT_KEY = "born_charges"
# the project's substitute Born-charge set (README of ../shared/data, section 3.4)
DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "bec" / "becs_e3nn_models.extxyz.gz"
MIN_DISTANCE = 1e-4  # Angstrom: closer atoms are an input error (the radial basis is 1/d)


class BornDataError(ValueError):
    """A structure file or frame that cannot be used (missing or malformed Born charges, overlapping atoms)."""


def read_frames(path: Union[str, Path], index: str = ":", format: Optional[str] = None) -> list:
    """ASE frames from any file ASE reads (CIF, POSCAR, extxyz, ...); ``.gz`` files are decompressed in memory."""
    from ase.io import read

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such structure file: {path}")
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as fh:
            text = fh.read()
        fmt = format or ("extxyz" if path.name.endswith((".xyz.gz", ".extxyz.gz")) else None)
        if fmt is None:
            raise BornDataError(f"{path}: name the format of a compressed file (e.g. --format extxyz)")
        frames = read(io.StringIO(text), index=index, format=fmt)
    else:
        frames = read(str(path), index=index, format=format)
    return frames if isinstance(frames, list) else [frames]


def born_charges_of(atoms, key: str = DEFAULT_KEY, where: str = "") -> np.ndarray:
    """The frame's Born charges as (N, 3, 3) float64; BornDataError when absent or of the wrong shape."""
    n = len(atoms)
    if key not in atoms.arrays:
        have = sorted(k for k in atoms.arrays if k not in ("numbers", "positions"))
        raise BornDataError(f"{where}no per-atom array {key!r} with Born charges (per-atom arrays: {have})")
    z = np.asarray(atoms.arrays[key], dtype=np.float64)
    if z.shape == (n, 9):
        z = z.reshape(n, 3, 3)
    if z.shape != (n, 3, 3):
        raise BornDataError(f"{where}{key!r} must have shape ({n}, 9) or ({n}, 3, 3) for {n} atoms, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise BornDataError(f"{where}{key!r} has non-finite values")
    return z


def read_born_dataset(path: Union[str, Path], key: str = DEFAULT_KEY, format: Optional[str] = None) -> list:
    """Frames with validated Born charges (every frame must have them)."""
    frames = read_frames(path, format=format)
    for i, atoms in enumerate(frames):
        born_charges_of(atoms, key, where=f"{path}, frame {i}: ")
    return frames


@dataclass
class Graph:
    """One structure as the model takes it (numpy; ``collate`` makes torch batches)."""

    numbers: np.ndarray  # (N,) int64
    positions: np.ndarray  # (N, 3)
    cell: np.ndarray  # (3, 3), rows = cell vectors (zeros where not periodic)
    edge_index: np.ndarray  # (2, E) src, dst
    edge_shift: np.ndarray  # (E, 3) integer cell offsets of dst's image
    born_charges: Optional[np.ndarray] = None  # (N, 3, 3)

    @property
    def isolated(self) -> np.ndarray:
        """Indices of atoms without any neighbour within the cutoff."""
        deg = np.bincount(self.edge_index[1], minlength=len(self.numbers))
        return np.flatnonzero(deg == 0)


def build_graph(atoms, cutoff: float, key: Optional[str] = DEFAULT_KEY, where: str = "") -> Graph:
    """Periodic neighbour graph within ``cutoff``; with ``key``, the frame's Born charges as the target."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        raise BornDataError(f"{where}structure has no atoms")
    i, j, shift, d = neighbor_list("ijSd", atoms, float(cutoff))
    if len(d) and d.min() < MIN_DISTANCE:
        k = int(np.argmin(d))
        raise BornDataError(f"{where}atoms {i[k]} and {j[k]} overlap (distance {d[k]:.2e} A)")
    cell = np.asarray(atoms.cell.array, dtype=np.float64) * np.asarray(atoms.pbc, dtype=np.float64)[:, None]
    return Graph(
        numbers=np.asarray(atoms.numbers, dtype=np.int64),
        positions=np.asarray(atoms.positions, dtype=np.float64),
        cell=cell,
        edge_index=np.stack([i, j]).astype(np.int64),
        edge_shift=np.asarray(shift, dtype=np.float64),
        born_charges=born_charges_of(atoms, key, where) if key else None,
    )


def collate(graphs: Sequence[Graph], dtype: torch.dtype = torch.float32,
            device: Union[str, torch.device] = "cpu") -> Dict[str, torch.Tensor]:
    """Concatenate graphs into one batch: the model's inputs plus ``born_charges`` (when all graphs have them)."""
    offsets = np.cumsum([0] + [len(g.numbers) for g in graphs])
    out = {
        "pos": torch.tensor(np.concatenate([g.positions for g in graphs]), dtype=dtype),
        "numbers": torch.tensor(np.concatenate([g.numbers for g in graphs]), dtype=torch.long),
        "edge_index": torch.tensor(np.concatenate([g.edge_index + o for g, o in zip(graphs, offsets)], axis=1),
                                   dtype=torch.long),
        "edge_shift": torch.tensor(np.concatenate([g.edge_shift for g in graphs]), dtype=dtype),
        "cell": torch.tensor(np.stack([g.cell for g in graphs]), dtype=dtype),
        "batch": torch.tensor(np.repeat(np.arange(len(graphs)), np.diff(offsets)), dtype=torch.long),
    }
    if all(g.born_charges is not None for g in graphs):
        out["born_charges"] = torch.tensor(np.concatenate([g.born_charges for g in graphs]), dtype=dtype)
    return {k: v.to(device) for k, v in out.items()}


MODEL_INPUTS = ("pos", "numbers", "edge_index", "edge_shift", "cell", "batch")


def model_inputs(batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, ...]:
    return tuple(batch[k] for k in MODEL_INPUTS)


def split_indices(n: int, seed: int = 0, fractions: Tuple[float, float, float] = (0.6, 0.2, 0.2)
                  ) -> Dict[str, List[int]]:
    """Seeded random train / validation / test split (the paper's 6:2:2): disjoint, covering all n."""
    if n < 3:
        raise BornDataError(f"need at least 3 structures to split, got {n}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train = max(1, int(round(fractions[0] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    n_train = min(n_train, n - n_val - 1)
    return {"train": sorted(perm[:n_train].tolist()), "validation": sorted(perm[n_train:n_train + n_val].tolist()),
            "test": sorted(perm[n_train + n_val:].tolist())}


def batches(indices: Sequence[int], batch_size: int, rng: Optional[np.random.Generator] = None) -> List[List[int]]:
    """Consecutive batches of ``indices`` (shuffled with ``rng``)."""
    idx = list(indices)
    if rng is not None:
        idx = [idx[k] for k in rng.permutation(len(idx))]
    return [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]


def elements_of(graphs: Sequence[Graph]) -> List[int]:
    return sorted({int(z) for g in graphs for z in g.numbers})
