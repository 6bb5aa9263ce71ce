"""Noise schedules: every coefficient table the formulas use, computed once in float64 with the papers' time index.

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

Like improved-diffusion's ``GaussianDiffusion``, the constructor computes every derived table once, eagerly, in
float64 (the coefficients of [DDPM] Eq. 4, 7, 11 and 15 and [IDDPM] Eq. 15), so the formula modules only gather
them. :meth:`Schedule.to` moves the tables to an accelerator once; the per-step Python floats the samplers need
are read from :attr:`Schedule.host`, the CPU copy, so no step waits for the device. A schedule is a value: build a
new one rather than editing a table in place.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
    [VDM]   Kingma, Salimans, Poole, Ho 2021, arXiv:2107.00630
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

__all__ = ["Schedule", "linear", "cosine", "from_beta", "from_alpha_bar", "respace", "VAR_TYPES"]

VAR_TYPES = ("beta_tilde", "beta")  # the fixed reverse variances σ_t² of [DDPM] §3.2


def _table(init: bool = False) -> Any:
    """A derived table: computed by the constructor, not an argument, not part of the repr."""
    return field(init=init, repr=False, compare=False)


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete diffusion schedule, float64, indexed t = 0..T (0 = identity).

    The defining fields are 1-D float64 tensors of shape (T+1,); ``timesteps`` (T+1,) long maps each index to the
    original chain's t (``timesteps[i] = i`` unless the schedule was built by :func:`respace`). Build with
    :func:`linear`, :func:`cosine`, :func:`from_beta`, :func:`from_alpha_bar` or :func:`respace`.

    Derived tables (T+1,), float64, computed once in the constructor (index 0 of the posterior coefficients is
    0/0 = NaN and never read):
        snr, log_snr                 ᾱ/(1-ᾱ), its log (+inf at t = 0)                  [VDM] Eq. 2
        sqrt_alpha_bar               √ᾱ_t                                               [DDPM] Eq. 4
        sqrt_one_minus_alpha_bar     √(1-ᾱ_t)                                           [DDPM] Eq. 4
        one_minus_alpha_bar          1-ᾱ_t, the variance of q(x_t | x_0)                [DDPM] Eq. 4
        sqrt_recip_alpha_bar         1/√ᾱ_t                                             [DDPM] Eq. 15
        sqrt_recipm1_alpha_bar       √(1/ᾱ_t - 1)                                       [DDPM] Eq. 15
        posterior_coef_x0            √ᾱ_{t-1} β_t/(1-ᾱ_t), μ̃_t's coefficient of x_0   [DDPM] Eq. 7
        posterior_coef_xt            √α_t (1-ᾱ_{t-1})/(1-ᾱ_t), its coefficient of x_t  [DDPM] Eq. 7
        posterior_log_var            log β̃_t, t = 1 clipped to log β̃_2 (β̃_1 = 0)      [IDDPM] code convention
        log_beta                     log β_t (log 1e-300 at t = 0)                      [IDDPM] Eq. 15
        sigma2_beta_tilde            σ_t² = β̃_t with β̃_1 := β̃_2                       [DDPM] §3.2
        sigma2_beta                  σ_t² = β_t with β_1 := β̃_2                        [DDPM] §3.2
        log_sigma2_beta              log of ``sigma2_beta`` (``log_sigma2('beta_tilde')`` is posterior_log_var)
    The t = 1 clip follows the reference code: the posterior at t = 1 is a point mass at x_0, and a log-variance is
    only *used* there through a KL or an interpolated learned variance, where -inf would poison the arithmetic.
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
    snr: torch.Tensor = _table()
    log_snr: torch.Tensor = _table()
    sqrt_alpha_bar: torch.Tensor = _table()
    sqrt_one_minus_alpha_bar: torch.Tensor = _table()
    one_minus_alpha_bar: torch.Tensor = _table()
    sqrt_recip_alpha_bar: torch.Tensor = _table()
    sqrt_recipm1_alpha_bar: torch.Tensor = _table()
    posterior_coef_x0: torch.Tensor = _table()
    posterior_coef_xt: torch.Tensor = _table()
    posterior_log_var: torch.Tensor = _table()
    log_beta: torch.Tensor = _table()
    sigma2_beta_tilde: torch.Tensor = _table()
    sigma2_beta: torch.Tensor = _table()
    log_sigma2_beta: torch.Tensor = _table()
    host: Schedule = _table()  # the CPU float64 copy (the schedule itself on the CPU); see :meth:`to`

    def __post_init__(self) -> None:
        ab, abp, beta = self.alpha_bar, self.alpha_bar_prev, self.beta
        lv = torch.log(self.beta_tilde.clamp_min(1e-300))  # log β̃_t; β̃_1 = 0 would be -inf
        lv[1] = lv[2] if self.T >= 2 else torch.log(beta[1])
        lv[0] = lv[1]
        sigma2_beta = beta.clone()
        sigma2_beta[1] = self.beta_tilde[2] if self.T >= 2 else beta[1]
        tables = {
            "snr": ab / (1.0 - ab),  # [VDM] Eq. 2
            "log_snr": torch.log(ab) - torch.log1p(-ab),
            "sqrt_alpha_bar": ab.sqrt(),  # [DDPM] Eq. 4
            "sqrt_one_minus_alpha_bar": (1 - ab).sqrt(),
            "one_minus_alpha_bar": 1 - ab,
            "sqrt_recip_alpha_bar": 1 / ab.sqrt(),  # [DDPM] Eq. 15
            "sqrt_recipm1_alpha_bar": (1 / ab - 1).sqrt(),
            "posterior_coef_x0": abp.sqrt() * beta / (1 - ab),  # [DDPM] Eq. 7
            "posterior_coef_xt": self.alpha.sqrt() * (1 - abp) / (1 - ab),  # [DDPM] Eq. 7
            "posterior_log_var": lv,
            "log_beta": torch.log(beta.clamp_min(1e-300)),  # [IDDPM] Eq. 15's upper end
            "sigma2_beta_tilde": torch.exp(lv),
            "sigma2_beta": sigma2_beta,
            "log_sigma2_beta": torch.log(sigma2_beta),
            "host": self,
        }
        for name, value in tables.items():
            object.__setattr__(self, name, value)

    @property
    def device(self) -> torch.device:
        """The device the tables live on (the CPU unless moved with :meth:`to`)."""
        return self.alpha_bar.device

    def to(self, device: torch.device | str) -> Schedule:
        """This schedule with every table on ``device`` (itself when already there); ``host`` stays on the CPU.

        Call it once before a training or sampling loop on an accelerator: the formula modules then gather on the
        device, and the samplers' per-step Python floats come from ``host`` (no host-device synchronisation).
        """
        device = torch.device(device)
        if device == self.device:
            return self
        moved = copy.copy(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if torch.is_tensor(value):
                object.__setattr__(moved, f.name, value.to(device))
        object.__setattr__(moved, "host", self.host)
        return moved

    def sigma2(self, var_type: str) -> torch.Tensor:
        """The fixed reverse variance σ_t² (T+1,): 'beta_tilde' (β̃_t) or 'beta' (β_t), t = 1 as in the class doc."""
        return {"beta_tilde": self.sigma2_beta_tilde, "beta": self.sigma2_beta}[_var_type(var_type)]

    def log_sigma2(self, var_type: str) -> torch.Tensor:
        """log σ_t² (T+1,) of :meth:`sigma2`."""
        return {"beta_tilde": self.posterior_log_var, "beta": self.log_sigma2_beta}[_var_type(var_type)]

    def spec(self) -> dict[str, Any]:
        """A plain, exact description: ``{"name", "T", "beta"}`` with β_1..β_T as a float64 tensor (CPU).

        A respaced schedule adds ``alpha_bar`` (ᾱ_1..ᾱ_T), ``timesteps`` and ``parent_T``, so that
        :meth:`from_spec` rebuilds it bit for bit.
        """
        h = self.host
        spec: dict[str, Any] = {"name": h.name, "T": int(h.T), "beta": h.beta[1:].clone()}
        if h.parent_T != h.T or not torch.equal(h.timesteps, torch.arange(h.T + 1)):
            spec.update(alpha_bar=h.alpha_bar[1:].clone(), timesteps=h.timesteps.clone(), parent_T=int(h.parent_T))
        return spec

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> Schedule:
        """Rebuild a schedule from :meth:`spec`'s description (on the CPU)."""
        name = str(spec.get("name", "custom"))
        if "alpha_bar" in spec:
            return from_alpha_bar(torch.as_tensor(spec["alpha_bar"], dtype=torch.float64), name,
                                  torch.as_tensor(spec["timesteps"], dtype=torch.long), int(spec["parent_T"]))
        return from_beta(torch.as_tensor(spec["beta"], dtype=torch.float64), name=name)

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
        h = self.host
        where = "" if self.device.type == "cpu" else f", device={self.device}"
        return (f"Schedule(name={self.name!r}, T={self.T}, alpha_bar[1]={float(h.alpha_bar[1]):.6g}, "
                f"alpha_bar[T]={float(h.alpha_bar[-1]):.3e}{where})")


