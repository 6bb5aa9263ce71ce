"""Interview drill: a question bank by level, answered by a derivation check, a number, code, or a model answer.

Levels follow what interviewers expect:
  * mid    -- forward = add noise, reverse = learn p(x_{t-1}|x_t), sample by iterating; the closed-form marginal.
  * senior -- the ELBO decomposition, ε vs x_0 parameterisation, the link to score matching and annealed Langevin,
              the VP-SDE.
  * staff  -- why L_simple drops the weighting, DDIM as a non-Markovian accelerated sampler and as an ODE solver, CFG
              as conditional dropout and the w trade-off (and why CFG with w > 0 is not a calibrated likelihood), the
              probability-flow ODE, the SNR view, zero terminal SNR and v-prediction.

Every expected number is computed from the package (never typed in), so the bank cannot drift from the maths.

In the terminal (``ddpm-lessons drill``) an invalid input (a typo, unknown symbol) gets the parser's hint and another
try; a wrong answer gets its diagnosis and one more try before the model answer; the drill ends with a score by
level. Progress is kept in the user's data directory (:func:`data_dir`), so missed questions come back first next
time (spaced repetition, Leitner boxes); ``--reset`` forgets it.

    from ddpm_lessons import drill
    drill.bank(level="senior")                      # the questions
    drill.answer("senior_kl_numeric", "0.443")      # a verdict (a CheckResult)
    ddpm-lessons drill --level staff --n 5          # in the terminal; score by level at the end
    ddpm-lessons drill --reset                      # forget the saved progress first
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import checks
from .checks import CheckResult

# torch and the maths modules are imported inside the value functions below: `ddpm-lessons check` and the
# command-line parser import this module, and must stay fast and torch-free.

__all__ = ["DrillQuestion", "LEVELS", "KINDS", "bank", "get", "answer", "check_number", "run_drill", "Progress",
           "data_dir"]

LEVELS = ("mid", "senior", "staff")
KINDS = ("derivation", "numeric", "reveal", "code")


@dataclass(frozen=True)
class DrillQuestion:
    """One drill question.

    kind 'derivation': answered by ``checks.check(check_id, expression)``; 'numeric': a number compared with
    ``expected()`` at relative tolerance ``rel``; 'reveal': the learner answers aloud, then reads ``model_answer``;
    'code': a function graded by ``checks.check_function(check_id, fn)`` (in the terminal: write it, then compare
    with the worked solution).
    """

    id: str
    level: str
    kind: str
    prompt: str
    model_answer: str
    check_id: str | None = None
    expected: Callable[[], float] | None = field(default=None, compare=False)
    rel: float = 0.02


def _linear_alpha_bar_T() -> float:
    from . import schedules

    return float(schedules.linear(1000).alpha_bar[-1])


def _linear_signal_T() -> float:
    # √ᾱ_T of the DDPM linear schedule: the signal left in x_T
    from . import schedules

    return float(schedules.linear(1000).alpha_bar[-1].sqrt())


def _scaled_linear_signal_T() -> float:
    # Stable Diffusion's "scaled linear" schedule: β_t = (linspace(√0.00085, √0.012, 1000))², the case of [ZSNR]
    import torch

    from . import schedules

    beta = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return float(schedules.from_beta(beta).alpha_bar[-1].sqrt())


def _kl_value() -> float:
    import torch

    from .losses import gaussian_kl

    return float(gaussian_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(math.log(4.0))))


def _ddim_sigma_value() -> float:
    # σ_t(η = 1) for ᾱ_t = 0.5, ᾱ_prev = 0.8: run one DDIM step with ε̂ = 0, x_t = 0, noise = 1 and read σ off it
    import torch

    from . import samplers, schedules

    s = schedules.from_beta(torch.tensor([0.2, 0.375], dtype=torch.float64))  # ᾱ_1 = 0.8, ᾱ_2 = 0.8 · 0.625 = 0.5
    z = torch.ones(1, 1, dtype=torch.float64)
    return float(samplers.ddim_step(s, torch.zeros_like(z), 2, 1, torch.zeros_like(z), eta=1.0, noise=z))


def _cfg_scale_value() -> float:
    # s such that ε_u + s (ε_c - ε_u) equals (1 + w) ε_c - w ε_u at w = 3: read it off cfg_eps with ε_c = 1, ε_u = 0
    import torch

    from . import samplers

    return float(samplers.cfg_eps(torch.ones(1), torch.zeros(1), 3.0))


def _lt_of_short_chain() -> float:
    # L_T in bits/dim for x_0 = 0 with only T = 10 linear steps (β from 1e-4 to 0.02): far from 0
    import torch

    from . import schedules
    from .losses import prior_kl

    return float(prior_kl(schedules.linear(10), torch.zeros(1, 1, dtype=torch.float64))) / math.log(2)


_BANK: tuple[DrillQuestion, ...] = (
    # ---- mid ---------------------------------------------------------------------------------------------------
    DrillQuestion("mid_what_is_diffusion", "mid", "reveal",
                  "In two sentences: what do the forward and the reverse process of a DDPM do, and what does the "
                  "network learn?",
                  "The forward process adds Gaussian noise step by step with a fixed schedule until x_T is nearly "
                  "N(0, I); it has no parameters. The reverse process is a learned Markov chain "
                  "p(x_{t-1} | x_t) = N(μ_θ, σ_t² I); the network predicts the noise ε in x_t (equivalently the mean), "
                  "and sampling runs the chain from pure noise down to x_0."),
    DrillQuestion("mid_forward_mean", "mid", "derivation", "Give the mean of q(x_t | x_0).",
                  "sqrt(alpha_bar_t)*x_0 ([DDPM] Eq. 4).", check_id="forward_mean"),
    DrillQuestion("mid_forward_var", "mid", "derivation", "Give the variance of q(x_t | x_0) (per dimension).",
                  "1 - alpha_bar_t ([DDPM] Eq. 4).", check_id="forward_var"),
    DrillQuestion("mid_x0_from_eps", "mid", "derivation",
                  "Given x_t and the noise eps that produced it, write x_0.",
                  "(x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_bar_t).", check_id="x0_from_eps"),
    DrillQuestion("mid_alpha_bar_T", "mid", "numeric",
                  "For the DDPM linear schedule (T = 1000, β from 1e-4 to 0.02), what is ᾱ_T? (3 significant "
                  "figures, e.g. 1.23e-5)",
                  "ᾱ_T = Π(1 - β_t) ≈ 4.04e-5: x_T keeps √ᾱ_T ≈ 0.006 of the signal, so it is nearly pure noise.",
                  expected=_linear_alpha_bar_T),
    DrillQuestion("mid_sampling", "mid", "reveal", "How do you draw a sample from a trained DDPM?",
                  "Draw x_T ~ N(0, I); for t = T..1 compute ε̂ = ε_θ(x_t, t), the mean "
                  "(x_t - β_t/√(1-ᾱ_t) ε̂)/√α_t, and add σ_t z (no noise at t = 1) ([DDPM] Algorithm 2). "
                  "That is T network evaluations; DDIM cuts this to tens."),
    # ---- senior ------------------------------------------------------------------------------------------------
    DrillQuestion("senior_elbo", "senior", "reveal",
                  "Decompose the DDPM variational bound. Which terms have parameters, and why are they all cheap?",
                  "L = L_T + Σ_{t>1} L_{t-1} + L_0: L_T = KL(q(x_T|x_0) || N(0,I)) has no parameters; each L_{t-1} is "
                  "a KL between two Gaussians, q(x_{t-1}|x_t,x_0) (closed form, by Bayes) and p_θ(x_{t-1}|x_t), so it "
                  "is a squared distance between means; L_0 is a discretized Gaussian decoder. Sampling t uniformly "
                  "gives an unbiased estimate with one network call ([DDPM] Eq. 5)."),
    DrillQuestion("senior_posterior_mean", "senior", "derivation",
                  "Write the posterior mean μ̃_t(x_t, x_0) of q(x_{t-1} | x_t, x_0).",
                  "sqrt(alpha_bar_prev)*beta_t/(1-alpha_bar_t)*x_0"
                  " + sqrt(alpha_t)*(1-alpha_bar_prev)/(1-alpha_bar_t)*x_t ([DDPM] Eq. 7).",
                  check_id="posterior_mean_x0"),
    DrillQuestion("senior_posterior_var", "senior", "derivation", "Write the posterior variance β̃_t.",
                  "(1-alpha_bar_prev)/(1-alpha_bar_t)*beta_t ([DDPM] Eq. 7).", check_id="posterior_var"),
    DrillQuestion("senior_kl_1d", "senior", "derivation",
                  "Write KL(N(mu1, sigma1²) || N(mu2, sigma2²)) in nats.",
                  "log(sigma2/sigma1) + (sigma1^2 + (mu1-mu2)^2)/(2*sigma2^2) - 1/2.", check_id="kl_1d"),
    DrillQuestion("senior_kl_numeric", "senior", "numeric", "Compute KL(N(1, 1) || N(0, 4)) in nats (3 decimals).",
                  "½(log 4 + (1 + 1)/4 - 1) ≈ 0.443 nats.", expected=_kl_value, rel=0.005),
    DrillQuestion("senior_eps_vs_x0", "senior", "reveal",
                  "Why does DDPM parameterise the network by ε rather than by x_0 or the mean?",
                  "With the ε-form μ_θ = (x_t - β_t/√(1-ᾱ_t) ε_θ)/√α_t, each L_{t-1} becomes a weighted ε-MSE, which "
                  "resembles denoising score matching at every noise level; the target has unit variance at every t, "
                  "so one network handles all t well. Ho et al.'s ablation ([DDPM] Table 2) compares predicting "
                  "the mean μ̃ with predicting ε: ε-prediction with L_simple gives the best samples (FID 3.17). "
                  "x_0-prediction is only remarked on in §3.2 (it led to worse sample quality early in their "
                  "experiments); it is not a row of Table 2."),
    DrillQuestion("senior_score", "senior", "derivation",
                  "For x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, write the score of the conditional q(x_t | x_0), "
                  "∇_{x_t} log q(x_t | x_0), in terms of ε.",
                  "-eps/sqrt(1 - alpha_bar_t). That is the conditional score; the marginal score is "
                  "∇ log q_t(x_t) = -E[ε | x_t]/√(1-ᾱ_t) ≈ -ε_θ(x_t, t)/√(1-ᾱ_t) (Vincent 2011; Tweedie's formula).",
                  check_id="score_from_eps"),
    DrillQuestion("senior_tweedie", "senior", "derivation",
                  "Tweedie's formula: write E[x_0 | x_t] using the score s = ∇ log q_t(x_t).",
                  "(x_t + (1 - alpha_bar_t)*score)/sqrt(alpha_bar_t).", check_id="tweedie"),
    DrillQuestion("senior_langevin", "senior", "reveal",
                  "How are diffusion models related to score matching and annealed Langevin dynamics?",
                  "The ε-MSE is denoising score matching at each noise level: the optimum is "
                  "ε* = -√(1-ᾱ_t) ∇ log q_t(x_t) (Vincent 2011), so the network is a noise-conditional score model. "
                  "NCSN samples with annealed Langevin dynamics (Song & Ermon 2019): MCMC run at each of a "
                  "sequence of fixed, decreasing noise levels, which targets q_σ(x) at each level. DDPM's ancestral "
                  "sampler is a discretisation of the reverse-time VP-SDE ([SDE] Eq. 6 with the VP drift, Eq. 11). "
                  "They are different algorithms: in [SDE]'s predictor-corrector sampler, the reverse-SDE step is "
                  "the predictor and Langevin MCMC is the corrector ([SDE] §4.2, Algorithm 1)."),
    DrillQuestion("senior_vp_sde", "senior", "derivation",
                  "As T → ∞ the DDPM chain becomes the VP-SDE dx = f(x, t) dt + g(t) dw. Write the drift f(x, t) "
                  "(x(t) is `x_t`, β(t) is `beta_t`).",
                  "-beta_t*x_t/2: dx = -½β(t)x dt + √β(t) dw ([SDE] Eq. 11); one step scales x by "
                  "√(1-β_t) ≈ 1 - β_t/2.", check_id="vp_sde_drift"),
    DrillQuestion("senior_vp_sde_diffusion", "senior", "derivation",
                  "Write the diffusion coefficient g(t) of the VP-SDE (β(t) is `beta_t`).",
                  "sqrt(beta_t) ([SDE] Eq. 11): the noise added over dt has variance β(t) dt.",
                  check_id="vp_sde_diffusion"),
    DrillQuestion("senior_pf_ode", "senior", "reveal",
                  "What is the probability-flow ODE, and why does it have the same marginals as the SDE?",
                  "dx/dt = f(x, t) - ½g(t)² ∇ log p_t(x) ([SDE] Eq. 13). Both the SDE and this ODE move the density by "
                  "the same Fokker-Planck equation: the diffusion term ½g²Δp equals the divergence of the extra drift "
                  "-½g² ∇log p times p, so moving that term into the drift changes paths, not marginals. The ODE is "
                  "deterministic: it gives exact likelihoods (instantaneous change of variables), an encoding x_0 -> "
                  "x_T, and it can be solved with few steps by higher-order solvers."),
    DrillQuestion("senior_v_velocity", "senior", "derivation",
                  "With x_φ = cos φ x_0 + sin φ ε, write v = dx_φ/dφ (type `phi`, `x_0`, `eps`, with sin and cos).",
                  "cos(phi)*eps - sin(phi)*x_0: v-prediction's target is the velocity of the rotation ([V] Sec. 4).",
                  check_id="v_velocity"),
    # ---- staff -------------------------------------------------------------------------------------------------
    DrillQuestion("staff_lsimple", "staff", "reveal",
                  "Why does L_simple drop the λ_t weighting of the bound, and what does that buy and cost?",
                  "The bound weights the ε-MSE by λ_t = β_t²/(2σ_t² α_t (1-ᾱ_t)), which is huge at small t, where the "
                  "denoising task is easy and perceptually unimportant. Dropping it (uniform weight) re-weights "
                  "towards larger t and gives better samples (FID 3.17 vs 13.51 with the true bound on CIFAR-10) at "
                  "a worse likelihood (≤ 3.75 vs ≤ 3.70 bits/dim) ([DDPM] §3.4, Tables 1 and 2). "
                  "Improved DDPM recovers "
                  "likelihood with learned variances and the hybrid loss."),
    DrillQuestion("staff_lt_weight", "staff", "derivation",
                  "Write the weight λ_t with L_{t-1} = λ_t ‖ε - ε_θ‖² for a fixed reverse variance sigma_t².",
                  "beta_t^2/(2*sigma_t^2*alpha_t*(1 - alpha_bar_t)) ([DDPM] Eq. 12).", check_id="lt_weight"),
    DrillQuestion("staff_ddim", "staff", "reveal",
                  "Why can DDIM sample in 50 steps with a model trained for 1000, and how can it be deterministic?",
                  "The DDPM objective only depends on the marginals q(x_t|x_0). DDIM defines a family of non-Markovian "
                  "forward processes with the same marginals, indexed by σ_t (η), so the same ε-model is optimal for "
                  "all of them; its reverse update can jump along any subsequence of steps. With η = 0 the update is "
                  "deterministic (an Euler step of the probability-flow ODE in a reparameterisation), which also "
                  "makes inversion x_0 -> x_T possible ([DDIM] §4). At 10 steps, FID 13.36 for η = 0 vs 41.07 for "
                  "η = 1 on CIFAR-10 ([DDIM] Table 1)."),
    DrillQuestion("staff_ddim_sigma", "staff", "derivation", "Write DDIM's σ_t(η).",
                  "eta*sqrt((1-alpha_bar_prev)/(1-alpha_bar_t))*sqrt(1-alpha_bar_t/alpha_bar_prev) ([DDIM] Eq. 16).",
                  check_id="ddim_sigma"),
    DrillQuestion("staff_ddim_sigma_numeric", "staff", "numeric",
                  "With η = 1, ᾱ_t = 0.5 and ᾱ_prev = 0.8, what is σ_t? (3 decimals)",
                  "√(0.2/0.5)·√(1 - 0.5/0.8) = √0.4 · √0.375 ≈ 0.387.", expected=_ddim_sigma_value, rel=0.005),
    DrillQuestion("staff_cfg", "staff", "derivation",
                  "Write the classifier-free guided noise prediction with guidance weight w (Ho & Salimans).",
                  "(1 + w)*eps_c - w*eps_u ([CFG] Eq. 6).", check_id="cfg_w"),
    DrillQuestion("staff_cfg_scale", "staff", "numeric",
                  "A paper uses w = 3 in Ho & Salimans' convention. Which guidance_scale s do you pass to diffusers?",
                  "s = 1 + w = 4.", expected=_cfg_scale_value, rel=1e-9),
    DrillQuestion("staff_cfg_calibrated", "staff", "reveal",
                  "What is CFG, how is it trained, what does w trade off, and does the guided model sample "
                  "p(x|c)^{1+w} p(x)^{-w}?",
                  "One network is trained conditionally with the label dropped (replaced by a null label) with "
                  "probability p_uncond ≈ 0.1-0.2, so it predicts both ε_c and ε_u. Sampling uses "
                  "(1 + w) ε_c - w ε_u: larger w raises adherence/IS and lowers diversity/recall (FID 1.8 at w = 0 "
                  "vs 26.2 at w = 4 on ImageNet 64, IS 53.7 vs 260.2; [CFG] Table 1). The guided ε is not the score "
                  "of any noised version of the tilted density: the tilt is applied to each q_t separately, and the "
                  "noised tilted density is not the tilted noised density, so the samples are not calibrated draws "
                  "from p(x|c)^{1+w} p(x)^{-w} (notebook 07 measures the gap on a mixture)."),
    DrillQuestion("staff_pf_ode_eps", "staff", "derivation",
                  "Write the probability-flow ODE of the VP-SDE, dx/dt, with the network's noise prediction in "
                  "place of the score (type `x_t`, `eps`, `beta_t` for β(t), `alpha_bar_t` for ᾱ(t)).",
                  "-beta_t/2*(x_t - eps/sqrt(1 - alpha_bar_t)) ([SDE] Eq. 13 with ∇log p = -ε/√(1-ᾱ)); the reverse "
                  "SDE's drift has the full g² instead of ½g² ([SDE] Eq. 6).", check_id="pf_ode_drift_eps"),
    DrillQuestion("staff_ddim_ode", "staff", "reveal",
                  "Is DDIM an ODE solver? Which one, and why do second-order solvers need only 10-20 network calls?",
                  "Yes: with y = x/√ᾱ and σ = √((1-ᾱ)/ᾱ), the DDIM (η = 0) update is exactly Euler's method for "
                  "dy/dσ = ε_θ ([DDIM] Eq. 14, §4.3), i.e. the first-order exponential integrator of the "
                  "probability-flow ODE (DPM-Solver, Lu et al. 2022). Its global error falls like 1/N in the number "
                  "of steps; Heun (EDM, 2 calls a step) and DPM-Solver-2 / DPM-Solver++(2M) (2M: 1 call a step, "
                  "reusing the previous one) are second order, error ∝ 1/N², so 10-20 calls reach what DDIM needs "
                  "50-100 for. The trajectory is smooth in σ (or log-SNR), which is what makes high order pay."),
    DrillQuestion("staff_snr_weight", "staff", "derivation",
                  "With σ_t² = β̃_t, write the ε-MSE weight λ_t of the bound in terms of `snr_t` = SNR(t) and "
                  "`snr_prev` = SNR(t-1).",
                  "(snr_prev/snr_t - 1)/2 ([DDPM] Eq. 12 with σ_t² = β̃_t; the x_0-MSE weight is "
                  "½(SNR(t-1) - SNR(t)), [VDM]).", check_id="snr_weight"),
    DrillQuestion("staff_terminal_signal", "staff", "numeric",
                  "How much signal is left at t = T in the DDPM linear schedule (T = 1000, β from 1e-4 to 0.02): "
                  "what is √ᾱ_T? (3 significant figures)",
                  "√ᾱ_T ≈ 0.00635 (ᾱ_T ≈ 4.04e-5): small but not zero, so training never sees pure noise while "
                  "sampling starts from it. Stable Diffusion's scaled-linear schedule leaves √ᾱ_T ≈ 0.068 ([ZSNR]).",
                  expected=_linear_signal_T, rel=0.005),
    DrillQuestion("staff_sd_terminal_signal", "staff", "numeric",
                  "Stable Diffusion's scaled-linear schedule has β_t = (linspace(√0.00085, √0.012, 1000))². What is "
                  "√ᾱ_T? (2 significant figures)",
                  "√ᾱ_T ≈ 0.068: x_T keeps about 7% of the signal (e.g. the mean brightness), so a model trained on it "
                  "cannot generate very dark or bright images from pure noise ([ZSNR]).",
                  expected=_scaled_linear_signal_T, rel=0.02),
    DrillQuestion("staff_zero_snr", "staff", "reveal",
                  "Why does zero terminal SNR matter, and why can ε-prediction not be used at t = T then, while "
                  "v-prediction can?",
                  "With SNR(T) > 0 training leaks signal at t = T (√ᾱ_T ≈ 0.068 for SD's schedule) but sampling starts "
                  "from pure noise: the mismatch biases samples to medium brightness. Rescaling √ᾱ so that √ᾱ_T = 0 "
                  "([ZSNR] Algorithm 1) fixes it. At ᾱ_T = 0, x_T = ε exactly: predicting ε is trivial and says "
                  "nothing about x_0 (x̂_0 = (x_T - √(1-ᾱ)ε̂)/√ᾱ is 0/0), while v = √ᾱ ε - √(1-ᾱ) x_0 = -x_0 there, so "
                  "v-prediction still predicts the data ([ZSNR] §3.2; [V])."),
    DrillQuestion("staff_short_chain", "staff", "numeric",
                  "With only T = 10 linear steps (β from 1e-4 to 0.02), what is L_T = KL(q(x_T|x_0 = 0) || N(0, 1)) "
                  "in bits per dimension? (2 significant figures)",
                  "ᾱ_10 ≈ 0.90, so q(x_T|x_0) = N(0, 0.1) is far from N(0, 1): L_T ≈ 1.0 bits/dim. With T = 1000 it "
                  "is ~1e-5: T must be large enough (or β large enough) for x_T to forget x_0.",
                  expected=_lt_of_short_chain, rel=0.05),
)

_BANK += (
    DrillQuestion("mid_code_q_sample", "mid", "code",
                  "Write q_sample(sched, x0, t, noise): draw x_t from q(x_t | x_0) for a batch (t of shape (B,)).",
                  "sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * noise, with the (B,) coefficients reshaped to "
                  "broadcast over the trailing axes ([DDPM] Eq. 4).", check_id="q_sample"),
    DrillQuestion("senior_code_ddim_step", "senior", "code",
                  "Write one DDIM step x_t -> x_{t_prev} from the predicted noise ([DDIM] Eq. 12 with σ_t(η)).",
                  "x0_hat = (x_t - √(1-ᾱ_t) ε̂)/√ᾱ_t; x_prev = √ᾱ_prev x0_hat + √(1-ᾱ_prev-σ_t²) ε̂ + σ_t z with "
                  "σ_t = η √((1-ᾱ_prev)/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_prev) ([DDIM] Eq. 12, 16).", check_id="ddim_step"),
    DrillQuestion("staff_code_cfg", "staff", "code",
                  "Write cfg_eps for a conditional model: one batched call for the conditional and the null label, "
                  "then combine with guidance weight w.",
                  "(1 + w) ε_c - w ε_u ([CFG] Eq. 6), with ε_c and ε_u from one forward pass on the batch "
                  "concatenated with its null-label copy.", check_id="cfg_eps"),
)


def bank(level: str | None = None, kind: str | None = None) -> tuple[DrillQuestion, ...]:
    """The drill questions, optionally only one ``level`` ('mid', 'senior', 'staff') and/or ``kind``."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return tuple(q for q in _BANK if (level is None or q.level == level) and (kind is None or q.kind == kind))


