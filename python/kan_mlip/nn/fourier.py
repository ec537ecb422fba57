"""Fourier basis as in FourierKAN: cos(k x) and sin(k x) for k = 1..K.

The basis is periodic with period 2*pi and bounded, so the layer stays smooth and finite for any
input; inputs far from the origin alias onto the same period. It has no grid, hence no grid update.
"""

import torch


class FourierBasis(torch.nn.Module):
    """``phi(x)[n, i, :] = [cos(x), ..., cos(K x), sin(x), ..., sin(K x)]`` (2K functions)."""

    num_basis: int

    def __init__(self, in_features: int, num_frequencies: int = 5):
        super().__init__()
        if int(num_frequencies) < 1:
            raise ValueError(f"fourier option 'num_frequencies' must be an integer >= 1, got {num_frequencies!r}")
        self.num_basis = 2 * int(num_frequencies)
        self.register_buffer("frequencies", torch.arange(1, int(num_frequencies) + 1).to(torch.get_default_dtype()))
        self.register_buffer("aux", torch.zeros(0))  # unused by this basis; the fused op's signature has it

    @property
    def grid(self) -> torch.Tensor:
        """The frequencies, shared by all features: the fused op's grid for this basis."""
        return self.frequencies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kx = x.unsqueeze(-1) * self.frequencies
        return torch.cat([torch.cos(kx), torch.sin(kx)], dim=-1)

    def extra_repr(self) -> str:
        return f"num_frequencies={self.num_basis // 2}"
