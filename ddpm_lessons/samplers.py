"""Reverse-process samplers: the DDPM ancestral step, the DDIM step with η, the sampling loop over a full or
respaced chain, DDIM inversion, and annealed Langevin dynamics.

Notation (ours -> paper):
    xt, t, t_prev         x_t, t, the next (smaller) step τ_{i-1} on the chain; t_prev = 0 means "return x_0"
    alpha_bar[t]          ᾱ_t ([DDPM]); α_t in [DDIM]'s notation
    eps_hat               ε_θ(x_t, t)
    x0_hat                the predicted x_0: (x_t - √(1-ᾱ_t) ε_θ)/√ᾱ_t        [DDIM] Eq. 12, first bracket
    sigma                 σ_t(η) = η √((1-ᾱ_prev)/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_prev)    [DDIM] Eq. 16
    w                     guidance weight: ε̃ = (1+w) ε_c - w ε_u                 [CFG] Eq. 6
    s (guidance_scale)    diffusers/Imagen convention, s = 1 + w: ε̃ = ε_u + s (ε_c - ε_u)

Time steps: ``t``/``t_prev`` in the step functions index the schedule passed in (for a respaced schedule that is
the strided chain's index i; ``sched.timesteps[i]`` is the original t the model is called with). Step functions take
one integer step for the whole batch, so every coefficient is a Python float read from the schedule's host tables
(``Schedule.host``, float64): no host-device synchronisation inside a sampling loop.

One step of a loop: :func:`ddpm_lessons.reverse.predict` calls the model (the contract is stated once in
``models/protocol.py``) and returns ε̂ and the learned variance; a step function below turns them into x_{t-1}.
Nothing here comes from ``losses``.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [NCSN]  Song, Ermon 2019, arXiv:1907.05600
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import forward as fwd
from . import solvers
from .models import protocol
from .reverse import cfg_eps, predict
from .schedules import VAR_TYPES, Schedule, respace

__all__ = [
    "cfg_eps", "ddpm_step", "ddim_step", "predict", "guided_eps", "sample", "ddim_invert", "annealed_langevin",
    "METHODS", "ODE_METHODS", "VAR_TYPES",
]

StepFn = Callable[[Schedule, torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]  # (sched, x, i, ε̂, z)
ODE_METHODS = ("euler", "heun", "dpm_solver_2", "dpm_solver_pp_2m")  # probability-flow ODE solvers (solvers.py)
METHODS = ("ddpm", "ddim", *ODE_METHODS)


def _step_index(sched: Schedule, t: int | torch.Tensor, name: str, lo: int = 1) -> int:
    """An integer step for the whole batch, checked against lo..T."""
    if torch.is_tensor(t):
        if t.numel() != 1:
            raise ValueError(f"{name} must be one integer step for the whole batch, got shape {tuple(t.shape)}")
        t = int(t.item())
    if isinstance(t, bool) or not isinstance(t, int):
        raise ValueError(f"{name} must be an integer step in {lo}..{sched.T}, got {t!r}")
    if not lo <= t <= sched.T:
        raise ValueError(f"{name} must lie in {lo}..{sched.T}, got {t}")
    return t


def ddpm_step(sched: Schedule, xt: torch.Tensor, t: int, eps_hat: torch.Tensor, var_type: str = "beta_tilde",
              noise: torch.Tensor | None = None, generator: fwd.Generator = None,
              log_var: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1} ~ N(μ_θ, σ_t² I) ([DDPM] Algorithm 2).

    μ_θ = (x_t - β_t/√(1-ᾱ_t) ε̂)/√α_t ([DDPM] Eq. 11); with ``clip_x0`` the mean is instead μ̃_t(x_t, clip(x̂_0))
    (the reference code's image sampler). σ_t² is β̃_t ('beta_tilde') or β_t ('beta') ([DDPM] §3.2), or
    exp(``log_var``) when a learned variance is given. No noise is added at t = 1.
    xt, eps_hat: (B, ...); t: one integer in 1..T of ``sched``.
    """
    t = _step_index(sched, t, "t")
    if var_type not in VAR_TYPES:
        raise ValueError(f"var_type must be one of {VAR_TYPES}, got {var_type!r}")
    if xt.shape != eps_hat.shape:
        raise ValueError(f"xt {tuple(xt.shape)} and eps_hat {tuple(eps_hat.shape)} must have the same shape")
    h = sched.host  # per-step Python floats, float64: no device sync
    ab, abp, alpha, beta = float(h.alpha_bar[t]), float(h.alpha_bar_prev[t]), float(h.alpha[t]), float(h.beta[t])
    if clip_x0:
        x0_hat = ((xt - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)).clamp(-1, 1)
        mean = (math.sqrt(abp) * beta / (1 - ab)) * x0_hat + (math.sqrt(alpha) * (1 - abp) / (1 - ab)) * xt  # Eq. 7
    else:
        mean = (xt - beta / math.sqrt(1 - ab) * eps_hat) / math.sqrt(alpha)  # [DDPM] Eq. 11
    if t == 1:
        return mean
    if noise is None:
        noise = fwd.draw_noise(tuple(xt.shape), xt, generator)
    if log_var is not None:
        return mean + torch.exp(0.5 * log_var) * noise
    sigma2 = float(h.beta_tilde[t]) if var_type == "beta_tilde" else beta
    return mean + math.sqrt(sigma2) * noise  # [DDPM] Algorithm 2, line 4


