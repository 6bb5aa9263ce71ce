"""The forward (noising) process q and the conversions between the quantities a network can predict.

One function per formula. Each checks its arguments once, at the top, without waiting for an accelerator: t must be
a LongTensor (B,) of paper time steps in 1..T (:meth:`Schedule.check_t`: a ValueError on the CPU, a queued device
assert elsewhere) and the tensors' shapes must match (metadata only). Values are not checked for NaN here: these
functions run inside every training and sampling step, where a NaN in means a NaN out; the entry points that take
data from a user (``losses.bits_per_dim``, ``samplers.sample``) call :func:`check_finite`.

Shapes: x tensors are (B, ...) with any trailing data axes (B, D) or (B, C, H, W). Coefficients are the schedule's
float64 tables (computed once by :class:`~ddpm_lessons.schedules.Schedule`), gathered at t and cast to the data's
dtype and device by :func:`extract`, the one broadcast helper; a schedule moved with ``Schedule.to(device)`` is
gathered on the device without a copy.

Relations used (ᾱ = alpha_bar[t]):
    q(x_t | x_0) = N(√ᾱ x_0, (1 - ᾱ) I)                                  [DDPM] Eq. 4
    x_t = √ᾱ x_0 + √(1 - ᾱ) ε                                             reparameterised Eq. 4
    x_0 = (x_t - √(1 - ᾱ) ε) / √ᾱ                                         [DDPM] Eq. 4 solved for x_0 (used in Eq. 15)
    ∇ log q(x_t | x_0) = -ε / √(1 - ᾱ)                                    [SDE] / [DSM]; so score = -ε/√(1-ᾱ)
    v = √ᾱ ε - √(1 - ᾱ) x_0                                               Salimans & Ho 2022, arXiv:2202.00512, §4
    q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I),
        μ̃_t = √ᾱ_{t-1} β_t/(1-ᾱ_t) x_0 + √α_t (1-ᾱ_{t-1})/(1-ᾱ_t) x_t    [DDPM] Eq. 6-7

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [SDE]   Song et al. 2021, arXiv:2011.13456
    [DSM]   Vincent 2011, Neural Computation 23(7)
    [V]     Salimans, Ho 2022, arXiv:2202.00512
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .models.protocol import OBJECTIVES, check_objective
from .schedules import Schedule

__all__ = [
    "extract", "check_finite", "draw_noise", "q_sample", "q_mean_variance", "q_posterior", "velocity",
    "x0_from_eps", "eps_from_x0", "v_from_eps", "eps_from_v", "x0_from_v", "v_from_x0", "score_from_eps",
    "eps_from_score", "pred_to_eps", "pred_to_x0", "OBJECTIVES",
]

Generator = torch.Generator | Sequence[torch.Generator] | None


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` when ``x`` holds NaN or ±inf (reads the values: a sync on an accelerator)."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); inputs must be finite")


def extract(arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``arr[t]`` reshaped to (B, 1, ..., 1) so it broadcasts against ``like`` (B, ...), in like's dtype and device.

    ``arr`` is a schedule table (T+1,) in float64; the gather happens in float64 where ``t`` lives (a table not yet
    there is copied: move the schedule once with ``Schedule.to``), so a float32 result carries one rounding.
    """
    t = torch.as_tensor(t)
    if t.dim() != 1:
        raise ValueError(f"t must be a 1-D LongTensor of shape (B,), got shape {tuple(t.shape)}")
    if t.shape[0] != like.shape[0] and t.shape[0] != 1:
        raise ValueError(f"t has {t.shape[0]} entries but the batch has {like.shape[0]} (shapes do not broadcast)")
    vals = arr.to(t.device)[t.long()]
    return vals.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def draw_noise(shape: tuple[int, ...], like: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """ε ~ N(0, I) of ``shape`` (B, ...), in like's dtype, on like's device.

    Drawn on the generator's device and then moved, so a CPU generator gives the same numbers on every device. A
    list of B generators draws row b from generator b: a row's noise then does not depend on the rest of the batch
    (the diffusers convention, used to check that a batch equals its rows sampled one by one).
    """
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"a list of generators needs one per row: {shape[0]} rows, {len(generator)} generators")
        return torch.cat([draw_noise((1, *shape[1:]), like, g) for g in generator])
    gdev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=gdev, dtype=like.dtype).to(like.device)


def _prep(sched: Schedule, t: torch.Tensor | int, *named: tuple[str, torch.Tensor]) -> torch.Tensor:
    """Check t against the schedule and the tensors' shapes (no value is read from a device); t as (B,) long."""
    t = sched.check_t(t)
    if t.dim() == 0:
        t = t.reshape(1)
    ref_name, ref = named[0]
    for name, x in named:
        if not torch.is_tensor(x):
            raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
        if x.dim() < 1:
            raise ValueError(f"{name} must have a batch axis (B, ...), got a scalar")
        if x.shape != ref.shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)} but {ref_name} has {tuple(ref.shape)}; they must match")
    if t.shape[0] == 1 and ref.shape[0] != 1:
        t = t.expand(ref.shape[0])
    return t


def q_sample(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) as √ᾱ_t x_0 + √(1-ᾱ_t) ε ([DDPM] Eq. 4), with ``noise`` = ε of x0's shape (B, ...)."""
    t = _prep(sched, t, ("x0", x0), ("noise", noise))
    return extract(sched.sqrt_alpha_bar, t, x0) * x0 + extract(sched.sqrt_one_minus_alpha_bar, t, x0) * noise


