"""A time-conditioned residual MLP denoiser for low-dimensional (2-D) data.

The same role as the U-Net of [DDPM] for images, shrunk to vectors: the input x_t (B, D) is lifted to a hidden width,
passed through residual blocks ``h <- h + W2 SiLU(W1 SiLU(h) + E_b(emb))`` in which ``emb`` is the sinusoidal
embedding of t ([TF] Sec. 3.5, as in [DDPM] App. B) after a small MLP, and projected back to D outputs (2D with
``learn_sigma``, the second half the [IDDPM] variance interpolation). An optional class embedding with a learned
null row (id ``num_classes``) conditions it for classifier-free guidance [CFG]. The output layer starts at zero.

Model call (the package-wide protocol): ``model(xt, t, cond=None)``; xt (B, D), t (B,) paper time steps 1..T,
cond None or (B,) long class ids in 0..num_classes.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [TF]    Vaswani et al. 2017, arXiv:1706.03762
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.models import protocol
from ddpm_lessons.models.embeddings import ClassEmbedding, add_class_embedding, sinusoidal_embedding

__all__ = ["MLPDenoiser", "mixture_mlp"]


class _Block(nn.Module):
    """h (B, H), emb (B, E) -> h + W2 SiLU(W1 SiLU(norm h) + E emb) (norm: LayerNorm or the identity)."""

    def __init__(self, hidden: int, emb_dim: int, dropout: float, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if norm else nn.Identity()
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb_proj = nn.Linear(emb_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(F.silu(self.norm(h))) + self.emb_proj(emb)
        return h + self.fc2(self.dropout(F.silu(z)))


class MLPDenoiser(nn.Module):
    """Residual MLP denoiser for (B, dim) data.

    Args:
        dim: data dimension D (2 for the 2-D toys).
        hidden: hidden width.
        num_blocks: residual blocks.
        emb_dim: width of the sinusoidal time embedding (and of the time / class embedding MLP).
        num_classes: classes for conditioning (0: unconditional).
        learn_sigma: output 2D values (prediction, then the [IDDPM] variance interpolation).
        objective: "eps", "x0" or "v".
        dropout: dropout inside the blocks.
        norm: LayerNorm at the start of each block's branch. Off by default: on the 2-D mixtures it doubled the
            denoising error around t = 50..100 (where the posterior switches between modes) for the same budget.

    Forward: ``(xt (B, D), t (B,), cond None | (B,) long) -> (B, D or 2D)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, num_blocks: int = 2, emb_dim: int = 64,
                 num_classes: int = 0, learn_sigma: bool = False, objective: str = "eps",
                 dropout: float = 0.0, norm: bool = False) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if hidden < 1 or num_blocks < 1:
            raise ValueError(f"hidden and num_blocks must be >= 1, got {hidden}, {num_blocks}")
        if emb_dim < 4 or emb_dim % 2:
            raise ValueError(f"emb_dim must be an even integer >= 4, got {emb_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config: dict[str, Any] = dict(dim=dim, hidden=hidden, num_blocks=num_blocks, emb_dim=emb_dim,
                                           num_classes=num_classes, learn_sigma=learn_sigma, objective=objective,
                                           dropout=dropout, norm=norm)
        protocol.declare(self, objective, learn_sigma, num_classes)  # objective, learn_sigma, num_classes, null_label
        self.dim = dim
        self.emb_dim = emb_dim
        self.out_dim = dim * (2 if learn_sigma else 1)

        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # [CFG]: row num_classes is the learned null ("unconditional") embedding.
        self.class_emb = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([_Block(hidden, emb_dim, dropout, norm) for _ in range(num_blocks)])
        self.out = nn.Linear(hidden, self.out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """xt (B, D), t (B,), cond None | (B,) -> (B, D) (or (B, 2D) with ``learn_sigma``)."""
        if xt.ndim != 2 or xt.shape[1] != self.dim:
            raise ValueError(f"xt must have shape (B, {self.dim}), got {tuple(xt.shape)}")
        if t.ndim == 0:
            t = t.expand(xt.shape[0])
        if protocol.is_shared_t(t):  # one step for the batch (the samplers): embed it once, broadcast below
            t = t[:1]
        emb = self.time_mlp(sinusoidal_embedding(t, self.emb_dim, dtype=xt.dtype))  # (B or 1, E)
        emb = F.silu(add_class_embedding(emb, self.class_emb, cond))
        h = self.inp(xt)  # (B, hidden)
        for blk in self.blocks:
            h = blk(h, emb)
        # No normalisation here: the output must be able to grow with |x_t| (eps ~ x_t at large t), which a final
        # LayerNorm would forbid -- DDIM then sends points from the tails of x_T off to infinity.
        return self.out(F.silu(h))  # (B, D or 2D)


def mixture_mlp(num_classes: int = 0, learn_sigma: bool = False, objective: str = "eps", hidden: int = 128,
                num_blocks: int = 2, emb_dim: int = 64) -> MLPDenoiser:
    """The 2-D denoiser the notebooks train on the Gaussian mixtures: 91,650 parameters, 0.18 MFLOP per point."""
    return MLPDenoiser(dim=2, hidden=hidden, num_blocks=num_blocks, emb_dim=emb_dim, num_classes=num_classes,
                       learn_sigma=learn_sigma, objective=objective)
