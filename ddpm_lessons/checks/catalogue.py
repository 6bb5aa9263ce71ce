"""The question catalogue: every derivation a learner can type and have checked.

Each :class:`Question` lists its symbols (free ones are sampled uniformly from a declared domain; derived ones are
computed from their ``definitions``, e.g. ``alpha_bar_t = alpha_bar_prev * alpha_t``), the reference answer as it
appears in the paper, at least three equivalent rewritings (the self-tests check they are accepted), and known
mistakes with a hint each. Automatic mistakes (swapped symbols, dropped square roots, ...) are generated from the
reference by :mod:`ddpm_lessons.checks.mistakes`.

This module is plain data: importing it does not import SymPy.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [SDE]   Song et al. 2021, arXiv:2011.13456
    [DSM]   Vincent 2011, Neural Computation 23(7)
    [V]     Salimans, Ho 2022 (progressive distillation, v-prediction), arXiv:2202.00512
    [VDM]   Kingma, Salimans, Poole, Ho 2021 (SNR), arXiv:2107.00630
    [NCSN]  Song, Ermon 2019, arXiv:1907.05600
    [TW]    Efron 2011, Tweedie's formula and selection bias, JASA 106(496)
    [ZSNR]  Lin, Liu, Li, Yang 2023 (common diffusion noise schedules are flawed), arXiv:2305.08891
    [RF]    Liu, Gong, Liu 2022 (rectified flow), arXiv:2209.03003
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SymbolSpec", "Mistake", "Question", "VOCAB", "ALIASES", "QUESTIONS", "by_id"]


@dataclass(frozen=True)
class SymbolSpec:
    """One symbol a learner may type.

    ``lo``/``hi`` bound the open interval free values are drawn from; ``kind`` is ``real``, ``positive`` or
    ``integer`` (integers are drawn from ``lo..hi`` inclusive).
    """

    name: str
    lo: float
    hi: float
    kind: str
    latex: str
    description: str
    shown: str = ""  # how the symbol looks in the notes (Unicode), e.g. "ᾱ_{t-1}"


def _s(name: str, lo: float, hi: float, kind: str, latex: str, description: str, shown: str = "") -> SymbolSpec:
    return SymbolSpec(name, lo, hi, kind, latex, description, shown or name)


# Default domains: schedule quantities strictly inside (0, 1) and away from the ends, data-like values of both signs.
VOCAB: dict[str, SymbolSpec] = {s.name: s for s in [
    _s("x_t", -3, 3, "real", r"x_t", "the noisy sample at step t (x(t) in continuous time)", "x_t"),
    _s("x_0", -3, 3, "real", r"x_0", "the clean sample", "x₀"),
    _s("x_tm2", -3, 3, "real", r"x_{t-2}", "the sample two steps earlier", "x_{t-2}"),
    _s("eps", -3, 3, "real", r"\epsilon", "standard normal noise (or the network's prediction of it)", "ε"),
    _s("z", -3, 3, "real", r"z", "fresh standard normal noise", "z"),
    _s("v", -3, 3, "real", r"v", "the v-prediction target", "v"),
    _s("score", -3, 3, "real", r"\nabla_{x_t}\log q(x_t)", "the score at x_t", "∇ log q(x_t)"),
    _s("eps_c", -3, 3, "real", r"\epsilon_c", "conditional noise prediction", "ε_c"),
    _s("eps_u", -3, 3, "real", r"\epsilon_u", "unconditional noise prediction", "ε_u"),
    _s("alpha_t", 0.2, 0.99, "positive", r"\alpha_t", "1 - beta_t", "α_t"),
    _s("alpha_tm1", 0.2, 0.99, "positive", r"\alpha_{t-1}", "1 - beta_{t-1}", "α_{t-1}"),
    _s("alpha_bar_t", 0.02, 0.98, "positive", r"\bar\alpha_t", "product of alpha_s for s = 1..t", "ᾱ_t"),
    _s("alpha_bar_prev", 0.05, 0.98, "positive", r"\bar\alpha_{t-1}", "alpha_bar at the previous step", "ᾱ_{t-1}"),
    _s("alpha_bar_1", 0.9, 0.9999, "positive", r"\bar\alpha_1", "alpha_bar at the first step", "ᾱ_1"),
    _s("alpha_bar_T", 1e-5, 0.01, "positive", r"\bar\alpha_T", "alpha_bar at the last step", "ᾱ_T"),
    _s("beta_t", 0.01, 0.8, "positive", r"\beta_t", "the forward noise variance at step t (β(t) in continuous time)",
       "β_t"),
    _s("beta_tm1", 0.01, 0.8, "positive", r"\beta_{t-1}", "the forward noise variance at step t-1", "β_{t-1}"),
    _s("beta_tilde_t", 0.01, 0.8, "positive", r"\tilde\beta_t", "the posterior variance", "β̃_t"),
    _s("sigma_t", 0.05, 1.0, "positive", r"\sigma_t", "standard deviation of the reverse step", "σ_t"),
    _s("eta", 0.05, 1.0, "positive", r"\eta", "DDIM stochasticity (0 deterministic, 1 ancestral)", "η"),
    _s("w", 0.1, 8.0, "positive", r"w", "guidance weight of [CFG] (w = 0: plain conditional)", "w"),
    _s("s", 1.1, 9.0, "positive", r"s", "diffusers guidance_scale (s = 1: plain conditional)", "s"),
    _s("mu1", -3, 3, "real", r"\mu_1", "mean of the first Gaussian", "μ₁"),
    _s("mu2", -3, 3, "real", r"\mu_2", "mean of the second Gaussian", "μ₂"),
    _s("sigma1", 0.2, 3.0, "positive", r"\sigma_1", "standard deviation of the first Gaussian", "σ₁"),
    _s("sigma2", 0.2, 3.0, "positive", r"\sigma_2", "standard deviation of the second Gaussian", "σ₂"),
    _s("d", 1, 64, "integer", r"d", "the dimension", "d"),
    _s("delta2", 0.01, 10.0, "positive", r"\lVert\mu_1-\mu_2\rVert^2", "squared distance between the means",
       "‖μ₁ − μ₂‖²"),
    _s("snr_t", 0.01, 50.0, "positive", r"\mathrm{SNR}(t)", "signal-to-noise ratio at step t", "SNR(t)"),
    _s("snr_prev", 0.01, 50.0, "positive", r"\mathrm{SNR}(t-1)", "signal-to-noise ratio at step t-1", "SNR(t-1)"),
    _s("phi", 0.05, 1.5, "positive", r"\phi", "the angle of x_phi = cos(phi) x_0 + sin(phi) eps", "φ"),
]}

# Alternative spellings accepted everywhere (only where the target is a symbol of the question).
ALIASES: dict[str, str] = {
    "xt": "x_t", "x0": "x_0", "x_tminus2": "x_tm2", "epsilon": "eps", "alpha_bar_tm1": "alpha_bar_prev",
    "alphabar_t": "alpha_bar_t", "alphabar_prev": "alpha_bar_prev", "alpha_bar_t_prev": "alpha_bar_prev",
    "alpha_t_minus_1": "alpha_tm1", "beta_t_minus_1": "beta_tm1", "betatilde_t": "beta_tilde_t",
    "epsilon_c": "eps_c", "epsilon_u": "eps_u", "mu_1": "mu1", "mu_2": "mu2", "sigma_1": "sigma1",
    "sigma_2": "sigma2",
}


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: ``tag`` names it, ``answer`` is one way to type it, ``hint`` is shown when matched."""

    tag: str
    answer: str
    hint: str


