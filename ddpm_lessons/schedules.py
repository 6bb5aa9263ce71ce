"""Noise schedules in float64 with the papers' time index.

A ``Schedule`` with ``T`` steps holds tensors of length ``T + 1``. Index 0 is the identity (no noise):
``beta[0] = 0``, ``alpha[0] = 1``, ``alpha_bar[0] = 1``, so ``alpha_bar[t]`` is the paper's ᾱ_t for t = 1..T and
training draws t from 1..T while sampling runs T -> 1.

Index map to diffusers: diffusers numbers steps k = 0..T-1, so its ``alphas_cumprod[k]`` is our ``alpha_bar[k + 1]``
and its ``betas[k]`` our ``beta[k + 1]``; its scheduler timestep k is our t = k + 1.

Notation (ours -> paper):
    beta[t]           β_t                       [DDPM] Eq. 2
    alpha[t]          α_t = 1 - β_t             [DDPM] §2, above Eq. 4
    alpha_bar[t]      ᾱ_t = Π_{s<=t} α_s        [DDPM] Eq. 4
    alpha_bar_prev[t] ᾱ_{t-1}  (alpha_bar_prev[1] = ᾱ_0 = 1)
    beta_tilde[t]     β̃_t = (1-ᾱ_{t-1})/(1-ᾱ_t) β_t   [DDPM] Eq. 7 (β̃_1 = 0; beta_tilde[0] = 0 by convention)
    snr[t]            ᾱ_t / (1-ᾱ_t)            [VDM] Kingma et al. 2021, arXiv:2107.00630, Eq. 2

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
    [VDM]   Kingma, Salimans, Poole, Ho 2021, arXiv:2107.00630
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["Schedule", "linear", "cosine", "from_beta", "respace"]


def _version(x: torch.Tensor) -> int:
    """The tensor's in-place version counter (inference tensors have none and read as -1)."""
    return -1 if x.is_inference() else x._version


class _TableMemo(dict):
    """A Schedule's memo of derived tables (key -> (source versions, table, table version)). Host-side bookkeeping
    only: a deepcopy or pickle of the schedule starts with an empty memo instead of carrying the tables along (a
    shallow copy shares it, as it shares the field tensors)."""

    def __reduce__(self):
        return (_TableMemo, ())

    def __copy__(self) -> _TableMemo:
        return _TableMemo()

    def __deepcopy__(self, memo: dict) -> _TableMemo:
        return _TableMemo()


