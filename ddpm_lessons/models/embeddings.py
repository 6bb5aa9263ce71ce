"""Sinusoidal time embeddings.

The diffusion step t enters the network through the sinusoidal position encoding of the Transformer
[TF] Sec. 3.5, which the DDPM U-Net uses for its time input [DDPM] Appendix B ("Diffusion time t is specified by
adding the Transformer sinusoidal position embedding into each residual block"). For a scalar t and an even
embedding dimension D, with half = D / 2 and frequencies

    freq_i = max_period ** (-i / (half - 1)),     i = 0 .. half - 1,

the embedding is ``[sin(t * freq_0), ..., sin(t * freq_{half-1}), cos(t * freq_0), ..., cos(t * freq_{half-1})]``.
(The [TF] paper interleaves sin and cos over 2i / D; the DDPM reference code concatenates the two halves and divides
by half - 1. Only a fixed permutation and a slightly different frequency grid separate them, so the network cannot
tell; we follow the DDPM code.)

t is taken as a float so that respaced chains (whose model inputs are the original chain's t) and continuous-time
inputs use the same function. Models in this package embed the paper index t = 1..T directly.

References:
    [DDPM] Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [TF]   Vaswani et al. 2017, "Attention is all you need", arXiv:1706.03762
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["sinusoidal_embedding", "SinusoidalEmbedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of the time steps ``t``.

    Args:
        t: (B,) tensor of time steps (int or float; any device).
        dim: embedding dimension D, even and >= 4.
        max_period: the longest wavelength, 10,000 in [TF] and [DDPM].

    Returns:
        (B, D) float32 tensor on ``t``'s device: ``[sin(t * freq), cos(t * freq)]``.
    """
    if dim < 4 or dim % 2:
        raise ValueError(f"dim must be an even integer >= 4, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    # [TF] Sec. 3.5 / [DDPM] reference code: geometric frequencies from 1 down to 1 / max_period.
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(max_period) / (half - 1))
    args = t.to(torch.float32)[:, None] * torch.exp(exponent)[None, :]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, D)


class SinusoidalEmbedding(nn.Module):
    """Module wrapper of :func:`sinusoidal_embedding` (no parameters)."""

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 4, got {dim}")
        self.dim = dim
        self.max_period = max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) time steps -> (B, dim) embedding."""
        return sinusoidal_embedding(t, self.dim, self.max_period)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"