@dataclass(frozen=True)
class Question:
    """One checkable derivation.

    Attributes:
        id: stable identifier used by ``check(id, answer)``.
        title: short title.
        prompt: what to derive (Markdown with LaTeX), naming the symbols to use.
        reference: the answer as the paper writes it, in the checker's syntax.
        free: names of the independent symbols (sampled from their domains).
        definitions: derived symbols as expressions of earlier ones, e.g. ``{"beta_t": "1 - alpha_t"}``.
        equivalents: at least three correct rewritings (self-tested).
        mistakes: known mistakes with hints (self-tested).
        linear_in: variables the answer is linear in; feedback then names the wrong coefficients.
        swaps: ``(tag, hint, ((a, b), ...))``: simultaneous symbol swaps that are typical mistakes.
        substitutions: ``(tag, hint, ((name, expr), ...))``: substitutions that are typical mistakes.
        domains: per-question domain overrides ``name -> (lo, hi)``.
        source: the citation of the formula.
        start: for a derivation exercise, the expression the chain starts from (shown in the prompt).
        min_steps: fewest steps :func:`ddpm_lessons.checks.check_derivation` accepts (1: a single answer is fine).
        ddim: the answer may be written in DDIM's convention (α_t for ᾱ_t) if it uses it throughout.
        asked: names a learner may write on the left of ``=`` for the asked quantity (``beta_tilde_t = ...``).
    """

    id: str
    title: str
    prompt: str
    reference: str
    free: tuple[str, ...]
    definitions: dict[str, str] = field(default_factory=dict)
    equivalents: tuple[str, ...] = ()
    mistakes: tuple[Mistake, ...] = ()
    linear_in: tuple[str, ...] = ()
    swaps: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = ()
    substitutions: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = ()
    domains: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""
    start: str = ""
    min_steps: int = 1
    ddim: bool = False
    asked: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every symbol a learner may type in this question (free, then derived)."""
        return tuple(self.free) + tuple(self.definitions)

    def spec(self, name: str) -> SymbolSpec:
        """The :class:`SymbolSpec` of ``name`` with this question's domain override applied."""
        base = VOCAB[name]
        if name in self.domains:
            lo, hi = self.domains[name]
            return SymbolSpec(base.name, lo, hi, base.kind, base.latex, base.description)
        return base

    def symbol_lines(self) -> list[str]:
        """One line per symbol: ``alpha_bar_prev = ᾱ_{t-1}: alpha_bar at the previous step``."""
        out = []
        for n in self.names:
            spec = VOCAB[n]
            shown = f" = {spec.shown}" if spec.shown and spec.shown != n else ""
            out.append(f"{n}{shown}: {spec.description}")
        return out

    def symbols_help(self) -> str:
        """The symbols on one line, with their meanings: ``x_0 = x₀ (the clean sample), eps = ε (...)``."""
        parts = []
        for n in self.names:
            spec = VOCAB[n]
            shown = f" = {spec.shown}" if spec.shown and spec.shown != n else ""
            parts.append(f"`{n}`{shown}")
        return ", ".join(parts)

    def _repr_markdown_(self) -> str:
        syms = ", ".join(f"`{n}` (${VOCAB[n].latex}$, {VOCAB[n].description})" for n in self.names)
        start = f"\n\nStart from `{self.start}`." if self.start else ""
        return f"**{self.title}** (`{self.id}`, {self.source})\n\n{self.prompt}{start}\n\nSymbols: {syms}"

    def __str__(self) -> str:
        lines = [f"{self.id}: {self.title} [{self.source}]", f"  {self.prompt}"]
        if self.start:
            lines.append(f"  start from: {self.start}")
        lines.append("  symbols (type these names):")
        lines += [f"    {line}" for line in self.symbol_lines()]
        return "\n".join(lines)


# The schedule block most questions share: alpha_t and alpha_bar_prev are free, the rest follow from them.
_SCHED_FREE = ("alpha_t", "alpha_bar_prev")
_SCHED_DEFS = {"alpha_bar_t": "alpha_bar_prev*alpha_t", "beta_t": "1 - alpha_t"}
_SCHED_DEFS_TILDE = {**_SCHED_DEFS, "beta_tilde_t": "(1 - alpha_bar_prev)/(1 - alpha_bar_t)*beta_t"}
_DDIM_SIGMA = "eta*sqrt((1 - alpha_bar_prev)/(1 - alpha_bar_t))*sqrt(1 - alpha_bar_t/alpha_bar_prev)"

_KL_SWAP = ("swapped_kl_args", "KL(p||q) is not symmetric: the expectation is under the first argument, so the "
            "variance in the denominator and the log-ratio's numerator belong to the second one.",
            (("mu1", "mu2"), ("sigma1", "sigma2")))
_CFG_SWAP = ("swapped_cond_uncond", "The conditional and unconditional predictions look swapped: guidance moves "
             "away from eps_u, towards and past eps_c.", (("eps_c", "eps_u"),))

