"""Losses and the variational bound: Gaussian KL, the discretized decoder, L_T / L_{t-1} / L_0, bits/dim,
L_simple, the per-t weight that turns ε-MSE into L_{t-1}, and the hybrid loss.

Units: ``gaussian_kl`` and the log-likelihoods are elementwise nats; the VLB helpers sum over data dimensions and
return nats per example (B,); ``bits_per_dim`` divides by D·ln 2 where D is the number of data dimensions.

The bound ([DDPM] Eq. 5):
    L = E_q[ D_KL(q(x_T|x_0) || p(x_T))                    L_T   (no parameters)
          + Σ_{t>1} D_KL(q(x_{t-1}|x_t,x_0) || p_θ(x_{t-1}|x_t))   L_{t-1}
          - log p_θ(x_0|x_1) ]                             L_0   (discretized decoder, [DDPM] Eq. 13)
With p_θ(x_{t-1}|x_t) = N(μ_θ, σ_t² I) and μ_θ in ε-form ([DDPM] Eq. 11),
    L_{t-1} = λ_t ‖ε - ε_θ‖² + C,   λ_t = β_t² / (2 σ_t² α_t (1 - ᾱ_t))          [DDPM] Eq. 12
and L_simple drops λ_t ([DDPM] Eq. 14). With σ_t² = β̃_t the KL has no variance term, so C = 0.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal

from . import forward as fwd
from .schedules import Schedule

__all__ = [
    "mean_flat", "gaussian_kl", "discretized_gaussian_log_likelihood", "prior_kl", "decoder_nll", "vlb_term",
    "vlb_weight", "l_simple", "training_losses", "bits_per_dim", "LOSS_TYPES",
]

LOSS_TYPES = ("simple", "vlb", "hybrid")


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the batch: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def sum_flat(x: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the batch: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def gaussian_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
                ) -> torch.Tensor:
    """Elementwise D_KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats; arguments broadcast.

    KL = ½ (log σ₂²/σ₁² + (σ₁² + (μ₁ - μ₂)²)/σ₂² - 1) (closed form for two Gaussians; [DDPM] §3.2 notes every KL
    in the bound is between Gaussians). Not symmetric: the first argument is the distribution the expectation is under.
    """
    try:
        torch.broadcast_shapes(mean1.shape, logvar1.shape, mean2.shape, logvar2.shape)
    except RuntimeError as e:
        raise ValueError(f"gaussian_kl arguments do not broadcast: {tuple(mean1.shape)}, {tuple(logvar1.shape)}, "
                         f"{tuple(mean2.shape)}, {tuple(logvar2.shape)}") from e
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                        bins: int = 256) -> torch.Tensor:
    """Elementwise log-probability (nats) of data on a ``bins``-level grid in [-1, 1] under a discretized Gaussian.

    Each grid value x owns the interval [x - δ, x + δ] with δ = 1/(bins - 1) (half the bin width 2/(bins - 1)); the
    edge bins are open-ended: x = -1 owns (-∞, -1 + δ] and x = 1 owns [1 - δ, ∞) ([DDPM] Eq. 13). Probabilities use
    the exact Normal CDF (``torch.special.log_ndtr``; the reference codebases use a tanh approximation) and are
    floored at 1e-12 so the result is never -inf (the gradient is 0 on the floor). Value and gradient are finite for
    every finite ``mean`` and ``log_scale``: the tails are cut where they no longer change a floored result, and no
    ``torch.where`` branch that is thrown away ever sees an input that would make it inf/NaN (such a branch still
    sends 0·inf = NaN into the backward pass). The one float32 exception: σ > ~1e34 with |mean - x| > ~1e36, where
    the backward's product (x - mean)·∂/∂u overflows before the 1/σ factor.

    Args:
        x: (B, ...) data, values on the grid -1 + 2k/(bins-1). mean, log_scale: broadcastable to x; log_scale = log σ.
    Returns:
        (B, ...) log-probabilities in nats.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    fwd.check_finite(x, "x")
    if (x.abs() > 1 + 1e-6).any():
        raise ValueError("x must lie in [-1, 1] (data scaled from the integer grid)")
    return _discretized_log_likelihood(x, mean, log_scale, bins)


