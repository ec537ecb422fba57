"""KANMLP: a stack of KANLinear layers with the dims contract of nequip's ScalarMLPFunction."""

from typing import Any, Dict, List, Optional, Sequence

import torch

from .kan_linear import KANLinear


class KANMLP(torch.nn.Module):
    """``dims = [input_dim] + hidden_layers_depth * [hidden_layers_width] + [output_dim]``.

    No activation sits between layers: each KANLinear is already nonlinear.
    """

    num_layers: int
    is_nonlinear: bool

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_layers_depth: int = 0,
        hidden_layers_width: Optional[int] = None,
        basis: str = "gaussian",
        basis_options: Optional[Dict[str, Any]] = None,
        zero_at_origin: bool = True,
    ):
        super().__init__()
        if hidden_layers_depth < 0:
            raise ValueError(f"hidden_layers_depth must be >= 0, got {hidden_layers_depth}")
        if hidden_layers_depth > 0 and (hidden_layers_width is None or hidden_layers_width < 1):
            raise ValueError(f"hidden_layers_width must be >= 1 when hidden_layers_depth > 0, got {hidden_layers_width}")
        self.dims: List[int] = [input_dim] + hidden_layers_depth * [int(hidden_layers_width or 0)] + [output_dim]
        self.num_layers = len(self.dims) - 1
        self.is_nonlinear = True
        options = dict(basis_options or {})
        self.layers = torch.nn.ModuleList(
            [
                KANLinear(d_in, d_out, basis=basis, zero_at_origin=zero_at_origin, **options)
                for d_in, d_out in zip(self.dims, self.dims[1:])
            ]
        )

    @classmethod
    def from_dims(cls, dims: Sequence[int], **kwargs) -> "KANMLP":
        """Same widths as an existing MLP's ``dims`` (hidden layers must share one width)."""
        hidden = list(dims[1:-1])
        if len(set(hidden)) > 1:
            raise ValueError(f"KANMLP needs equal hidden widths, got dims {list(dims)}")
        return cls(dims[0], dims[-1], len(hidden), hidden[0] if hidden else None, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.jit.unused
    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> torch.Tensor:
        return sum(layer.regularization_loss(regularize_activation, regularize_entropy) for layer in self.layers)