def get(question_id: str) -> DrillQuestion:
    """The drill question ``question_id`` (ValueError for an unknown id)."""
    for q in _BANK:
        if q.id == question_id:
            return q
    raise ValueError(f"unknown drill question {question_id!r}; see drill.bank()")


def check_number(question_id: str, value: Any, expected: float, rel: float = 0.02) -> CheckResult:
    """Compare a numeric answer with ``expected`` at relative tolerance ``rel``; the verdict as a CheckResult.

    ``value`` may be a number or a string such as "4.04e-5"; placeholders (None, "", ...) are "Not yet answered".
    """
    if value is None or value is Ellipsis or (isinstance(value, str) and not value.strip()):
        return CheckResult(question_id, "invalid", "Not yet answered: type a number.", evidence="no answer")
    try:
        x = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return CheckResult(question_id, "invalid", f"Invalid input: {value!r} is not a number (e.g. 0.443 or 4.04e-5).",
                           evidence="input type")
    if not math.isfinite(x):
        return CheckResult(question_id, "invalid", "Invalid input: the answer is not a finite number.",
                           evidence="input type")
    err = abs(x - expected) / max(abs(expected), 1e-300)
    evidence = f"numeric: expected {expected:.4g}, relative tolerance {rel:g}"
    if err <= rel:
        return CheckResult(question_id, "correct", f"Correct: {x:.4g} (expected {expected:.4g}).", evidence=evidence)
    hint = "too large" if x > expected else "too small"
    if expected != 0 and x != 0 and abs(math.log10(abs(x / expected))) > 0.9:
        hint += f" by about a factor of {abs(x / expected):.3g}: check the units and powers of ten"
    return CheckResult(question_id, "incorrect", f"Not quite: {x:.4g} is {hint}.", evidence=evidence)