def _discretized_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, bins: int
                                ) -> torch.Tensor:
    """:func:`discretized_gaussian_log_likelihood` without the input checks (which synchronise with a GPU)."""
    delta = 1.0 / (bins - 1)
    # 1/σ stays finite (σ below e^-(log max - 1), ~1e-38 in float32, counts as that): exp's backward multiplies by it
    inv_std = torch.exp(-log_scale.clamp_min(1.0 - math.log(torch.finfo(log_scale.dtype).max)))
    # Standardised bin edges, cut at ±_Z_MAX: beyond it log Φ is exactly 0 (or far below the floor), so the result
    # does not change, while log_ndtr's value and backward stay finite and accurate.
    upper = ((x - mean + delta) * inv_std).clamp(-_Z_MAX, _Z_MAX)
    lower = ((x - mean - delta) * inv_std).clamp(-_Z_MAX, _Z_MAX)
    log_cdf_upper = torch.special.log_ndtr(upper)  # log Φ(upper): the lowest bin
    log_sf_lower = torch.special.log_ndtr(-lower)  # log(1 - Φ(lower)): the highest bin
    # Middle bins: log(Φ(u) - Φ(l)) = log Φ(u) + log(1 - Φ(l)/Φ(u)), or the mirror image above the mean, so that
    # neither side cancels in the tails. Both sides are finite everywhere (_log1mexp takes any a <= 0).
    below = torch.special.log_ndtr(upper) + _log1mexp(torch.special.log_ndtr(lower) - torch.special.log_ndtr(upper))
    above = torch.special.log_ndtr(-lower) + _log1mexp(torch.special.log_ndtr(-upper) - torch.special.log_ndtr(-lower))
    log_mid = torch.where(lower > 0, above, below)
    out = torch.where(x < -1 + delta, log_cdf_upper, torch.where(x > 1 - delta, log_sf_lower, log_mid))
    return out.clamp_min(math.log(1e-12))


_Z_MAX = 100.0  # |z| cut for the standardised bin edges: log Φ(100) == 0 and log Φ(-100) ≈ -5005 in float32/64


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - e^a) for a <= 0, accurate near 0 and for very negative a (Mächler 2012).

    Finite with a finite derivative for every finite a: a is capped at -tiny (so log(1 - e^a) >= log tiny), and each
    branch gets an input clamped into its own range, so the branch ``torch.where`` discards is never -inf.
    """
    a = a.clamp_max(-torch.finfo(a.dtype).tiny)
    ln2 = math.log(2)
    return torch.where(a > -ln2, torch.log(-torch.expm1(a.clamp_min(-ln2))), torch.log1p(-torch.exp(a.clamp_max(-ln2))))


def prior_kl(sched: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = D_KL(q(x_T | x_0) || N(0, I)) summed over dimensions, nats, shape (B,) ([DDPM] Eq. 5).

    Computed in float64 (the terms nearly cancel when ᾱ_T is tiny) and returned in x0's dtype.
    """
    fwd.check_finite(x0, "x0")
    dtype, x0 = x0.dtype, x0.double()
    ab_T = float(sched.alpha_bar[sched.T])
    mean = math.sqrt(ab_T) * x0
    logvar = torch.full_like(x0, math.log1p(-ab_T))
    return sum_flat(gaussian_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0))).to(dtype)


def decoder_nll(x0: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """L_0 = -log p_θ(x_0 | x_1) with the discretized Gaussian decoder, summed over dimensions, nats (B,)."""
    return -sum_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var, bins=bins))  # [DDPM] Eq. 13