QUESTIONS: tuple[Question, ...] = (
    Question(
        id="forward_mean",
        title="Mean of the forward marginal q(x_t | x_0)",
        prompt=r"Give the mean of $q(x_t \mid x_0)$ in terms of `x_0` and the schedule.",
        reference="sqrt(alpha_bar_t)*x_0",
        free=(*_SCHED_FREE, "x_0"),
        definitions=_SCHED_DEFS,
        equivalents=("x_0*alpha_bar_t^(1/2)", "sqrt(alpha_bar_prev*alpha_t)*x_0", "x_0/sqrt(1/alpha_bar_t)",
                     "alpha_bar_t/sqrt(alpha_bar_t)*x_0"),
        mistakes=(
            Mistake("noise_coefficient", "sqrt(1 - alpha_bar_t)*x_0",
                    "sqrt(1 - alpha_bar_t) scales the noise; the mean keeps the signal coefficient."),
            Mistake("one_step_only", "sqrt(alpha_t)*x_0",
                    "That is the single step q(x_t | x_{t-1}); the marginal multiplies all steps: alpha_bar_t."),
        ),
        linear_in=("x_0",),
        source="[DDPM] Eq. 4",
    ),
    Question(
        id="forward_var",
        title="Variance of the forward marginal q(x_t | x_0)",
        prompt=r"Give the (per-dimension) variance of $q(x_t \mid x_0)$.",
        reference="1 - alpha_bar_t",
        free=_SCHED_FREE,
        definitions=_SCHED_DEFS,
        equivalents=("1 - alpha_bar_prev*alpha_t", "-(alpha_bar_t - 1)", "sqrt(1 - alpha_bar_t)^2",
                     "(1 - alpha_bar_t^2)/(1 + alpha_bar_t)"),
        mistakes=(
            Mistake("std_not_variance", "sqrt(1 - alpha_bar_t)",
                    "That is the standard deviation; the question asks for the variance."),
            Mistake("one_step_only", "1 - alpha_t",
                    "That is the variance of one step, beta_t; after t steps it is 1 - alpha_bar_t."),
            Mistake("signal_variance", "alpha_bar_t",
                    "alpha_bar_t is the variance of the signal part sqrt(alpha_bar_t) x_0 (for unit-variance data); "
                    "the noise part has variance 1 - alpha_bar_t."),
        ),
        source="[DDPM] Eq. 4",
    ),
    Question(
        id="forward_sample",
        title="Reparameterised sample from q(x_t | x_0)",
        prompt=r"Write $x_t$ in terms of `x_0` and standard normal noise `eps`.",
        reference="sqrt(alpha_bar_t)*x_0 + sqrt(1 - alpha_bar_t)*eps",
        free=(*_SCHED_FREE, "x_0", "eps"),
        definitions=_SCHED_DEFS,
        equivalents=("sqrt(alpha_bar_prev*alpha_t)*x_0 + sqrt(1 - alpha_bar_prev*alpha_t)*eps",
                     "eps*(1 - alpha_bar_t)^0.5 + x_0*alpha_bar_t^0.5",
                     "sqrt(alpha_bar_t)*(x_0 + sqrt(1/alpha_bar_t - 1)*eps)"),
        mistakes=(
            Mistake("variance_as_scale", "alpha_bar_t*x_0 + (1 - alpha_bar_t)*eps",
                    "Scale eps by the standard deviation sqrt(1 - alpha_bar_t), and x_0 by sqrt(alpha_bar_t); "
                    "these coefficients are square roots."),
        ),
        linear_in=("x_0", "eps"),
        source="[DDPM] Eq. 4, reparameterised",
    ),
    Question(
        id="two_step_mean",
        title="Two-step composition: the mean",
        prompt=(r"With $q(x_{t-1}\mid x_{t-2}) = \mathcal N(\sqrt{\alpha_{t-1}}x_{t-2}, \beta_{t-1})$ and "
                r"$q(x_t\mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}x_{t-1}, \beta_t)$, give the mean of "
                r"$q(x_t \mid x_{t-2})$ in terms of `x_tm2`, `alpha_t`, `alpha_tm1`."),
        reference="sqrt(alpha_t)*sqrt(alpha_tm1)*x_tm2",
        free=("alpha_t", "alpha_tm1", "x_tm2"),
        definitions={"beta_t": "1 - alpha_t", "beta_tm1": "1 - alpha_tm1"},
        equivalents=("sqrt(alpha_t*alpha_tm1)*x_tm2", "(alpha_t*alpha_tm1)^(1/2)*x_tm2",
                     "sqrt((1 - beta_t)*(1 - beta_tm1))*x_tm2"),
        mistakes=(
            Mistake("added_not_multiplied", "sqrt(alpha_t + alpha_tm1)*x_tm2",
                    "Substituting one step into the next multiplies the scale factors."),
        ),
        linear_in=("x_tm2",),
        source="[DDPM] Eq. 2 and 4",
    ),
    Question(
        id="two_step_var",
        title="Two-step composition: the variance",
        prompt=(r"With the same two steps, give the variance of $q(x_t \mid x_{t-2})$ in terms of "
                r"`alpha_t`, `alpha_tm1`, `beta_t`, `beta_tm1`."),
        reference="alpha_t*beta_tm1 + beta_t",
        free=("alpha_t", "alpha_tm1"),
        definitions={"beta_t": "1 - alpha_t", "beta_tm1": "1 - alpha_tm1"},
        equivalents=("1 - alpha_t*alpha_tm1", "alpha_t*(1 - alpha_tm1) + 1 - alpha_t",
                     "beta_t + beta_tm1 - beta_t*beta_tm1"),
        mistakes=(
            Mistake("noise_not_rescaled", "beta_t + beta_tm1",
                    "The noise added at step t-1 is scaled by sqrt(alpha_t) in the next step, so its variance "
                    "is multiplied by alpha_t."),
            Mistake("std_scale_on_variance", "sqrt(alpha_t)*beta_tm1 + beta_t",
                    "Scaling a variable by sqrt(alpha_t) multiplies its variance by alpha_t, not sqrt(alpha_t)."),
        ),
        source="[DDPM] Eq. 2 and 4",
    ),
    Question(
        id="posterior_mean_x0",
        title="Posterior mean of q(x_{t-1} | x_t, x_0), x0 form",
        prompt=r"Give $\tilde\mu_t(x_t, x_0)$, the mean of $q(x_{t-1}\mid x_t, x_0)$, in terms of `x_t` and `x_0`.",
        reference=("sqrt(alpha_bar_prev)*beta_t/(1 - alpha_bar_t)*x_0 "
                   "+ sqrt(alpha_t)*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*x_t"),
        free=(*_SCHED_FREE, "x_t", "x_0"),
        definitions=_SCHED_DEFS_TILDE,
        equivalents=(
            "(sqrt(alpha_bar_prev)*beta_t*x_0 + sqrt(alpha_t)*(1 - alpha_bar_prev)*x_t)/(1 - alpha_bar_t)",
            "sqrt(alpha_bar_prev)*(1 - alpha_t)/(1 - alpha_bar_prev*alpha_t)*x_0 "
            "+ sqrt(alpha_t)*(1 - alpha_bar_prev)/(1 - alpha_bar_prev*alpha_t)*x_t",
            "beta_tilde_t*(sqrt(alpha_bar_prev)/(1 - alpha_bar_prev)*x_0 + sqrt(alpha_t)/beta_t*x_t)",
        ),
        mistakes=(
            Mistake("swapped_coefficients",
                    "sqrt(alpha_bar_prev)*beta_t/(1 - alpha_bar_t)*x_t "
                    "+ sqrt(alpha_t)*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*x_0",
                    "The coefficients of x_t and x_0 look swapped: x_t enters through the step q(x_t | x_{t-1}) "
                    "(sqrt(alpha_t)), x_0 through q(x_{t-1} | x_0) (sqrt(alpha_bar_prev))."),
            Mistake("prior_mean_only", "sqrt(alpha_bar_prev)*x_0",
                    "That is the mean of q(x_{t-1} | x_0); conditioning on x_t as well moves it towards x_t."),
            Mistake("alpha_t_vs_alpha_bar_prev",
                    "sqrt(alpha_t)*beta_t/(1 - alpha_bar_t)*x_0 "
                    "+ sqrt(alpha_bar_prev)*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*x_t",
                    "sqrt(alpha_t) and sqrt(alpha_bar_prev) look exchanged between the two terms."),
        ),
        linear_in=("x_0", "x_t"),
        source="[DDPM] Eq. 6-7",
    ),
    Question(
        id="posterior_var",
        title="Posterior variance of q(x_{t-1} | x_t, x_0)",
        prompt=r"Give $\tilde\beta_t$, the variance of $q(x_{t-1}\mid x_t, x_0)$.",
        reference="(1 - alpha_bar_prev)/(1 - alpha_bar_t)*beta_t",
        free=_SCHED_FREE,
        definitions=_SCHED_DEFS,
        equivalents=("1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev))",
                     "(1 - alpha_t)*(1 - alpha_bar_prev)/(1 - alpha_bar_prev*alpha_t)",
                     "beta_t - alpha_bar_prev*beta_t^2/(1 - alpha_bar_t)"),
        mistakes=(
            Mistake("upper_bound_choice", "beta_t",
                    "beta_t is the other variance choice in [DDPM] Section 3.2 (an upper bound); the true "
                    "posterior variance is smaller by the factor (1 - alpha_bar_prev)/(1 - alpha_bar_t)."),
            Mistake("precision_not_variance", "alpha_t/beta_t + 1/(1 - alpha_bar_prev)",
                    "That is the precision 1/beta_tilde_t from completing the square; invert it."),
        ),
        source="[DDPM] Eq. 7",
    ),
    Question(
        id="posterior_mean_eps",
        title="Posterior mean, eps form",
        prompt=(r"Substitute $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ into "
                r"$\tilde\mu_t$ and give it in terms of `x_t` and `eps`."),
        reference="1/sqrt(alpha_t)*(x_t - beta_t/sqrt(1 - alpha_bar_t)*eps)",
        free=(*_SCHED_FREE, "x_t", "eps"),
        definitions=_SCHED_DEFS,
        equivalents=("x_t/sqrt(alpha_t) - beta_t/(sqrt(alpha_t)*sqrt(1 - alpha_bar_t))*eps",
                     "(x_t - (1 - alpha_t)/sqrt(1 - alpha_bar_prev*alpha_t)*eps)/sqrt(alpha_t)",
                     "alpha_t^(-1/2)*x_t - beta_t*eps/sqrt(alpha_t*(1 - alpha_bar_t))"),
        mistakes=(
            Mistake("x0_hat_not_mean", "(x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_bar_t)",
                    "That is the predicted clean sample x0_hat, not the posterior mean of x_{t-1}."),
        ),
        linear_in=("x_t", "eps"),
        source="[DDPM] Eq. 10-11",
    ),
    Question(
        id="x0_from_eps",
        title="x_0 from x_t and eps",
        prompt=r"Solve $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$ for `x_0`.",
        reference="(x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_bar_t)",
        free=(*_SCHED_FREE, "x_t", "eps"),
        definitions=_SCHED_DEFS,
        equivalents=("x_t/sqrt(alpha_bar_t) - sqrt(1/alpha_bar_t - 1)*eps",
                     "(x_t - sqrt(1 - alpha_bar_prev*alpha_t)*eps)*(alpha_bar_prev*alpha_t)^(-1/2)",
                     "sqrt(1/alpha_bar_t)*x_t - sqrt((1 - alpha_bar_t)/alpha_bar_t)*eps"),
        mistakes=(
            Mistake("divide_only_x_t", "x_t/sqrt(alpha_bar_t) - sqrt(1 - alpha_bar_t)*eps",
                    "Divide the whole of x_t - sqrt(1 - alpha_bar_t)*eps by sqrt(alpha_bar_t), not only x_t."),
        ),
        linear_in=("x_t", "eps"),
        source="[DDPM] Eq. 4 solved for x_0 (used in Eq. 15)",
    ),
    Question(
        id="kl_1d",
        title="KL divergence between two 1-D Gaussians",
        prompt=(r"Give $\mathrm{KL}\big(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2)\big)$ in nats "
                r"using `mu1`, `mu2`, `sigma1`, `sigma2` (standard deviations)."),
        reference="log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
        free=("mu1", "mu2", "sigma1", "sigma2"),
        equivalents=("log(sigma2) - log(sigma1) + sigma1^2/(2*sigma2^2) + (mu2 - mu1)^2/(2*sigma2^2) - 1/2",
                     "(log(sigma2^2/sigma1^2) + (sigma1^2 + (mu1 - mu2)^2)/sigma2^2 - 1)/2",
                     "-log(sigma1/sigma2) + ((mu1 - mu2)^2 + sigma1^2 - sigma2^2)/(2*sigma2^2)"),
        mistakes=(
            Mistake("log_variance_ratio", "log(sigma2^2/sigma1^2) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
                    "log(sigma2/sigma1) = (1/2) log(sigma2^2/sigma1^2): the log of the variance ratio needs "
                    "a factor 1/2."),
            Mistake("std_for_variance", "log(sigma2/sigma1) + (sigma1 + (mu1 - mu2)^2)/(2*sigma2) - 1/2",
                    "sigma1 and sigma2 are standard deviations: the quadratic term uses variances sigma^2."),
        ),
        swaps=(_KL_SWAP,),
        source="standard result; used in [DDPM] Eq. 5",
    ),
    Question(
        id="kl_isotropic",
        title="KL divergence between two isotropic d-dimensional Gaussians",
        prompt=(r"Give $\mathrm{KL}\big(\mathcal N(\mu_1,\sigma_1^2 I_d)\,\|\,\mathcal N(\mu_2,\sigma_2^2 I_d)\big)$ "
                r"using `d`, `sigma1`, `sigma2` and `delta2` $=\lVert\mu_1-\mu_2\rVert^2$."),
        reference="d*log(sigma2/sigma1) + (d*sigma1^2 + delta2)/(2*sigma2^2) - d/2",
        free=("d", "sigma1", "sigma2", "delta2"),
        equivalents=("d/2*log(sigma2^2/sigma1^2) + d*sigma1^2/(2*sigma2^2) + delta2/(2*sigma2^2) - d/2",
                     "(d*(log(sigma2^2) - log(sigma1^2)) + (d*sigma1^2 + delta2)/sigma2^2 - d)/2",
                     "d*(log(sigma2/sigma1) + sigma1^2/(2*sigma2^2) - 1/2) + delta2/(2*sigma2^2)"),
        mistakes=(
            Mistake("trace_not_scaled", "d*log(sigma2/sigma1) + (sigma1^2 + delta2)/(2*sigma2^2) - d/2",
                    "The trace of sigma1^2 I_d is d*sigma1^2."),
            Mistake("distance_times_d", "d*(log(sigma2/sigma1) + (sigma1^2 + delta2)/(2*sigma2^2) - 1/2)",
                    "delta2 = ||mu1 - mu2||^2 already sums over the d coordinates: do not multiply it by d."),
            Mistake("log_det_not_scaled", "log(sigma2/sigma1) + (d*sigma1^2 + delta2)/(2*sigma2^2) - d/2",
                    "log det(sigma^2 I_d) = d log sigma^2: the log term scales with d."),
        ),
        swaps=(("swapped_kl_args", _KL_SWAP[1], (("sigma1", "sigma2"),)),),
        source="standard result; used in [DDPM] Eq. 5",
    ),
    Question(
        id="lt_weight",
        title="The weight turning eps-MSE into L_{t-1}",
        prompt=(r"With $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2)$ and $\mu_\theta$ in eps form, "
                r"$L_{t-1} - C = \lambda_t\,\mathbb E\lVert\epsilon - \epsilon_\theta\rVert^2$. Give $\lambda_t$."),
        reference="beta_t^2/(2*sigma_t^2*alpha_t*(1 - alpha_bar_t))",
        free=(*_SCHED_FREE, "sigma_t"),
        definitions=_SCHED_DEFS,
        equivalents=("(1 - alpha_t)^2/(2*sigma_t^2*alpha_t*(1 - alpha_bar_prev*alpha_t))",
                     "(beta_t/(sigma_t*sqrt(alpha_t*(1 - alpha_bar_t))))^2/2",
                     "1/(2*sigma_t^2)*(beta_t/(sqrt(alpha_t)*sqrt(1 - alpha_bar_t)))^2"),
        mistakes=(
            Mistake("mean_weight_only", "1/(2*sigma_t^2)",
                    "1/(2 sigma_t^2) weighs ||mu_tilde - mu_theta||^2; writing both means in eps form adds the "
                    "square of the eps coefficient beta_t/(sqrt(alpha_t) sqrt(1 - alpha_bar_t))."),
            Mistake("assumed_sigma_sq_beta", "beta_t/(2*alpha_t*(1 - alpha_bar_t))",
                    "Keep sigma_t general: this answer substitutes sigma_t^2 = beta_t."),
        ),
        source="[DDPM] Eq. 12",
    ),
    Question(
        id="score_from_eps",
        title="The score from the noise",
        prompt=(r"For $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$, give "
                r"$\nabla_{x_t}\log q(x_t\mid x_0)$ in terms of `eps`."),
        reference="-eps/sqrt(1 - alpha_bar_t)",
        free=(*_SCHED_FREE, "eps"),
        definitions=_SCHED_DEFS,
        equivalents=("-eps*(1 - alpha_bar_t)^(-1/2)", "-(1 - alpha_bar_prev*alpha_t)^(-1/2)*eps",
                     "eps/(-sqrt(1 - alpha_bar_t))", "-eps*sqrt(1 - alpha_bar_t)/(1 - alpha_bar_t)"),
        mistakes=(
            Mistake("signal_scale", "-eps/sqrt(alpha_bar_t)",
                    "The noise in x_t has standard deviation sqrt(1 - alpha_bar_t), not sqrt(alpha_bar_t)."),
        ),
        linear_in=("eps",),
        source="[DSM]; [SDE]",
    ),
    Question(
        id="tweedie",
        title="Tweedie's formula",
        prompt=(r"Given the score $\nabla_{x_t}\log q(x_t)$ (type `score`), give $\mathbb E[x_0\mid x_t]$ for "
                r"$x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$."),
        reference="(x_t + (1 - alpha_bar_t)*score)/sqrt(alpha_bar_t)",
        free=(*_SCHED_FREE, "x_t", "score"),
        definitions=_SCHED_DEFS,
        equivalents=("x_t/sqrt(alpha_bar_t) + (1 - alpha_bar_t)/sqrt(alpha_bar_t)*score",
                     "(x_t + (1 - alpha_bar_prev*alpha_t)*score)*alpha_bar_t^(-1/2)",
                     "sqrt(alpha_bar_t)*(x_t + (1 - alpha_bar_t)*score)/alpha_bar_t"),
        mistakes=(
            Mistake("scaled_signal_mean", "x_t + (1 - alpha_bar_t)*score",
                    "That is E[sqrt(alpha_bar_t) x_0 | x_t]; divide by sqrt(alpha_bar_t) to get E[x_0 | x_t]."),
            Mistake("std_not_variance", "(x_t + sqrt(1 - alpha_bar_t)*score)/sqrt(alpha_bar_t)",
                    "Tweedie's formula multiplies the score by the noise variance 1 - alpha_bar_t."),
        ),
        linear_in=("x_t", "score"),
        source="[TW]; [SDE]",
    ),
    Question(
        id="dsm_target",
        title="Denoising score matching target",
        prompt=(r"Give the regression target of denoising score matching, $\nabla_{x_t}\log q(x_t\mid x_0)$, "
                r"in terms of `x_t` and `x_0`."),
        reference="-(x_t - sqrt(alpha_bar_t)*x_0)/(1 - alpha_bar_t)",
        free=(*_SCHED_FREE, "x_t", "x_0"),
        definitions=_SCHED_DEFS,
        equivalents=("(sqrt(alpha_bar_t)*x_0 - x_t)/(1 - alpha_bar_t)",
                     "sqrt(alpha_bar_t)*x_0/(1 - alpha_bar_t) - x_t/(1 - alpha_bar_t)",
                     "(sqrt(alpha_bar_prev*alpha_t)*x_0 - x_t)/(1 - alpha_bar_prev*alpha_t)"),
        mistakes=(
            Mistake("minus_eps", "-(x_t - sqrt(alpha_bar_t)*x_0)/sqrt(1 - alpha_bar_t)",
                    "That is -eps. The score divides x_t - sqrt(alpha_bar_t) x_0 by the variance 1 - alpha_bar_t, "
                    "not by the standard deviation."),
        ),
        linear_in=("x_t", "x_0"),
        source="[DSM]; [NCSN]",
    ),
    Question(
        id="ddim_sigma",
        title="DDIM's sigma_t(eta)",
        prompt=(r"Give $\sigma_t(\eta)$ of [DDIM] Eq. 16 in terms of `eta`, `alpha_bar_t`, `alpha_bar_prev`. "
                r"Notation: DDPM's, $\bar\alpha_t$ = `alpha_bar_t`; [DDIM] itself writes $\alpha_t$ for "
                r"$\bar\alpha_t$ (an answer written entirely in DDIM's convention, `alpha_t` and `alpha_tm1`, is "
                r"read that way)."),
        reference=_DDIM_SIGMA,
        free=("eta", *_SCHED_FREE),
        definitions=_SCHED_DEFS_TILDE,
        equivalents=("eta*sqrt(beta_tilde_t)", "eta*sqrt((1 - alpha_bar_prev)*(1 - alpha_t)/(1 - alpha_bar_t))",
                     "eta*sqrt((1 - alpha_bar_prev)/(1 - alpha_bar_t)*(1 - alpha_bar_t/alpha_bar_prev))",
                     "eta*sqrt(beta_t*(1 - alpha_bar_prev)/(1 - alpha_bar_t))"),
        mistakes=(
            Mistake("variance_not_std", "eta*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*(1 - alpha_bar_t/alpha_bar_prev)",
                    "[DDIM] Eq. 16 gives sigma_t, a standard deviation: keep the square roots."),
            Mistake("eta_squared", "eta^2*" + _DDIM_SIGMA[4:],
                    "eta scales the standard deviation linearly (sigma_t = eta * sqrt(beta_tilde_t))."),
        ),
        source="[DDIM] Eq. 16",
        ddim=True,
        asked=("sigma_t",),
    ),
    Question(
        id="ddim_update",
        title="The DDIM update x_{t-1}",
        prompt=(r"Give $x_{t-1}$ of [DDIM] Eq. 12 in terms of `x_t`, the predicted noise `eps`, fresh noise `z`, "
                r"`sigma_t`, `alpha_bar_t` and `alpha_bar_prev`. Notation: DDPM's, $\bar\alpha_t$ = `alpha_bar_t`; "
                r"[DDIM] itself writes $\alpha_t$ for $\bar\alpha_t$ (an answer written entirely in DDIM's "
                r"convention, `alpha_t` and `alpha_tm1`, is read that way)."),
        reference=("sqrt(alpha_bar_prev)*(x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_bar_t) "
                   "+ sqrt(1 - alpha_bar_prev - sigma_t^2)*eps + sigma_t*z"),
        free=("eta", *_SCHED_FREE, "x_t", "eps", "z"),
        definitions={**_SCHED_DEFS, "sigma_t": _DDIM_SIGMA},
        equivalents=(
            "sqrt(alpha_bar_prev/alpha_bar_t)*x_t "
            "+ (sqrt(1 - alpha_bar_prev - sigma_t^2) - sqrt(alpha_bar_prev*(1 - alpha_bar_t)/alpha_bar_t))*eps "
            "+ sigma_t*z",
            "x_t/sqrt(alpha_t) - sqrt(alpha_bar_prev)*sqrt(1 - alpha_bar_t)/sqrt(alpha_bar_t)*eps "
            "+ sqrt(1 - alpha_bar_prev - sigma_t^2)*eps + sigma_t*z",
            "sigma_t*z + sqrt(alpha_bar_prev)*((x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_bar_t)) "
            "+ (1 - alpha_bar_prev - sigma_t^2)^(1/2)*eps",
        ),
        mistakes=(
            Mistake("direction_ignores_sigma",
                    "sqrt(alpha_bar_prev)*(x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_bar_t) "
                    "+ sqrt(1 - alpha_bar_prev)*eps + sigma_t*z",
                    "The direction pointing to x_t has variance 1 - alpha_bar_prev - sigma_t^2, so that together "
                    "with the fresh noise the total is 1 - alpha_bar_prev ([DDIM] Eq. 12)."),
        ),
        linear_in=("x_t", "eps", "z"),
        source="[DDIM] Eq. 12",
        ddim=True,
    ),
    Question(
        id="cfg_w",
        title="Classifier-free guidance, [CFG] convention",
        prompt=r"Give the guided noise prediction with guidance weight `w` ([CFG] Eq. 6) from `eps_c` and `eps_u`.",
        reference="(1 + w)*eps_c - w*eps_u",
        free=("w", "eps_c", "eps_u"),
        equivalents=("eps_c + w*(eps_c - eps_u)", "eps_c*(1 + w) - eps_u*w", "eps_u + (1 + w)*(eps_c - eps_u)"),
        mistakes=(
            Mistake("guidance_convention", "eps_u + w*(eps_c - eps_u)",
                    "That is the diffusers convention, whose guidance_scale s equals 1 + w. With the [CFG] weight "
                    "w, w = 0 must give plain conditional sampling."),
            Mistake("interpolation", "(1 - w)*eps_c + w*eps_u",
                    "Guidance extrapolates: it moves past eps_c, away from eps_u."),
        ),
        linear_in=("eps_c", "eps_u"),
        swaps=(_CFG_SWAP,),
        substitutions=(("guidance_convention", "Mixed guidance conventions: [CFG] uses (1 + w) eps_c - w eps_u, "
                        "diffusers uses s = 1 + w.", (("w", "w - 1"),)),
                       ("guidance_convention", "Mixed guidance conventions: this uses w + 1 where the [CFG] weight w "
                        "belongs (diffusers' s = 1 + w is already the extrapolation factor of eps_c - eps_u).",
                        (("w", "w + 1"),))),
        source="[CFG] Eq. 6",
    ),
    Question(
        id="cfg_s",
        title="Classifier-free guidance, diffusers convention (s = 1 + w)",
        prompt=r"Give the guided noise prediction with the diffusers guidance scale `s` from `eps_c` and `eps_u`.",
        reference="eps_u + s*(eps_c - eps_u)",
        free=("s", "eps_c", "eps_u"),
        equivalents=("s*eps_c + (1 - s)*eps_u", "(1 - s)*eps_u + s*eps_c", "eps_c + (s - 1)*(eps_c - eps_u)"),
        mistakes=(
            Mistake("guidance_convention", "(1 + s)*eps_c - s*eps_u",
                    "That is the [CFG] formula with weight w; the diffusers scale is s = 1 + w, so s = 1 must "
                    "give plain conditional sampling."),
        ),
        linear_in=("eps_c", "eps_u"),
        swaps=(_CFG_SWAP,),
        substitutions=(("guidance_convention", "Mixed guidance conventions: diffusers' s equals 1 + w of [CFG].",
                        (("s", "s + 1"),)),
                       ("guidance_convention", "Mixed guidance conventions: s - 1 is the [CFG] weight w; with the "
                        "diffusers scale s the update is eps_u + s (eps_c - eps_u).", (("s", "s - 1"),))),
        source="diffusers guidance_scale; [CFG] Eq. 6 with s = 1 + w",
    ),
    Question(
        id="v_from_eps",
        title="The v-prediction target",
        prompt=(r"Give $v$ in terms of `x_0` and `eps` "
                r"(for $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$)."),
        reference="sqrt(alpha_bar_t)*eps - sqrt(1 - alpha_bar_t)*x_0",
        free=(*_SCHED_FREE, "x_0", "eps"),
        definitions=_SCHED_DEFS,
        equivalents=("-(sqrt(1 - alpha_bar_t)*x_0 - sqrt(alpha_bar_t)*eps)",
                     "alpha_bar_t^(1/2)*eps - (1 - alpha_bar_t)^(1/2)*x_0",
                     "sqrt(alpha_bar_prev*alpha_t)*eps - sqrt(1 - alpha_bar_prev*alpha_t)*x_0"),
        mistakes=(
            Mistake("swapped_coefficients", "sqrt(1 - alpha_bar_t)*eps - sqrt(alpha_bar_t)*x_0",
                    "The coefficients look swapped: v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."),
            Mistake("that_is_x_t", "sqrt(alpha_bar_t)*x_0 + sqrt(1 - alpha_bar_t)*eps",
                    "That is x_t itself; v is the orthogonal direction (the velocity of the rotation)."),
        ),
        linear_in=("x_0", "eps"),
        source="[V] Sec. 4",
    ),
    Question(
        id="x0_from_v",
        title="x_0 from x_t and v",
        prompt=r"Give $x_0$ in terms of `x_t` and `v`.",
        reference="sqrt(alpha_bar_t)*x_t - sqrt(1 - alpha_bar_t)*v",
        free=(*_SCHED_FREE, "x_t", "v"),
        definitions=_SCHED_DEFS,
        equivalents=("x_t*sqrt(alpha_bar_t) - v*sqrt(1 - alpha_bar_t)",
                     "sqrt(alpha_bar_prev*alpha_t)*x_t - sqrt(1 - alpha_bar_prev*alpha_t)*v",
                     "(alpha_bar_t*x_t - sqrt(alpha_bar_t*(1 - alpha_bar_t))*v)/sqrt(alpha_bar_t)"),
        mistakes=(
            Mistake("that_is_eps", "sqrt(1 - alpha_bar_t)*x_t + sqrt(alpha_bar_t)*v",
                    "That combination recovers eps, not x_0."),
            Mistake("treated_v_as_eps", "(x_t - sqrt(1 - alpha_bar_t)*v)/sqrt(alpha_bar_t)",
                    "v is not eps: (x_t, v) is a rotation of (x_0, eps), so x_0 = sqrt(alpha_bar_t) x_t "
                    "- sqrt(1 - alpha_bar_t) v."),
        ),
        linear_in=("x_t", "v"),
        source="[V] Sec. 4",
    ),
    Question(
        id="snr",
        title="Signal-to-noise ratio",
        prompt=r"Give $\mathrm{SNR}(t)$ of $q(x_t\mid x_0)$ in terms of the schedule.",
        reference="alpha_bar_t/(1 - alpha_bar_t)",
        free=_SCHED_FREE,
        definitions=_SCHED_DEFS,
        equivalents=("1/(1/alpha_bar_t - 1)", "alpha_bar_prev*alpha_t/(1 - alpha_bar_prev*alpha_t)",
                     "-alpha_bar_t/(alpha_bar_t - 1)", "exp(log(alpha_bar_t) - log(1 - alpha_bar_t))"),
        mistakes=(
            Mistake("amplitude_ratio", "sqrt(alpha_bar_t)/sqrt(1 - alpha_bar_t)",
                    "The SNR is a ratio of variances (powers), not of standard deviations."),
        ),
        source="[VDM]",
    ),
)

