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


def _s(name: str, lo: float, hi: float, kind: str, latex: str, description: str) -> SymbolSpec:
    return SymbolSpec(name, lo, hi, kind, latex, description)


# Default domains: schedule quantities strictly inside (0, 1) and away from the ends, data-like values of both signs.
VOCAB: dict[str, SymbolSpec] = {s.name: s for s in [
    _s("x_t", -3, 3, "real", r"x_t", "the noisy sample at step t"),
    _s("x_0", -3, 3, "real", r"x_0", "the clean sample"),
    _s("x_tm2", -3, 3, "real", r"x_{t-2}", "the sample two steps earlier"),
    _s("eps", -3, 3, "real", r"\epsilon", "standard normal noise (or the network's prediction of it)"),
    _s("z", -3, 3, "real", r"z", "fresh standard normal noise"),
    _s("v", -3, 3, "real", r"v", "the v-prediction target"),
    _s("score", -3, 3, "real", r"\nabla_{x_t}\log q(x_t)", "the score at x_t"),
    _s("eps_c", -3, 3, "real", r"\epsilon_c", "conditional noise prediction"),
    _s("eps_u", -3, 3, "real", r"\epsilon_u", "unconditional noise prediction"),
    _s("alpha_t", 0.2, 0.99, "positive", r"\alpha_t", "1 - beta_t"),
    _s("alpha_tm1", 0.2, 0.99, "positive", r"\alpha_{t-1}", "1 - beta_{t-1}"),
    _s("alpha_bar_t", 0.02, 0.98, "positive", r"\bar\alpha_t", "product of alpha_s for s = 1..t"),
    _s("alpha_bar_prev", 0.05, 0.98, "positive", r"\bar\alpha_{t-1}", "alpha_bar at the previous step"),
    _s("beta_t", 0.01, 0.8, "positive", r"\beta_t", "the forward noise variance at step t"),
    _s("beta_tm1", 0.01, 0.8, "positive", r"\beta_{t-1}", "the forward noise variance at step t-1"),
    _s("beta_tilde_t", 0.01, 0.8, "positive", r"\tilde\beta_t", "the posterior variance"),
    _s("sigma_t", 0.05, 1.0, "positive", r"\sigma_t", "standard deviation of the reverse step"),
    _s("eta", 0.05, 1.0, "positive", r"\eta", "DDIM stochasticity (0 deterministic, 1 ancestral)"),
    _s("w", 0.1, 8.0, "positive", r"w", "guidance weight of [CFG] (w = 0: plain conditional)"),
    _s("s", 1.1, 9.0, "positive", r"s", "diffusers guidance_scale (s = 1: plain conditional)"),
    _s("mu1", -3, 3, "real", r"\mu_1", "mean of the first Gaussian"),
    _s("mu2", -3, 3, "real", r"\mu_2", "mean of the second Gaussian"),
    _s("sigma1", 0.2, 3.0, "positive", r"\sigma_1", "standard deviation of the first Gaussian"),
    _s("sigma2", 0.2, 3.0, "positive", r"\sigma_2", "standard deviation of the second Gaussian"),
    _s("d", 1, 64, "integer", r"d", "the dimension"),
    _s("delta2", 0.01, 10.0, "positive", r"\lVert\mu_1-\mu_2\rVert^2", "squared distance between the means"),
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

    def _repr_markdown_(self) -> str:
        syms = ", ".join(f"`{n}` (${VOCAB[n].latex}$)" for n in self.names)
        return f"**{self.title}** (`{self.id}`, {self.source})\n\n{self.prompt}\n\nSymbols: {syms}"

    def __str__(self) -> str:
        return f"{self.id}: {self.title} [{self.source}] -- symbols: {', '.join(self.names)}"


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
        prompt=r"Give $\sigma_t(\eta)$ of [DDIM] Eq. 16 in terms of `eta`, `alpha_bar_t`, `alpha_bar_prev`.",
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
    ),
    Question(
        id="ddim_update",
        title="The DDIM update x_{t-1}",
        prompt=(r"Give $x_{t-1}$ of [DDIM] Eq. 12 in terms of `x_t`, the predicted noise `eps`, fresh noise `z`, "
                r"`sigma_t`, `alpha_bar_t` and `alpha_bar_prev`."),
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
                        "diffusers uses s = 1 + w.", (("w", "w - 1"),)),),
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
                        (("s", "s + 1"),)),),
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

_BY_ID = {q.id: q for q in QUESTIONS}
assert len(_BY_ID) == len(QUESTIONS), "duplicate question id"


def by_id(question_id: str) -> Question:
    """The question with this id; ``KeyError`` when there is none."""
    return _BY_ID[question_id]
