"""Using a trained ETGNN Born-charge model: TorchScript deployment, a predictor and an ASE calculator.

``deploy(checkpoint, "bec.pt")`` writes a TorchScript file that runs without this package's Python code (only
torch, and the kan_mlip ops library when the model has KAN layers and the ops were built); its metadata (cutoff,
elements, dtype) travels inside the file. ``BornChargePredictor`` takes either file, builds the periodic graph
with ASE and returns Z* as (N, 3, 3) arrays; ``ETGNNCalculator`` is the same as an ASE calculator with the
property ``born_charges``.
"""

import json
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from kan_mlip.nn.ops import fused_ops_available

from .data import BornDataError, build_graph, collate, model_inputs
from .train import DTYPES, load_checkpoint

METADATA = "etgnn_metadata.json"


def deploy(checkpoint: Union[str, Path], output: Union[str, Path], dtype: str = "") -> Path:
    """Script a checkpoint's model (eval mode) and save it with its metadata; checks scripted == eager."""
    model, ckpt = load_checkpoint(checkpoint)
    dtype = dtype or ckpt["dtype"]
    model = model.to(DTYPES[dtype]).eval()
    scripted = torch.jit.script(model)
    _check_scripted(model, scripted)
    meta = {"format": "kan_mlip.etgnn.torchscript/1", "cutoff": model.cutoff, "elements": model.elements,
            "dtype": dtype, "sum_rule": model.sum_rule, "head": model.config["head"],
            "model_config": model.config}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(output), _extra_files={METADATA: json.dumps(meta)})
    return output


def _check_scripted(model: torch.nn.Module, scripted: torch.jit.ScriptModule) -> None:
    """The scripted model must give the eager model's tensors on a small periodic test structure."""
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(0)
    n = 6
    cell = torch.eye(3, dtype=dtype) * 0.9 * model.cutoff + 0.1 * torch.rand(3, 3, generator=gen, dtype=dtype)
    pos = torch.rand(n, 3, generator=gen, dtype=dtype) @ cell
    numbers = torch.tensor([model.elements[k % len(model.elements)] for k in range(n)])
    src, dst, shifts = [], [], []
    for i in range(n):
        for j in range(n):
            for s in [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]:
                if i == j and s == (0, 0, 0):
                    continue
                d = pos[j] + torch.tensor(s, dtype=dtype) @ cell - pos[i]
                if 0.5 < float(d.norm()) < model.cutoff:
                    src.append(i), dst.append(j), shifts.append(s)
    inputs = (pos, numbers, torch.tensor([src, dst]), torch.tensor(shifts, dtype=dtype), cell.unsqueeze(0),
              torch.zeros(n, dtype=torch.long))
    with torch.no_grad():
        eager, script = model(*inputs), scripted(*inputs)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    if not torch.allclose(eager, script, atol=tol * max(1.0, float(eager.abs().max())), rtol=0):
        raise RuntimeError(f"the scripted model differs from the eager one by {float((eager - script).abs().max()):.2e}")


def load_model(path: Union[str, Path]) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """A TorchScript file from ``deploy`` or a training checkpoint -> (model in eval mode, metadata)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    fused_ops_available()  # a scripted KAN layer calls the kan_mlip ops: register them before loading
    try:
        extra = {METADATA: ""}
        model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        if not extra[METADATA]:
            raise ValueError(f"{path} is a TorchScript file without ETGNN metadata (not written by kan-etgnn deploy)")
        return model.eval(), json.loads(extra[METADATA])
    except RuntimeError:
        pass  # not TorchScript: a checkpoint
    model, ckpt = load_checkpoint(path)
    return model, {"format": "checkpoint", "cutoff": model.cutoff, "elements": model.elements,
                   "dtype": ckpt["dtype"], "sum_rule": model.sum_rule, "head": model.config["head"],
                   "model_config": model.config}


class BornChargePredictor:
    """Z* of ASE structures from a deployed model or checkpoint.

    ``predict(atoms)`` -> (N, 3, 3) numpy array in e. Elements the model was not trained on raise ValueError.
    An atom with no neighbour within the cutoff has no term in the model: its Z* is zero (minus the structure's
    mean with the sum rule), and a warning names it."""

    def __init__(self, model_path: Union[str, Path], dtype: str = ""):
        self.model, self.metadata = load_model(model_path)
        self.dtype = DTYPES[dtype or self.metadata["dtype"]]
        if dtype and dtype != self.metadata["dtype"] and self.metadata["format"] == "checkpoint":
            self.model = self.model.to(self.dtype)
        self.cutoff = float(self.metadata["cutoff"])
        self.elements = list(self.metadata["elements"])

    def check_elements(self, atoms) -> None:
        unknown = sorted(set(int(z) for z in atoms.numbers) - set(self.elements))
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in unknown)
            raise ValueError(f"the model was not trained on element(s) {names}; it knows "
                             f"{' '.join(chemical_symbols[z] for z in self.elements)}")

    @torch.no_grad()
    def predict(self, atoms) -> np.ndarray:
        self.check_elements(atoms)
        graph = build_graph(atoms, self.cutoff, key=None)
        isolated = graph.isolated
        if len(isolated):
            warnings.warn(f"atom(s) {isolated.tolist()} have no neighbour within the cutoff {self.cutoff} A: "
                          "their Born charge has no term in the model (zero before the sum-rule correction)",
                          stacklevel=2)
        z = self.model(*model_inputs(collate([graph], dtype=self.dtype)))
        return z.to(torch.float64).numpy()


class ETGNNCalculator(Calculator):
    """ASE calculator with one property, ``born_charges`` (N, 3, 3) in e:
    ``atoms.calc = ETGNNCalculator("bec.pt"); atoms.calc.get_property("born_charges", atoms)``."""

    implemented_properties = ["born_charges"]

    def __init__(self, model_path: Union[str, Path], dtype: str = "", **kwargs):
        super().__init__(**kwargs)
        self.predictor = BornChargePredictor(model_path, dtype=dtype)

    def calculate(self, atoms=None, properties=("born_charges",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["born_charges"] = self.predictor.predict(self.atoms)


__all__ = ["deploy", "load_model", "BornChargePredictor", "ETGNNCalculator", "BornDataError"]