def vlb_term(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, mean_hat: torch.Tensor,
             log_var_hat: torch.Tensor, bins: int | None = 256) -> torch.Tensor:
    """The bound's term at each example's t, nats summed over dimensions, shape (B,).

    t > 1: L_{t-1} = D_KL(q(x_{t-1}|x_t,x_0) || N(mean_hat, e^log_var_hat)); t = 1: L_0 = -log p(x_0|x_1) with the
    discretized decoder of mean ``mean_hat`` ([DDPM] Eq. 5 and 13), or, with ``bins=None`` (continuous data such
    as the 2-D toys), the Gaussian negative log-density. ``mean_hat`` (B, ...), ``log_var_hat`` broadcastable to it.
    """
    t = fwd._prep(sched, t, ("x0", x0), ("xt", xt))
    true_mean, _, true_log_var = fwd.q_posterior(sched, x0, xt, t)
    first = t.to(x0.device) == 1
    if not bool(first.any()):
        return sum_flat(gaussian_kl(true_mean, true_log_var, mean_hat, log_var_hat))
    out = _kl_except(first, true_mean, true_log_var, mean_hat, log_var_hat)
    log_var_hat = log_var_hat.expand_as(x0)
    if bins is None:  # continuous data: the Gaussian density replaces the discretized decoder
        nll = -sum_flat(Normal(mean_hat[first], (0.5 * log_var_hat[first]).exp()).log_prob(x0[first]))
    else:
        nll = decoder_nll(x0[first], mean_hat[first], log_var_hat[first], bins=bins)
    out = out.clone()
    out[first] = nll.to(out.dtype)
    return out


def _kl_except(first: torch.Tensor, true_mean: torch.Tensor, true_log_var: torch.Tensor, mean_hat: torch.Tensor,
               log_var_hat: torch.Tensor) -> torch.Tensor:
    """KL(q(x_{t-1}|x_t,x_0) || p_θ(x_{t-1}|x_t)) summed per example (B,), nats, for examples whose t > 1.

    The rows marked by ``first`` (t = 1, (B,) bool) are replaced by the decoder term by the caller; their KL is
    taken at a harmless point (the true mean, log variance 0) so that an overflow there (extreme mean or variance)
    cannot put 0·inf = NaN into the gradients.
    """
    row = first.reshape(-1, *([1] * (true_mean.dim() - 1)))  # (B, 1, ..., 1)
    return sum_flat(gaussian_kl(true_mean, true_log_var, torch.where(row, true_mean, mean_hat),
                                torch.where(row, torch.zeros_like(log_var_hat), log_var_hat)))


def _vlb_term_nosync(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, mean_hat: torch.Tensor,
                     log_var_hat: torch.Tensor, bins: int | None) -> torch.Tensor:
    """:func:`vlb_term` for the training loop on an accelerator: no input checks and no data-dependent indexing.

    ``vlb_term`` picks the t = 1 examples with a boolean mask, which needs their count on the host (a GPU sync).
    Here both the KL and the decoder term are computed for every example and ``torch.where`` keeps one per example.
    The decoder is evaluated at a harmless point (mean x_0, unit variance) for the t > 1 examples and the KL at one
    (see :func:`_kl_except`) for the t = 1 examples, so no inf/NaN from an unused branch can leak into the
    gradients. Agrees with ``vlb_term`` to rounding (not bit for bit: the elementwise kernels see other batch
    shapes). t: (B,) long on x0's device, already checked.
    """
    true_mean = fwd._posterior_mean(sched, x0, xt, t)
    true_log_var = fwd.extract(fwd._table(sched, "post_log_var"), t, x0)
    first = t.to(x0.device) == 1  # (B,)
    row = first.reshape(-1, *([1] * (x0.dim() - 1)))  # (B, 1, ..., 1)
    kl = _kl_except(first, true_mean, true_log_var, mean_hat, log_var_hat)  # L_{t-1}, [DDPM] Eq. 5
    log_var_hat = log_var_hat.expand_as(x0)
    mean_dec = torch.where(row, mean_hat, x0)
    log_var_dec = torch.where(row, log_var_hat, torch.zeros_like(log_var_hat))
    if bins is None:  # continuous data: the Gaussian density replaces the discretized decoder
        nll = -sum_flat(Normal(mean_dec, (0.5 * log_var_dec).exp(), validate_args=False).log_prob(x0))
    else:
        nll = -sum_flat(_discretized_log_likelihood(x0, mean_dec, 0.5 * log_var_dec, bins))  # L_0, [DDPM] Eq. 13
    return torch.where(first, nll.to(kl.dtype), kl)