@dataclass(frozen=True)
class Schedule:
    """A discrete diffusion schedule, float64, indexed t = 0..T (0 = identity).

    Fields are 1-D float64 CPU tensors of shape (T+1,); ``timesteps`` (T+1,) long maps each index to the
    original chain's t (``timesteps[i] = i`` unless the schedule was built by :func:`respace`).
    Build with :func:`linear`, :func:`cosine`, :func:`from_beta` or :func:`respace`, not directly.
    """

    T: int
    beta: torch.Tensor
    alpha: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    beta_tilde: torch.Tensor
    timesteps: torch.Tensor
    name: str = "custom"
    parent_T: int = field(default=0)  # T of the chain this one was respaced from (= T when not respaced)
    # derived float64 tables computed once (see :meth:`_derived`); not part of the value
    _memo: _TableMemo = field(default_factory=_TableMemo, init=False, repr=False, compare=False)

    @property
    def snr(self) -> torch.Tensor:
        """ᾱ_t / (1 - ᾱ_t), shape (T+1,); ``snr[0]`` is +inf (no noise)."""
        return self.alpha_bar / (1.0 - self.alpha_bar)

    @property
    def log_snr(self) -> torch.Tensor:
        """log(ᾱ_t / (1 - ᾱ_t)), shape (T+1,); ``log_snr[0]`` is +inf."""
        return torch.log(self.alpha_bar) - torch.log1p(-self.alpha_bar)

    def _derived(self, key: str, fn: Callable[[Schedule], torch.Tensor]) -> torch.Tensor:
        """The table ``fn(self)`` (a CPU float64 tensor), computed on first use and then reused.

        The hot loops read the same derived coefficients (√ᾱ, √(1-ᾱ), log β̃, ...) on every call; computing each
        once keeps its value bit-identical to a fresh ``fn(self)`` and gives it a stable identity, so
        :func:`ddpm_lessons.forward.extract` copies it to an accelerator once. ``key`` names ``fn`` (one key, one
        function). An in-place change to a schedule field or to the returned table (tracked by the tensors'
        version counters) triggers a recomputation.
        """
        srcs = (self.beta, self.alpha, self.alpha_bar, self.alpha_bar_prev, self.beta_tilde, self.timesteps)
        versions = tuple(_version(x) for x in srcs)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == versions and hit[2] == _version(hit[1]):
            return hit[1]
        table = fn(self)
        self._memo[key] = (versions, table, _version(table))
        return table

    def check_t(self, t: torch.Tensor | int, name: str = "t") -> torch.Tensor:
        """Return ``t`` as a LongTensor after checking every entry lies in 1..T.

        Python ints and CPU tensors raise ValueError. A tensor on an accelerator is checked without a host
        synchronisation (this runs in every training step): ``torch._assert_async`` queues the range test on the
        device, and a violation surfaces as a device-side assert at a later synchronisation point. Unlike a
        ValueError that error is fatal to the CUDA context, but an out-of-range index would otherwise either fail
        the same way inside the gather (t > T) or silently read the wrong coefficient (t <= 0 wraps around).
        """
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer time steps in 1..{self.T}, got dtype {t.dtype}")
        t = t.long()
        if t.device.type != "cpu":
            if t.numel():
                torch._assert_async(((t >= 1) & (t <= self.T)).all(),
                                    f"{name} must lie in 1..{self.T} (paper indexing; t = 0 is the data itself)")
            return t
        if t.numel() and (int(t.min()) < 1 or int(t.max()) > self.T):
            raise ValueError(
                f"{name} must lie in 1..{self.T} (paper indexing; t = 0 is the data itself), "
                f"got values in {int(t.min())}..{int(t.max())}"
            )
        return t

    def __repr__(self) -> str:
        return (f"Schedule(name={self.name!r}, T={self.T}, alpha_bar[1]={float(self.alpha_bar[1]):.6g}, "
                f"alpha_bar[T]={float(self.alpha_bar[-1]):.3e})")


def _from_alpha_bar(alpha_bar_1T: torch.Tensor, name: str, timesteps: torch.Tensor | None = None,
                    parent_T: int | None = None) -> Schedule:
    """Build every field from ᾱ_1..ᾱ_T (float64). β_t = 1 - ᾱ_t/ᾱ_{t-1} holds for any chain ([DDPM] Eq. 4)."""
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar_1T.to(torch.float64)])
    T = alpha_bar.numel() - 1
    if T < 1:
        raise ValueError("a schedule needs T >= 1 steps")
    if not torch.isfinite(alpha_bar).all():
        raise ValueError("alpha_bar must be finite")
    if (alpha_bar[1:] <= 0).any() or (alpha_bar[1:] >= 1).any():
        raise ValueError("alpha_bar[1..T] must lie in (0, 1)")
    if (alpha_bar[1:] >= alpha_bar[:-1]).any():
        raise ValueError("alpha_bar must be strictly decreasing in t (every beta_t in (0, 1))")
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    alpha = alpha_bar / alpha_bar_prev  # α_t = ᾱ_t/ᾱ_{t-1}; α_0 = 1
    beta = 1.0 - alpha
    beta_tilde = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta  # [DDPM] Eq. 7
    beta_tilde[0] = 0.0  # 0/0 at t = 0; the identity step has no posterior noise
    if timesteps is None:
        timesteps = torch.arange(T + 1, dtype=torch.long)
    return Schedule(T=T, beta=beta, alpha=alpha, alpha_bar=alpha_bar, alpha_bar_prev=alpha_bar_prev,
                    beta_tilde=beta_tilde, timesteps=timesteps, name=name,
                    parent_T=parent_T if parent_T is not None else T)


