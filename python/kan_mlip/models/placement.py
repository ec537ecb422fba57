"""Where KAN layers go in a model: named blocks, presets for the paper's Table 1 rows, validation."""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from nequip.nn import ScalarMLP

from ..nn import KANMLP, make_basis
from .scalar_kan import ScalarKAN

Placement = Union[str, Sequence[str]]


@dataclass(frozen=True)
class KANSpec:
    """A validated choice of basis and basis options, shared by every KAN block of a model."""

    basis: str = "gaussian"
    options: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, basis: str, options: Optional[Mapping[str, Any]]) -> "KANSpec":
        options = dict(options or {})
        make_basis(basis, 1, **options)  # raises ValueError naming the bad basis / option
        return cls(basis, options)

    def scalar_kan_like(self, mlp: ScalarMLP) -> ScalarKAN:
        """A ScalarKAN with the fields and widths of an existing ScalarMLP."""
        dims = mlp.mlp_module.dims
        hidden = _hidden(dims)
        return ScalarKAN(
            output_dim=dims[-1],
            hidden_layers_depth=len(hidden),
            hidden_layers_width=hidden[0] if hidden else None,
            basis=self.basis,
            basis_options=self.options,
            field=mlp.field,
            out_field=mlp.out_field,
            irreps_in=mlp.irreps_in,
        )

    def kan_mlp_like(self, mlp: torch.nn.Module) -> KANMLP:
        """A KANMLP with the widths of an existing ScalarMLPFunction."""
        return KANMLP.from_dims(mlp.dims, basis=self.basis, basis_options=self.options)


def _hidden(dims: Sequence[int]) -> Sequence[int]:
    return list(dims[1:-1])


def resolve_placement(placement: Placement, blocks: Sequence[str], presets: Mapping[str, Tuple[str, ...]]) -> Tuple[str, ...]:
    """A preset name or a list of block names -> the tuple of blocks that get KAN layers."""
    if isinstance(placement, str):
        if placement not in presets:
            raise ValueError(
                f"Unknown kan_placement {placement!r}: allowed presets are {sorted(presets)}, "
                f"or a list of blocks from {list(blocks)}"
            )
        return presets[placement]
    chosen = tuple(placement)
    unknown = [b for b in chosen if b not in blocks]
    if unknown:
        raise ValueError(f"Unknown block(s) {unknown} in kan_placement: allowed blocks are {list(blocks)}")
    return tuple(b for b in blocks if b in chosen)
