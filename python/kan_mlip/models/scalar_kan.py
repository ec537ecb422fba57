"""ScalarKAN: nequip graph module with the contract of nequip's ScalarMLP, KAN layers inside."""

from typing import Any, Dict, Optional

import torch
from e3nn.o3._irreps import Irreps
from e3nn.util.jit import compile_mode
from nequip.data import AtomicDataDict
from nequip.nn import GraphModuleMixin

from ..nn import KANMLP


@compile_mode("script")
class ScalarKAN(GraphModuleMixin, torch.nn.Module):
    """Apply a KAN to a scalar field: drop-in for ``nequip.nn.ScalarMLP``.

    ``output_dim``, ``hidden_layers_depth``, ``hidden_layers_width``, ``field``, ``out_field`` and
    ``irreps_in`` mean what they mean for ScalarMLP. ``basis`` / ``basis_options`` choose the KAN
    basis (see ``kan_mlip.nn.KANLinear``). ``zero_at_origin=True`` (default) maps zero features to
    zero output, as the bias-free ScalarMLP does; Allegro's smooth cutoff depends on it.
    """

    field: str
    out_field: str

    def __init__(
        self,
        output_dim: int,
        hidden_layers_depth: int = 0,
        hidden_layers_width: Optional[int] = None,
        basis: str = "gaussian",
        basis_options: Optional[Dict[str, Any]] = None,
        zero_at_origin: bool = True,
        field: str = AtomicDataDict.NODE_FEATURES_KEY,
        out_field: Optional[str] = None,
        irreps_in=None,
    ):
        super().__init__()
        self.field = field
        self.out_field = out_field if out_field is not None else field
        available = sorted((irreps_in or {}).keys())
        if field not in (irreps_in or {}):
            raise ValueError(f"ScalarKAN: option 'field'={field!r} is not a field of the model; available fields: {available}")
        irreps = Irreps(irreps_in[field])
        if len(irreps) != 1 or irreps[0].ir != (0, 1):
            raise ValueError(f"ScalarKAN: field {field!r} must hold scalars (Nx0e), got irreps {irreps}")
        self._init_irreps(irreps_in=irreps_in, required_irreps_in=[self.field])
        self.kan = KANMLP(
            input_dim=irreps[0].mul,
            output_dim=output_dim,
            hidden_layers_depth=hidden_layers_depth,
            hidden_layers_width=hidden_layers_width,
            basis=basis,
            basis_options=basis_options,
            zero_at_origin=zero_at_origin,
        )
        self.irreps_out[self.out_field] = Irreps([(output_dim, (0, 1))])

    def forward(self, data: AtomicDataDict.Type) -> AtomicDataDict.Type:
        data[self.out_field] = self.kan(data[self.field])
        return data