def from_beta(beta: torch.Tensor, name: str = "custom") -> Schedule:
    """Schedule from β_1..β_T (shape (T,), each in (0, 1)); ᾱ_t = Π_{s<=t}(1 - β_s) ([DDPM] Eq. 4)."""
    beta = torch.as_tensor(beta, dtype=torch.float64).flatten()
    if beta.numel() < 1:
        raise ValueError("beta must hold at least one step")
    if not torch.isfinite(beta).all() or (beta <= 0).any() or (beta >= 1).any():
        raise ValueError(f"beta must lie in the open interval (0, 1); got min {float(beta.min()):.3g}, "
                         f"max {float(beta.max()):.3g}")
    return _from_alpha_bar(torch.cumprod(1.0 - beta, dim=0), name)


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """The DDPM linear schedule: β_t evenly spaced from ``beta_start`` to ``beta_end`` ([DDPM] §4, T = 1000).

    Matches diffusers' ``beta_schedule="linear"`` (``alphas_cumprod[k] == alpha_bar[k + 1]``).
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if not (0 < beta_start < 1 and 0 < beta_end < 1):
        raise ValueError(f"beta_start and beta_end must lie in (0, 1), got {beta_start}, {beta_end}")
    if beta_end < beta_start:
        raise ValueError(f"beta_end ({beta_end}) must be >= beta_start ({beta_start})")
    beta = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return from_beta(beta, name=f"linear(T={T})")


def cosine(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """The cosine schedule of Nichol & Dhariwal 2021: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2).

    β_t = min(1 - ᾱ(t)/ᾱ(t-1), max_beta) ([IDDPM] Eq. 17 and the clipping below it). Matches diffusers'
    ``beta_schedule="squaredcos_cap_v2"``.
    """
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if not s >= 0:
        raise ValueError(f"s must be >= 0, got {s}")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")

    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # [IDDPM] Eq. 17

    t = torch.arange(T + 1, dtype=torch.float64)
    beta = torch.clamp(1.0 - f(t[1:]) / f(t[:-1]), max=max_beta)
    return from_beta(beta, name=f"cosine(T={T})")


def respace(schedule: Schedule, steps: int | list[int] | torch.Tensor) -> Schedule:
    """The strided chain over a subsequence τ_1 < ... < τ_K of the original steps ([DDIM] §4.2, [IDDPM] §4).

    ``steps`` is the number K of evenly spaced steps (τ_i = round(i·T/K), so τ_K = T) or an explicit increasing list
    of original t values in 1..T. The new schedule keeps ᾱ'_i = ᾱ_{τ_i}, so β'_i = 1 - ᾱ_{τ_i}/ᾱ_{τ_{i-1}}
    ([IDDPM] Eq. 19 with τ_0 = 0), and ``timesteps[i] = τ_i`` maps index i back to the original t (for calling a
    model trained on the full chain). ``respace(s, s.T)`` is ``s``.
    """
    T = schedule.T
    if isinstance(steps, int | float) and not isinstance(steps, bool):
        K = int(steps)
        if K != steps or K < 1 or K > T:
            raise ValueError(f"steps must be an integer in 1..{T} (the schedule's T), got {steps}")
        tau = torch.round(torch.arange(1, K + 1, dtype=torch.float64) * T / K).long()
    else:
        tau = torch.as_tensor(steps, dtype=torch.long).flatten()
        if tau.numel() < 1 or int(tau.min()) < 1 or int(tau.max()) > T:
            raise ValueError(f"steps must be increasing original time steps in 1..{T}, got {tau.tolist()}")
        if (tau[1:] <= tau[:-1]).any():
            raise ValueError(f"steps must be strictly increasing, got {tau.tolist()}")
    orig = schedule.timesteps  # respacing a respaced schedule maps back to the first chain
    timesteps = torch.cat([torch.zeros(1, dtype=torch.long), orig[tau]])
    return _from_alpha_bar(schedule.alpha_bar[tau], name=f"{schedule.name}[{tau.numel()} steps]",
                           timesteps=timesteps, parent_T=schedule.parent_T)
