"""The reverse model p_θ(x_{t-1} | x_t) = N(μ_θ, σ_t² I): what a network's output says about one reverse step.

A denoiser predicts ε, x_0 or v (``models.protocol.objective``) and, with ``learn_sigma``, variance logits. This
module turns one output into the Gaussian reverse step that the bound scores (``losses``) and the samplers draw
from (``samplers``, ``solvers``); both call it, it calls neither.

    x̂_0 = pred_to_x0(x_t, prediction)                               [DDPM] Eq. 15, [V] §4 (forward.py)
    μ_θ(x_t, t) = μ̃_t(x_t, x̂_0)                                     [DDPM] Eq. 7 with x̂_0 (equal to Eq. 11 for ε)
    log σ_t² = log β̃_t or log β_t, fixed                             [DDPM] §3.2 ('beta_tilde' / 'beta')
             = v log β_t + (1 - v) log β̃_t, v = (logits + 1)/2        [IDDPM] Eq. 15 (learned)
    ε̃ = (1 + w) ε_θ(x_t, c) - w ε_θ(x_t, ∅)                          [CFG] Eq. 6 (classifier-free guidance)

:func:`predict` is the one place a sampler calls the network: once per step, the conditional and unconditional
passes batched together when guiding. Time steps: ``i`` indexes the schedule passed in (a respaced chain's index);
the model is called at the original step ``sched.timesteps[i]`` (read on the host: no device sync).

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [V]     Salimans, Ho 2022, arXiv:2202.00512
"""

from __future__ import annotations

import math

import torch

from . import forward as fwd
from .models import protocol
from .schedules import Schedule

__all__ = ["log_variance", "p_mean_variance", "cfg_eps", "predict"]


def log_variance(sched: Schedule, t: torch.Tensor, like: torch.Tensor, var_logits: torch.Tensor | None = None,
                 var_type: str = "beta_tilde") -> torch.Tensor:
    """log σ_t² of p_θ: fixed (``var_type``, the schedule's ``log_sigma2`` table) or learned from ``var_logits``.

    Learned: log σ² = v log β_t + (1 - v) log β̃_t with v = (logits + 1)/2 ([IDDPM] Eq. 15; log β̃_1 clipped to
    log β̃_2, see ``Schedule``). t (B,) long; returns (B, 1, ...) like ``like`` when fixed, var_logits' shape when
    learned.
    """
    if var_logits is None:
        return fwd.extract(sched.log_sigma2(var_type), t, like)
    frac = (var_logits + 1) / 2
    max_log = fwd.extract(sched.log_beta, t, like)
    min_log = fwd.extract(sched.posterior_log_var, t, like)
    return frac * max_log + (1 - frac) * min_log  # [IDDPM] Eq. 15


def p_mean_variance(sched: Schedule, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor,
                    var_logits: torch.Tensor | None, objective: str, var_type: str = "beta_tilde"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """μ_θ (B, ...) and log σ_t² of p_θ(x_{t-1} | x_t) for one network output ``pred`` of kind ``objective``.

    μ_θ = μ̃_t(x_t, x̂_0) with x̂_0 from the prediction ([DDPM] Eq. 7 with Eq. 15); the variance as in
    :func:`log_variance`. xt, pred: (B, ...); t: (B,) long in 1..T.
    """
    x0_hat = fwd.pred_to_x0(sched, xt, t, pred, objective)
    mean = fwd.q_posterior(sched, x0_hat, xt, t)[0]
    return mean, log_variance(sched, t, xt, var_logits, var_type)


def cfg_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float | None = None, *,
            guidance_scale: float | None = None) -> torch.Tensor:
    """Classifier-free guidance: ε̃ = (1 + w) ε_c - w ε_u ([CFG] Eq. 6); w = 0 is plain conditional sampling.

    Give exactly one of ``w`` or ``guidance_scale`` (s, the diffusers/Imagen convention ε̃ = ε_u + s (ε_c - ε_u),
    with s = 1 + w). Both are the same affine combination. Shapes (B, ...) each.
    """
    if (w is None) == (guidance_scale is None):
        raise ValueError("give exactly one of w (Ho & Salimans) or guidance_scale (s = 1 + w, diffusers)")
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(f"eps_cond {tuple(eps_cond.shape)} and eps_uncond {tuple(eps_uncond.shape)} must match")
    if guidance_scale is not None:
        w = guidance_scale - 1.0
    if not math.isfinite(w):
        raise ValueError(f"the guidance weight must be finite, got {w}")
    return (1.0 + w) * eps_cond - w * eps_uncond  # [CFG] Eq. 6


def predict(model: protocol.Model, sched: Schedule, xt: torch.Tensor, i: int, cond: torch.Tensor | None = None,
            w: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ε̂ (guided when ``cond`` is given and ``w`` != 0) and the learned log σ² (or None) at index ``i`` of ``sched``.

    One model call: with guidance, the conditional and unconditional (null-label) passes run as one batch of 2B
    and the variance comes from the conditional half. x_0- and v-predictions are converted to ε with the
    schedule's ᾱ. ``cond``: a LongTensor (B,) or None (see ``protocol.class_ids``). Returns tensors like xt.
    """
    B = xt.shape[0]
    guided = cond is not None and w != 0.0
    rows = 2 * B if guided else B  # guided: rows 0..B-1 conditional, B..2B-1 unconditional
    t_in = protocol.shared_t(int(sched.host.timesteps[i]), rows, xt.device)  # the original step the model saw
    t_conv = protocol.shared_t(i, rows, xt.device)  # index i into sched's own tables
    if guided:
        x_in, c_in = torch.cat([xt, xt]), torch.cat([cond, torch.full_like(cond, protocol.null_label(model))])
    else:
        x_in, c_in = xt, cond
    pred, var_logits = protocol.split_output(model, model(x_in, t_in, c_in), x_in)
    eps = fwd.pred_to_eps(sched, x_in, t_conv, pred, protocol.objective(model))
    if guided:
        eps = cfg_eps(eps[:B], eps[B:], w)  # [CFG] Eq. 6
        var_logits = None if var_logits is None else var_logits[:B]
    log_var = None if var_logits is None else log_variance(sched, t_conv[:B], xt, var_logits)
    return eps, log_var
