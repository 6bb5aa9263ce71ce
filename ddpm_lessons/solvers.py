"""Solvers of the probability-flow ODE: Euler in t, DDIM (= DPM-Solver-1), Heun (EDM) and two second-order DPM-Solvers.

The PF-ODE of the VP-SDE dx = -½β(t) x dt + √β(t) dw ([SDE] Eq. 11) is ([SDE] Eq. 13)

    dx/dt = -½β(t) [x + ∇log q_t(x)] = -½β(t) [x - ε(x, t)/√(1-ᾱ_t)],          score = -ε/√(1-ᾱ_t)

and every solver here integrates it from a noisy grid point to a cleaner one, given ε̂. Notation (ours -> papers):

    ab                ᾱ_t                                        ([DDPM]); α_t² in [DPM] / [DPM++]
    a, sig            √ᾱ_t, √(1-ᾱ_t)                             α_t, σ_t of [DPM] Eq. 2.1
    lam               λ_t = log(a/sig), half the log-SNR          [DPM] §3.1 (λ = ½ log SNR of [VDM])
    h                 λ_t - λ_s > 0 for a step s -> t towards the data
    y, sigma_ve       x/√ᾱ and √((1-ᾱ)/ᾱ) = 1/SNR^½: the VE variables in which dy/dσ = ε ([DDIM] Eq. 14;
                      [EDM] Eq. 4 with s(t) = 1, σ(t) = t)

The exponential-integrator form of the exact solution ([DPM] Eq. 3.4) is
x_t = (a_t/a_s) x_s - a_t ∫_{λ_s}^{λ_t} e^{-λ} ε̂(x_λ, λ) dλ; freezing ε̂ at s gives DPM-Solver-1 ([DPM] Eq. 3.7),
which is DDIM with η = 0 ([DDIM] Eq. 12) and Euler's method in (y, σ) ([DDIM] Eq. 14).

**Grids.** Every loop runs over a grid of ᾱ values ``alpha_bar`` (N+1,) from the noisiest point (index 0) to the
cleanest (index N), and an ε-field ``eps_fn(x, k)`` that returns ε̂ at grid point k. For a trained model the grid is
the respaced chain ``respace(sched, steps)`` read backwards (its ᾱ at τ_K, ..., τ_1, then ᾱ_0 = 1), and point k
calls the model at the integer training step ``chain.timesteps[K - k]``: no solver here evaluates a model between
grid points. (Heun's corrector and DPM-Solver-2's intermediate point land on the *next* grid point; this is the
grid diffusers' ``HeunDiscreteScheduler`` and ``DPMSolverSinglestepScheduler`` use with integer ``timesteps``.)
A final point with ᾱ = 1 (σ = 0, λ = ∞) is reached with a first-order step, as in [EDM] Alg. 1 (no correction
when σ = 0) and diffusers' ``final_sigmas_type="zero"``. For an exact score any ᾱ is allowed:
:meth:`VPSDE.time_grid` builds the grids of :data:`GRIDS` (uniform in λ, in t, in √t, and [EDM]'s ρ-grid in σ).

Network calls (NFE) for a grid of N intervals: euler, ddim, dpm_solver_2, dpm_solver_pp_2m: N; heun: 2N, or
2N - 1 when the grid ends at ᾱ = 1.

References:
    [SDE]   Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole 2021, arXiv:2011.13456
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
    [EDM]   Karras, Aittala, Aila, Laine 2022, arXiv:2206.00364
    [DPM]   Lu, Zhou, Bao, Chen, Li, Zhu 2022 (DPM-Solver), arXiv:2206.00927
    [DPM++] Lu, Zhou, Bao, Chen, Li, Zhu 2022 (DPM-Solver++), arXiv:2211.01095
    [VDM]   Kingma, Salimans, Poole, Ho 2021, arXiv:2107.00630
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .models import protocol
from .reverse import predict
from .schedules import Schedule, respace

__all__ = ["METHODS", "GRIDS", "LOWER_ORDER_FINAL_BELOW", "EpsFn", "VPSDE", "euler_step", "ddim_ode_step",
           "heun_step", "dpm_solver_2_step", "dpm_solver_pp_2m_step", "solve", "nfe", "model_eps_fn", "sample_ode",
           "pathwise_error", "fit_order", "convergence", "convergence_by_grid", "gaussian_ode_solution"]

METHODS = ("euler", "ddim", "heun", "dpm_solver_2", "dpm_solver_pp_2m")
GRIDS = ("logSNR", "time_uniform", "time_quadratic", "edm")  # the grid kinds of VPSDE.time_grid
LOWER_ORDER_FINAL_BELOW = 15  # diffusers' DPMSolverMultistepScheduler: lower_order_final applies below 15 steps

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]  # eps_fn(x, k) -> ε̂ at grid point k; x and ε̂ of shape (B, ...)


def _coef(ab: float) -> tuple[float, float, float]:
    """(a, sig, lam) = (√ᾱ, √(1-ᾱ), log(a/sig)) in float64; lam = +inf at ᾱ = 1."""
    if not 0.0 < ab <= 1.0:
        raise ValueError(f"alpha_bar must lie in (0, 1], got {ab}")
    a, sig = math.sqrt(ab), math.sqrt(1.0 - ab)
    return a, sig, (math.inf if sig == 0.0 else math.log(a) - math.log(sig))


# ---- one step of each solver (s -> t, t cleaner than s) ----------------------------------------------------------
def euler_step(x: torch.Tensor, dt: float, beta_s: float, ab_s: float, eps_s: torch.Tensor) -> torch.Tensor:
    """Euler's method on the PF-ODE in the time t: x + dt · f(x, s), f = -½β(s)[x - ε̂/√(1-ᾱ_s)].

    [SDE] Eq. 13 with the VP drift and diffusion of Eq. 11. ``dt`` = t - s (< 0 towards the data), ``beta_s`` the
    continuous β at s in the units of t. x, eps_s: (B, ...).
    """
    sig = _coef(ab_s)[1]
    return x + dt * (-0.5 * beta_s * (x - eps_s / sig))  # [SDE] Eq. 13 (VP, Eq. 11)


def ddim_ode_step(x: torch.Tensor, ab_s: float, ab_t: float, eps_s: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-1 = DDIM with η = 0: x_t = (a_t/a_s) x_s - σ_t (e^h - 1) ε̂_s ([DPM] Eq. 3.7; [DDIM] Eq. 12).

    σ_t e^h is written a_t σ_s/a_s, which stays finite at ᾱ_t = 1 (then x_t = x̂_0). x, eps_s: (B, ...).
    """
    a_s, sig_s, _ = _coef(ab_s)
    a_t, sig_t, _ = _coef(ab_t)
    return (a_t / a_s) * x - (a_t * sig_s / a_s - sig_t) * eps_s  # [DPM] Eq. 3.7


