"""The forward (noising) process q and conversions between the quantities a network can predict.

Shapes: x tensors are (B, ...) with any trailing data axes (B, D) or (B, C, H, W); ``t`` is a LongTensor (B,) of
paper time steps in 1..T. Coefficients are read from the float64 schedule, then cast to the data's dtype and
device by :func:`extract`, the one broadcast helper.

No host synchronisation in the hot loops: derived coefficient tables (√ᾱ, √(1-ᾱ), the posterior coefficients, ...)
are computed once per schedule (``Schedule._derived``), and :func:`extract` keeps one copy of each table per device,
so a training or sampling step on an accelerator gathers on the device without copying a table from the host.

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

from collections.abc import Callable

import torch
from torch.utils.weak import WeakIdKeyDictionary

from .schedules import Schedule, _version

__all__ = [
    "extract", "check_finite", "q_sample", "q_mean_variance", "q_posterior", "x0_from_eps", "eps_from_x0",
    "v_from_eps", "eps_from_v", "x0_from_v", "v_from_x0", "score_from_eps", "eps_from_score", "pred_to_eps",
    "pred_to_x0", "OBJECTIVES",
]

OBJECTIVES = ("eps", "x0", "v")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` when ``x`` holds NaN or ±inf."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/inf value(s); inputs must be finite")


# Device copies of host tables: CPU tensor -> (its version when copied, {device: copy}). Keyed weakly by identity,
# so an entry lives as long as its table (a schedule field or a memoised derived table).
_DEVICE_COPIES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _on_device(arr: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``arr`` on ``device``, copied once per (table, device) and reused while ``arr`` is unchanged.

    A blocking host-to-device copy synchronises the stream, so a table copied on every call would stall every
    training or sampling step. The first call per device still copies: under CUDA graph capture, warm up first.
    """
    if arr.device == device:
        return arr
    if arr.requires_grad or arr.is_inference():  # not safe to share (autograd) or no version counter to watch
        return arr.to(device)
    entry = _DEVICE_COPIES.get(arr)
    if entry is None or entry[0] != _version(arr):
        entry = (_version(arr), {})
        _DEVICE_COPIES[arr] = entry
    copy = entry[1].get(device)
    if copy is None:
        with torch.inference_mode(False):  # a normal tensor, usable later outside inference mode too
            copy = arr.to(device)
        entry[1][device] = copy
    return copy