def ddim_step(sched: Schedule, xt: torch.Tensor, t: int, t_prev: int, eps_hat: torch.Tensor, eta: float = 0.0,
              noise: torch.Tensor | None = None, generator: fwd.Generator = None,
              clip_x0: bool = False) -> torch.Tensor:
    """One DDIM step x_t -> x_{t_prev} ([DDIM] Eq. 12 with σ_t(η) of Eq. 16).

        x_prev = √ᾱ_prev x̂_0 + √(1 - ᾱ_prev - σ²) ε̂ + σ z,   x̂_0 = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t
    η = 0 is deterministic; η = 1 is ancestral sampling with β̃ on the strided chain. ``t_prev`` = 0 returns the
    x̂_0 step (ᾱ_0 = 1). With ``clip_x0``, x̂_0 is clipped to [-1, 1] and ε̂ recomputed from it (as diffusers does).
    xt, eps_hat: (B, ...); t in 1..T and t_prev in 0..t-1, indices of ``sched``.
    """
    t = _step_index(sched, t, "t")
    t_prev = _step_index(sched, t_prev, "t_prev", lo=0)
    if t_prev >= t:
        raise ValueError(f"t_prev must be smaller than t, got t={t}, t_prev={t_prev}")
    if not (isinstance(eta, int | float) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    if xt.shape != eps_hat.shape:
        raise ValueError(f"xt {tuple(xt.shape)} and eps_hat {tuple(eps_hat.shape)} must have the same shape")
    ab, abp = float(sched.host.alpha_bar[t]), float(sched.host.alpha_bar[t_prev])
    x0_hat = (xt - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)  # [DDIM] Eq. 12, "predicted x_0"
    if clip_x0:
        x0_hat = x0_hat.clamp(-1, 1)
        eps_hat = (xt - math.sqrt(ab) * x0_hat) / math.sqrt(1 - ab)
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)  # [DDIM] Eq. 16
    dir_coef = math.sqrt(max(1 - abp - sigma ** 2, 0.0))  # "direction pointing to x_t"; > 0 unless η > 1
    x_prev = math.sqrt(abp) * x0_hat + dir_coef * eps_hat  # [DDIM] Eq. 12
    if sigma > 0:
        if noise is None:
            noise = fwd.draw_noise(tuple(xt.shape), xt, generator)
        x_prev = x_prev + sigma * noise  # [DDIM] Eq. 12, random noise term
    return x_prev


def guided_eps(model: torch.nn.Module, sched: Schedule, xt: torch.Tensor, i: int,
               cond: int | torch.Tensor | None = None, w: float = 0.0) -> torch.Tensor:
    """ε̃ at index ``i`` of ``sched``: the model's ε prediction, guided with weight ``w`` when ``cond`` is given.

    xt (B, ...); cond None, an int class or ids (B,). See :func:`predict`.
    """
    i = _step_index(sched, i, "i")
    c = protocol.class_ids(model, cond, xt.shape[0], xt.device)
    with torch.no_grad():
        return predict(model, sched, xt, i, c, w)[0]


def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