def answer(question_id: str, response: Any) -> CheckResult:
    """Check a response to drill question ``question_id`` (derivation, numeric, or code: a function).

    Reveal questions have no automatic verdict: read ``get(question_id).model_answer``.
    """
    q = get(question_id)
    if q.kind == "derivation":
        return checks.check(q.check_id, response)
    if q.kind == "numeric":
        return check_number(q.id, response, q.expected(), q.rel)
    if q.kind == "code":
        from .checks.code import check_function  # torch: only when a code answer is graded

        return check_function(q.check_id, response)
    raise ValueError(f"{question_id!r} is a reveal question: compare your answer with "
                     f"get({question_id!r}).model_answer")


# -- progress (spaced repetition) ----------------------------------------------------------------------------------
BOXES = 5  # Leitner boxes 0..4: a miss sends a question to box 0, a correct answer moves it up one box


def data_dir() -> Path:
    """Where the drill keeps its progress: ``$DDPM_LESSONS_DATA_DIR``, else ``$XDG_DATA_HOME/ddpm-lessons``, else
    ``~/.local/share/ddpm-lessons`` (``%APPDATA%\\ddpm-lessons`` on Windows)."""
    if os.environ.get("DDPM_LESSONS_DATA_DIR"):
        return Path(os.environ["DDPM_LESSONS_DATA_DIR"])
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "ddpm-lessons"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ddpm-lessons"