def extract(arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``arr[t]`` reshaped to (B, 1, ..., 1) so it broadcasts against ``like`` (B, ...), in like's dtype and device.

    ``arr`` is a schedule tensor (T+1,) in float64; the gather happens in float64 (on the CPU for a CPU ``t``, else
    on t's device from a cached copy of ``arr``) before the cast, so a float32 result carries one rounding, not two.
    """
    t = torch.as_tensor(t)
    if t.dim() != 1:
        raise ValueError(f"t must be a 1-D LongTensor of shape (B,), got shape {tuple(t.shape)}")
    if t.shape[0] != like.shape[0] and t.shape[0] != 1:
        raise ValueError(f"t has {t.shape[0]} entries but the batch has {like.shape[0]} (shapes do not broadcast)")
    if t.device.type == "cpu":
        vals = arr[t.long()]
    else:  # gather on t's device: no host synchronisation in training or sampling loops
        vals = _on_device(arr, t.device)[t.long()]
    return vals.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _prep(sched: Schedule, t: torch.Tensor | int, *named: tuple[str, torch.Tensor]) -> torch.Tensor:
    """Validate t against the schedule and the tensors' shapes; return t as a LongTensor (B,)."""
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
        check_finite(x, name)
    if t.shape[0] == 1 and ref.shape[0] != 1:
        t = t.expand(ref.shape[0])
    return t


def q_sample(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) as √ᾱ_t x_0 + √(1-ᾱ_t) ε ([DDPM] Eq. 4), with ``noise`` = ε of x0's shape (B, ...)."""
    t = _prep(sched, t, ("x0", x0), ("noise", noise))
    return _q_sample(sched, x0, t, noise)


def q_mean_variance(sched: Schedule, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, ...) and variance (B, 1, ..) of q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I) ([DDPM] Eq. 4)."""
    t = _prep(sched, t, ("x0", x0))
    return extract(_table(sched, "sqrt_ab"), t, x0) * x0, extract(_table(sched, "one_m_ab"), t, x0)


def _posterior_log_var(sched: Schedule) -> torch.Tensor:
    """log β̃_t with t = 1 clipped to log β̃_2: β̃_1 = 0 makes the true log-variance -inf ([IDDPM] code convention).

    The clip only matters where a log-variance is *used* (a KL or an interpolated learned variance); at t = 1 the
    posterior is a point mass at x_0 and the bound uses the decoder L_0 instead of a KL.
    """
    lv = torch.log(sched.beta_tilde.clamp_min(1e-300))
    if sched.T >= 2:
        lv[1] = lv[2]
    else:
        lv[1] = torch.log(sched.beta[1])
    lv[0] = lv[1]
    return lv


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
    mean = _posterior_mean(sched, x0, xt, t)
    return mean, extract(sched.beta_tilde, t, x0), extract(_table(sched, "post_log_var"), t, x0)


def x0_from_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - √(1-ᾱ_t) ε) / √ᾱ_t ([DDPM] Eq. 4 solved for x_0; Eq. 15). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("eps", eps))
    return _pred_to_x0(sched, xt, t, eps, "eps")


def eps_from_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """ε = (x_t - √ᾱ_t x_0) / √(1-ᾱ_t) ([DDPM] Eq. 4 solved for ε). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("x0", x0))
    return _pred_to_eps(sched, xt, t, x0, "x0")


def v_from_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ ε - √(1-ᾱ) x_0 ([V] §4), written with x_t: v = (ε - √(1-ᾱ) x_t) / √ᾱ. Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("eps", eps))
    return (eps - extract(_table(sched, "sqrt_1m_ab"), t, xt) * xt) / extract(_table(sched, "sqrt_ab"), t, xt)


def v_from_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ ε - √(1-ᾱ) x_0 ([V] §4), written with x_t: v = (√ᾱ x_t - x_0) / √(1-ᾱ). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("x0", x0))
    return (extract(_table(sched, "sqrt_ab"), t, xt) * xt - x0) / extract(_table(sched, "sqrt_1m_ab"), t, xt)