def heun_step(x: torch.Tensor, ab_s: float, ab_t: float, eps_s: torch.Tensor,
              eps_fn_t: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """Heun's second-order step in the VE variables y = x/√ᾱ, σ = √((1-ᾱ)/ᾱ), where dy/dσ = ε ([EDM] Alg. 1).

        d_s = ε̂_s;  y' = y_s + (σ_t - σ_s) d_s                       (Euler step, [EDM] Alg. 1)
        if σ_t != 0: d' = ε̂(x', t);  y_t = y_s + (σ_t - σ_s)(d_s + d')/2   (2nd-order correction)

    ``eps_fn_t(x')`` returns ε̂ at the target point for x' = √ᾱ_t y' (the VP variable the model reads); None, or
    ᾱ_t = 1, makes this the Euler step (= DDIM). x, eps_s: (B, ...).
    """
    a_s, sig_s, _ = _coef(ab_s)
    a_t, sig_t, _ = _coef(ab_t)
    s_s, s_t = sig_s / a_s, sig_t / a_t
    y = x / a_s
    y_euler = y + (s_t - s_s) * eps_s  # [EDM] Alg. 1, Euler step
    if eps_fn_t is None or sig_t == 0.0:
        return a_t * y_euler
    eps_t = eps_fn_t(a_t * y_euler)
    return a_t * (y + (s_t - s_s) * 0.5 * (eps_s + eps_t))  # [EDM] Alg. 1, trapezoidal correction


def dpm_solver_2_step(x: torch.Tensor, ab_s: float, ab_mid: float, ab_t: float, eps_s: torch.Tensor,
                      eps_fn_mid: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One DPM-Solver-2 step s -> t through an intermediate point u at ᾱ_mid ([DPM] Alg. 4, general r₁; Alg. 1 has
    r₁ = ½).

        r₁ = (λ_mid - λ_s)/h,  u = (a_mid/a_s) x_s - σ_mid (e^{r₁h} - 1) ε̂_s
        x_t = (a_t/a_s) x_s - σ_t (e^h - 1) ε̂_s - σ_t/(2r₁) (e^h - 1) (ε̂(u) - ε̂_s)

    This is diffusers' ``singlestep_dpm_solver_second_order_update`` (algorithm "dpmsolver", "midpoint") with the
    intermediate point at the next grid point. Needs ᾱ_s < ᾱ_mid < ᾱ_t < 1 (λ_t finite). x, eps_s: (B, ...).
    """
    a_s, sig_s, lam_s = _coef(ab_s)
    a_m, sig_m, lam_m = _coef(ab_mid)
    a_t, sig_t, lam_t = _coef(ab_t)
    if not lam_s < lam_m < lam_t < math.inf:
        raise ValueError(f"need alpha_bar_s < alpha_bar_mid < alpha_bar_t < 1, got {ab_s}, {ab_mid}, {ab_t}")
    h = lam_t - lam_s
    r1 = (lam_m - lam_s) / h
    u = (a_m / a_s) * x - sig_m * math.expm1(r1 * h) * eps_s  # [DPM] Alg. 4, the intermediate point
    eps_u = eps_fn_mid(u)
    phi = sig_t * math.expm1(h)
    return (a_t / a_s) * x - phi * eps_s - phi / (2 * r1) * (eps_u - eps_s)  # [DPM] Alg. 4


def dpm_solver_pp_2m_step(x: torch.Tensor, ab_s: float, ab_t: float, x0_s: torch.Tensor,
                          x0_prev: torch.Tensor | None = None, ab_prev: float | None = None) -> torch.Tensor:
    """One DPM-Solver++(2M) step in data prediction x̂_0 ([DPM++] Alg. 2), reusing the previous step's x̂_0.

        h = λ_t - λ_s, r = (λ_s - λ_prev)/h,  D = (1 + 1/(2r)) x̂_0(s) - 1/(2r) x̂_0(prev)
        x_t = (σ_t/σ_s) x_s - a_t (e^{-h} - 1) D

    Without ``x0_prev`` (the first step) and at ᾱ_t = 1 (the last step, h = ∞) D = x̂_0(s): the first-order step,
    which is DDIM again. x, x0_s, x0_prev: (B, ...).
    """
    _, sig_s, lam_s = _coef(ab_s)
    a_t, sig_t, lam_t = _coef(ab_t)
    if not lam_t > lam_s:
        raise ValueError(f"the step must go towards the data (alpha_bar_t > alpha_bar_s), got {ab_s} -> {ab_t}")
    if sig_t == 0.0:
        return x0_s.clone()  # σ_t/σ_s = 0, e^{-h} = 0: x_t = a_t D, first order at the final step
    h = lam_t - lam_s
    d = x0_s
    if x0_prev is not None:
        if ab_prev is None:
            raise ValueError("ab_prev is needed with x0_prev")
        r = (lam_s - _coef(ab_prev)[2]) / h
        d = (1 + 1 / (2 * r)) * x0_s - (1 / (2 * r)) * x0_prev  # [DPM++] Alg. 2, D_i
    return (sig_t / sig_s) * x - a_t * math.expm1(-h) * d  # [DPM++] Alg. 2


# ---- the loop ----------------------------------------------------------------------------------------------------
def _grid(alpha_bar: Sequence[float] | torch.Tensor) -> list[float]:
    ab = [float(v) for v in torch.as_tensor(alpha_bar, dtype=torch.float64).flatten()]
    if len(ab) < 2:
        raise ValueError("the grid needs at least two points")
    if any(not 0.0 < v <= 1.0 for v in ab) or any(b <= a for a, b in zip(ab, ab[1:], strict=False)):
        raise ValueError("alpha_bar must increase strictly along the grid (noisy -> clean) inside (0, 1]")
    return ab


def nfe(method: str, n_intervals: int, ends_at_data: bool) -> int:
    """Network calls of ``method`` on a grid of ``n_intervals`` intervals (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "heun":
        return 2 * n_intervals - (1 if ends_at_data else 0)
    return n_intervals


def solve(eps_fn: EpsFn, alpha_bar: Sequence[float] | torch.Tensor, x: torch.Tensor, method: str,
          times: Sequence[float] | torch.Tensor | None = None, beta: Sequence[float] | torch.Tensor | None = None,
          callback: Callable[[int, torch.Tensor], None] | None = None, lower_order_final: bool = False
          ) -> torch.Tensor:
    """Integrate the PF-ODE from grid point 0 (x given there) to the last grid point with ``method``.

    Args:
        eps_fn: ``eps_fn(x, k)`` -> ε̂ at grid point k (shape of x). Called exactly :func:`nfe` times.
        alpha_bar: the grid's ᾱ values (N+1,), strictly increasing (noisy -> clean); the last may be 1.
        x: the state at grid point 0, (B, ...); its dtype is kept.
        method: one of :data:`METHODS`. 'dpm_solver_2' pairs the intervals (k, k+1, k+2) with the intermediate point
            at k+1; an odd interval left over, and a last interval ending at ᾱ = 1, take a DDIM step.
            'dpm_solver_pp_2m' is first order at its first step and at a last step ending at ᾱ = 1.
        lower_order_final: for 'dpm_solver_pp_2m' only (the others ignore it): on a grid of fewer than
            :data:`LOWER_ORDER_FINAL_BELOW` intervals the last step is first order wherever it ends. This is
            diffusers' ``DPMSolverMultistepScheduler(lower_order_final=True)`` (its default; the official DPM-Solver
            code has the same switch, below 10 steps), there to stabilise sampling with very few steps: the last step
            of a coarse grid can be long in λ, and the multistep extrapolation D = (1 + 1/(2r)) x̂_0(s) - x̂_0(prev)/(2r)
            amplifies the change of x̂_0 by 1/(2r) when r = h_prev/h is small.
        times, beta: for 'euler' only: the time of each grid point and the continuous β(t) there (in the units
            of ``times``; for a discrete chain β_t per step with times = t, the [SDE] Eq. 11 limit).
        callback: ``callback(k, x)`` after the state reaches grid point k.

    Returns the state at the last grid point, shape and dtype of ``x``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ab = _grid(alpha_bar)
    N = len(ab) - 1
    if method == "euler":
        if times is None or beta is None:
            raise ValueError("method 'euler' needs the grid's times and beta")
        tt = [float(v) for v in torch.as_tensor(times, dtype=torch.float64).flatten()]
        bb = [float(v) for v in torch.as_tensor(beta, dtype=torch.float64).flatten()]
        if len(tt) != N + 1 or len(bb) != N + 1:
            raise ValueError(f"times and beta must have {N + 1} entries like alpha_bar")

    def done(k: int, state: torch.Tensor) -> None:
        if callback is not None:
            callback(k, state)

    if method == "dpm_solver_2":
        final_first_order = ab[-1] == 1.0
        k = 0
        while k < N:
            eps_k = eps_fn(x, k)
            if k + 2 <= N and not (final_first_order and k + 2 == N):
                x = dpm_solver_2_step(x, ab[k], ab[k + 1], ab[k + 2], eps_k, lambda u, m=k + 1: eps_fn(u, m))
                k += 2
            else:
                x = ddim_ode_step(x, ab[k], ab[k + 1], eps_k)
                k += 1
            done(k, x)
        return x

    x0_prev: torch.Tensor | None = None
    first_order_last = lower_order_final and N < LOWER_ORDER_FINAL_BELOW
    for k in range(N):
        eps_k = eps_fn(x, k)
        if method == "euler":
            x = euler_step(x, tt[k + 1] - tt[k], bb[k], ab[k], eps_k)
        elif method == "ddim":
            x = ddim_ode_step(x, ab[k], ab[k + 1], eps_k)
        elif method == "heun":
            x = heun_step(x, ab[k], ab[k + 1], eps_k, lambda u, m=k + 1: eps_fn(u, m))
        else:  # dpm_solver_pp_2m
            a_k, sig_k, _ = _coef(ab[k])
            x0_k = (x - sig_k * eps_k) / a_k  # x̂_0 from ε̂ ([DDIM] Eq. 12)
            if first_order_last and k == N - 1:
                x0_prev = None  # the last step without the multistep correction (diffusers' lower_order_final)
            x_next = dpm_solver_pp_2m_step(x, ab[k], ab[k + 1], x0_k, x0_prev, ab[k - 1] if k else None)
            x0_prev, x = x0_k, x_next
        done(k + 1, x)
    return x


# ---- trained models: the grid of a respaced chain ----------------------------------------------------------------
def model_eps_fn(model: torch.nn.Module, chain: Schedule, cond: torch.Tensor | None = None, w: float = 0.0) -> EpsFn:
    """The ε-field of a model on the grid of ``chain`` read backwards: grid point k is chain index K - k.

    Calls :func:`ddpm_lessons.reverse.predict` (x_0- and v-models converted to ε, guidance with ``w`` when ``cond``
    is given), so the model sees the integer training step ``chain.timesteps[K - k]``.
    """
    K = chain.T

    def eps_fn(x: torch.Tensor, k: int) -> torch.Tensor:
        return predict(model, chain, x, K - k, cond, w)[0].to(x.dtype)

    return eps_fn


@torch.no_grad()
def sample_ode(model: torch.nn.Module, sched: Schedule, x_T: torch.Tensor, method: str = "dpm_solver_pp_2m",
               steps: int | None = None, cond: torch.Tensor | None = None, w: float = 0.0,
               clip_x0: bool = False, return_trajectory: bool = False,
               callback: Callable[[int, torch.Tensor], None] | None = None
               ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate the PF-ODE of a trained model from x_T down to x_0 on the respaced chain of ``steps`` steps.

    The grid is ᾱ_{τ_K}, ..., ᾱ_{τ_1}, ᾱ_0 = 1 of ``respace(sched, steps)`` (τ_i = round(i T/K)), the model is called
    at the integer steps τ_i only, and ``method`` is one of :data:`METHODS` ('euler' uses β(t) = β_t per step of
    ``sched``, which must then be a full chain). ``cond`` is a LongTensor (B,) or None (see
    :func:`ddpm_lessons.samplers.predict`). x_T: (B, ...); returns x_0 of the same shape and dtype. Network calls:
    :func:`nfe` with ``steps`` intervals and ``ends_at_data=True`` (heun: 2K - 1; the others: K).
    ``return_trajectory`` also returns the states at the grid points reached (on the CPU, x_T first);
    ``callback(i, x)`` is called with the chain index i (K..0) of each grid point reached, like ``samplers.sample``.
    ``clip_x0`` is refused: these solvers integrate the unclipped ODE (clipping is a DDIM-sampler option).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if clip_x0:
        raise ValueError(f"clip_x0 is not supported by the ODE solver {method!r} (it integrates the unclipped "
                         "PF-ODE); use method='ddim' to clip x0_hat")
    chain = sched if steps is None or steps == sched.T else respace(sched, steps)
    K = chain.T
    host = chain.host  # per-step floats come from the CPU copy: no host-device synchronisation in the loop
    ab = host.alpha_bar.flip(0)  # (K+1,): ᾱ_{τ_K}, ..., ᾱ_{τ_1}, 1
    times = beta = None
    if method == "euler":
        if sched.parent_T != sched.T:
            raise ValueError("method 'euler' reads β_t from a full chain; pass the schedule before respacing")
        t_orig = host.timesteps.flip(0)  # original t of each grid point, τ_K .. 0
        times = t_orig.double()
        beta = sched.host.beta[t_orig]
    with protocol.eval_mode(model):
        eps_fn = model_eps_fn(model, chain, cond, w)
        traj = [x_T.detach().cpu()] if return_trajectory else []

        def cb(k: int, x: torch.Tensor) -> None:
            if return_trajectory:
                traj.append(x.detach().cpu())
            if callback is not None:
                callback(K - k, x)  # the chain index, like samplers.sample

        x0 = solve(eps_fn, ab, x_T, method, times=times, beta=beta, callback=cb)
    return (x0, traj) if return_trajectory else x0


# ---- the continuous VP-SDE and the convergence study --------------------------------------------------------------
@dataclass(frozen=True)
class VPSDE:
    """The VP-SDE with linear β(t) = β_min + t(β_max - β_min), t in [0, 1] ([SDE] Eq. 11 and App. B).

    The defaults are the T → ∞ limit of the DDPM linear schedule: β_t = β(t/T)/T gives β_1 = 1e-4 and β_T = 0.02 at
    T = 1000. ᾱ(t) = exp(-∫_0^t β) = exp(-β_min t - ½(β_max - β_min) t²).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: torch.Tensor | float) -> torch.Tensor:
        """β(t), float64."""
        return self.beta_min + torch.as_tensor(t, dtype=torch.float64) * (self.beta_max - self.beta_min)

    def alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        """ᾱ(t) = exp(-∫_0^t β(s) ds), float64."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.exp(-self.beta_min * t - 0.5 * (self.beta_max - self.beta_min) * t ** 2)

    def lam(self, t: torch.Tensor | float) -> torch.Tensor:
        """λ(t) = ½ log SNR(t) = ½ log(ᾱ/(1-ᾱ)), float64."""
        ab = self.alpha_bar(t)
        return 0.5 * (torch.log(ab) - torch.log1p(-ab))

    def t_of_lam(self, lam: torch.Tensor | float) -> torch.Tensor:
        """The inverse of :meth:`lam`: -log ᾱ = softplus(-2λ) = β_min t + ½Δ t², solved for t ≥ 0."""
        c = torch.nn.functional.softplus(-2 * torch.as_tensor(lam, dtype=torch.float64))
        d = self.beta_max - self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min ** 2 + 2 * d * c)) / d

    def lambda_grid(self, n_intervals: int, t_start: float = 1.0, t_end: float = 1e-3) -> torch.Tensor:
        """Times (n+1,) from ``t_start`` to ``t_end`` uniform in λ (the DPM-Solver grid, [DPM] §3.3)."""
        lam = torch.linspace(float(self.lam(t_start)), float(self.lam(t_end)), n_intervals + 1, dtype=torch.float64)
        t = self.t_of_lam(lam)
        t[0], t[-1] = t_start, t_end
        return t

    def time_grid(self, kind: str, n_intervals: int, t_start: float = 1.0, t_end: float = 1e-3, rho: float = 7.0
                  ) -> torch.Tensor:
        """Times (n+1,), float64, decreasing from ``t_start`` to ``t_end`` (both exact), for ``kind`` in :data:`GRIDS`.

        - 'logSNR': uniform in λ = ½ log SNR (:meth:`lambda_grid`; [DPM] §3.3, ``skip_type='logSNR'`` of the
          DPM-Solver code, which recommends it for low-resolution images).
        - 'time_uniform': uniform in t ([DDIM] App. D.2 "linear" τ_i = ⌊ci⌋; ``skip_type='time_uniform'``, which the
          DPM-Solver code recommends for high-resolution images).
        - 'time_quadratic': uniform in √t, t_i = (√t_start + (i/n)(√t_end - √t_start))² ([DDIM] App. D.2 "quadratic"
          τ_i = ⌊ci²⌋, used there for CIFAR-10; ``skip_type='time_quadratic'``).
        - 'edm': uniform in σ^(1/ρ) for σ = √((1-ᾱ)/ᾱ) = e^(-λ) ([EDM] Eq. 5, ρ = 7 by default; diffusers'
          ``use_karras_sigmas``), σ_i = (σ_max^(1/ρ) + (i/n)(σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ between σ(t_start) and
          σ(t_end), mapped back to t with :meth:`t_of_lam`.
        """
        if kind not in GRIDS:
            raise ValueError(f"kind must be one of {GRIDS}, got {kind!r}")
        if n_intervals < 1 or not 0.0 < t_end < t_start:
            raise ValueError(f"need n_intervals >= 1 and 0 < t_end < t_start, got {n_intervals}, {t_start}, {t_end}")
        i = torch.arange(n_intervals + 1, dtype=torch.float64) / n_intervals
        if kind == "logSNR":
            return self.lambda_grid(n_intervals, t_start, t_end)
        if kind == "time_uniform":
            t = t_start + i * (t_end - t_start)
        elif kind == "time_quadratic":
            t = (math.sqrt(t_start) + i * (math.sqrt(t_end) - math.sqrt(t_start))) ** 2
        else:  # edm
            lo, hi = float(-self.lam(t_end)) / rho, float(-self.lam(t_start)) / rho  # log σ^(1/ρ) at both ends
            s_hi, s_lo = math.exp(hi), math.exp(lo)
            sigma = (s_hi + i * (s_lo - s_hi)) ** rho  # [EDM] Eq. 5
            t = self.t_of_lam(-torch.log(sigma))
        t[0], t[-1] = t_start, t_end
        return t


def pathwise_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Root-mean-square Euclidean distance between matched rows of x and ref, (B, ...) each (data units)."""
    if x.shape != ref.shape:
        raise ValueError(f"x {tuple(x.shape)} and ref {tuple(ref.shape)} must have the same shape")
    return float((x - ref).double().flatten(1).pow(2).sum(1).mean().sqrt())


def fit_order(calls: Sequence[float], errors: Sequence[float]) -> float:
    """The convergence order p of errors ≈ C · calls^(-p): minus the least-squares slope in log-log.

    Pairs with a non-finite error (a call count the method cannot use, see :func:`convergence`) are left out.
    """
    c = torch.as_tensor(calls, dtype=torch.float64)
    e = torch.as_tensor(errors, dtype=torch.float64)
    ok = torch.isfinite(e) & (e > 0)
    if int(ok.sum()) < 2:
        raise ValueError("need at least two finite errors to fit an order")
    lx, ly = torch.log(c[ok]), torch.log(e[ok])
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float(-(lx * ly).sum() / (lx * lx).sum())


def _intervals_for(method: str, calls: int) -> int:
    n = calls // 2 if method == "heun" else calls
    if n < 1 or nfe(method, n, ends_at_data=False) != calls or (method == "dpm_solver_2" and calls % 2):
        raise ValueError(f"{method} cannot use exactly {calls} network calls on a grid that ends before the data")
    return n


def _reference(eps_at: Callable[[torch.Tensor, float], torch.Tensor], x_T: torch.Tensor, sde: VPSDE, t_end: float,
               ref_calls: int) -> torch.Tensor:
    t = sde.lambda_grid(_intervals_for("dpm_solver_2", ref_calls), 1.0, t_end)
    ab = sde.alpha_bar(t)
    return solve(lambda x, k: eps_at(x, float(ab[k])), ab, x_T, "dpm_solver_2")


def _errors(eps_at: Callable[[torch.Tensor, float], torch.Tensor], x_T: torch.Tensor, ref: torch.Tensor,
            calls: Sequence[int], methods: Sequence[str], sde: VPSDE, t_end: float, grid: str, rho: float,
            lower_order_final: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"calls": [float(c) for c in calls]}
    for m in methods:
        errs = []
        for c in calls:
            try:
                n = _intervals_for(m, int(c))
            except ValueError:
                errs.append(math.nan)
                continue
            t = sde.time_grid(grid, n, 1.0, t_end, rho)
            ab = sde.alpha_bar(t)
            x = solve(lambda z, k, ab=ab: eps_at(z, float(ab[k])), ab, x_T, m, times=t, beta=sde.beta(t),
                      lower_order_final=lower_order_final)
            errs.append(pathwise_error(x, ref))
        out[m] = errs
    return out


def convergence(eps_at: Callable[[torch.Tensor, float], torch.Tensor], x_T: torch.Tensor, calls: Sequence[int],
                methods: Sequence[str] = METHODS, sde: VPSDE = VPSDE(), t_end: float = 1e-3,
                ref_calls: int = 4096, grid: str = "logSNR", lower_order_final: bool = False,
                rho: float = 7.0) -> dict[str, list[float]]:
    """Pathwise error at ``t_end`` against a fine-step reference from the same x_T, per method and call count.

    ``eps_at(x, alpha_bar)`` is an ε-field that accepts any ᾱ (an exact score, e.g. ``GaussianMixture.eps_opt``);
    every method runs on the grid ``sde.time_grid(grid, n, 1, t_end, rho)`` (see :data:`GRIDS`; the default
    'logSNR' is uniform in λ) with as many intervals n as ``calls`` allows (heun: calls/2; dpm_solver_2: its pairs
    share the grid's points as in the module docstring; an odd count is impossible for both and gives nan).
    ``lower_order_final`` is passed to :func:`solve` (DPM-Solver++(2M) only). The reference does not depend on
    ``grid``: DPM-Solver-2 with ``ref_calls`` calls uniform in λ. x_T: (B, D) float64.
    Returns {method: [error at each call count]} plus 'calls'.
    """
    ref = _reference(eps_at, x_T, sde, t_end, ref_calls)
    return _errors(eps_at, x_T, ref, calls, methods, sde, t_end, grid, rho, lower_order_final)


def convergence_by_grid(eps_at: Callable[[torch.Tensor, float], torch.Tensor], x_T: torch.Tensor,
                        calls: Sequence[int], grids: Sequence[str] = GRIDS, methods: Sequence[str] = METHODS,
                        sde: VPSDE = VPSDE(), t_end: float = 1e-3, ref_calls: int = 4096,
                        lower_order_final: bool = False, rho: float = 7.0) -> dict[str, dict[str, list[float]]]:
    """:func:`convergence` on each grid of ``grids``, against one shared reference: {grid: {method: errors}}."""
    ref = _reference(eps_at, x_T, sde, t_end, ref_calls)
    return {g: _errors(eps_at, x_T, ref, calls, methods, sde, t_end, g, rho, lower_order_final) for g in grids}


def gaussian_ode_solution(x_T: torch.Tensor, ab_T: float, ab_t: float | torch.Tensor, mu: float, s: float
                          ) -> torch.Tensor:
    """The exact PF-ODE flow for 1-D data N(μ, s²): it maps the standardised value, so
    x_t = √ᾱ_t μ + √(ᾱ_t s² + 1 - ᾱ_t) · (x_T - √ᾱ_T μ)/√(ᾱ_T s² + 1 - ᾱ_T)
    (checked in SymPy in ``derive.pf_ode_gaussian``). x_T: (B, ...) float64; returns x at ``ab_t``.
    """
    ab_t = torch.as_tensor(ab_t, dtype=torch.float64)
    z = (x_T - math.sqrt(ab_T) * mu) / math.sqrt(ab_T * s * s + 1 - ab_T)
    return ab_t.sqrt() * mu + torch.sqrt(ab_t * s * s + 1 - ab_t) * z