# -- derivation chains (checks.check_derivation): one quantity, rewritten step by step -------------------------------
QUESTIONS += (
    Question(
        id="forward_var_induction",
        title="Variance of the forward marginal, by induction",
        prompt=(r"Induction step: if $\mathrm{Var}(x_{t-1}\mid x_0) = 1-\bar\alpha_{t-1}$ and "
                r"$x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$, then "
                r"$\mathrm{Var}(x_t\mid x_0) = \alpha_t(1-\bar\alpha_{t-1}) + \beta_t$. Simplify it step by step "
                r"to a closed form, as a chain `alpha_t*(1 - alpha_bar_prev) + beta_t = ... = ...`."),
        reference="1 - alpha_bar_t",
        start="alpha_t*(1 - alpha_bar_prev) + beta_t",
        free=_SCHED_FREE,
        definitions=_SCHED_DEFS,
        equivalents=("alpha_t*(1 - alpha_bar_prev) + beta_t", "alpha_t - alpha_t*alpha_bar_prev + 1 - alpha_t",
                     "1 - alpha_t*alpha_bar_prev"),
        mistakes=(
            Mistake("noise_not_rescaled", "1 - alpha_bar_prev + beta_t",
                    "Scaling x_{t-1} by sqrt(alpha_t) multiplies its variance 1 - alpha_bar_prev by alpha_t."),
            Mistake("std_scale_on_variance", "sqrt(alpha_t)*(1 - alpha_bar_prev) + beta_t",
                    "Scaling a variable by sqrt(alpha_t) multiplies its variance by alpha_t, not sqrt(alpha_t)."),
        ),
        min_steps=2,
        asked=("Var", "var", "variance"),
        source="[DDPM] Eq. 2 and 4 (induction on t)",
    ),
    Question(
        id="posterior_var_square",
        title="Posterior variance by completing the square",
        prompt=(r"Completing the square in $q(x_{t-1}\mid x_t, x_0) \propto q(x_t\mid x_{t-1})\,q(x_{t-1}\mid x_0)$ "
                r"gives the precision $\alpha_t/\beta_t + 1/(1-\bar\alpha_{t-1})$. Invert it and simplify step by "
                r"step to $\tilde\beta_t$: a chain `1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev)) = ... = ...` ending "
                r"in closed form (or in `beta_tilde_t`)."),
        reference="(1 - alpha_bar_prev)/(1 - alpha_bar_t)*beta_t",
        start="1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev))",
        free=_SCHED_FREE,
        definitions=_SCHED_DEFS_TILDE,
        equivalents=("1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev))",
                     "beta_t*(1 - alpha_bar_prev)/(alpha_t*(1 - alpha_bar_prev) + beta_t)",
                     "beta_t*(1 - alpha_bar_prev)/(1 - alpha_bar_t)"),
        mistakes=(
            Mistake("precision_not_variance", "alpha_t/beta_t + 1/(1 - alpha_bar_prev)",
                    "That is the precision 1/beta_tilde_t; invert it."),
            Mistake("upper_bound_choice", "beta_t",
                    "beta_t is the other variance choice in [DDPM] Section 3.2; the posterior variance is smaller "
                    "by the factor (1 - alpha_bar_prev)/(1 - alpha_bar_t)."),
        ),
        min_steps=3,
        asked=("beta_tilde", "beta_tilde_t", "var", "Var", "sigma2", "variance"),
        source="[DDPM] Eq. 6-7",
    ),
    Question(
        id="kl_1d_chain",
        title="KL between two 1-D Gaussians, from the expectations",
        prompt=(r"With $q = \mathcal N(\mu_1,\sigma_1^2)$ and $p = \mathcal N(\mu_2,\sigma_2^2)$: "
                r"$\mathbb E_q[\log q] = -\tfrac12\log(2\pi\sigma_1^2) - \tfrac12$ and "
                r"$\mathbb E_q[-\log p] = \tfrac12\log(2\pi\sigma_2^2) "
                r"+ (\sigma_1^2 + (\mu_1-\mu_2)^2)/(2\sigma_2^2)$. "
                r"Add them and simplify step by step: a chain starting "
                r"`-log(2*pi*sigma1^2)/2 - 1/2 + log(2*pi*sigma2^2)/2 "
                r"+ (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) = ...`."),
        reference="log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
        start="-log(2*pi*sigma1^2)/2 - 1/2 + log(2*pi*sigma2^2)/2 + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2)",
        free=("mu1", "mu2", "sigma1", "sigma2"),
        equivalents=("-log(2*pi*sigma1^2)/2 - 1/2 + log(2*pi*sigma2^2)/2 + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2)",
                     "log(sigma2^2/sigma1^2)/2 + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
                     "log(sigma2) - log(sigma1) + (sigma1^2 + (mu1 - mu2)^2 - sigma2^2)/(2*sigma2^2)"),
        mistakes=(
            Mistake("log_variance_ratio", "log(sigma2^2/sigma1^2) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
                    "log(sigma2/sigma1) = (1/2) log(sigma2^2/sigma1^2): the log of the variance ratio needs "
                    "a factor 1/2."),
            Mistake("dropped_entropy_half", "log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2)",
                    "E_q[log q] = -log(2 pi sigma1^2)/2 - 1/2: the constant -1/2 is part of it."),
        ),
        swaps=(_KL_SWAP,),
        min_steps=2,
        asked=("KL", "kl", "D_KL", "DKL"),
        source="standard result; used in [DDPM] Eq. 5",
    ),
)