def eps_from_v(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ε = √ᾱ v + √(1-ᾱ) x_t ([V] §4: x_t and v are a rotation of (x_0, ε) by φ with cos φ = √ᾱ)."""
    t = _prep(sched, t, ("xt", xt), ("v", v))
    return _pred_to_eps(sched, xt, t, v, "v")


def x0_from_v(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x_0 = √ᾱ x_t - √(1-ᾱ) v ([V] §4). Shapes (B, ...)."""
    t = _prep(sched, t, ("xt", xt), ("v", v))
    return _pred_to_x0(sched, xt, t, v, "v")


def score_from_eps(sched: Schedule, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """∇_{x_t} log q_t(x_t) ≈ -ε / √(1-ᾱ_t) ([SDE] Eq. 7 with the VP kernel; [DSM]). Shapes (B, ...)."""
    t = _prep(sched, t, ("eps", eps))
    return -eps / extract(_table(sched, "sqrt_1m_ab"), t, eps)


def eps_from_score(sched: Schedule, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """ε = -√(1-ᾱ_t) ∇ log q_t(x_t), the inverse of :func:`score_from_eps`. Shapes (B, ...)."""
    t = _prep(sched, t, ("score", score))
    return -score * extract(_table(sched, "sqrt_1m_ab"), t, score)


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def pred_to_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str
                ) -> torch.Tensor:
    """Convert a network prediction of kind ``objective`` ('eps', 'x0' or 'v') to ε. Shapes (B, ...)."""
    _check_objective(objective)
    t = _prep(sched, t, ("xt", xt), ("pred", pred))
    return _pred_to_eps(sched, xt, t, pred, objective)


def pred_to_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str
               ) -> torch.Tensor:
    """Convert a network prediction of kind ``objective`` ('eps', 'x0' or 'v') to x_0. Shapes (B, ...)."""
    _check_objective(objective)
    t = _prep(sched, t, ("xt", xt), ("pred", pred))
    return _pred_to_x0(sched, xt, t, pred, objective)


# Derived float64 tables (T+1,), each computed once per schedule by exactly the expression below (so the values are
# bit-identical to computing it on every call, as this module used to).
_TABLES: dict[str, Callable[[Schedule], torch.Tensor]] = {
    "sqrt_ab": lambda s: s.alpha_bar.sqrt(),  # √ᾱ_t
    "sqrt_1m_ab": lambda s: (1 - s.alpha_bar).sqrt(),  # √(1-ᾱ_t)
    "one_m_ab": lambda s: 1 - s.alpha_bar,  # 1-ᾱ_t
    "inv_sqrt_ab": lambda s: 1 / s.alpha_bar.sqrt(),  # 1/√ᾱ_t
    "sqrt_inv_ab_m1": lambda s: (1 / s.alpha_bar - 1).sqrt(),  # √(1/ᾱ_t - 1)
    "post_coef_x0": lambda s: s.alpha_bar_prev.sqrt() * s.beta / (1 - s.alpha_bar),  # [DDPM] Eq. 7, coef. of x_0
    "post_coef_xt": lambda s: s.alpha.sqrt() * (1 - s.alpha_bar_prev) / (1 - s.alpha_bar),  # [DDPM] Eq. 7, of x_t
    "post_log_var": _posterior_log_var,  # log β̃_t, clipped at t = 1
}


def _table(sched: Schedule, key: str) -> torch.Tensor:
    """The memoised derived table ``key`` of ``sched`` (float64 CPU, (T+1,)); see ``_TABLES``."""
    return sched._derived(key, _TABLES[key])


# Unchecked forms for the hot loops (training and sampling), where t was drawn or validated once by the caller and
# a finiteness check per call would synchronise with the GPU. t: LongTensor (B,).

def _q_sample(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    sqrt_ab, sqrt_1m_ab = extract(_table(sched, "sqrt_ab"), t, x0), extract(_table(sched, "sqrt_1m_ab"), t, x0)
    return sqrt_ab * x0 + sqrt_1m_ab * noise  # [DDPM] Eq. 4


def _posterior_mean(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # μ̃_t = coef_x0 x_0 + coef_xt x_t, [DDPM] Eq. 7
    return extract(_table(sched, "post_coef_x0"), t, x0) * x0 + extract(_table(sched, "post_coef_xt"), t, xt) * xt


def _pred_to_eps(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str
                 ) -> torch.Tensor:
    if objective == "eps":
        return pred
    sqrt_ab, sqrt_1m_ab = extract(_table(sched, "sqrt_ab"), t, xt), extract(_table(sched, "sqrt_1m_ab"), t, xt)
    if objective == "x0":  # ε = (x_t - √ᾱ x_0)/√(1-ᾱ), [DDPM] Eq. 4
        return (xt - sqrt_ab * pred) / sqrt_1m_ab
    return sqrt_ab * pred + sqrt_1m_ab * xt  # ε from v, [V] §4


def _pred_to_x0(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor, objective: str
                ) -> torch.Tensor:
    if objective == "x0":
        return pred
    if objective == "eps":  # [DDPM] Eq. 15
        return (extract(_table(sched, "inv_sqrt_ab"), t, xt) * xt
                - extract(_table(sched, "sqrt_inv_ab_m1"), t, xt) * pred)
    return extract(_table(sched, "sqrt_ab"), t, xt) * xt - extract(_table(sched, "sqrt_1m_ab"), t, xt) * pred  # [V] §4