def vlb_weight(sched: Schedule, t: torch.Tensor, var_type: str = "beta_tilde") -> torch.Tensor:
    """λ_t = β_t² / (2 σ_t² α_t (1 - ᾱ_t)), the weight with L_{t-1} = λ_t ‖ε - ε_θ‖² ([DDPM] Eq. 12), float64 (B,).

    ``var_type`` picks σ_t²: 'beta_tilde' (β̃_t) or 'beta' (β_t). At t = 1, β̃_1 = 0; the weight uses β̃_2 there,
    the same clipping as the sampler's variance (and t = 1 is scored by the decoder L_0 in the bound).
    """
    t = sched.check_t(t).reshape(-1)
    sigma2 = _sigma2(sched, var_type)
    lam = sched.beta ** 2 / (2 * sigma2 * sched.alpha * (1 - sched.alpha_bar))  # [DDPM] Eq. 12
    return lam[t]


def _sigma2(sched: Schedule, var_type: str) -> torch.Tensor:
    """σ_t² (T+1,) float64 for the fixed reverse variances: β̃_t with β̃_1 := β̃_2, or β_t with β_1 := β̃_2.

    The t = 1 values follow the reference implementations ([IDDPM] code): β̃_1 = 0 would make the decoder degenerate.
    """
    if var_type == "beta_tilde":
        return torch.exp(fwd._posterior_log_var(sched))
    if var_type == "beta":
        s = sched.beta.clone()
        s[1] = sched.beta_tilde[2] if sched.T >= 2 else sched.beta[1]
        return s
    raise ValueError(f"var_type must be 'beta_tilde' or 'beta', got {var_type!r}")