def _var_type(var_type: str) -> str:
    if var_type not in VAR_TYPES:
        raise ValueError(f"var_type must be one of {VAR_TYPES}, got {var_type!r}")
    return var_type


def from_alpha_bar(alpha_bar_1T: torch.Tensor, name: str = "custom", timesteps: torch.Tensor | None = None,
                   parent_T: int | None = None) -> Schedule:
    """Schedule from ᾱ_1..ᾱ_T (shape (T,), strictly decreasing in (0, 1)); β_t = 1 - ᾱ_t/ᾱ_{t-1} ([DDPM] Eq. 4)."""
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.as_tensor(alpha_bar_1T).to(torch.float64)])
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


_from_alpha_bar = from_alpha_bar  # the old private name


def from_beta(beta: torch.Tensor, name: str = "custom") -> Schedule:
    """Schedule from β_1..β_T (shape (T,), each in (0, 1)); ᾱ_t = Π_{s<=t}(1 - β_s) ([DDPM] Eq. 4)."""
    beta = torch.as_tensor(beta, dtype=torch.float64).flatten()
    if beta.numel() < 1:
        raise ValueError("beta must hold at least one step")
    if not torch.isfinite(beta).all() or (beta <= 0).any() or (beta >= 1).any():
        raise ValueError(f"beta must lie in the open interval (0, 1); got min {float(beta.min()):.3g}, "
                         f"max {float(beta.max()):.3g}")
    return from_alpha_bar(torch.cumprod(1.0 - beta, dim=0), name)


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
    device, schedule = schedule.device, schedule.host  # index on the host; the result goes back to the device
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
    return from_alpha_bar(schedule.alpha_bar[tau], name=f"{schedule.name}[{tau.numel()} steps]",
                          timesteps=timesteps, parent_T=schedule.parent_T).to(device)