@torch.no_grad()
def sample(model: torch.nn.Module, sched: Schedule, shape: tuple[int, ...], method: str = "ddpm",
           steps: int | None = None, eta: float = 0.0, cond: int | torch.Tensor | None = None, w: float = 0.0,
           generator: fwd.Generator = None, progress: bool = True, device: torch.device | str | None = None,
           var_type: str = "beta_tilde", clip_x0: bool = False, x_T: torch.Tensor | None = None,
           return_trajectory: bool = False, callback: Callable[[int, torch.Tensor], None] | None = None,
           step_fn: StepFn | None = None) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Draw samples of ``shape`` (B, ...) by running the reverse chain from x_T ~ N(0, I) to x_0.

    method 'ddpm': ancestral sampling ([DDPM] Algorithm 2) with σ² = ``var_type`` (or the model's learned variance),
    on the full chain, or on the strided chain of ``steps`` steps ([IDDPM] §4 respacing).
    method 'ddim': [DDIM] Eq. 12 over ``steps`` evenly spaced steps (default: all T) with σ_t(η) of Eq. 16.
    methods in ``ODE_METHODS``: the probability-flow ODE integrated by :func:`ddpm_lessons.solvers.sample_ode`.
    ``cond`` (an int class or ids (B,)) with guidance weight ``w`` ([CFG] Eq. 6; w = 0 is conditional sampling).
    Noise is drawn from ``generator`` (on its device, then moved), so a CPU generator gives the same samples on any
    device; a list of B generators gives each row its own (a row then does not depend on the batch it is in).
    ``x_T`` starts from a given noise tensor (used by DDIM inversion) and keeps its dtype (float32 otherwise).
    ``device`` defaults to the model's (the CPU for a parameterless model). ``return_trajectory`` also returns the
    list of x_t after each step (on the CPU). ``callback(i, x)`` is called after each step.
    ``step_fn(chain, x, i, eps_hat, noise) -> x_prev`` (method 'ddpm' only) replaces :func:`ddpm_step`, e.g. a
    learner's own ancestral step; ``noise`` is drawn at every step, i = 1 included, and a learned variance is not
    passed on. ``step_fn=lambda s, x, i, e, z: ddpm_step(s, x, i, e, noise=z)`` gives the default samples exactly.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(eta, int | float) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    if not math.isfinite(w):
        raise ValueError(f"w must be finite, got {w}")
    if var_type not in VAR_TYPES:
        raise ValueError(f"var_type must be one of {VAR_TYPES}, got {var_type!r}")
    if len(shape) < 1 or any((not isinstance(n, int)) or n < 1 for n in shape):
        raise ValueError(f"shape must be a tuple of positive ints (B, ...), got {shape}")
    if step_fn is not None and method != "ddpm":
        raise ValueError(f"step_fn replaces the ancestral step: it needs method='ddpm', got {method!r}")
    if steps is not None and not (isinstance(steps, int) and 1 <= steps <= sched.T):
        raise ValueError(f"steps must be an integer in 1..{sched.T} (the schedule's T), got {steps!r}")
    device = protocol.device_of(model) if device is None else torch.device(device)
    chain = (sched if steps is None or steps == sched.T else respace(sched, steps)).to(device)  # tables copied once
    c = protocol.class_ids(model, cond, shape[0], device)
    if x_T is None:
        x = fwd.draw_noise(tuple(shape), torch.empty(0, device=device), generator)  # float32
    else:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        fwd.check_finite(x_T, "x_T")
        x = x_T.to(device=device)
    if method in ODE_METHODS:
        return solvers.sample_ode(model, sched, x, method=method, steps=steps, cond=c, w=w, clip_x0=clip_x0,
                                  return_trajectory=return_trajectory, callback=callback)
    traj = [x.cpu()] if return_trajectory else []
    with protocol.eval_mode(model):
        for i in _progress(range(chain.T, 0, -1), chain.T, progress, f"{method} sampling"):
            eps_hat, log_var = predict(model, chain, x, i, c, w)
            if step_fn is not None:
                x = step_fn(chain, x, i, eps_hat, fwd.draw_noise(tuple(x.shape), x, generator))
            elif method == "ddpm":
                x = ddpm_step(chain, x, i, eps_hat, var_type=var_type, generator=generator, log_var=log_var,
                              clip_x0=clip_x0)
            else:
                x = ddim_step(chain, x, i, i - 1, eps_hat, eta=eta, generator=generator, clip_x0=clip_x0)
            if return_trajectory:
                traj.append(x.cpu())
            if callback is not None:
                callback(i, x)
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def ddim_invert(model: torch.nn.Module, sched: Schedule, x0: torch.Tensor, steps: int | None = None,
                cond: int | torch.Tensor | None = None, w: float = 0.0, progress: bool = False) -> torch.Tensor:
    """Run the η = 0 DDIM map forwards, x_0 -> x_T ([DDIM] §4.3, Eq. 13 read as an ODE integrated upwards).

    Each step x_{τ_{i-1}} -> x_{τ_i} reuses Eq. 12 with the roles of the two steps swapped, evaluating ε̂ at the
    current point (at x_0 the model is called at τ_1, the first noisy step). Sampling from the result with
    ``sample(..., method='ddim', eta=0, steps=steps, x_T=...)`` returns approximately ``x0``; the round-trip error
    shrinks as ``steps`` grows. x0: (B, ...); returns x_T of the same shape and dtype.
    """
    fwd.check_finite(x0, "x0")
    chain = (sched if steps is None or steps == sched.T else respace(sched, steps)).to(x0.device)
    c = protocol.class_ids(model, cond, x0.shape[0], x0.device)
    x = x0
    with protocol.eval_mode(model):
        for i in _progress(range(0, chain.T), chain.T, progress, "DDIM inversion"):
            eps_hat, _ = predict(model, chain, x, max(i, 1), c, w)
            ab, ab_next = float(chain.host.alpha_bar[i]), float(chain.host.alpha_bar[i + 1])
            x0_hat = (x - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)
            x = math.sqrt(ab_next) * x0_hat + math.sqrt(1 - ab_next) * eps_hat  # [DDIM] Eq. 12 with η = 0, upwards
    return x


@torch.no_grad()
def annealed_langevin(model: torch.nn.Module, sched: Schedule, shape: tuple[int, ...], n_levels: int = 10,
                      n_steps_each: int = 100, step_lr: float = 2e-5, cond: int | torch.Tensor | None = None,
                      generator: fwd.Generator = None, progress: bool = False,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics ([NCSN] Algorithm 1) driven by a diffusion model's score.

    The VP variable x_t = √ᾱ x_0 + √(1-ᾱ) ε is rescaled to the NCSN variable y = x_t/√ᾱ = x_0 + σ ε with
    σ_t = √((1-ᾱ_t)/ᾱ_t), whose score is ∇_y log q(y) = -ε̂(√ᾱ_t y, t)/σ_t. Over ``n_levels`` noise levels
    (geometric in σ from the largest σ_t ≤ 50 down to the smallest σ_1), ``n_steps_each`` updates
    y <- y + (a/2) ∇ log q(y) + √a z with a = step_lr · σ_i²/σ_L² ([NCSN] Algorithm 1). Returns y at the last
    level (≈ x_0), shape ``shape``. ``device`` defaults to the model's (the CPU for a parameterless model).
    """
    if n_levels < 2 or n_steps_each < 1 or not step_lr > 0:
        raise ValueError("need n_levels >= 2, n_steps_each >= 1 and step_lr > 0")
    device = protocol.device_of(model) if device is None else torch.device(device)
    h = sched.host
    sigma_all = ((1 - h.alpha_bar[1:]) / h.alpha_bar[1:]).sqrt()  # (T,), increasing in t
    t_max = int((sigma_all <= 50.0).nonzero().max()) + 1
    targets = torch.logspace(math.log10(float(sigma_all[t_max - 1])), math.log10(float(sigma_all[0])), n_levels,
                             dtype=torch.float64)
    levels = [int(torch.argmin((sigma_all - s).abs())) + 1 for s in targets]  # the t whose σ_t is nearest
    sigma_L = float(sigma_all[levels[-1] - 1])
    chain = sched.to(device)
    c = protocol.class_ids(model, cond, shape[0], device)
    y = fwd.draw_noise(tuple(shape), torch.empty(0, device=device), generator) * float(sigma_all[levels[0] - 1])
    with protocol.eval_mode(model):
        for t in _progress(levels, len(levels), progress, "annealed Langevin"):
            ab = float(h.alpha_bar[t])
            sigma = math.sqrt((1 - ab) / ab)
            a = step_lr * sigma ** 2 / sigma_L ** 2  # [NCSN] Algorithm 1, α_i = ε σ_i²/σ_L²
            for _ in range(n_steps_each):
                eps_hat, _ = predict(model, chain, math.sqrt(ab) * y, t, c, 0.0)
                score = -eps_hat / sigma
                y = y + 0.5 * a * score + math.sqrt(a) * fwd.draw_noise(tuple(shape), y, generator)  # [NCSN] Alg. 1
    return y
