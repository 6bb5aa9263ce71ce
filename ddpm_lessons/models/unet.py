"""The DDPM U-Net: residual blocks, GroupNorm, SiLU, sinusoidal time embedding, self-attention.

The architecture follows [DDPM] Appendix B: a PixelCNN++-style U-Net [PCNN] with ``num_res_blocks`` residual blocks
per resolution, group normalisation [GN], the sinusoidal time embedding of [TF] added into every residual block
through a learned projection, single-head self-attention at the resolutions in ``attn_resolutions`` (16x16 for
CIFAR-10) and in the middle, dropout inside the residual blocks, nearest-neighbour upsampling followed by a 3x3
convolution, and strided 3x3 convolutions for downsampling. ``ddpm_cifar10()`` is the paper's 35.7M-parameter
CIFAR-10 model (ch 128, ch_mult 1,2,2,2, 2 residual blocks, attention at 16x16, dropout 0.1).

Additions used by later lessons:

* class conditioning for classifier-free guidance [CFG]: an embedding table with ``num_classes + 1`` rows whose last
  row (``null_label == num_classes``) is the learned "no class" embedding; ``cond=None`` means all-null;
* ``learn_sigma``: the output has twice the input channels, the second half parameterising the reverse variance as
  in [IDDPM] Sec. 3.1 (interpreted by ``ddpm_lessons.losses`` / ``ddpm_lessons.samplers``);
* ``objective``: which quantity the output predicts ("eps", "x0" or "v"); the network itself is the same.

GPU notes: the forward pass does no host synchronisation (no ``.item()``, no data-dependent Python branches), so it
compiles with ``torch.compile(fullgraph=True)``; attention goes through ``F.scaled_dot_product_attention`` (flash /
memory-efficient kernels on CUDA) with reshapes that are free views for ``channels_last`` inputs.

Model call (the package-wide protocol): ``model(xt, t, cond=None)`` with xt (B, C, H, W), t a LongTensor (B,) of
paper time steps 1..T (embedded as given), cond None or a LongTensor (B,) of class ids in 0..num_classes.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [PCNN]  Salimans et al. 2017, PixelCNN++, arXiv:1701.05517
    [GN]    Wu, He 2018, Group normalization, arXiv:1803.08494
    [TF]    Vaswani et al. 2017, arXiv:1706.03762
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lessons.models import protocol
from ddpm_lessons.models.embeddings import ClassEmbedding, add_class_embedding, sinusoidal_embedding

__all__ = ["UNet", "ResBlock", "AttnBlock", "ddpm_cifar10", "digits_unet"]


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters: each residual branch starts as the identity ([DDPM] reference code)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block: GN -> SiLU -> conv3x3 -> + time projection -> GN -> SiLU -> dropout -> conv3x3 (+ skip).

    x (B, C_in, H, W), emb (B, E) -> (B, C_out, H, W). The skip is a 1x1 convolution when C_in != C_out. With
    ``scale_shift`` the embedding sets a per-channel scale and shift of the second normalisation,
    GN(h) * (1 + scale) + shift ([IDDPM] App. A / Dhariwal & Nichol 2021 "AdaGN"), instead of adding a bias.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, num_groups: int,
                 scale_shift: bool = False) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(num_groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = nn.GroupNorm(num_groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(emb)[:, :, None, None]  # (B, C_out or 2 C_out, 1, 1), broadcast over H, W
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Multi-head self-attention over the H*W positions (single head in [DDPM]), with a residual connection.

    x (B, C, H, W) -> (B, C, H, W). q, k, v come from one 1x1 convolution (the same parameters as three).
    """

    def __init__(self, ch: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        if ch % num_heads:
            raise ValueError(f"num_heads must divide the channels {ch}, got {num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        nh = self.num_heads
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        # Through (B, H, W, 3C): a view when x is channels_last.
        qkv = qkv.permute(0, 2, 3, 1).reshape(B, H * W, 3, nh, C // nh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, nh, HW, C/nh)
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, (B, nh, HW, C/nh)
        h = h.transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W), channels_last layout
        return x + self.proj(h)


class Downsample(nn.Module):
    """Strided 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Time- (and optionally class-) conditioned U-Net of [DDPM] Appendix B.

    Args:
        in_channels: image channels C (3 for CIFAR-10, 1 for digits / MNIST).
        ch: base width; level i has ``ch * ch_mult[i]`` channels; the time embedding has ``4 * ch``.
        ch_mult: width multipliers per resolution level; the image is halved between levels.
        num_res_blocks: residual blocks per level on the way down (``num_res_blocks + 1`` on the way up).
        attn_resolutions: spatial sizes (e.g. ``(16,)``) at which self-attention follows each residual block.
        dropout: dropout probability inside the residual blocks (0.1 for CIFAR-10 in [DDPM]).
        image_size: H = W of the input; must be divisible by ``2 ** (len(ch_mult) - 1)``.
        num_classes: number of classes for conditioning (0: unconditional, no embedding table).
        learn_sigma: output 2C channels (prediction, then the [IDDPM] variance interpolation v).
        objective: "eps", "x0" or "v" -- what the first C output channels predict.
        num_heads: attention heads (1 in [DDPM]).
        num_groups: GroupNorm groups (32 in [DDPM]); must divide every width.
        mid_attn: self-attention in the middle block ([DDPM]: yes).
        scale_shift: condition each residual block by a scale and shift of its second GroupNorm ([IDDPM] / ADM)
            rather than by an added bias ([DDPM]). Adds ``out_ch * 4 ch`` parameters per block.

    Forward: ``(xt (B, C, H, W), t (B,), cond None | (B,) long) -> (B, C or 2C, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        image_size: int = 32,
        num_classes: int = 0,
        learn_sigma: bool = False,
        objective: str = "eps",
        num_heads: int = 1,
        num_groups: int = 32,
        mid_attn: bool = True,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        attn_resolutions = tuple(int(r) for r in attn_resolutions)
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if ch < 1 or not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"ch must be >= 1 and ch_mult a non-empty tuple of ints >= 1, got {ch}, {ch_mult}")
        if num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if image_size < 1 or image_size % (2 ** (len(ch_mult) - 1)):
            raise ValueError(
                f"image_size must be a positive multiple of 2**(len(ch_mult)-1) = {2 ** (len(ch_mult) - 1)}, "
                f"got {image_size}"
            )
        widths = {ch * m for m in ch_mult} | {ch}
        if any(w % num_groups for w in widths):
            raise ValueError(f"num_groups must divide every width {sorted(widths)}, got {num_groups}")

        # Everything needed to rebuild the model: UNet(**model.config).
        self.config: dict[str, Any] = dict(
            in_channels=in_channels, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions, dropout=dropout, image_size=image_size, num_classes=num_classes,
            learn_sigma=learn_sigma, objective=objective, num_heads=num_heads, num_groups=num_groups,
            mid_attn=mid_attn, scale_shift=scale_shift,
        )
        protocol.declare(self, objective, learn_sigma, num_classes)  # objective, learn_sigma, num_classes, null_label
        self.in_channels = in_channels
        self.image_size = image_size
        self.ch = ch
        emb_dim = 4 * ch

        # [DDPM] App. B: sinusoidal embedding of t -> Dense -> SiLU -> Dense, shared by every residual block.
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # [CFG] Sec. 3.2: one extra row, null_label = num_classes, is the learned unconditional embedding.
        self.class_emb = ClassEmbedding(num_classes, emb_dim) if num_classes > 0 else None

        def block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout, num_groups, scale_shift)

        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skip_ch = [ch]  # channels of every tensor the up path will concatenate
        cur, res = ch, image_size
        for level, mult in enumerate(ch_mult):
            out = ch * mult
            for _ in range(num_res_blocks):
                attn = AttnBlock(out, num_heads, num_groups) if res in attn_resolutions else nn.Identity()
                self.down.append(nn.ModuleList([block(cur, out), attn]))
                cur = out
                skip_ch.append(cur)
            if level != len(ch_mult) - 1:
                self.down.append(Downsample(cur))
                res //= 2
                skip_ch.append(cur)

        self.mid1 = block(cur, cur)
        self.mid_attn = AttnBlock(cur, num_heads, num_groups) if mid_attn else nn.Identity()
        self.mid2 = block(cur, cur)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            out = ch * mult
            for _ in range(num_res_blocks + 1):
                attn = AttnBlock(out, num_heads, num_groups) if res in attn_resolutions else nn.Identity()
                self.up.append(nn.ModuleList([block(cur + skip_ch.pop(), out), attn]))
                cur = out
            if level != 0:
                self.up.append(Upsample(cur))
                res *= 2
        assert not skip_ch

        self.norm_out = nn.GroupNorm(num_groups, cur)
        self.out_channels = in_channels * (2 if learn_sigma else 1)
        self.conv_out = _zero(nn.Conv2d(cur, self.out_channels, 3, padding=1))

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Time (+ class) embedding, (B,) and (B,) | None -> (B, 4 ch), the sinusoid computed in ``dtype``."""
        return add_class_embedding(self.time_mlp(sinusoidal_embedding(t, self.ch, dtype=dtype)), self.class_emb, cond)

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``objective`` (and the variance interpolation when ``learn_sigma``).

        xt (B, C, H, W) float; t (B,) time steps (paper indexing 1..T); cond None or (B,) long class ids in
        0..num_classes (num_classes = null). Returns (B, C, H, W), or (B, 2C, H, W) with ``learn_sigma``.
        """
        if xt.ndim != 4 or xt.shape[1] != self.in_channels:
            raise ValueError(f"xt must have shape (B, {self.in_channels}, H, W), got {tuple(xt.shape)}")
        if xt.shape[-1] % (2 ** (len(self.config["ch_mult"]) - 1)) or xt.shape[-2] % (
            2 ** (len(self.config["ch_mult"]) - 1)
        ):
            raise ValueError(f"H and W must be multiples of {2 ** (len(self.config['ch_mult']) - 1)}, "
                             f"got {tuple(xt.shape[-2:])}")
        if t.ndim == 0:
            t = t.expand(xt.shape[0])
        emb = F.silu(self.embed(t, cond, xt.dtype))  # the blocks' projections see SiLU(emb), as in the reference code
        h = self.conv_in(xt)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, Downsample):
                h = layer(h)
            else:
                res_block, attn = layer
                h = attn(res_block(h, emb))
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                res_block, attn = layer
                h = attn(res_block(torch.cat([h, hs.pop()], dim=1), emb))
        return self.conv_out(F.silu(self.norm_out(h)))


def ddpm_cifar10(num_classes: int = 0, learn_sigma: bool = False, objective: str = "eps",
                 dropout: float = 0.1) -> UNet:
    """The [DDPM] CIFAR-10 model (App. B): ch 128, ch_mult (1, 2, 2, 2), 2 residual blocks per level,
    single-head attention at 16x16, dropout 0.1, 32x32x3 images -- 35.7M parameters (35,746,307 exactly when
    unconditional without learn_sigma, the same count as diffusers' UNet2DModel in that configuration);
    12.4 GFLOP per 32x32 image forward (torch's FLOP counter), about 37 GFLOP per training image."""
    return UNet(in_channels=3, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                dropout=dropout, image_size=32, num_classes=num_classes, learn_sigma=learn_sigma,
                objective=objective)


def digits_unet(num_classes: int = 10, ch: int = 32, ch_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1,
                attn_resolutions: Sequence[int] = (4,), dropout: float = 0.0, learn_sigma: bool = False,
                objective: str = "eps", num_groups: int = 8, scale_shift: bool = True) -> UNet:
    """A tiny class-conditional U-Net for the 8x8 scikit-learn digits that trains in about a minute on a CPU:
    widths 32 (8x8) and 64 (4x4), one residual block per level, attention at 4x4 and in the middle, scale-shift
    conditioning; 756k parameters (703k without ``scale_shift``), 32 MFLOP per image forward.

    Chosen with ``bench/bench_quality.py``: at a fixed CPU budget, narrower 8x8 levels (16 or 24 channels), a third
    level, or smaller batches did not beat it; scale-shift conditioning gave about two points of class adherence.
    """
    return UNet(in_channels=1, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
                attn_resolutions=attn_resolutions, dropout=dropout, image_size=8, num_classes=num_classes,
                learn_sigma=learn_sigma, objective=objective, num_heads=1, num_groups=num_groups,
                scale_shift=scale_shift)