# -- continuous time (lesson 09) --------------------------------------------------------------------------------------
_CT_BETA = {"beta_t": (0.1, 20.0)}
QUESTIONS += (
    Question(
        id="vp_sde_drift",
        title="The VP-SDE: drift",
        prompt=(r"The DDPM chain is the discretisation of the VP-SDE $dx = f(x, t)\,dt + g(t)\,dw$ ([SDE] Eq. 11). "
                r"Give the drift $f(x, t)$ in terms of `x_t` ($x(t)$) and `beta_t` ($\beta(t)$)."),
        reference="-beta_t*x_t/2",
        free=("beta_t", "x_t"),
        domains=_CT_BETA,
        equivalents=("-(1/2)*beta_t*x_t", "-0.5*beta_t*x_t", "-x_t*beta_t/2"),
        mistakes=(
            Mistake("no_half", "-beta_t*x_t",
                    "The drift is -beta(t) x / 2: one step scales x by sqrt(1 - beta_t) ~ 1 - beta_t/2."),
            Mistake("drift_is_diffusion", "sqrt(beta_t)*x_t",
                    "sqrt(beta(t)) is the diffusion coefficient g(t), which multiplies dw; the drift multiplies dt."),
        ),
        linear_in=("x_t",),
        asked=("f", "drift"),
        source="[SDE] Eq. 11",
    ),
    Question(
        id="vp_sde_diffusion",
        title="The VP-SDE: diffusion coefficient",
        prompt=(r"Give the diffusion coefficient $g(t)$ of the VP-SDE $dx = -\tfrac12\beta(t)x\,dt + g(t)\,dw$ "
                r"([SDE] Eq. 11) in terms of `beta_t` ($\beta(t)$)."),
        reference="sqrt(beta_t)",
        free=("beta_t",),
        domains=_CT_BETA,
        equivalents=("beta_t^(1/2)", "beta_t/sqrt(beta_t)", "exp(log(beta_t)/2)"),
        mistakes=(
            Mistake("variance_not_std", "beta_t",
                    "g(t) multiplies dw, so over dt the noise has variance g(t)^2 dt = beta(t) dt: g is the square "
                    "root."),
        ),
        asked=("g", "diffusion"),
        source="[SDE] Eq. 11",
    ),
    Question(
        id="pf_ode_drift_eps",
        title="The probability-flow ODE in terms of the noise prediction",
        prompt=(r"The probability-flow ODE of the VP-SDE is $dx/dt = f(x,t) - \tfrac12 g(t)^2\nabla_x\log p_t(x)$ "
                r"([SDE] Eq. 13). With the score written as $-\epsilon/\sqrt{1-\bar\alpha(t)}$, give $dx/dt$ in "
                r"terms of `x_t` ($x(t)$), `eps` ($\epsilon_\theta(x, t)$), `beta_t` ($\beta(t)$) and `alpha_bar_t` "
                r"($\bar\alpha(t)$)."),
        reference="-beta_t/2*(x_t - eps/sqrt(1 - alpha_bar_t))",
        free=("beta_t", "alpha_bar_t", "x_t", "eps"),
        domains=_CT_BETA,
        equivalents=("-beta_t*x_t/2 + beta_t*eps/(2*sqrt(1 - alpha_bar_t))",
                     "beta_t/2*(eps/sqrt(1 - alpha_bar_t) - x_t)",
                     "-beta_t*x_t/2 - beta_t/2*(-eps/sqrt(1 - alpha_bar_t))"),
        mistakes=(
            Mistake("reverse_sde_drift", "-beta_t*x_t/2 + beta_t*eps/sqrt(1 - alpha_bar_t)",
                    "That is the drift of the reverse-time SDE, f - g^2 * score ([SDE] Eq. 6); the ODE with the "
                    "same marginals has half the score term, f - g^2/2 * score ([SDE] Eq. 13)."),
            Mistake("score_sign", "-beta_t/2*(x_t + eps/sqrt(1 - alpha_bar_t))",
                    "The score is -eps/sqrt(1 - alpha_bar), so -g^2/2 * score adds +beta*eps/(2 sqrt(1 - alpha_bar))."),
        ),
        linear_in=("x_t", "eps"),
        asked=("dx", "dxdt", "dx_dt", "drift", "f"),
        source="[SDE] Eq. 13 with the VP drift of Eq. 11",
    ),
    Question(
        id="snr_weight",
        title="The bound's weight in SNR form",
        prompt=(r"With $\sigma_t^2 = \tilde\beta_t$, the weight of [DDPM] Eq. 12, "
                r"$L_{t-1} - C = \lambda_t\,\mathbb E\lVert\epsilon - \epsilon_\theta\rVert^2$, depends on the "
                r"schedule only through the SNR. Give $\lambda_t$ in terms of `snr_t` (SNR(t)) and `snr_prev` "
                r"(SNR(t-1)), where SNR(t) = $\bar\alpha_t/(1-\bar\alpha_t)$."),
        reference="(snr_prev/snr_t - 1)/2",
        free=_SCHED_FREE,
        definitions={**_SCHED_DEFS, "snr_t": "alpha_bar_t/(1 - alpha_bar_t)",
                     "snr_prev": "alpha_bar_prev/(1 - alpha_bar_prev)"},
        equivalents=("(snr_prev - snr_t)/(2*snr_t)", "beta_t/(2*alpha_t*(1 - alpha_bar_prev))",
                     "snr_prev/(2*snr_t) - 1/2"),
        mistakes=(
            Mistake("x0_weight", "(snr_prev - snr_t)/2",
                    "(SNR(t-1) - SNR(t))/2 weighs the x_0-MSE ([VDM]); "
                    "||x_0 - x0_hat||^2 = ||eps - eps_hat||^2/SNR(t), "
                    "so the eps-MSE weight is divided by SNR(t)."),
            Mistake("inverted_snr_ratio", "(snr_t/snr_prev - 1)/2",
                    "SNR falls with t, so SNR(t-1)/SNR(t) > 1 and the weight is positive: the ratio is upside down."),
        ),
        asked=("lambda_t", "lambda", "w_t", "weight"),
        source="[DDPM] Eq. 12 with sigma_t^2 = beta_tilde_t; [VDM] (the discrete-time loss in SNR form)",
    ),
    Question(
        id="zero_snr_rescale",
        title="Rescaling a schedule to zero terminal SNR",
        prompt=(r"[ZSNR] Algorithm 1 shifts $\sqrt{\bar\alpha_t}$ so that it is 0 at $t = T$ and scales it so "
                r"that $\sqrt{\bar\alpha_1}$ keeps its value. Give the new $\sqrt{\bar\alpha_t}$ in terms of the old "
                r"`alpha_bar_t`, `alpha_bar_1` and `alpha_bar_T`."),
        reference="(sqrt(alpha_bar_t) - sqrt(alpha_bar_T))*sqrt(alpha_bar_1)/(sqrt(alpha_bar_1) - sqrt(alpha_bar_T))",
        free=("alpha_bar_1", "alpha_bar_T", "alpha_bar_t"),
        equivalents=("sqrt(alpha_bar_1)*(sqrt(alpha_bar_t) - sqrt(alpha_bar_T))"
                     "/(sqrt(alpha_bar_1) - sqrt(alpha_bar_T))",
                     "(sqrt(alpha_bar_t) - sqrt(alpha_bar_T))/(1 - sqrt(alpha_bar_T/alpha_bar_1))",
                     "sqrt(alpha_bar_1)*(1 - (sqrt(alpha_bar_1) - sqrt(alpha_bar_t))/(sqrt(alpha_bar_1) "
                     "- sqrt(alpha_bar_T)))"),
        mistakes=(
            Mistake("shift_only", "sqrt(alpha_bar_t) - sqrt(alpha_bar_T)",
                    "Shifting alone also lowers sqrt(alpha_bar_1); Algorithm 1 then rescales by "
                    "sqrt(alpha_bar_1)/(sqrt(alpha_bar_1) - sqrt(alpha_bar_T)) to keep the first step."),
            Mistake("rescaled_alpha_bar", "(alpha_bar_t - alpha_bar_T)*alpha_bar_1/(alpha_bar_1 - alpha_bar_T)",
                    "Algorithm 1 shifts and scales sqrt(alpha_bar), not alpha_bar (this gives a different schedule)."),
        ),
        source="[ZSNR] Algorithm 1",
    ),
    Question(
        id="v_velocity",
        title="v as the velocity of the angle",
        prompt=(r"Write $x_\phi = \cos\phi\,x_0 + \sin\phi\,\epsilon$ (so $\cos\phi = \sqrt{\bar\alpha_t}$). "
                r"Give $v = dx_\phi/d\phi$ in terms of `phi`, `x_0` and `eps` (with `sin`, `cos`)."),
        reference="cos(phi)*eps - sin(phi)*x_0",
        free=("phi", "x_0", "eps"),
        equivalents=("-(sin(phi)*x_0 - cos(phi)*eps)", "eps*cos(phi) - x_0*sin(phi)",
                     "cos(phi)*(eps - sin(phi)/cos(phi)*x_0)"),
        mistakes=(
            Mistake("derivative_sign", "cos(phi)*eps + sin(phi)*x_0",
                    "d/dphi cos(phi) = -sin(phi): the x_0 term enters with a minus sign."),
            Mistake("that_is_x_phi", "cos(phi)*x_0 + sin(phi)*eps",
                    "That is x_phi itself; v is its derivative in phi (the orthogonal direction)."),
        ),
        linear_in=("x_0", "eps"),
        asked=("v", "dx", "velocity"),
        source="[V] Sec. 4 (v = alpha_t eps - sigma_t x with alpha_t = cos(phi), sigma_t = sin(phi))",
    ),
    Question(
        id="flow_velocity",
        title="The rectified-flow velocity",
        prompt=(r"On the straight path $x_t = (1-t)\,x_0 + t\,\epsilon$ from data ($t = 0$) to noise ($t = 1$), "
                r"give the velocity $dx_t/dt$ that flow matching regresses on, in terms of `x_0` and `eps`."),
        reference="eps - x_0",
        free=("x_0", "eps"),
        equivalents=("-(x_0 - eps)", "-x_0 + eps", "(2*eps - 2*x_0)/2"),
        mistakes=(
            Mistake("reversed_time", "x_0 - eps",
                    "That is the velocity when time runs from noise to data (Lipman et al.'s convention, t = 0 is "
                    "noise); on this path t = 0 is data, so d/dt moves towards eps."),
        ),
        linear_in=("x_0", "eps"),
        asked=("v", "u", "velocity", "dx", "dxdt"),
        source="[RF] Eq. 1 (X_0 = data, X_1 = noise)",
    ),
)

_BY_ID = {q.id: q for q in QUESTIONS}
assert len(_BY_ID) == len(QUESTIONS), "duplicate question id"


def by_id(question_id: str) -> Question:
    """The question with this id; ``KeyError`` when there is none."""
    return _BY_ID[question_id]