class Progress:
    """Per-question results kept between drills: ``{id: {"box", "seen", "correct", "missed", "last"}}``.

    ``order(questions, rng)`` puts missed questions first (most recently missed first), then unseen ones (shuffled),
    then the rest by box (weakest first) and by how long ago they were asked. ``path=None`` keeps it in memory only.
    """

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        self.items: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.items = {k: dict(v) for k, v in data.get("questions", {}).items() if isinstance(v, dict)}
            except (OSError, ValueError, AttributeError):
                self.items = {}  # an unreadable file is treated as no progress (it is rewritten on save)

    @classmethod
    def default(cls) -> Progress:
        return cls(data_dir() / "drill_progress.json")

    def record(self, question_id: str, correct: bool) -> None:
        it = self.items.setdefault(question_id, {"box": 0, "seen": 0, "correct": 0, "missed": False, "last": 0.0})
        it["seen"] += 1
        it["correct"] += int(correct)
        it["box"] = min(it["box"] + 1, BOXES - 1) if correct else 0
        it["missed"] = not correct
        it["last"] = time.time()

    def order(self, questions: list[DrillQuestion], rng: random.Random) -> list[DrillQuestion]:
        missed = [q for q in questions if self.items.get(q.id, {}).get("missed")]
        missed.sort(key=lambda q: -self.items[q.id]["last"])
        unseen = [q for q in questions if q.id not in self.items]
        rng.shuffle(unseen)
        rest = [q for q in questions if q.id in self.items and not self.items[q.id].get("missed")]
        rest.sort(key=lambda q: (self.items[q.id]["box"], self.items[q.id]["last"]))
        return missed + unseen + rest

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "questions": self.items}, indent=1), encoding="utf-8")
        tmp.replace(self.path)

    def reset(self) -> None:
        self.items = {}
        if self.path is not None and self.path.exists():
            self.path.unlink()