def q_mean_variance(sched: Schedule, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, ...) and variance (B, 1, ..) of q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I) ([DDPM] Eq. 4)."""
    t = _prep(sched, t, ("x0", x0))
    return extract(sched.sqrt_alpha_bar, t, x0) * x0, extract(sched.one_minus_alpha_bar, t, x0)


def q_posterior(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and log-variance of q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I) ([DDPM] Eq. 6-7).

    Args:
        x0, xt: (B, ...) tensors of the same shape. t: (B,) long in 1..T.
    Returns:
        mean (B, ...); var and log_var (B, 1, ..., 1). At t = 1, var = β̃_1 = 0 exactly, and log_var is clipped to
        log β̃_2 (the true value is -inf) so it stays finite in KLs and interpolations.
    """
    t = _prep(sched, t, ("x0", x0), ("xt", xt))
    mean = extract(sched.posterior_coef_x0, t, x0) * x0 + extract(sched.posterior_coef_xt, t, xt) * xt  # Eq. 7
    return mean, extract(sched.beta_tilde, t, x0), extract(sched.posterior_log_var, t, x0)


def velocity(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ_t ε - √(1-ᾱ_t) x_0 ([V] §4, the definition): the v-prediction target. Shapes (B, ...)."""
    t = _prep(sched, t, ("x0", x0), ("eps", eps))
    return extract(sched.sqrt_alpha_bar, t, x0) * eps - extract(sched.sqrt_one_minus_alpha_bar, t, x0) * x0


def x0_from_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_0 = x_t/√ᾱ_t - √(1/ᾱ_t - 1) ε ([DDPM] Eq. 4 solved for x_0; Eq. 15). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("eps", eps))
    return extract(sched.sqrt_recip_alpha_bar, t, xt) * xt - extract(sched.sqrt_recipm1_alpha_bar, t, xt) * eps


def eps_from_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """ε = (x_t - √ᾱ_t x_0) / √(1-ᾱ_t) ([DDPM] Eq. 4 solved for ε). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("x0", x0))
    return (xt - extract(sched.sqrt_alpha_bar, t, xt) * x0) / extract(sched.sqrt_one_minus_alpha_bar, t, xt)


def v_from_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ ε - √(1-ᾱ) x_0 ([V] §4), written with x_t: v = (ε - √(1-ᾱ) x_t) / √ᾱ. Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("eps", eps))
    return (eps - extract(sched.sqrt_one_minus_alpha_bar, t, xt) * xt) / extract(sched.sqrt_alpha_bar, t, xt)


def v_from_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ ε - √(1-ᾱ) x_0 ([V] §4), written with x_t: v = (√ᾱ x_t - x_0) / √(1-ᾱ). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("x0", x0))
    return (extract(sched.sqrt_alpha_bar, t, xt) * xt - x0) / extract(sched.sqrt_one_minus_alpha_bar, t, xt)


def eps_from_v(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ε = √ᾱ v + √(1-ᾱ) x_t ([V] §4: x_t and v are a rotation of (x_0, ε) by φ with cos φ = √ᾱ)."""
    t = _prep(sched, t, ("xt", xt), ("v", v))
    return extract(sched.sqrt_alpha_bar, t, xt) * v + extract(sched.sqrt_one_minus_alpha_bar, t, xt) * xt


def x0_from_v(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x_0 = √ᾱ x_t - √(1-ᾱ) v ([V] §4). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("v", v))
    return extract(sched.sqrt_alpha_bar, t, xt) * xt - extract(sched.sqrt_one_minus_alpha_bar, t, xt) * v


def score_from_eps(sched: Schedule, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """-ε / √(1-ᾱ_t), shapes (B, ...): with the true ε, the score ∇ log q(x_t | x_0) of the noising kernel
    ([DSM]); with ε_θ(x_t, t) ≈ E[ε | x_t], the marginal score ∇ log q_t(x_t) ([SDE] Eq. 7 with the VP kernel)."""
    t = _prep(sched, t, ("eps", eps))
    return -eps / extract(sched.sqrt_one_minus_alpha_bar, t, eps)


def eps_from_score(sched: Schedule, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """ε = -√(1-ᾱ_t) · score, the inverse of :func:`score_from_eps`. Shapes (B, ...)."""
    t = _prep(sched, t, ("score", score))
    return -score * extract(sched.sqrt_one_minus_alpha_bar, t, score)


_check_objective = check_objective  # the old private name


def pred_to_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str
                ) -> torch.Tensor:
    """Convert a network prediction of kind ``objective`` ('eps', 'x0' or 'v') to ε. Shapes (B, ...)."""
    return _convert(sched, xt, t, pred, objective, "eps", {"x0": eps_from_x0, "v": eps_from_v})


def pred_to_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str
               ) -> torch.Tensor:
    """Convert a network prediction of kind ``objective`` ('eps', 'x0' or 'v') to x_0. Shapes (B, ...)."""
    return _convert(sched, xt, t, pred, objective, "x0", {"eps": x0_from_eps, "v": x0_from_v})


def _convert(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str, same: str,
             formulas: dict) -> torch.Tensor:
    """``pred`` itself when it already is the ``same`` quantity, else ``formulas[objective]`` applied to it."""
    if check_objective(objective) == same:
        _prep(sched, t, ("xt", xt), ("pred", pred))
        return pred
    return formulas[objective](sched, xt, t, pred)
