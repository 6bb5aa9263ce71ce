"""The variational bound and the training losses: Gaussian KL, the discretized decoder, L_T / L_{t-1} / L_0,
bits/dim, L_simple, the per-t weight that turns ε-MSE into L_{t-1}, and the hybrid loss.

Units: ``gaussian_kl`` and the log-likelihoods are elementwise nats; the VLB helpers sum over data dimensions and
return nats per example (B,); ``bits_per_dim`` and the training losses' bound parts divide by D·ln 2, D the number
of data dimensions.

The bound ([DDPM] Eq. 5):
    L = E_q[ D_KL(q(x_T|x_0) || p(x_T))                    L_T   (no parameters)
          + Σ_{t>1} D_KL(q(x_{t-1}|x_t,x_0) || p_θ(x_{t-1}|x_t))   L_{t-1}
          - log p_θ(x_0|x_1) ]                             L_0   (discretized decoder, [DDPM] Eq. 13)
With p_θ(x_{t-1}|x_t) = N(μ_θ, σ_t² I) and μ_θ in ε-form ([DDPM] Eq. 11),
    L_{t-1} = λ_t ‖ε - ε_θ‖² + C,   λ_t = β_t² / (2 σ_t² α_t (1 - ᾱ_t))          [DDPM] Eq. 12
and L_simple drops λ_t ([DDPM] Eq. 14). With σ_t² = β̃_t the KL has no variance term, so C = 0.

One implementation of the bound's term (:func:`vlb_term`) serves every device: it computes the KL and the decoder
for every example and keeps one per example with ``torch.where``, so it never needs the host to count the t = 1
examples. p_θ itself (μ_θ and σ_t² from a network output) comes from :mod:`ddpm_lessons.reverse`.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [V]     Salimans, Ho 2022, arXiv:2202.00512
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal

from . import forward as fwd
from .models import protocol
from .reverse import p_mean_variance
from .schedules import Schedule

__all__ = [
    "mean_flat", "gaussian_kl", "discretized_gaussian_log_likelihood", "prior_kl", "decoder_nll", "vlb_term",
    "vlb_weight", "l_simple", "training_losses", "bits_per_dim", "LOSS_TYPES", "DEFAULT_BINS",
]

LOSS_TYPES = ("simple", "vlb", "hybrid")
# The decoder L_0 at t = 1, shared by training_losses and bits_per_dim so that a model is trained and scored with the
# same one: None = continuous data (the Gaussian density; the 2-D mixtures), an int = that many levels in [-1, 1]
# (17 for the digits, 256 for 8-bit images). The training presets pass the data's value.
DEFAULT_BINS: int | None = None


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
    in_range = (x.abs() <= 1 + 1e-6).all()  # False for NaN too
    message = "x must be finite and lie in [-1, 1] (data scaled from the integer grid; bins=None for continuous data)"
    if x.device.type != "cpu":  # queued on the device: no host synchronisation (see Schedule.check_t)
        torch._assert_async(in_range, message)
    elif not in_range:
        raise ValueError(message)
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
    ab_T = float(sched.host.alpha_bar[sched.T])
    mean = math.sqrt(ab_T) * x0
    logvar = torch.full_like(x0, math.log1p(-ab_T))
    return sum_flat(gaussian_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0))).to(dtype)


def decoder_nll(x0: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, bins: int | None = DEFAULT_BINS
                ) -> torch.Tensor:
    """L_0 = -log p_θ(x_0 | x_1), summed over dimensions, nats (B,) ([DDPM] Eq. 13).

    ``bins`` levels in [-1, 1]: the discretized Gaussian decoder; None: the Gaussian density of continuous data.
    mean (B, ...), log_var broadcastable to x0.
    """
    if bins is None:
        return -sum_flat(Normal(mean, (0.5 * log_var).exp(), validate_args=False).log_prob(x0))
    return -sum_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var, bins=bins))  # [DDPM] Eq. 13


def vlb_term(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, mean_hat: torch.Tensor,
             log_var_hat: torch.Tensor, bins: int | None = DEFAULT_BINS) -> torch.Tensor:
    """The bound's term at each example's t, nats summed over dimensions, shape (B,) ([DDPM] Eq. 5).

    t > 1: L_{t-1} = D_KL(q(x_{t-1}|x_t,x_0) || N(mean_hat, e^log_var_hat)); t = 1: L_0 = -log p(x_0|x_1) by
    :func:`decoder_nll` with mean ``mean_hat``. ``mean_hat`` (B, ...), ``log_var_hat`` broadcastable to it; t (B,).

    Both terms are computed for every example and ``torch.where`` keeps one, so no boolean mask (whose size the
    host would have to read) is needed. Each term is evaluated at a harmless point for the rows that discard it
    (the KL at the true posterior with log-variance 0, the decoder at mean x_0 with unit variance), so an overflow
    in a discarded branch (an extreme mean or variance) cannot send 0·inf = NaN into the gradients.
    """
    true_mean, _, true_log_var = fwd.q_posterior(sched, x0, xt, t)
    first = t.to(x0.device) == 1  # (B,)
    row = first.reshape(-1, *([1] * (x0.dim() - 1)))  # (B, 1, ..., 1)
    log_var_hat = log_var_hat.expand_as(x0)
    zeros = torch.zeros_like(log_var_hat)
    kl = sum_flat(gaussian_kl(true_mean, true_log_var, torch.where(row, true_mean, mean_hat),
                              torch.where(row, zeros, log_var_hat)))  # L_{t-1}
    nll = decoder_nll(x0, torch.where(row, mean_hat, x0), torch.where(row, log_var_hat, zeros), bins)  # L_0
    return torch.where(first, nll.to(kl.dtype), kl)


def vlb_weight(sched: Schedule, t: torch.Tensor, var_type: str = "beta_tilde") -> torch.Tensor:
    """λ_t = β_t² / (2 σ_t² α_t (1 - ᾱ_t)), the weight with L_{t-1} = λ_t ‖ε - ε_θ‖² ([DDPM] Eq. 12), float64 (B,).

    ``var_type`` picks σ_t²: 'beta_tilde' (β̃_t) or 'beta' (β_t). At t = 1, β̃_1 = 0; the weight uses β̃_2 there,
    the same clipping as the sampler's variance (and t = 1 is scored by the decoder L_0 in the bound).
    """
    t = sched.check_t(t).reshape(-1)
    sigma2 = sched.sigma2(var_type)
    lam = sched.beta ** 2 / (2 * sigma2 * sched.alpha * (1 - sched.alpha_bar))  # [DDPM] Eq. 12
    return lam[t]


def l_simple(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_simple = E‖ε - ε_θ‖² ([DDPM] Eq. 14), as a mean over batch *and* dimensions (the reference code's scaling)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}")
    return ((pred - target) ** 2).mean()


def training_losses(model: torch.nn.Module, sched: Schedule, x0: torch.Tensor, t: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None, cond: torch.Tensor | None = None, loss_type: str = "simple",
                    generator: torch.Generator | None = None, lambda_vlb: float = 1e-3,
                    var_type: str = "beta_tilde", bins: int | None = DEFAULT_BINS) -> torch.Tensor:
    """Per-example training loss (B,) for one draw of (t, ε) per example.

    loss_type:
      * 'simple': mean over dimensions of ‖target - prediction‖² where the target is ε, x_0 or v as
        ``model.objective`` says ([DDPM] Eq. 14; x_0- and v-prediction as in [V]);
      * 'vlb':    the bound's term at t, L_{t-1} (or L_0 at t = 1), in bits per dimension; with a fixed variance
        (``var_type``) this is λ_t‖ε - ε_θ‖² ([DDPM] Eq. 12), the "true bound" objective of [DDPM] Table 2;
        with ``model.learn_sigma`` the variance is learned too ([IDDPM] Eq. 15);
      * 'hybrid': 'simple' + λ · T · 'vlb' with the mean's gradient stopped in the VLB part ([IDDPM] Eq. 16,
        λ = ``lambda_vlb`` = 0.001); needs ``model.learn_sigma``.
    Units and scale. 'vlb' is the bits/dim of the one sampled term, L_{t-1}/(D ln 2): the [IDDPM] code's
    ``LossType.KL``, so T · E_t['vlb'] + L_T/(D ln 2) is the bound in bits/dim (the code's ``RESCALED_KL``, its
    ``use_kl=True`` default, multiplies by T; a constant factor that changes the effective step size only).
    'hybrid' is the reference code's ``RESCALED_MSE`` loss, mse + (T/1000) · vb = L_simple + λ T L_{t-1}/(D ln 2):
    [IDDPM] Eq. 16, L_simple + λ L_vlb with L_vlb = Σ_t L_{t-1} summed over dimensions in nats, estimated from the
    one sampled t by T · L_{t-1} (L_T has no parameters and is left out), with both terms divided by D and the
    bound in bits, i.e. (1/D) (‖ε - ε_θ‖² + (λ/ln 2) · T · L_{t-1}). At T = 1000 the bound part is λ · 1000 · 'vlb'.
    ``bins`` sets the decoder at t = 1 and has the same default (``DEFAULT_BINS``, None) as :func:`bits_per_dim`,
    so training and evaluation score L_0 alike: None scores x_0 with the Gaussian density (continuous data such as
    the 2-D mixtures); an int uses the discretized decoder on that many levels in [-1, 1] (256 for 8-bit images,
    17 for sklearn's digits). ``var_type`` ('beta_tilde' or 'beta') is the fixed σ_t² of a model without
    ``learn_sigma``, as in :func:`bits_per_dim`; pass the same pair to both.
    t (B,) long in 1..T and noise (B, ...) are drawn with ``generator`` when not given.

    On an accelerator nothing here waits for the device: a given t is range-checked asynchronously
    (``Schedule.check_t``) and the bound's t = 1 decoder term is picked with ``torch.where`` (:func:`vlb_term`).
    Move the schedule to the data's device once (``sched.to(device)``) so its tables are not copied per call. A CPU
    ``generator`` still draws t and the noise on the host and copies them each call; pass a generator on x0's
    device (or t and noise) to avoid that.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    learn_sigma = protocol.learn_sigma(model)
    if loss_type == "hybrid" and not learn_sigma:
        raise ValueError("loss_type='hybrid' needs a model with learn_sigma=True (it trains the variance)")
    if loss_type == "simple" and learn_sigma:
        raise ValueError("a learn_sigma model needs loss_type 'hybrid' or 'vlb' "
                         "(L_simple leaves its variance untrained)")
    objective = protocol.objective(model)
    B = x0.shape[0]
    if t is None:  # drawn on the generator's device (x0's without one): no per-step host-to-device copy
        gdev = generator.device if generator is not None else x0.device
        t = torch.randint(1, sched.T + 1, (B,), generator=generator, device=gdev).to(x0.device)
    else:
        t = sched.check_t(t).to(x0.device)
    if noise is None:
        noise = fwd.draw_noise(tuple(x0.shape), x0, generator)
    xt = fwd.q_sample(sched, x0, t, noise)  # [DDPM] Eq. 4
    out, var_logits = protocol.split_output(model, model(xt, t, cond), xt)
    target = {"eps": noise, "x0": x0}.get(objective)
    if target is None:  # v-prediction
        target = fwd.velocity(sched, x0, t, noise)  # [V] §4
    mse = mean_flat((target - out) ** 2)
    if loss_type == "simple":
        return mse

    # The bound's term; in the hybrid loss the mean is frozen so that L_vlb only trains the variance ([IDDPM] §3.1).
    pred = out.detach() if loss_type == "hybrid" else out
    term = _bound_term(sched, x0, xt, t, pred, var_logits, objective, var_type, bins) / (x0[0].numel() * math.log(2))
    return term if loss_type == "vlb" else mse + lambda_vlb * sched.T * term  # [IDDPM] Eq. 16


def _bound_term(sched: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, pred: torch.Tensor,
                var_logits: torch.Tensor | None, objective: str, var_type: str, bins: int | None) -> torch.Tensor:
    """:func:`vlb_term` (nats, (B,)) of one network output; p_θ from :func:`ddpm_lessons.reverse.p_mean_variance`."""
    mean_hat, log_var_hat = p_mean_variance(sched, xt, t, pred, var_logits, objective, var_type)
    return vlb_term(sched, x0, xt, t, mean_hat, log_var_hat, bins=bins)


@torch.no_grad()
def bits_per_dim(model: torch.nn.Module, sched: Schedule, x0: torch.Tensor, cond: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, var_type: str = "beta_tilde",
                 bins: int | None = DEFAULT_BINS, n_t: int | None = None) -> dict[str, torch.Tensor]:
    """The variational bound of ``x0`` (B, ...) in bits per dimension, term by term ([DDPM] Eq. 5, 13).

    For each t one x_t ~ q(x_t|x_0) is drawn per example (a one-sample Monte Carlo estimate of each expectation).
    ``n_t=None`` evaluates every t = 1..T; ``n_t=K`` evaluates about K log-spaced t (always t = 1 and T) and weights
    each by the number of steps nearest to it in log t, a stratified estimate for quick looks.

    Returns a dict of tensors: ``prior`` (B,) L_T; ``t`` (K,) the evaluated steps; ``terms`` (B, K) L_{t-1} at each
    evaluated t (the t = 1 column is L_0); ``decoder`` (B,) L_0; ``total`` (B,) the bound — all in bits/dim.
    ``bins`` is the number of grid levels of the data (256 for 8-bit images, 17 for sklearn's digits); None (the
    default, shared with :func:`training_losses`) scores continuous data with the Gaussian density at t = 1 (then
    the "bits" are a differential-entropy bound). ``var_type`` is the fixed σ_t² of a model without learn_sigma.
    """
    fwd.check_finite(x0, "x0")
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
    with protocol.eval_mode(model):
        for j, t_val in enumerate(ts.tolist()):
            t = protocol.shared_t(t_val, x0.shape[0], x0.device)
            noise = fwd.draw_noise(tuple(x0.shape), x0, generator)
            xt = fwd.q_sample(sched, x0, t, noise)
            out, var_logits = protocol.split_output(model, model(xt, t, cond), xt)
            term = _bound_term(sched, x0, xt, t, out, var_logits, protocol.objective(model), var_type, bins)
            terms[:, j] = term.double().cpu() * to_bits
    prior = prior_kl(sched, x0).double().cpu() * to_bits
    total = prior + (terms * widths).sum(dim=1)
    return {"prior": prior, "t": ts, "terms": terms, "decoder": terms[:, 0].clone(), "total": total}
