"""Interview drill: a question bank by level, answered by a derivation check, a number, or a model answer to reveal.

Levels follow what interviewers expect:
  * mid    -- forward = add noise, reverse = learn p(x_{t-1}|x_t), sample by iterating; the closed-form marginal.
  * senior -- the ELBO decomposition, ε vs x_0 parameterisation, the link to score matching and annealed Langevin.
  * staff  -- why L_simple drops the weighting, DDIM as a non-Markovian accelerated sampler, CFG as conditional
              dropout and the w trade-off (and why CFG with w > 0 is not a calibrated likelihood).

Every expected number is computed from the package (never typed in), so the bank cannot drift from the maths.

    from ddpm_lessons import drill
    drill.bank(level="senior")                      # the questions
    drill.answer("kl_numeric", "0.443")             # a verdict (a CheckResult)
    ddpm-lessons drill --level staff --n 5          # in the terminal; score at the end
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch

from . import checks, samplers, schedules
from .checks import CheckResult
from .losses import gaussian_kl

__all__ = ["DrillQuestion", "LEVELS", "bank", "get", "answer", "check_number", "run_drill"]

LEVELS = ("mid", "senior", "staff")
KINDS = ("derivation", "numeric", "reveal")


@dataclass(frozen=True)
class DrillQuestion:
    """One drill question.

    kind 'derivation': answered by ``checks.check(check_id, expression)``; 'numeric': a number compared with
    ``expected()`` at relative tolerance ``rel``; 'reveal': the learner answers aloud, then reads ``model_answer``.
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
    return float(schedules.linear(1000).alpha_bar[-1])


def _linear_snr_500() -> float:
    return float(schedules.linear(1000).snr[500])


def _kl_value() -> float:
    return float(gaussian_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(math.log(4.0))))


def _ddim_sigma_value() -> float:
    # σ_t(η = 1) for ᾱ_t = 0.5, ᾱ_prev = 0.8: run one DDIM step with ε̂ = 0, x_t = 0, noise = 1 and read σ off it
    s = schedules.from_beta(torch.tensor([0.2, 0.375], dtype=torch.float64))  # ᾱ_1 = 0.8, ᾱ_2 = 0.8 · 0.625 = 0.5
    z = torch.ones(1, 1, dtype=torch.float64)
    return float(samplers.ddim_step(s, torch.zeros_like(z), 2, 1, torch.zeros_like(z), eta=1.0, noise=z))


def _cfg_scale_value() -> float:
    # s such that ε_u + s (ε_c - ε_u) equals (1 + w) ε_c - w ε_u at w = 3: read it off cfg_eps with ε_c = 1, ε_u = 0
    return float(samplers.cfg_eps(torch.ones(1), torch.zeros(1), 3.0))


def _lt_of_short_chain() -> float:
    # L_T in bits/dim for x_0 = 0 with only T = 10 linear steps (β from 1e-4 to 0.02): far from 0
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
                  "so one network handles all t well. Ho et al. found ε-prediction with L_simple gives the best "
                  "samples; x_0-prediction was worse in their ablation ([DDPM] §3.2, Table 2)."),
    DrillQuestion("senior_score", "senior", "derivation", "Write the score ∇ log q_t(x_t) in terms of ε.",
                  "-eps/sqrt(1 - alpha_bar_t).", check_id="score_from_eps"),
    DrillQuestion("senior_tweedie", "senior", "derivation",
                  "Tweedie's formula: write E[x_0 | x_t] using the score s = ∇ log q_t(x_t).",
                  "(x_t + (1 - alpha_bar_t)*score)/sqrt(alpha_bar_t).", check_id="tweedie"),
    DrillQuestion("senior_langevin", "senior", "reveal",
                  "How are diffusion models related to score matching and annealed Langevin dynamics?",
                  "The ε-MSE is denoising score matching at each noise level: the optimum is "
                  "ε* = -√(1-ᾱ_t) ∇ log q_t(x_t) (Vincent 2011), so the network is a noise-conditional score model. "
                  "NCSN samples with annealed Langevin dynamics over decreasing noise levels (Song & Ermon 2019); "
                  "DDPM's ancestral sampler is a different discretisation of the same reverse-time dynamics "
                  "(Song et al. 2021, the SDE view)."),
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
    DrillQuestion("staff_short_chain", "staff", "numeric",
                  "With only T = 10 linear steps (β from 1e-4 to 0.02), what is L_T = KL(q(x_T|x_0 = 0) || N(0, 1)) "
                  "in bits per dimension? (2 significant figures)",
                  "ᾱ_10 ≈ 0.90, so q(x_T|x_0) = N(0, 0.1) is far from N(0, 1): L_T ≈ 1.0 bits/dim. With T = 1000 it "
                  "is ~1e-5: T must be large enough (or β large enough) for x_T to forget x_0.",
                  expected=_lt_of_short_chain, rel=0.05),
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
    """Check a response to drill question ``question_id`` (derivation or numeric).

    Reveal questions have no automatic verdict: read ``get(question_id).model_answer``.
    """
    q = get(question_id)
    if q.kind == "derivation":
        return checks.check(q.check_id, response)
    if q.kind == "numeric":
        return check_number(q.id, response, q.expected(), q.rel)
    raise ValueError(f"{question_id!r} is a reveal question: compare your answer with "
                     f"get({question_id!r}).model_answer")


def run_drill(level: str | None = None, n: int | None = None, seed: int | None = None,
              inp: TextIO | None = None, out: TextIO | None = None) -> tuple[int, int]:
    """Interactive drill: ask ``n`` questions (random order under ``seed``), check each answer, print the score.

    Reveal questions show the model answer and ask whether yours covered it (y/n). An empty line skips a question;
    end of input stops the drill early and still prints the score. Returns (points, questions asked).
    """
    inp = inp or sys.stdin
    out = out or sys.stdout
    qs = list(bank(level))
    random.Random(seed).shuffle(qs)
    if n is not None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        qs = qs[:n]
    points = asked = 0
    for k, q in enumerate(qs, 1):
        print(f"\n[{k}/{len(qs)}] ({q.level}, {q.kind}) {q.prompt}", file=out)
        if q.kind == "derivation":
            print(f"    symbols: {', '.join(checks.get_question(q.check_id).names)}", file=out)
        print("> ", end="", file=out, flush=True)
        line = inp.readline()
        if not line:
            print("\n(end of input)", file=out)
            break
        asked += 1
        response = line.strip()
        if q.kind == "reveal":
            print(f"Model answer: {q.model_answer}", file=out)
            print("Did your answer cover it? [y/N] ", end="", file=out, flush=True)
            got = inp.readline().strip().lower().startswith("y")
            points += got
            continue
        if not response:
            print(f"Skipped. Model answer: {q.model_answer}", file=out)
            continue
        res = answer(q.id, response)
        print(str(res), file=out)
        if res.ok:
            points += 1
        else:
            print(f"Model answer: {q.model_answer}", file=out)
    print(f"\nScore: {points}/{asked}", file=out)
    return points, asked


def _run(args: argparse.Namespace) -> int:
    try:
        run_drill(level=args.level, n=args.n, seed=args.seed)
    except ValueError as e:
        print(f"error: {e}")
        return 2
    return 0


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser("drill", help="interview drill in the terminal")
    p.add_argument("--level", choices=LEVELS, default=None, help="only this level (default: all)")
    p.add_argument("--n", type=int, default=None, help="number of questions (default: all)")
    p.add_argument("--seed", type=int, default=None, help="seed for the question order")
    p.set_defaults(handler=_run)
