"""Embeddings of the network's inputs: the sinusoidal time embedding and the class embedding with a null label.

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

The class embedding of classifier-free guidance [CFG] §3.2 is a table of ``num_classes + 1`` learned rows; the last
row, id ``num_classes`` (the model's ``null_label``), is the "no class" embedding, and ``cond=None`` means every
example takes it. :func:`add_class_embedding` is the one place both denoisers add it to the time embedding.

References:
    [DDPM] Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [CFG]  Ho, Salimans 2022, arXiv:2207.12598
    [TF]   Vaswani et al. 2017, "Attention is all you need", arXiv:1706.03762
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["sinusoidal_embedding", "SinusoidalEmbedding", "ClassEmbedding", "add_class_embedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of the time steps ``t``.

    Args:
        t: (B,) tensor of time steps (int or float; any device).
        dim: embedding dimension D, even and >= 4.
        max_period: the longest wavelength, 10,000 in [TF] and [DDPM].
        dtype: the floating dtype the embedding is computed in (the models pass their input's, so a float64
            model runs in float64 throughout; float32 is the default and gives the values it always gave).

    Returns:
        (B, D) tensor of ``dtype`` on ``t``'s device: ``[sin(t * freq), cos(t * freq)]``.
    """
    if dim < 4 or dim % 2:
        raise ValueError(f"dim must be an even integer >= 4, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    # [TF] Sec. 3.5 / [DDPM] reference code: geometric frequencies from 1 down to 1 / max_period.
    exponent = torch.arange(half, device=t.device, dtype=dtype) * (-math.log(max_period) / (half - 1))
    args = t.to(dtype)[:, None] * torch.exp(exponent)[None, :]  # (B, half)
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


class ClassEmbedding(nn.Embedding):
    """``num_classes + 1`` learned rows of width ``dim``; row ``num_classes`` is the null ("unconditional") class.

    (B,) long ids in 0..num_classes -> (B, dim). An ``nn.Embedding`` (its parameter is ``weight``), initialised
    N(0, 1) like one.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 for a class embedding, got {num_classes}")
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes

    @property
    def null_label(self) -> int:
        return self.num_classes


def add_class_embedding(emb: torch.Tensor, class_emb: ClassEmbedding | None, cond: torch.Tensor | None
                        ) -> torch.Tensor:
    """``emb`` (B, E) plus the class embedding of ``cond`` (B,) ([CFG] §3.2); cond=None takes the null row.

    An unconditional model (``class_emb`` None) returns ``emb`` and refuses a ``cond``.
    """
    if class_emb is None:
        if cond is not None:
            raise ValueError("cond was given but the model is unconditional (num_classes=0)")
        return emb
    if cond is None:  # unconditional: the learned null row for every example
        cond = torch.full((emb.shape[0],), class_emb.null_label, dtype=torch.long, device=emb.device)
    return emb + class_emb(cond)