def l_simple(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_simple = E‖ε - ε_θ‖² ([DDPM] Eq. 14), as a mean over batch *and* dimensions (the reference code's scaling)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}")
    return ((pred - target) ** 2).mean()


def _draw(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of ``shape`` on like's device and dtype, drawn on the generator's device."""
    gdev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=gdev, dtype=like.dtype).to(like.device)


def _split_output(model: torch.nn.Module, out: torch.Tensor, x: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a learn_sigma model's output (B, 2C, ...) into the prediction (B, C, ...) and variance logits."""
    if getattr(model, "learn_sigma", False):
        if out.shape[1] != 2 * x.shape[1]:
            raise ValueError(f"a learn_sigma model must return 2x the input channels, got {tuple(out.shape)}")
        return out[:, : x.shape[1]], out[:, x.shape[1]:]
    if out.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
    return out, None


def training_losses(model: torch.nn.Module, sched: Schedule, x0: torch.Tensor, t: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None, cond: torch.Tensor | None = None, loss_type: str = "simple",
                    generator: torch.Generator | None = None, lambda_vlb: float = 1e-3,
                    var_type: str = "beta_tilde", bins: int | None = None) -> torch.Tensor:
    """Per-example training loss (B,) for one draw of (t, ε) per example.

    loss_type:
      * 'simple': mean over dimensions of ‖target - prediction‖² where the target is ε, x_0 or v as
        ``model.objective`` says ([DDPM] Eq. 14; x_0- and v-prediction as in [V]);
      * 'vlb':    the bound's term at t, L_{t-1} (or L_0 at t = 1), in bits per dimension; with a fixed variance
        (``var_type``) this is λ_t‖ε - ε_θ‖² ([DDPM] Eq. 12), the "true bound" objective of [DDPM] Table 2;
        with ``model.learn_sigma`` the variance is learned too ([IDDPM] Eq. 15);
      * 'hybrid': 'simple' + lambda_vlb · 'vlb' with the mean's gradient stopped in the VLB part ([IDDPM] Eq. 16,
        λ = 0.001); needs ``model.learn_sigma``.
    The VLB parts are bits/dim per term (the [IDDPM] code's scaling); T · E_t[term] + L_T is the bound.
    ``bins`` sets the decoder at t = 1: None (default) scores x_0 with the Gaussian density (continuous data);
    an int uses the discretized decoder on that many levels in [-1, 1] (256 for 8-bit images, 17 for digits).
    t (B,) long in 1..T and noise (B, ...) are drawn with ``generator`` when not given.

    On an accelerator nothing here waits for the device: a given t is range-checked asynchronously
    (``Schedule.check_t``), coefficient tables are copied to the device once (:func:`ddpm_lessons.forward.extract`)
    and the VLB picks the t = 1 decoder term with ``torch.where``. A CPU ``generator`` still draws t and the noise
    on the host and copies them each call; pass a generator on x0's device (or t and noise) to avoid that.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    learn_sigma = getattr(model, "learn_sigma", False)
    if loss_type == "hybrid" and not learn_sigma:
        raise ValueError("loss_type='hybrid' needs a model with learn_sigma=True (it trains the variance)")
    if loss_type == "simple" and learn_sigma:
        raise ValueError("a learn_sigma model needs loss_type 'hybrid' or 'vlb' "
                         "(L_simple leaves its variance untrained)")
    objective = getattr(model, "objective", "eps")
    B = x0.shape[0]
    if t is None:  # drawn on the generator's device (x0's without one): no per-step host-to-device copy
        gdev = generator.device if generator is not None else x0.device
        t = torch.randint(1, sched.T + 1, (B,), generator=generator, device=gdev).to(x0.device)
    else:
        t = sched.check_t(t).to(x0.device)
    if noise is None:
        noise = _draw(tuple(x0.shape), x0, generator)
    xt = fwd._q_sample(sched, x0, t, noise)  # [DDPM] Eq. 4
    out, var_logits = _split_output(model, model(xt, t, cond), xt)

    if objective == "eps":
        target = noise
    elif objective == "x0":
        target = x0
    elif objective == "v":
        target = (fwd.extract(fwd._table(sched, "sqrt_ab"), t, x0) * noise
                  - fwd.extract(fwd._table(sched, "sqrt_1m_ab"), t, x0) * x0)  # [V] §4
    else:
        raise ValueError(f"model.objective must be one of {fwd.OBJECTIVES}, got {objective!r}")
    mse = mean_flat((target - out) ** 2)
    if loss_type == "simple":
        return mse

    # VLB term: the mean is frozen in the hybrid loss so L_vlb only trains the variance ([IDDPM] §3.1).
    pred = out.detach() if loss_type == "hybrid" else out
    term = _vlb_of_output(sched, x0, xt, t, pred, var_logits, objective, var_type, bins)
    term = term / (x0[0].numel() * math.log(2.0))
    return term if loss_type == "vlb" else mse + lambda_vlb * term


def _vlb_of_output(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor,
                   var_logits: torch.Tensor | None, objective: str, var_type: str, bins: int | None) -> torch.Tensor:
    """The bound's term (nats, (B,)) for one network output: p_θ's mean is μ̃_t(x_t, x̂_0) ([DDPM] Eq. 7 with the
    predicted x_0), its variance fixed or learned (:func:`_model_log_var`). On the CPU this is :func:`vlb_term`
    (checked inputs); elsewhere the sync-free :func:`_vlb_term_nosync`."""
    mean_hat = fwd._posterior_mean(sched, fwd._pred_to_x0(sched, xt, t, pred, objective), xt, t)
    log_var_hat = _model_log_var(sched, t, xt, var_logits, var_type)
    if x0.device.type == "cpu":
        return vlb_term(sched, x0, xt, t, mean_hat, log_var_hat, bins=bins)
    return _vlb_term_nosync(sched, x0, xt, t, mean_hat, log_var_hat, bins)


def _model_log_var(sched: Schedule, t: torch.Tensor, like: torch.Tensor, var_logits: torch.Tensor | None,
                   var_type: str) -> torch.Tensor:
    """log σ_t²: fixed (β̃ or β, see :func:`_sigma2`) or learned as log σ² = v log β + (1 - v) log β̃ with
    v = (logits + 1)/2 ([IDDPM] Eq. 15). Shape (B, 1, ...) when fixed, like ``var_logits`` when learned."""
    if var_logits is None:
        if var_type not in _LOG_SIGMA2:
            _sigma2(sched, var_type)  # raises the ValueError naming the allowed values
        return fwd.extract(sched._derived(f"log_sigma2_{var_type}", _LOG_SIGMA2[var_type]), t, like)
    frac = (var_logits + 1) / 2
    max_log = fwd.extract(sched._derived("log_beta", _log_beta), t, like)
    min_log = fwd.extract(fwd._table(sched, "post_log_var"), t, like)
    return frac * max_log + (1 - frac) * min_log  # [IDDPM] Eq. 15


def _log_beta(sched: Schedule) -> torch.Tensor:
    """log β_t (T+1,), with log β_0 = log 1e-300 instead of -inf."""
    return torch.log(sched.beta.clamp_min(1e-300))


_LOG_SIGMA2 = {  # log σ_t² of the fixed reverse variances, memoised per schedule by _model_log_var
    "beta_tilde": lambda s: torch.log(_sigma2(s, "beta_tilde")),
    "beta": lambda s: torch.log(_sigma2(s, "beta")),
}


@torch.no_grad()
def bits_per_dim(model: torch.nn.Module, sched: Schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, var_type: str = "beta_tilde", bins: int | None = 256,
                 n_t: int | None = None) -> dict[str, torch.Tensor]:
    """The variational bound of ``x0`` (B, ...) in bits per dimension, term by term ([DDPM] Eq. 5, 13).

    For each t one x_t ~ q(x_t|x_0) is drawn per example (a one-sample Monte Carlo estimate of each expectation).
    ``n_t=None`` evaluates every t = 1..T; ``n_t=K`` evaluates about K log-spaced t (always t = 1 and T) and weights
    each by the number of steps nearest to it in log t, a stratified estimate for quick looks.

    Returns a dict of tensors: ``prior`` (B,) L_T; ``t`` (K,) the evaluated steps; ``terms`` (B, K) L_{t-1} at each
    evaluated t (the t = 1 column is L_0); ``decoder`` (B,) L_0; ``total`` (B,) the bound — all in bits/dim.
    ``bins`` is the number of grid levels of the data (256 for 8-bit images, 17 for sklearn's digits); None scores
    continuous data with the Gaussian density at t = 1 (then the "bits" are a differential-entropy bound).
    """
    fwd.check_finite(x0, "x0")
    was_training = model.training
    model.eval()
    D = x0[0].numel()
    to_bits = 1.0 / (D * math.log(2.0))
    if n_t is None or n_t >= sched.T:
        ts = torch.arange(1, sched.T + 1)
        widths = torch.ones(len(ts), dtype=torch.float64)
    else:
        if n_t < 2:
            raise ValueError(f"n_t must be >= 2 (t = 1 and at least one more step) or None, got {n_t}")
        # log-spaced steps: the terms fall steeply with t, so most of the bound sits at small t
        ts = torch.unique(torch.round(torch.logspace(0, math.log10(sched.T), n_t, dtype=torch.float64)).long())
        # each t = 2..T is represented by the evaluated step nearest to it in log t (a stratified estimate)
        all_t = torch.arange(2, sched.T + 1, dtype=torch.float64)
        nearest = (all_t.log().unsqueeze(1) - ts[1:].double().log().unsqueeze(0)).abs().argmin(dim=1)
        widths = torch.cat([torch.ones(1, dtype=torch.float64),
                            torch.bincount(nearest, minlength=len(ts) - 1).double()])
    terms = torch.zeros(x0.shape[0], len(ts), dtype=torch.float64)
    for j, t_val in enumerate(ts.tolist()):
        t = torch.full((x0.shape[0],), t_val, dtype=torch.long, device=x0.device)
        noise = _draw(tuple(x0.shape), x0, generator)
        xt = fwd._q_sample(sched, x0, t, noise)
        out, var_logits = _split_output(model, model(xt, t, cond), xt)
        term = _vlb_of_output(sched, x0, xt, t, out, var_logits, getattr(model, "objective", "eps"), var_type, bins)
        terms[:, j] = term.double().cpu() * to_bits
    model.train(was_training)
    prior = prior_kl(sched, x0).double().cpu() * to_bits
    total = prior + (terms * widths).sum(dim=1)
    return {"prior": prior, "t": ts, "terms": terms, "decoder": terms[:, 0].clone(), "total": total}