# ---- zero terminal SNR (appended for lesson 09) -------------------------------------------------------------------
__all__ += ["rescale_zero_terminal_snr", "ZERO_SNR_ALPHA_BAR_T"]

ZERO_SNR_ALPHA_BAR_T = 2.0 ** -24  # the clamp diffusers' EulerDiscreteScheduler uses for ᾱ_T = 0 (float32-safe)


def rescale_zero_terminal_snr(schedule: Schedule, alpha_bar_T: float = ZERO_SNR_ALPHA_BAR_T) -> Schedule:
    """The schedule with zero terminal SNR: shift √ᾱ so √ᾱ_T = 0, scale so √ᾱ_1 is kept (Lin et al. 2023,
    arXiv:2305.08891, Algorithm 1; diffusers' ``rescale_zero_terminal_snr``):

        √ᾱ'_t = (√ᾱ_t - √ᾱ_T) · √ᾱ_1 / (√ᾱ_1 - √ᾱ_T)

    A Schedule keeps ᾱ_t in (0, 1) (every path that divides by √ᾱ_t stays finite), so the exact zero at t = T is
    replaced by ``alpha_bar_T`` = 2⁻²⁴ as diffusers' Euler scheduler does, or by half of ᾱ'_{T-1} where that is
    smaller (the linear DDPM schedule: ᾱ'_{T-1} ≈ 4e-9 < 2⁻²⁴), so ᾱ stays strictly decreasing. At t = T the SNR is
    then ~1e-8 or less: x_T carries essentially no signal, and ε-prediction is ill-posed there (x̂_0 =
    (x_T - √(1-ᾱ_T) ε̂)/√ᾱ_T divides by ~1e-4 or less); v-prediction, with x̂_0 = √ᾱ x_t - √(1-ᾱ) v̂ ([V] §4), is the
    fix Lin et al. use. ``schedule``: a full chain (not respaced); returns a new Schedule named "<name> zero-SNR".
    """
    if schedule.parent_T != schedule.T:
        raise ValueError("rescale the full schedule, then respace it")
    if not 0.0 < alpha_bar_T < 1.0:
        raise ValueError(f"alpha_bar_T must lie in (0, 1), got {alpha_bar_T}")
    h = schedule.host
    sqrt_ab = h.alpha_bar[1:].sqrt()  # (T,) √ᾱ_1..√ᾱ_T
    s1, sT = float(sqrt_ab[0]), float(sqrt_ab[-1])
    sqrt_ab = (sqrt_ab - sT) * (s1 / (s1 - sT))  # [Lin et al.] Algorithm 1
    ab = sqrt_ab ** 2
    if schedule.T > 1:
        ab[-1] = min(alpha_bar_T, 0.5 * float(ab[-2]))
    else:
        ab[-1] = alpha_bar_T
    return from_alpha_bar(ab, name=f"{schedule.name} zero-SNR").to(schedule.device)