# -- the terminal drill ----------------------------------------------------------------------------------------------
MAX_INVALID = 3  # invalid inputs in a row before the model answer is shown


def _read_answer(inp: TextIO, out: TextIO) -> str | None:
    """One answer; a line ending in `=` or `\\` continues on the next line (multi-line derivations). None at EOF."""
    print("> ", end="", file=out, flush=True)
    line = inp.readline()
    if not line:
        return None
    text = line.rstrip("\n")
    while text.rstrip().endswith(("=", "\\")):
        print(". ", end="", file=out, flush=True)
        more = inp.readline()
        if not more:
            break
        text = text.rstrip().rstrip("\\") + " " + more.rstrip("\n")
    return text.strip()


def _prompt_lines(q: DrillQuestion) -> list[str]:
    lines = []
    if q.kind == "derivation":
        cq = checks.get_question(q.check_id)
        lines.append(f"    symbols: {cq.symbols_help()}")
        lines.append("    (plain, LaTeX or Unicode; a derivation `a = b = c` is checked step by step)")
    elif q.kind == "numeric":
        lines.append("    (a number, e.g. 0.443 or 4.04e-5)")
    elif q.kind == "code":
        lines.append("    (write the function in your editor or aloud, then compare with the solution)")
    return lines


def _ask_checked(q: DrillQuestion, inp: TextIO, out: TextIO, tries: int) -> tuple[bool | None, int]:
    """Ask a checked question: invalid input -> hint and retry; wrong -> diagnosis and one more try (``tries`` in
    all). Returns (correct, tries used), correct None at end of input or when skipped."""
    used = invalid = 0
    while used < tries:
        response = _read_answer(inp, out)
        if response is None:
            return None, used
        if not response:
            print(f"Skipped. Model answer: {q.model_answer}", file=out)
            return False, max(used, 1)
        res = answer(q.id, response)
        if res.status == "invalid":
            invalid += 1
            print(str(res).split("\n")[0], file=out)
            if invalid >= MAX_INVALID:
                print(f"Model answer: {q.model_answer}", file=out)
                return False, max(used, 1)
            print("Try again (an invalid input does not count as an attempt).", file=out)
            continue
        invalid = 0
        used += 1
        print(str(res).split("\n")[0], file=out)
        if res.ok:
            return True, used
        if res.status == "timeout":
            print("Try a simpler form.", file=out)
        if used < tries:
            print(f"One more try ({tries - used} left).", file=out)
    print(f"Model answer: {q.model_answer}", file=out)
    return False, used


def run_drill(level: str | None = None, n: int | None = None, seed: int | None = None,
              inp: TextIO | None = None, out: TextIO | None = None, progress: Progress | None = None,
              tries: int = 2) -> tuple[int, int]:
    """Interactive drill: ask ``n`` questions, check each answer, print a score by level.

    Order: with ``progress`` (a :class:`Progress`), missed questions first, then unseen ones, then the rest (weakest
    box first); without it, random under ``seed``. Derivation and numeric questions allow ``tries`` attempts (a
    wrong answer shows its diagnosis first; invalid input only shows the hint and does not count). Reveal and code
    questions show the model answer and ask whether yours covered it (y/n). An empty line skips a question; end of
    input stops the drill early and still prints the score. Returns (points, questions asked).
    """
    inp = inp or sys.stdin
    out = out or sys.stdout
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    qs = list(bank(level))
    rng = random.Random(seed)
    if progress is not None:
        qs = progress.order(qs, rng)
    else:
        rng.shuffle(qs)
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        qs = qs[:n]
    points = asked = first_try = 0
    by_level: dict[str, list[int]] = {lv: [0, 0] for lv in LEVELS}
    for k, q in enumerate(qs, 1):
        print(f"\n[{k}/{len(qs)}] ({q.level}, {q.kind}) {q.prompt}", file=out)
        for line in _prompt_lines(q):
            print(line, file=out)
        if q.kind in ("reveal", "code"):
            response = _read_answer(inp, out)
            if response is None:
                print("\n(end of input)", file=out)
                break
            model = q.model_answer
            if q.kind == "code":
                try:
                    from .checks.code import get_exercise

                    model = f"{q.model_answer}\n{get_exercise(q.check_id).solution}"
                except (ImportError, ValueError, KeyError, AttributeError):
                    pass
            print(f"Model answer: {model}", file=out)
            print("Did your answer cover it? [y/N] ", end="", file=out, flush=True)
            ok: bool | None = inp.readline().strip().lower().startswith("y")
            used = 1
        else:
            ok, used = _ask_checked(q, inp, out, tries)
            if ok is None:
                print("\n(end of input)", file=out)
                break
        asked += 1
        points += bool(ok)
        first_try += bool(ok) and used == 1
        by_level[q.level][0] += bool(ok)
        by_level[q.level][1] += 1
        if progress is not None:
            progress.record(q.id, bool(ok))
            progress.save()
    print(f"\nScore: {points}/{asked} ({first_try} at the first try)", file=out)
    for lv in LEVELS:
        got, of = by_level[lv]
        if of:
            print(f"  {lv:<7} {got}/{of}", file=out)
    if progress is not None:
        missed = sum(1 for it in progress.items.values() if it.get("missed"))
        print(f"Progress saved to {progress.path} ({missed} missed question(s) come first next time; "
              "--reset forgets it).", file=out)
    return points, asked


def _run(args: argparse.Namespace) -> int:
    progress = None if args.no_progress else Progress.default()
    if progress is not None and args.reset:
        progress.reset()
        print(f"Progress reset ({progress.path}).")
    try:
        run_drill(level=args.level, n=args.n, seed=args.seed, progress=progress)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        print("\n(stopped)")
    return 0


def add_subparser(subparsers: Any) -> None:
    p = subparsers.add_parser("drill", help="interview drill in the terminal (spaced repetition)")
    p.add_argument("--level", choices=LEVELS, default=None, help="only this level (default: all)")
    p.add_argument("--n", type=int, default=None, help="number of questions (default: all)")
    p.add_argument("--seed", type=int, default=None, help="seed for the order of unseen questions")
    p.add_argument("--reset", action="store_true", help="forget the saved progress first")
    p.add_argument("--no-progress", action="store_true", help="neither read nor save progress")
    p.set_defaults(handler=_run)
