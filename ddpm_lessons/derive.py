"""Step-by-step SymPy derivations that the notebooks display, each checked against the package's closed forms.

Every function returns a :class:`Derivation`: numbered :class:`Step` s (prose + a SymPy expression, rendered as
Markdown with LaTeX in Jupyter), the final ``result`` expressions, and the list of ``checks`` it passed. Each ends by
asserting (i) symbolically that the derived result equals the paper's closed form and (ii) numerically, in float64
at a few points of real schedules, that it equals the package function that implements the formula
(``forward.q_sample``, ``forward.q_posterior``, ``losses.gaussian_kl``, ``losses.vlb_weight``,
``samplers.ddim_step``). An ``AssertionError`` means the derivation and the package disagree.

    forward_marginal()           two-step composition, then q(x_t|x_0) by induction        [DDPM] Eq. 2, 4
    posterior_completing_square() mu_tilde and beta_tilde by completing the square        [DDPM] Eq. 6-7
    gaussian_kl_1d()             KL of two 1-D Gaussians as an expectation                [DDPM] Eq. 5 (its terms)
    gaussian_kl_isotropic()      the same for N(mu, sigma^2 I_d)
    ddim_marginal()              DDIM's q_sigma keeps the marginals q(x_{t-1}|x_0)         [DDIM] Lemma 1, Eq. 7, 16
    posterior_mean_eps()         mu_tilde in eps form                                      [DDPM] Eq. 10-11
    lt_weight()                  the weight turning eps-MSE into L_{t-1}                   [DDPM] Eq. 8, 12

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [DDIM]  Song, Meng, Ermon 2020, arXiv:2010.02502
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sympy as sp
import torch
from sympy.printing.latex import LatexPrinter

__all__ = ["Step", "Derivation", "forward_marginal", "posterior_completing_square", "gaussian_kl_1d",
           "gaussian_kl_isotropic", "ddim_marginal", "posterior_mean_eps", "lt_weight", "DERIVATIONS",
           "all_derivations"]

NUM_RTOL = 1e-9  # float64 package vs exact SymPy value: agreement to ~1e-15 expected; 1e-9 leaves room for (1-ab)
SHOWN_RTOL = 1e-10  # errors below this are printed as "< 1e-10" (measured worst: 1e-12), so outputs are portable

# The symbols (positive where the domain is; SymPy then simplifies sqrt(a*b) = sqrt(a)*sqrt(b) correctly).
alpha_t, alpha_tm1, alpha_bar_prev = sp.symbols("alpha_t alpha_tm1 alpha_bar_prev", positive=True)
alpha_bar_t, beta_t, beta_tm1, sigma_t, eta = sp.symbols("alpha_bar_t beta_t beta_tm1 sigma_t eta", positive=True)
x_0, x_t, x_tm1, x_tm2, x = sp.symbols("x_0 x_t x_tm1 x_tm2 x", real=True)
eps, eps_theta, z, eps1, eps2 = sp.symbols("eps eps_theta z eps1 eps2", real=True)
mu1, mu2 = sp.symbols("mu1 mu2", real=True)
sigma1, sigma2, delta2 = sp.symbols("sigma1 sigma2 delta2", positive=True)
d = sp.Symbol("d", integer=True, positive=True)

# alpha_bar_t = alpha_bar_prev * alpha_t and beta_s = 1 - alpha_s, substituted before simplifying.
SCHEDULE = {alpha_bar_t: alpha_bar_prev * alpha_t, beta_t: 1 - alpha_t, beta_tm1: 1 - alpha_tm1}

_NAMES = {"alpha_bar_t": r"\bar\alpha_t", "alpha_bar_prev": r"\bar\alpha_{t-1}", "alpha_t": r"\alpha_t",
          "alpha_tm1": r"\alpha_{t-1}", "beta_t": r"\beta_t", "beta_tm1": r"\beta_{t-1}", "sigma_t": r"\sigma_t",
          "eta": r"\eta",
          "x_0": "x_0", "x_t": "x_t", "x_tm1": "x_{t-1}", "x_tm2": "x_{t-2}", "x": "x", "eps": r"\epsilon",
          "eps_theta": r"\epsilon_\theta", "eps1": r"\epsilon'", "eps2": r"\epsilon''", "z": "z",
          "mu1": r"\mu_1", "mu2": r"\mu_2", "sigma1": r"\sigma_1", "sigma2": r"\sigma_2",
          "delta2": r"\lVert\mu_1-\mu_2\rVert^2", "d": "d", "mu_tilde_t": r"\tilde\mu_t",
          "beta_tilde_t": r"\tilde\beta_t", "mu_theta": r"\mu_\theta", "lambda_t": r"\lambda_t", "KL": r"\mathrm{KL}",
          "A": "A", "B": "B"}


def latex(expr: sp.Basic) -> str:
    """LaTeX with the paper's symbols (alpha_bar_t -> \\bar\\alpha_t, ...)."""
    names = {s: _NAMES[s.name] for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name in _NAMES}
    return _PaperLatex({"symbol_names": names}).doprint(expr)


class _PaperLatex(LatexPrinter):
    """SymPy's LaTeX printer, with sums written as the papers write them: a positive constant first
    (``1 - \\bar\\alpha_t``, not ``- \\bar\\alpha_t + 1``), else a positive term first (``x_t - \\sqrt{...}\\epsilon``).
    Otherwise SymPy's order is kept."""

    def _as_ordered_terms(self, expr: sp.Basic, order: str | None = None) -> list[sp.Basic]:
        terms = list(super()._as_ordered_terms(expr, order=order))
        lead = next((t for t in terms if t.is_Number and t > 0), None)
        if lead is None and terms and terms[0].could_extract_minus_sign():
            lead = next((t for t in terms if not t.could_extract_minus_sign()), None)
        return terms if lead is None else [lead] + [t for t in terms if t is not lead]


@dataclass
class Step:
    """One step: ``text`` (Markdown, may contain ``$...$``), an optional SymPy ``expr`` and a citation ``ref``."""

    text: str
    expr: sp.Basic | None = None
    ref: str = ""

    def _repr_markdown_(self) -> str:
        ref = f" *({self.ref})*" if self.ref else ""
        math = f"\n$$\n{latex(self.expr)}\n$$" if self.expr is not None else ""
        return f"{self.text}{ref}{math}"

    def _repr_latex_(self) -> str | None:
        return f"$\\displaystyle {latex(self.expr)}$" if self.expr is not None else None

    def __str__(self) -> str:
        ref = f" ({self.ref})" if self.ref else ""
        return f"{self.text}{ref}" + (f"\n      {sp.sstr(self.expr)}" if self.expr is not None else "")


@dataclass
class Derivation:
    """A titled list of steps, the derived ``result`` expressions and the ``checks`` the derivation passed."""

    title: str
    steps: list[Step] = field(default_factory=list)
    result: dict[str, sp.Expr] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def step(self, text: str, expr: sp.Basic | None = None, ref: str = "") -> sp.Basic | None:
        self.steps.append(Step(text, expr, ref))
        return expr

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> Step:
        return self.steps[i]

    def _repr_markdown_(self) -> str:
        lines = [f"**{self.title}**", ""]
        for i, s in enumerate(self.steps, 1):
            body = s._repr_markdown_().replace("\n", "\n   ")
            lines.append(f"{i}. {body}")
        if self.checks:
            lines += ["", "Checked: " + "; ".join(self.checks) + "."]
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        rows = [latex(s.expr) for s in self.steps if s.expr is not None]
        return "$\\begin{aligned}" + r" \\ ".join(f"&{r}" for r in rows) + "\\end{aligned}$"

    def __str__(self) -> str:
        out = [self.title]
        out += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        out += [f"  checked: {c}" for c in self.checks]
        return "\n".join(out)


# -- helpers ---------------------------------------------------------------------------------------------------------
def _zero(expr: sp.Expr) -> bool:
    """True when ``expr`` simplifies to 0 (after substituting the schedule relations)."""
    e = sp.simplify(sp.sympify(expr).subs(SCHEDULE))
    return e == 0 or sp.simplify(sp.radsimp(sp.together(e))) == 0


def _assert_equal(der: Derivation, lhs: sp.Expr, rhs: sp.Expr, what: str) -> None:
    if not _zero(lhs - rhs):
        raise AssertionError(f"{der.title}: {what} does not simplify to the closed form: {lhs} vs {rhs}")
    der.checks.append(f"{what} (symbolic)")


def _num(expr: sp.Expr, values: dict[sp.Symbol, float]) -> float:
    """``expr`` at ``values`` (30 digits), as a float."""
    return float(expr.subs({k: sp.Float(v, 30) for k, v in values.items()}).evalf(30))


def _assert_close(der: Derivation, got: list[float], want: list[float], what: str) -> None:
    worst = max(abs(g - w) / max(abs(w), 1e-12) for g, w in zip(got, want, strict=True))
    if not worst <= NUM_RTOL:
        raise AssertionError(f"{der.title}: {what}: max rel. error {worst:.2e} > {NUM_RTOL:g}")
    # float64 round-off (1e-16 ... 1e-12) differs between CPUs and BLAS kernels: print a bound that cannot flip
    shown = f"< {SHOWN_RTOL:g}" if worst < SHOWN_RTOL else f"{worst:.0e}"
    der.checks.append(f"{what} at {len(got)} points (max rel. error {shown})")


def _sched_values(sched: object, t: int) -> dict[sp.Symbol, float]:
    return {alpha_t: float(sched.alpha[t]), alpha_bar_prev: float(sched.alpha_bar_prev[t]),
            alpha_bar_t: float(sched.alpha_bar[t]), beta_t: float(sched.beta[t])}


def _schedules() -> list:
    from . import schedules

    return [schedules.linear(T=1000), schedules.cosine(T=1000)]


_STEPS_T = (2, 10, 250, 999)


# -- (1) forward marginal -------------------------------------------------------------------------------------------
def forward_marginal() -> Derivation:
    """q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I): two steps composed, then induction on t."""
    der = Derivation(r"Forward marginal $q(x_t\mid x_0)$ by composing steps")
    der.step(r"Two steps of $q(x_s\mid x_{s-1}) = \mathcal N(\sqrt{\alpha_s}x_{s-1}, \beta_s)$ with independent "
             r"standard normal $\epsilon', \epsilon''$: first $x_{t-1}$ from $x_{t-2}$,",
             sp.Eq(x_tm1, sp.sqrt(alpha_tm1) * x_tm2 + sp.sqrt(beta_tm1) * eps1), "[DDPM] Eq. 2")
    two = sp.expand(sp.sqrt(alpha_t) * (sp.sqrt(alpha_tm1) * x_tm2 + sp.sqrt(beta_tm1) * eps1)
                    + sp.sqrt(beta_t) * eps2)
    der.step(r"then $x_t$ from $x_{t-1}$, substituted:", sp.Eq(x_t, two))
    mean2 = two.subs({eps1: 0, eps2: 0})
    var2_terms = sp.Add(two.coeff(eps1) ** 2, two.coeff(eps2) ** 2, evaluate=False)  # as read off: not expanded
    var2 = sp.expand(var2_terms.subs(SCHEDULE))
    der.step(r"A sum of independent zero-mean Gaussians is Gaussian and the variances add, so the mean is "
             r"$\sqrt{\alpha_t\alpha_{t-1}}\,x_{t-2}$ and the variance is the sum of the squared coefficients of "
             r"$\epsilon'$ and $\epsilon''$; with $\beta_s = 1 - \alpha_s$ the $\alpha_t$ terms cancel:",
             sp.Eq(var2_terms, var2, evaluate=False))
    if (sp.simplify(var2 - (1 - alpha_t * alpha_tm1)) != 0
            or sp.simplify(mean2 - sp.sqrt(alpha_t * alpha_tm1) * x_tm2) != 0):
        raise AssertionError("two-step composition failed")
    der.checks.append(r"two-step variance = 1 - alpha_t*alpha_tm1 (symbolic)")
    der.step(r"So two steps are one step of the same form, with $\alpha_t\alpha_{t-1}$ in place of $\alpha_t$. "
             r"Induction: assume $x_{t-1} = \sqrt{\bar\alpha_{t-1}}x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\epsilon'$ "
             r"(true at $t-1 = 0$ with $\bar\alpha_0 = 1$) and take one more step:",
             sp.Eq(x_t, sp.expand(sp.sqrt(alpha_t) * (sp.sqrt(alpha_bar_prev) * x_0
                                                      + sp.sqrt(1 - alpha_bar_prev) * eps1)
                                  + sp.sqrt(beta_t) * eps2)))
    xt = der.steps[-1].expr.rhs
    mean = xt.subs({eps1: 0, eps2: 0})
    der.step(r"Its mean, with $\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$:",
             sp.Eq(mean, sp.sqrt(alpha_bar_t) * x_0, evaluate=False), "[DDPM] Eq. 4")
    var_terms = sp.Add(xt.coeff(eps1) ** 2, xt.coeff(eps2) ** 2, evaluate=False)
    var = sp.expand(var_terms.subs(SCHEDULE))
    der.step(r"Its variance, the sum of the squared noise coefficients, with $\beta_t = 1 - \alpha_t$ and "
             r"$\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$:",
             sp.Eq(var_terms, 1 - alpha_bar_t, evaluate=False), "[DDPM] Eq. 4")
    _assert_equal(der, mean, sp.sqrt(alpha_bar_t) * x_0, "mean = sqrt(alpha_bar_t) x_0")
    _assert_equal(der, var, 1 - alpha_bar_t, "variance = 1 - alpha_bar_t")
    der.result = {"mean": sp.sqrt(alpha_bar_t) * x_0, "var": 1 - alpha_bar_t}

    from . import forward

    got, want = [], []
    gen = torch.Generator().manual_seed(0)
    for sched in _schedules():
        for t in _STEPS_T:
            x0v, nv = torch.randn(2, 1, dtype=torch.float64, generator=gen)
            xt_pkg = forward.q_sample(sched, x0v.reshape(1, 1), torch.tensor([t]), nv.reshape(1, 1))
            vals = {**_sched_values(sched, t), x_0: float(x0v)}
            got.append(float(xt_pkg))
            want.append(_num(der.result["mean"], vals) + _num(sp.sqrt(der.result["var"]), vals) * float(nv))
    _assert_close(der, got, want, "equals forward.q_sample (linear and cosine schedules)")
    return der


# -- (2) posterior by completing the square -------------------------------------------------------------------------
MU_TILDE = (sp.sqrt(alpha_bar_prev) * beta_t / (1 - alpha_bar_t) * x_0
            + sp.sqrt(alpha_t) * (1 - alpha_bar_prev) / (1 - alpha_bar_t) * x_t)  # [DDPM] Eq. 7
BETA_TILDE = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t  # [DDPM] Eq. 7


def posterior_completing_square() -> Derivation:
    """q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde): Bayes' rule, then complete the square in x_{t-1}."""
    der = Derivation(r"Posterior $q(x_{t-1}\mid x_t, x_0)$ by completing the square")
    logq = -sp.Rational(1, 2) * ((x_t - sp.sqrt(alpha_t) * x) ** 2 / beta_t
                                 + (x - sp.sqrt(alpha_bar_prev) * x_0) ** 2 / (1 - alpha_bar_prev))
    der.step(r"Bayes' rule with the Markov property $q(x_t\mid x_{t-1}, x_0) = q(x_t\mid x_{t-1})$: "
             r"$q(x_{t-1}\mid x_t,x_0) \propto q(x_t\mid x_{t-1})\,q(x_{t-1}\mid x_0)$, the one-step kernel times the "
             r"marginal. With $x = x_{t-1}$ its log-density is, up to a constant,", logq, "[DDPM] Eq. 2, 4")
    poly = sp.Poly(sp.expand(logq), x)
    precision = -2 * poly.coeff_monomial(x ** 2)
    b = poly.coeff_monomial(x)
    A = alpha_t / beta_t + 1 / (1 - alpha_bar_prev)  # the precisions add
    B = sp.sqrt(alpha_t) / beta_t * x_t + sp.sqrt(alpha_bar_prev) / (1 - alpha_bar_prev) * x_0
    _assert_equal(der, precision, A, "the x^2 coefficient read off the log-density is -A/2")
    _assert_equal(der, b, B, "the x coefficient is B")
    der.step(r"Collect powers of $x$: $-\tfrac12(A x^2 - 2Bx) + C$ with",
             sp.Tuple(sp.Eq(sp.Symbol("A"), A), sp.Eq(sp.Symbol("B"), B)))
    var = sp.factor(sp.simplify((1 / precision).subs(SCHEDULE)))
    mean = sp.simplify((b / precision).subs(SCHEDULE))
    der.step(r"A Gaussian $\mathcal N(\mu, s^2)$ has log-density $-\tfrac{1}{2s^2}(x^2 - 2\mu x) + C$, so "
             r"$\tilde\beta_t = 1/A$. Over the common denominator, $\alpha_t(1-\bar\alpha_{t-1}) + \beta_t = "
             r"1-\bar\alpha_t$ (SymPy's simplified $1/A$ is asserted equal to this form):",
             sp.Eq(sp.Symbol("beta_tilde_t"), BETA_TILDE), "[DDPM] Eq. 7")
    der.step(r"and $\tilde\mu_t = B/A = B\,\tilde\beta_t$ (asserted equal to SymPy's $B/A$):",
             sp.Eq(sp.Symbol("mu_tilde_t"), MU_TILDE), "[DDPM] Eq. 7")
    der.step(r"So the posterior is the Gaussian $q(x_{t-1}\mid x_t, x_0) = "
             r"\mathcal N(x_{t-1};\ \tilde\mu_t(x_t, x_0),\ \tilde\beta_t I)$.", None, "[DDPM] Eq. 6")
    _assert_equal(der, var, BETA_TILDE, "variance 1/A = beta_tilde ([DDPM] Eq. 7)")
    _assert_equal(der, mean, MU_TILDE, "mean B/A = mu_tilde ([DDPM] Eq. 7)")
    der.result = {"mean": MU_TILDE, "var": BETA_TILDE}

    from . import forward

    got, want = [], []
    gen = torch.Generator().manual_seed(1)
    for sched in _schedules():
        for t in _STEPS_T:
            x0v, xtv = torch.randn(2, 1, 1, dtype=torch.float64, generator=gen)
            m, v, _ = forward.q_posterior(sched, x0v, xtv, torch.tensor([t]))
            vals = {**_sched_values(sched, t), x_0: float(x0v), x_t: float(xtv)}
            got += [float(m), float(v)]
            want += [_num(mean.subs(SCHEDULE), vals), _num(var, vals)]
    _assert_close(der, got, want, "equals forward.q_posterior mean and variance")
    return der


# -- (3) Gaussian KL --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _std_normal_moments() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """E[1], E[z], E[z^2] of a standard normal z, by integration (once per session, ~0.3 s)."""
    zz = sp.Symbol("z", real=True)
    phi = sp.exp(-zz ** 2 / 2) / sp.sqrt(2 * sp.pi)
    return tuple(sp.integrate(zz ** k * phi, (zz, -sp.oo, sp.oo)) for k in range(3))


KL_1D = sp.log(sigma2 / sigma1) + (sigma1 ** 2 + (mu1 - mu2) ** 2) / (2 * sigma2 ** 2) - sp.Rational(1, 2)
KL_ISO = d * sp.log(sigma2 / sigma1) + (d * sigma1 ** 2 + delta2) / (2 * sigma2 ** 2) - d / 2


def _log_normal(xx: sp.Expr, mu: sp.Expr, sigma: sp.Expr) -> sp.Expr:
    return -sp.log(2 * sp.pi * sigma ** 2) / 2 - (xx - mu) ** 2 / (2 * sigma ** 2)


def _kl_1d_steps(der: Derivation) -> sp.Expr:
    integrand = sp.expand(_log_normal(x, mu1, sigma1) - _log_normal(x, mu2, sigma2))
    der.step(r"$\mathrm{KL}(p\|q) = \mathbb E_{x\sim p}[\log p(x) - \log q(x)]$ with "
             r"$p = \mathcal N(\mu_1,\sigma_1^2)$, $q = \mathcal N(\mu_2,\sigma_2^2)$. The integrand:", integrand)
    m0, m1, m2 = _std_normal_moments()
    der.step(r"Write $x = \mu_1 + \sigma_1 z$ with $z \sim \mathcal N(0,1)$, whose moments (by integration) are "
             r"$\mathbb E[1], \mathbb E[z], \mathbb E[z^2]$:", sp.Tuple(m0, m1, m2))
    poly = sp.Poly(sp.expand(integrand.subs(x, mu1 + sigma1 * z)), z)
    expectation = sum(poly.coeff_monomial(z ** k) * mk for k, mk in enumerate((m0, m1, m2)))
    kl = sp.simplify(sp.expand_log(expectation, force=True))
    der.step(r"Taking the expectation term by term:", sp.Eq(sp.Symbol("KL"), kl))
    return kl


def gaussian_kl_1d() -> Derivation:
    """KL(N(mu1, sigma1^2) || N(mu2, sigma2^2)) as the expectation of the log-density ratio."""
    der = Derivation(r"KL divergence between two 1-D Gaussians")
    kl = _kl_1d_steps(der)
    der.step(r"Closed form:", sp.Eq(sp.Symbol("KL"), KL_1D))
    _assert_equal(der, kl, KL_1D, "KL = log(sigma2/sigma1) + (sigma1^2 + (mu1-mu2)^2)/(2 sigma2^2) - 1/2")
    der.result = {"kl": KL_1D}

    from . import losses

    gen = torch.Generator().manual_seed(2)
    m = torch.randn(2, 8, dtype=torch.float64, generator=gen)
    s = torch.rand(2, 8, dtype=torch.float64, generator=gen) * 2 + 0.2
    got = losses.gaussian_kl(m[0], 2 * s[0].log(), m[1], 2 * s[1].log()).tolist()
    want = [_num(KL_1D, {mu1: float(m[0, i]), mu2: float(m[1, i]), sigma1: float(s[0, i]), sigma2: float(s[1, i])})
            for i in range(8)]
    _assert_close(der, got, want, "equals losses.gaussian_kl")
    return der


def gaussian_kl_isotropic() -> Derivation:
    """KL(N(mu1, sigma1^2 I_d) || N(mu2, sigma2^2 I_d)): independent coordinates, so the 1-D KLs add up."""
    der = Derivation(r"KL divergence between two isotropic $d$-dimensional Gaussians")
    kl1 = _kl_1d_steps(der)
    i = sp.Symbol("i", integer=True, positive=True)
    m1, m2 = sp.IndexedBase("mu1"), sp.IndexedBase("mu2")
    per_coord = kl1.subs({mu1: m1[i], mu2: m2[i]})
    der.step(r"With covariance $\sigma^2 I_d$ the coordinates are independent, the log-densities add, and so do the "
             r"KLs of the coordinates:", sp.Sum(per_coord, (i, 1, d)))
    const = sp.simplify(sp.expand(per_coord).subs({m1[i]: 0, m2[i]: 0}))
    quad = sp.factor(sp.simplify(per_coord - const))
    der.step(r"The part without the means is the same in every coordinate ($d$ copies):",
             sp.Eq(sp.Symbol("KL"), d * const + sp.Sum(quad, (i, 1, d))))
    kl = d * const + quad.subs({m1[i]: sp.sqrt(delta2), m2[i]: 0})  # quad depends on (mu1_i - mu2_i)^2 only
    der.step(r"and $\sum_i(\mu_{1,i}-\mu_{2,i})^2 = \lVert\mu_1-\mu_2\rVert^2$:", sp.Eq(sp.Symbol("KL"), kl))
    _assert_equal(der, kl, KL_ISO, "KL = d log(sigma2/sigma1) + (d sigma1^2 + ||mu1-mu2||^2)/(2 sigma2^2) - d/2")
    der.result = {"kl": KL_ISO}

    from . import losses

    gen = torch.Generator().manual_seed(3)
    got, want = [], []
    for dim in (1, 3, 16):
        m = torch.randn(2, dim, dtype=torch.float64, generator=gen)
        s1v, s2v = (torch.rand(2, dtype=torch.float64, generator=gen) * 2 + 0.2).tolist()
        lv1 = torch.full((dim,), 2 * math.log(s1v), dtype=torch.float64)
        lv2 = torch.full((dim,), 2 * math.log(s2v), dtype=torch.float64)
        kl_pkg = losses.gaussian_kl(m[0], lv1, m[1], lv2).sum()
        got.append(float(kl_pkg))
        want.append(_num(KL_ISO, {d: dim, sigma1: s1v, sigma2: s2v, delta2: float(((m[0] - m[1]) ** 2).sum())}))
    _assert_close(der, got, want, "equals losses.gaussian_kl summed over d coordinates (d = 1, 3, 16)")
    return der


# -- (4) DDIM marginal consistency ----------------------------------------------------------------------------------
SIGMA_DDIM = eta * sp.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sp.sqrt(1 - alpha_bar_t / alpha_bar_prev)


def ddim_marginal() -> Derivation:
    """[DDIM] Lemma 1: q_sigma(x_{t-1} | x_t, x_0) of Eq. 7 leaves the marginal q(x_{t-1} | x_0) unchanged."""
    der = Derivation(r"DDIM: $q_\sigma(x_{t-1}\mid x_t,x_0)$ keeps the marginals $q(x_{t-1}\mid x_0)$")
    c = sp.sqrt(1 - alpha_bar_prev - sigma_t ** 2) / sp.sqrt(1 - alpha_bar_t)
    der.step(r"[DDIM] Eq. 7: $x_{t-1} = \sqrt{\bar\alpha_{t-1}}x_0 + c\,(x_t - \sqrt{\bar\alpha_t}x_0) + \sigma_t z$ "
             r"with", sp.Eq(sp.Symbol("c"), c), "[DDIM] Eq. 7")
    xprev = sp.sqrt(alpha_bar_prev) * x_0 + c * sp.sqrt(1 - alpha_bar_t) * eps + sigma_t * z
    der.step(r"Assume $q(x_t\mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}x_0, 1-\bar\alpha_t)$, i.e. "
             r"$x_t - \sqrt{\bar\alpha_t}x_0 = \sqrt{1-\bar\alpha_t}\,\epsilon$ ([DDIM] Lemma 1's induction step):",
             sp.Eq(x_tm1, xprev))
    mean = xprev.subs({eps: 0, z: 0})
    var = sp.simplify(xprev.coeff(eps) ** 2 + xprev.coeff(z) ** 2)
    der.step(r"Mean and variance ($\epsilon$, $z$ independent):", sp.Tuple(mean, var))
    _assert_equal(der, mean, sp.sqrt(alpha_bar_prev) * x_0, "marginal mean = sqrt(alpha_bar_prev) x_0")
    _assert_equal(der, var, 1 - alpha_bar_prev, "marginal variance = 1 - alpha_bar_prev, for every sigma_t")
    der.step(r"So $q_\sigma(x_{t-1}\mid x_0) = \mathcal N(\sqrt{\bar\alpha_{t-1}}x_0, 1-\bar\alpha_{t-1})$ for any "
             r"$\sigma_t$: the family shares DDPM's marginals. With $\sigma_t(\eta)$ of Eq. 16,",
             sp.Eq(sigma_t, SIGMA_DDIM), "[DDIM] Eq. 16")
    post_mean = sp.sqrt(alpha_bar_prev) * x_0 + c * (x_t - sp.sqrt(alpha_bar_t) * x_0)
    at_one = {sigma_t: SIGMA_DDIM.subs(eta, 1)}
    _assert_equal(der, (SIGMA_DDIM ** 2).subs(eta, 1), BETA_TILDE, "sigma_t(eta=1)^2 = beta_tilde")
    der.step(r"At $\eta = 1$, with $\bar\alpha_t/\bar\alpha_{t-1} = \alpha_t = 1 - \beta_t$, $\sigma_t^2$ is "
             r"$\tilde\beta_t$ of [DDPM] Eq. 7 (asserted), and the mean becomes $\tilde\mu_t$: DDIM with "
             r"$\eta = 1$ is DDPM's ancestral sampler.",
             sp.Eq(sigma_t ** 2, BETA_TILDE))
    # the mean contains sqrt(1 - abp - sigma^2); compare it numerically at 30 digits instead of by simplify
    pm1 = post_mean.subs(at_one)
    pts = [{alpha_t: a, alpha_bar_prev: b, x_0: u, x_t: v} for a, b, u, v in
           [(0.9, 0.5, 0.3, -1.2), (0.99, 0.95, -2.0, 0.7), (0.5, 0.1, 1.5, 1.1)]]
    errs = [abs(_num(pm1.subs(SCHEDULE), p) - _num(MU_TILDE.subs(SCHEDULE), p)) for p in pts]
    if max(errs) > 1e-25:
        raise AssertionError(f"DDIM mean at eta = 1 differs from mu_tilde: {errs}")
    der.checks.append("mean at eta = 1 equals mu_tilde (30 digits at 3 points)")
    der.result = {"mean": post_mean, "var": sigma_t ** 2, "sigma": SIGMA_DDIM}

    from . import forward, samplers

    got, want = [], []
    gen = torch.Generator().manual_seed(4)
    for sched in _schedules():
        for t in _STEPS_T:
            x0v, zv = torch.randn(2, 1, 1, dtype=torch.float64, generator=gen)
            epsv = torch.randn(1, 1, dtype=torch.float64, generator=gen)
            xtv = forward.q_sample(sched, x0v, torch.tensor([t]), epsv)
            for e in (0.0, 0.5, 1.0):  # ddim_step with eps_hat = the true eps (so x0_hat = x0)
                out = samplers.ddim_step(sched, xtv, t, t - 1, epsv, eta=e, noise=zv)
                vals = {**_sched_values(sched, t), eta: e, x_0: float(x0v), x_t: float(xtv)}
                sig = _num(SIGMA_DDIM, vals)
                got.append(float(out))
                want.append(_num(post_mean.subs(sigma_t, sig), vals) + sig * float(zv))
            m, v, _ = forward.q_posterior(sched, x0v, xtv, torch.tensor([t]))
            vals = {**_sched_values(sched, t), eta: 1.0, x_0: float(x0v), x_t: float(xtv)}
            got += [float(m), float(v)]
            want += [_num(pm1, vals), _num(SIGMA_DDIM ** 2, vals)]
    _assert_close(der, got, want, "equals samplers.ddim_step (eta = 0, 0.5, 1) and, at eta = 1, forward.q_posterior")
    return der


# -- (5) eps form of the posterior mean and the L_{t-1} weight -------------------------------------------------------
MU_EPS = 1 / sp.sqrt(alpha_t) * (x_t - beta_t / sp.sqrt(1 - alpha_bar_t) * eps)  # [DDPM] Eq. 11
LAMBDA_T = beta_t ** 2 / (2 * sigma_t ** 2 * alpha_t * (1 - alpha_bar_t))  # [DDPM] Eq. 12


def posterior_mean_eps() -> Derivation:
    """mu_tilde in terms of x_t and eps: substitute x_0 = (x_t - sqrt(1 - alpha_bar_t) eps)/sqrt(alpha_bar_t)."""
    der = Derivation(r"The posterior mean in $\epsilon$ form")
    x0_eps = (x_t - sp.sqrt(1 - alpha_bar_t) * eps) / sp.sqrt(alpha_bar_t)
    der.step(r"Solve $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$ for $x_0$:", sp.Eq(x_0, x0_eps),
             "[DDPM] Eq. 4")
    der.step(r"Substitute into $\tilde\mu_t$ of Eq. 7:", MU_TILDE.subs(x_0, x0_eps), "[DDPM] Eq. 10")
    mu = sp.simplify(MU_TILDE.subs(x_0, x0_eps).subs(SCHEDULE))
    c_x, c_eps = 1 / sp.sqrt(alpha_t), -beta_t / (sp.sqrt(alpha_t) * sp.sqrt(1 - alpha_bar_t))
    expanded = sp.expand(mu)
    _assert_equal(der, expanded.coeff(x_t), c_x, "coefficient of x_t = 1/sqrt(alpha_t)")
    _assert_equal(der, expanded.coeff(eps), c_eps, "coefficient of eps = -beta_t/(sqrt(alpha_t) sqrt(1-alpha_bar_t))")
    der.step(r"Collect $x_t$ and $\epsilon$; with $\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$ and "
             r"$\beta_t = 1-\alpha_t$ each coefficient simplifies to (asserted equal to SymPy's simplification)",
             c_x * x_t + c_eps * eps)
    der.step(r"which is", sp.Eq(sp.Symbol("mu_tilde_t"), MU_EPS), "[DDPM] Eq. 11")
    _assert_equal(der, mu, MU_EPS,
                  "mu_tilde(x_t, x_0(x_t, eps)) = (x_t - beta_t/sqrt(1-alpha_bar_t) eps)/sqrt(alpha_t)")
    der.result = {"mean": MU_EPS}

    from . import forward

    got, want = [], []
    gen = torch.Generator().manual_seed(5)
    for sched in _schedules():
        for t in _STEPS_T:
            xtv, epsv = torch.randn(2, 1, 1, dtype=torch.float64, generator=gen)
            x0v = forward.x0_from_eps(sched, xtv, torch.tensor([t]), epsv)
            m, _, _ = forward.q_posterior(sched, x0v, xtv, torch.tensor([t]))
            got.append(float(m))
            want.append(_num(MU_EPS, {**_sched_values(sched, t), x_t: float(xtv), eps: float(epsv)}))
    _assert_close(der, got, want, "equals forward.q_posterior(x0_from_eps(...))")
    return der


def lt_weight() -> Derivation:
    """L_{t-1} = lambda_t ||eps - eps_theta||^2 + C, lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))."""
    der = Derivation(r"The weight turning $\epsilon$-MSE into $L_{t-1}$")
    der.step(r"With $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)$ and $\sigma_t$ fixed, "
             r"$L_{t-1} = \mathbb E_q\big[\tfrac{1}{2\sigma_t^2}\lVert\tilde\mu_t - \mu_\theta\rVert^2\big] + C$",
             None, "[DDPM] Eq. 8")
    mu_theta = MU_EPS.subs(eps, eps_theta)
    der.step(r"Parameterise $\mu_\theta$ like $\tilde\mu_t$ in $\epsilon$ form, with $\epsilon_\theta$ in place of "
             r"$\epsilon$:", sp.Eq(sp.Symbol("mu_theta"), mu_theta), "[DDPM] Eq. 11")
    diff = sp.factor(sp.simplify(MU_EPS - mu_theta))
    der.step(r"The difference of the means is proportional to $\epsilon_\theta - \epsilon$:", diff)
    lam = sp.simplify(sp.factor(diff ** 2 / (2 * sigma_t ** 2)) / (eps - eps_theta) ** 2)
    _assert_equal(der, lam, LAMBDA_T, "lambda_t = beta_t^2/(2 sigma_t^2 alpha_t (1-alpha_bar_t))")
    der.step(r"so per dimension $\tfrac{1}{2\sigma_t^2}(\tilde\mu_t - \mu_\theta)^2 = \lambda_t(\epsilon - "
             r"\epsilon_\theta)^2$ with (asserted equal to SymPy's quotient)",
             sp.Eq(sp.Symbol("lambda_t"), LAMBDA_T), "[DDPM] Eq. 12")
    lam_tilde = beta_t / (2 * alpha_t * (1 - alpha_bar_prev))
    _assert_equal(der, LAMBDA_T.subs(sigma_t ** 2, BETA_TILDE), lam_tilde,
                  "with sigma_t^2 = beta_tilde: lambda_t = beta_t/(2 alpha_t (1-alpha_bar_prev))")
    der.step(r"With $\sigma_t^2 = \tilde\beta_t$ the factor $1-\bar\alpha_t$ cancels:",
             sp.Eq(sp.Symbol("lambda_t"), lam_tilde))
    der.result = {"weight": LAMBDA_T}

    from . import forward, losses

    got, want = [], []
    gen = torch.Generator().manual_seed(6)
    for sched in _schedules():
        for t in _STEPS_T:
            xtv, epsv, epsth = torch.randn(3, 1, 1, dtype=torch.float64, generator=gen)
            tt = torch.tensor([t])
            # KL between Gaussians with the same variance sigma_t^2 = beta_tilde_t is (mu1 - mu2)^2 / (2 sigma^2)
            x0v = forward.x0_from_eps(sched, xtv, tt, epsv)
            x0th = forward.x0_from_eps(sched, xtv, tt, epsth)
            m1, v1, _ = forward.q_posterior(sched, x0v, xtv, tt)
            m2, _, _ = forward.q_posterior(sched, x0th, xtv, tt)
            kl = losses.gaussian_kl(m1, v1.log(), m2, v1.log())
            vals = {**_sched_values(sched, t), sigma_t: float(v1) ** 0.5}
            lam_v = _num(LAMBDA_T, vals)
            got += [float(kl), float(losses.vlb_weight(sched, tt, var_type="beta_tilde"))]
            want += [lam_v * float(epsv - epsth) ** 2, lam_v]
    _assert_close(der, got, want, "equals losses.gaussian_kl of the two posteriors and losses.vlb_weight")
    return der


DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "forward_marginal": forward_marginal,
    "posterior_completing_square": posterior_completing_square,
    "gaussian_kl_1d": gaussian_kl_1d,
    "gaussian_kl_isotropic": gaussian_kl_isotropic,
    "ddim_marginal": ddim_marginal,
    "posterior_mean_eps": posterior_mean_eps,
    "lt_weight": lt_weight,
}


def all_derivations() -> list[Derivation]:
    """Run every derivation (each asserts its checks) and return them in course order."""
    return [fn() for fn in DERIVATIONS.values()]


# =====================================================================================================================
# Continuous time (notebook 09) and CFG's calibration in closed form (notebook 07). Appended by lesson 09; each
# function returns a Derivation like the ones above and asserts its checks.
#
#   vp_sde_limit()            the DDPM step as T -> oo: drift -1/2 beta x, diffusion sqrt(beta)        [SDE] Eq. 11
#   pf_ode_gaussian()         1-D Gaussian data: the PF-ODE flow and the reverse SDE keep q_t            [SDE] Eq. 6, 13
#   ddim_is_euler()           DDIM (eta = 0) = Euler in (x/sqrt(ab), sqrt((1-ab)/ab)) = DPM-Solver-1   [DDIM] Eq. 14
#   snr_bound_gaussian()      the continuous bound as an integral over SNR: only the endpoints matter  [VDM]
#   snr_weight()              the eps-MSE weight of L_{t-1} in SNR form                                 [VDM] Eq. 13
#   v_angular_velocity()      v = dx/dphi; flow matching's target                                      [V] §4, [RF]
#   cfg_gaussian_terminal()   guided PF-ODE and reverse SDE end at different Gaussians, neither tilted  [CFG]
#
# Extra references: [SDE] Song et al. 2021, arXiv:2011.13456; [VDM] Kingma et al. 2021, arXiv:2107.00630;
# [V] Salimans, Ho 2022, arXiv:2202.00512; [RF] Liu, Gong, Liu 2022, arXiv:2209.03003; [FM] Lipman et al. 2022,
# arXiv:2210.02747; [DPM] Lu et al. 2022, arXiv:2206.00927; [CFG] Ho, Salimans 2022, arXiv:2207.12598.
# =====================================================================================================================

tau, dlt, phi = sp.symbols("t Delta phi", positive=True)  # time, step 1/T, angle
ab_c = sp.Symbol("u", positive=True)  # ᾱ as the time variable of the CFG ODEs (u in (0, 1])
s_c, s_u = sp.symbols("s_c s_u", positive=True)
mu_c, mu_u, w_g = sp.symbols("mu_c mu_u w", real=True)
snr_v, snr_lo, snr_hi, s_data = sp.symbols("v SNR_min SNR_max s", positive=True)
_NAMES.update({"t": "t", "Delta": r"\Delta", "phi": r"\phi", "u": r"\bar\alpha", "s_c": "s_c", "s_u": "s_u",
               "mu_c": r"\mu_c", "mu_u": r"\mu_u", "w": "w", "v": "v", "SNR_min": r"\mathrm{SNR}_{\min}",
               "SNR_max": r"\mathrm{SNR}_{\max}", "s": "s"})
CONT_RTOL = 1e-6  # ODE integrated numerically (RK4, 4000 steps, float64) vs a closed form


def vp_sde_limit() -> Derivation:
    """The DDPM step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z with beta_t = beta(t/T)/T, as T -> oo."""
    der = Derivation(r"The DDPM chain as a discretised VP-SDE")
    b = sp.Symbol("beta", positive=True)
    der.step(r"Write $\beta_t = \beta(t/T)\,\Delta$ with $\Delta = 1/T$; one step is "
             r"$x_{t} = \sqrt{1-\beta(t)\Delta}\,x_{t-1} + \sqrt{\beta(t)\Delta}\,z$", None, "[SDE] §3.4")
    ser = sp.series(sp.sqrt(1 - b * dlt), dlt, 0, 2).removeO()
    der.step(r"Expand the drift coefficient in $\Delta$:", sp.Eq(sp.Symbol("sqrt(1 - beta*Delta)"), ser))
    drift = sp.simplify((ser - 1) * x / dlt)
    der.step(r"so $x_{t} - x_{t-1} = -\tfrac12\beta x\,\Delta + \sqrt{\beta}\,\sqrt\Delta z + O(\Delta^2)$: drift "
             r"$f(x,t)$ and diffusion $g(t)$ of $dx = f\,dt + g\,dw$ ($\sqrt\Delta z$ is the Brownian increment)",
             sp.Eq(sp.Symbol("f"), drift), "[SDE] Eq. 11")
    _assert_equal(der, drift, -b * x / 2, "VP drift -beta x/2")
    der.step(r"and $\bar\alpha_t = \prod_s(1-\beta_s)$: $\log\bar\alpha_t = \sum_s \log(1-\beta(s)\Delta) = "
             r"-\sum_s\beta(s)\Delta - \tfrac12\sum_s\beta(s)^2\Delta^2 - \dots \to -\int_0^t\beta$; the second "
             r"sum is $O(\Delta)$, the gap at finite $T$", sp.series(sp.log(1 - b * dlt), dlt, 0, 3).removeO())
    der.result = {"drift": drift, "diffusion": sp.sqrt(b)}

    from . import schedules
    from .solvers import VPSDE

    sde = VPSDE()
    gaps = []
    for T in (100, 1000, 10000):
        s = schedules.linear(T, sde.beta_min / T, sde.beta_max / T)
        gaps.append(float(s.alpha_bar[-1]) / float(sde.alpha_bar(1.0)) - 1)
    # the gap is -½Σβ_t² ≈ -(β_max² + β_max β_min + β_min²)/(6T) in log: it shrinks like 1/T
    want = [math.expm1(-(sde.beta_max ** 2 + sde.beta_max * sde.beta_min + sde.beta_min ** 2) / (6 * T))
            for T in (100, 1000, 10000)]
    if not all(abs(g - v) < 0.1 * abs(v) for g, v in zip(gaps, want, strict=True)):
        raise AssertionError(f"{der.title}: alpha_bar_T / exp(-int beta) - 1 = {gaps}, expected about {want}")
    der.checks.append("alpha_bar_T/exp(-int beta) - 1 at T = 100, 1000, 10000: "
                      + ", ".join(f"{g:.2g}" for g in gaps) + " (within 10% of -(sum beta_t^2)/2)")
    der.result["gap"] = gaps
    return der


def _gauss_marginal(ab: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Mean and variance of q_t for data N(mu1, s^2): (sqrt(ab) mu1, ab s^2 + 1 - ab) ([DDPM] Eq. 4)."""
    return sp.sqrt(ab) * mu1, ab * s_data ** 2 + 1 - ab


def pf_ode_gaussian() -> Derivation:
    """For x_0 ~ N(mu, s^2), q_t solves the Fokker-Planck equation of the VP-SDE, the continuity equation of the
    PF-ODE and the reverse SDE's; and the PF-ODE flow is x_t = m_t + sqrt(v_t) z with z fixed.

    Time is written as u = ᾱ(t): du/dt = -β(t) u, so every equation is divided by β(t) and holds for any schedule.
    """
    der = Derivation(r"Reverse SDE and probability-flow ODE share the marginals (1-D Gaussian)")
    u = ab_c
    m, v = _gauss_marginal(u)
    q = sp.exp(-(x - m) ** 2 / (2 * v)) / sp.sqrt(2 * sp.pi * v)
    score = sp.diff(sp.log(q), x)
    der.step(r"Data $\mathcal N(\mu_1, s^2)$: $q_t = \mathcal N(\sqrt{\bar\alpha}\mu_1,\ \bar\alpha s^2 + 1 - "
             r"\bar\alpha)$; write time as $\bar\alpha$, with $d\bar\alpha/dt = -\beta\bar\alpha$",
             sp.Eq(sp.Symbol("q_t"), q), "[DDPM] Eq. 4")

    def d_t(expr: sp.Expr) -> sp.Expr:  # ∂_t / β(t) = -u ∂_u
        return -u * sp.diff(expr, u)

    def zero(expr: sp.Expr) -> bool:  # a rational function of x, √u, μ, s: write u = r² and cancel
        r = sp.Symbol("r", positive=True)
        return sp.cancel(sp.together(expr.subs(u, r ** 2))) == 0

    # with ℓ = log q: ∂q/q = ∂ℓ, ∂_x(fq)/q = f' + fℓ', ∂²_x q/q = ℓ'' + ℓ'² (q > 0 divides out)
    ell = -(x - m) ** 2 / (2 * v) - sp.log(2 * sp.pi * v) / 2
    lx, lxx = sp.diff(ell, x), sp.diff(ell, x, 2)
    f, g2 = -x / 2, 1  # f/β and g²/β of [SDE] Eq. 11
    fp = d_t(ell) - (-(sp.diff(f, x) + f * lx) + sp.Rational(1, 2) * g2 * (lxx + lx ** 2))
    der.step(r"Forward Fokker-Planck $\partial_t q = -\partial_x(fq) + \tfrac12 g^2\partial_x^2 q$ with "
             r"$f = -\tfrac12\beta x$, $g^2 = \beta$ (divided by $\beta$)", None, "[SDE] Eq. 11")
    if not zero(fp):
        raise AssertionError(f"{der.title}: q_t does not solve the Fokker-Planck equation")
    der.checks.append("q_t solves the VP Fokker-Planck equation (symbolic)")
    vel = f - sp.Rational(1, 2) * g2 * score
    der.step(r"PF-ODE velocity $\tilde f = f - \tfrac12 g^2\nabla\log q_t$ (over $\beta$); its continuity "
             r"equation $\partial_t q = -\partial_x(\tilde f q)$ is the same equation",
             sp.Eq(sp.Symbol("f~/beta"), sp.simplify(vel)), "[SDE] Eq. 13")
    if not zero(d_t(ell) + sp.diff(vel, x) + vel * lx):
        raise AssertionError(f"{der.title}: q_t does not solve the PF-ODE's continuity equation")
    der.checks.append("q_t solves the PF-ODE continuity equation (symbolic)")
    rev = f - g2 * score  # reverse drift, run with dt < 0
    if not zero(-d_t(ell) - (sp.diff(rev, x) + rev * lx + sp.Rational(1, 2) * g2 * (lxx + lx ** 2))):
        raise AssertionError(f"{der.title}: q_t does not solve the reverse SDE's Fokker-Planck equation")
    der.step(r"The reverse SDE $dx = [f - g^2\nabla\log q_t]dt + g\,d\bar w$ (time running backwards) has "
             r"Fokker-Planck equation $-\partial_t q = \partial_x((f - g^2\nabla\log q)q) + \tfrac12 g^2"
             r"\partial_x^2 q$, again solved by $q_t$", None, "[SDE] Eq. 6 (Anderson 1982)")
    der.checks.append("q_t solves the reverse SDE's Fokker-Planck equation (symbolic)")
    flow = m + sp.sqrt(v) * z
    # dx/dt = β ṽel  <=>  dx/du = -vel/u
    if sp.simplify(sp.diff(flow, u) + vel.subs(x, flow) / u) != 0:
        raise AssertionError(f"{der.title}: x_t = m_t + sqrt(v_t) z does not solve the PF-ODE")
    der.step(r"The PF-ODE moves every quantile: $x_t = \sqrt{\bar\alpha}\mu_1 + \sqrt{\bar\alpha s^2 + "
             r"1-\bar\alpha}\,z$ with $z$ constant solves $dx/dt = \tilde f$", sp.Eq(x_t, flow))
    der.checks.append("x_t = m_t + sqrt(v_t) z solves the PF-ODE (symbolic)")
    der.result = {"marginal": q, "velocity": vel, "flow": flow}

    from .solvers import VPSDE, gaussian_ode_solution

    sde, mu_v, s_v = VPSDE(), 1.5, 0.5
    x_T = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    ab_T, got, want = float(sde.alpha_bar(1.0)), [], []
    for tt in (0.7, 0.2, 0.01):
        abv = float(sde.alpha_bar(tt))
        zz = (x_T - math.sqrt(ab_T) * mu_v) / math.sqrt(ab_T * s_v ** 2 + 1 - ab_T)
        got += gaussian_ode_solution(x_T, ab_T, abv, mu_v, s_v).flatten().tolist()
        want += [_num(flow, {ab_c: abv, mu1: mu_v, s_data: s_v, z: float(zv)}) for zv in zz.flatten()]
    _assert_close(der, got, want, "equals solvers.gaussian_ode_solution")
    return der


def ddim_is_euler() -> Derivation:
    """DDIM with eta = 0 is Euler's method for dy/dsigma = eps in y = x/sqrt(ab), sigma = sqrt((1-ab)/ab), and the
    first-order exponential integrator of the PF-ODE (DPM-Solver-1)."""
    der = Derivation(r"DDIM ($\eta = 0$) is Euler's method in $x/\sqrt{\bar\alpha}$ and "
                     r"$\sqrt{(1-\bar\alpha)/\bar\alpha}$")
    ab_s, ab_n = sp.symbols("alpha_bar_t alpha_bar_prev", positive=True)
    x0h = (x_t - sp.sqrt(1 - ab_s) * eps_theta) / sp.sqrt(ab_s)
    ddim = sp.sqrt(ab_n) * x0h + sp.sqrt(1 - ab_n) * eps_theta
    der.step(r"DDIM with $\sigma_t = 0$:", sp.Eq(x_tm1, ddim), "[DDIM] Eq. 12")
    sig_s, sig_n = sp.sqrt((1 - ab_s) / ab_s), sp.sqrt((1 - ab_n) / ab_n)
    euler = sp.sqrt(ab_n) * (x_t / sp.sqrt(ab_s) + (sig_n - sig_s) * eps_theta)
    der.step(r"Divide by $\sqrt{\bar\alpha_{t-1}}$: with $y = x/\sqrt{\bar\alpha}$ and "
             r"$\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}$ this is $y_{t-1} = y_t + (\sigma_{t-1} - \sigma_t)\,"
             r"\epsilon_\theta(x_t, t)$, one Euler step of $dy/d\sigma = \epsilon_\theta$", sp.Eq(x_tm1, euler),
             "[DDIM] Eq. 14")
    _assert_equal(der, ddim, euler, "DDIM = Euler in (y, sigma)")
    lam_s = sp.log(sp.sqrt(ab_s) / sp.sqrt(1 - ab_s))
    lam_n = sp.log(sp.sqrt(ab_n) / sp.sqrt(1 - ab_n))
    h = lam_n - lam_s
    ei = sp.sqrt(ab_n) / sp.sqrt(ab_s) * x_t - sp.sqrt(1 - ab_n) * (sp.exp(h) - 1) * eps_theta
    der.step(r"The exact solution is $x_t = \frac{\alpha_t}{\alpha_s}x_s - \alpha_t\int_{\lambda_s}^{\lambda_t}"
             r"e^{-\lambda}\hat\epsilon\,d\lambda$ ($\alpha = \sqrt{\bar\alpha}$, $\lambda = \log(\alpha/\sigma)$); "
             r"freezing $\hat\epsilon$ gives DPM-Solver-1", sp.Eq(x_tm1, ei), "[DPM] Eq. 3.4, 3.7")
    _assert_equal(der, sp.expand(ei), sp.expand(ddim), "DPM-Solver-1 = DDIM")
    ode = sp.Symbol("dy/dsigma")
    der.step(r"Why: the PF-ODE $dx/dt = -\tfrac12\beta(x - \epsilon/\sqrt{1-\bar\alpha})$ becomes $dy/d\sigma = "
             r"\epsilon$ in $(y, \sigma)$: the linear part is absorbed, only the network term is left to "
             r"discretise, so DDIM is exact when $\epsilon_\theta$ is constant along the path", sp.Eq(ode, eps_theta))
    # check that claim in ᾱ-time (dᾱ/dt = -βᾱ): dx/dᾱ = (x - ε/√(1-ᾱ))/(2ᾱ), y = x/√ᾱ, σ = √((1-ᾱ)/ᾱ)
    u = ab_c
    dxdu = (x - eps_theta / sp.sqrt(1 - u)) / (2 * u)
    dydu = sp.diff(x / sp.sqrt(u), u) + sp.diff(x / sp.sqrt(u), x) * dxdu
    if sp.simplify(dydu / sp.diff(sp.sqrt((1 - u) / u), u) - eps_theta) != 0:
        raise AssertionError(f"{der.title}: dy/dsigma != eps along the PF-ODE")
    der.checks.append("the PF-ODE is dy/dsigma = eps (symbolic)")
    der.result = {"ddim": ddim, "euler": euler, "dpm_solver_1": ei}

    from . import schedules, solvers
    from .samplers import ddim_step

    got, want = [], []
    gen = torch.Generator().manual_seed(9)
    for sched in _schedules():
        ch = schedules.respace(sched, 20)
        for i in (20, 11, 2):
            xv, ev = torch.randn(2, 1, 1, dtype=torch.float64, generator=gen)
            a1, a0 = float(ch.alpha_bar[i]), float(ch.alpha_bar[i - 1])
            got += [float(ddim_step(ch, xv, i, i - 1, ev)), float(solvers.ddim_ode_step(xv, a1, a0, ev))]
            val = _num(euler, {ab_s: a1, ab_n: a0, x_t: float(xv), eps_theta: float(ev)})
            want += [val, val]
    _assert_close(der, got, want, "equals samplers.ddim_step and solvers.ddim_ode_step")
    return der


def snr_weight() -> Derivation:
    """The eps-MSE weight of L_{t-1} with sigma_t^2 = beta_tilde_t is (SNR(t-1)/SNR(t) - 1)/2 ([VDM] Eq. 13)."""
    der = Derivation(r"The weight of $L_{t-1}$ in SNR form")
    snr_t, snr_p = alpha_bar_t / (1 - alpha_bar_t), alpha_bar_prev / (1 - alpha_bar_prev)
    lam_vdm = (snr_p / snr_t - 1) / 2
    der.step(r"[VDM] write $L_{t-1} = \tfrac12(\mathrm{SNR}(s) - \mathrm{SNR}(t))\lVert x_0 - \hat x_0\rVert^2$ "
             r"($s = t-1$); with $x_0 - \hat x_0 = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}\,(\hat\epsilon - "
             r"\epsilon)$ the "
             r"$\epsilon$-MSE weight is", sp.Eq(sp.Symbol("lambda_t"), lam_vdm), "[VDM] Eq. 13")
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t
    lam_ddpm = LAMBDA_T.subs(sigma_t, sp.sqrt(beta_tilde))
    der.step(r"[DDPM]'s weight with $\sigma_t^2 = \tilde\beta_t$:", sp.Eq(sp.Symbol("lambda_t"), lam_ddpm),
             "[DDPM] Eq. 12")
    _assert_equal(der, lam_vdm, lam_ddpm, "(SNR(t-1)/SNR(t) - 1)/2 = beta_t^2/(2 beta_tilde_t alpha_t (1-alpha_bar_t))")
    der.result = {"weight": lam_vdm}

    from . import losses

    got, want = [], []
    for sched in _schedules():
        for t in _STEPS_T:
            got.append(float(losses.vlb_weight(sched, torch.tensor([t]), var_type="beta_tilde")))
            want.append(_num(lam_vdm, _sched_values(sched, t)))
    _assert_close(der, got, want, "equals losses.vlb_weight(var_type='beta_tilde')")
    return der


def _mmse_gauss(v: sp.Expr) -> sp.Expr:
    """E||x_0 - E[x_0|z_v]||² for x_0 ~ N(., s²) observed at SNR v: the posterior variance 1/(1/s² + v)."""
    return 1 / (1 / s_data ** 2 + v)


def snr_bound_gaussian() -> Derivation:
    """[VDM]: L_oo = ½ ∫_{SNR_min}^{SNR_max} mmse(v) dv depends on the schedule only through its endpoints; for
    1-D Gaussian data it is ½ log((1 + s² SNR_max)/(1 + s² SNR_min))."""
    der = Derivation(r"The continuous-time bound is an integral over SNR")
    der.step(r"As $T\to\infty$ the diffusion term $\sum_t \tfrac12(\mathrm{SNR}(s)-\mathrm{SNR}(t))\lVert x-\hat x"
             r"\rVert^2$ becomes $-\tfrac12\int_0^1 \mathrm{SNR}'(t)\lVert x - \hat x(z_t)\rVert^2 dt$; substituting "
             r"$v = \mathrm{SNR}(t)$ gives $\tfrac12\int_{\mathrm{SNR}_{\min}}^{\mathrm{SNR}_{\max}}\lVert x - "
             r"\hat x(z_v)\rVert^2 dv$: the schedule between the endpoints drops out", None,
             "[VDM] §4 (continuous time)")
    mm = _mmse_gauss(snr_v)
    der.step(r"With the optimal denoiser the integrand is the posterior variance of $x_0\sim\mathcal N(\cdot, s^2)$ "
             r"given $z_v$:", sp.Eq(sp.Symbol("mmse(v)"), mm))
    bound = sp.integrate(mm, (snr_v, snr_lo, snr_hi)) / 2
    closed = sp.log((1 + s_data ** 2 * snr_hi) / (1 + s_data ** 2 * snr_lo)) / 2
    der.step(r"so per dimension, in nats,", sp.Eq(sp.Symbol("L_inf"), closed))
    if sp.simplify(sp.expand_log(bound - closed, force=True)) != 0:
        raise AssertionError(f"{der.title}: the SNR integral is not the closed form")
    der.checks.append("the SNR integral equals its closed form (symbolic)")
    der.result = {"integrand": mm, "bound": closed}
    return der


def snr_bound_numbers(s: float = 0.5, T_values: tuple[int, ...] = (10, 100, 1000, 10000)) -> dict[str, object]:
    """Numbers for the SNR picture: linear vs cosine restricted to a common [SNR_min, SNR_max], the continuous bound
    (closed form) and the discrete T-step bounds on that range for 1-D Gaussian data N(0, s²), in nats.

    Continuous schedules: the VP-SDE limit of ``linear`` (solvers.VPSDE) and the cosine ᾱ(t) = f(t)/f(0) of
    [IDDPM] Eq. 17. Returns {'range': (lo, hi), 'continuous': L_oo, 'linear': [L_T ...], 'cosine': [L_T ...], 'T'}.
    """
    from . import schedules
    from .solvers import VPSDE

    lin, cos = schedules.linear(1000), schedules.cosine(1000)
    lo = max(float(lin.snr[-1]), float(cos.snr[-1]))
    hi = min(float(lin.snr[1]), float(cos.snr[1]))
    sde = VPSDE()

    def t_lin(v: torch.Tensor) -> torch.Tensor:
        return sde.t_of_lam(0.5 * torch.log(v))

    def snr_cos(t: torch.Tensor) -> torch.Tensor:
        f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        ab = f / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
        return ab / (1 - ab)

    def t_cos(v: float) -> float:
        a, b = 0.0, 1.0  # bisection: SNR decreases in t
        for _ in range(200):
            m = 0.5 * (a + b)
            a, b = (m, b) if float(snr_cos(torch.tensor(m, dtype=torch.float64))) > v else (a, m)
        return 0.5 * (a + b)

    def mmse(v: torch.Tensor) -> torch.Tensor:
        return 1 / (1 / s ** 2 + v)

    vl = torch.tensor([lo, hi], dtype=torch.float64)
    t_l = t_lin(vl)
    out: dict[str, object] = {"range": (lo, hi), "T": list(T_values),
                              "continuous": 0.5 * math.log((1 + s * s * hi) / (1 + s * s * lo))}
    for name, snr_fn, (ta, tb) in (("linear", lambda t: torch.exp(2 * sde.lam(t)), (float(t_l[1]), float(t_l[0]))),
                                   ("cosine", snr_cos, (t_cos(hi), t_cos(lo)))):
        vals = []
        for T in T_values:
            tt = torch.linspace(ta, tb, T + 1, dtype=torch.float64)
            v = snr_fn(tt)
            vals.append(float(0.5 * ((v[:-1] - v[1:]) * mmse(v[1:])).sum()))  # [VDM] Eq. 13, x̂ evaluated at t
        out[name] = vals
    return out


def v_angular_velocity() -> Derivation:
    """x = cos(phi) x_0 + sin(phi) eps: v = cos(phi) eps - sin(phi) x_0 = dx/dphi; flow matching's
    x_t = (1-t)x_0 + t eps
    has velocity eps - x_0 (Lipman et al.'s reversed time gives x_0 - eps)."""
    der = Derivation(r"v-prediction as an angular velocity, and flow matching")
    xp = sp.cos(phi) * x_0 + sp.sin(phi) * eps
    der.step(r"With $\sqrt{\bar\alpha} = \cos\phi$, $\sqrt{1-\bar\alpha} = \sin\phi$:", sp.Eq(x_t, xp), "[V] §4")
    vdef = sp.cos(phi) * eps - sp.sin(phi) * x_0
    der.step(r"$v \equiv \sqrt{\bar\alpha}\epsilon - \sqrt{1-\bar\alpha}x_0$ is the velocity along the circle:",
             sp.Eq(sp.Symbol("dx/dphi"), sp.diff(xp, phi)), "[V] §4, Eq. for v")
    _assert_equal(der, sp.diff(xp, phi), vdef, "dx/dphi = v")
    x0_back = sp.simplify(sp.cos(phi) * xp - sp.sin(phi) * vdef)
    der.step(r"and $x_0 = \cos\phi\,x_\phi - \sin\phi\,v$ (a rotation back), so $\hat v$ gives $\hat x_0$ even at "
             r"$\phi = \pi/2$ (zero SNR), where $\hat x_0 = (x - \sin\phi\,\hat\epsilon)/\cos\phi$ is $0/0$",
             sp.Eq(x_0, x0_back))
    _assert_equal(der, x0_back, x_0, "x_0 = cos(phi) x - sin(phi) v")
    der.step(r"Since $E[v\mid x_\phi]$ is $E[dx/d\phi\mid x_\phi]$, the PF-ODE in the angle is "
             r"$dx/d\phi = \hat v(x,\phi)$; a DDIM step moves $x$ exactly along the circle "
             r"$\cos\phi'\,\hat x_0 + \sin\phi'\,\hat\epsilon$ with $\hat x_0, \hat\epsilon$ held fixed", None,
             "[V] §4")
    rf = (1 - tau) * x_0 + tau * eps
    der.step(r"Rectified flow / flow matching: the straight path $x_t = (1-t)x_0 + t\epsilon$ has velocity "
             r"$\epsilon - x_0$; in Lipman et al.'s time ($t = 0$ noise, $t = 1$ data) "
             r"$x_t = t x_0 + (1-t)\epsilon$ and the target is $x_0 - \epsilon$",
             sp.Eq(sp.Symbol("dx/dt"), sp.diff(rf, tau)), "[RF] Eq. 1; [FM] Eq. 23")
    _assert_equal(der, sp.diff(rf, tau), eps - x_0, "rectified-flow target eps - x_0")
    lip = tau * x_0 + (1 - tau) * eps
    _assert_equal(der, sp.diff(lip, tau), x_0 - eps, "flow-matching target x_0 - eps (t = 0 noise)")
    der.result = {"v": vdef, "rf_target": eps - x_0}

    from . import forward

    got, want = [], []
    gen = torch.Generator().manual_seed(11)
    for sched in _schedules():
        for t in _STEPS_T:
            x0v, ev = torch.randn(2, 1, 1, dtype=torch.float64, generator=gen)
            tt = torch.tensor([t])
            xtv = forward.q_sample(sched, x0v, tt, ev)
            got.append(float(forward.v_from_eps(sched, xtv, tt, ev)))
            ph = math.acos(math.sqrt(float(sched.alpha_bar[t])))
            want.append(_num(vdef, {phi: ph, x_0: float(x0v), eps: float(ev)}))
    _assert_close(der, got, want, "equals forward.v_from_eps")
    return der


# ---- CFG: the guided PF-ODE and reverse SDE for Gaussian p(x|c), p(x) ----------------------------------------------
def _cfg_coefficients(w: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
    """The guided score (1+w) ∇log q_t(x|c) - w ∇log q_t(x) = k(u) x + c(u) with q_t(x|c) = N(√u μ_c, v_c),
    q_t(x) = N(√u μ_u, v_u), v = u s² + 1 - u ([CFG] Eq. 6 in score form). Returns (k, c, v_c, v_u)."""
    v_c = ab_c * s_c ** 2 + 1 - ab_c
    v_u = ab_c * s_u ** 2 + 1 - ab_c
    k = -(1 + w) / v_c + w / v_u
    c = (1 + w) * sp.sqrt(ab_c) * mu_c / v_c - w * sp.sqrt(ab_c) * mu_u / v_u
    return k, c, v_c, v_u


def _dlog_equals(expr_log: sp.Expr, rate: sp.Expr) -> bool:
    """True when d/du of ``expr_log`` (a sum of logs) equals ``rate`` (a rational function of u)."""
    return sp.cancel(sp.together(sp.diff(expr_log, ab_c) - rate)) == 0


def cfg_gaussian_terminal() -> Derivation:
    """Closed forms: the guided PF-ODE and the guided reverse SDE, started at N(0, 1) at ᾱ = 0, end at Gaussians whose
    variances differ from each other and from the tilted density p(x|c)^{1+w} p(x)^{-w} (normalised).

    In ᾱ-time u (du/dt = -βu) the PF-ODE dx/dt = -½β(x + s̃) is dx/du = (x + s̃)/(2u) and the reverse SDE adds
    variance du/u; with the affine guided score s̃ = k(u) x + c(u) both are linear with rational coefficients.
    Symbolic in s_c, s_u and w. result: 'var_ode', 'var_sde', 'var_tilted' (SymPy expressions) and 'example'
    (the three at s_c = 1, s_u = 2, w = 1: 1/4, 7/16, 4/7).
    """
    der = Derivation(r"Classifier-free guidance is not calibrated: three different Gaussians")
    k, c, v_c, v_u = _cfg_coefficients(w_g)
    der.step(r"For $p(x\mid c) = \mathcal N(\mu_c, s_c^2)$ and $p(x) = \mathcal N(\mu_u, s_u^2)$ the guided score "
             r"is affine in $x$, with $v_c = \bar\alpha s_c^2 + 1 - \bar\alpha$, $v_u = \bar\alpha s_u^2 + 1 - "
             r"\bar\alpha$:", sp.Eq(sp.Symbol("score~"), k * x + c), "[CFG] Eq. 6")
    der.step(r"In $\bar\alpha$-time ($d\bar\alpha = -\beta\bar\alpha\,dt$) the PF-ODE is "
             r"$dx/d\bar\alpha = (x + \tilde s)/(2\bar\alpha)$, so its variance obeys "
             r"$dP/d\bar\alpha = (1 + k)P/\bar\alpha$, $P = 1$ at $\bar\alpha = 0$", None, "[SDE] Eq. 13")
    p_ode = v_c ** (1 + w_g) * v_u ** (-w_g)
    if not _dlog_equals((1 + w_g) * sp.log(v_c) - w_g * sp.log(v_u), (1 + k) / ab_c):
        raise AssertionError(f"{der.title}: P = v_c^(1+w) v_u^(-w) does not solve the ODE's variance equation")
    der.step(r"It is solved by", sp.Eq(sp.Symbol("P_ODE"), p_ode))
    der.checks.append("P_ODE = v_c^(1+w) v_u^(-w) solves dP/du = (1+k)P/u (symbolic, any w)")
    var_ode = sp.powsimp(sp.expand_power_base(p_ode.subs(ab_c, 1), force=True), force=True)
    der.step(r"so at $\bar\alpha = 1$ the PF-ODE's samples have variance", sp.Eq(sp.Symbol("Var_ODE"), var_ode))
    der.step(r"The reverse SDE $dx = [f - g^2\tilde s]dt + g\,d\bar w$ in $\bar\alpha$-time has drift "
             r"$(x + 2\tilde s)/(2\bar\alpha)$ and adds variance $d\bar\alpha/\bar\alpha$: "
             r"$dP/d\bar\alpha = ((1 + 2k)P + 1)/\bar\alpha$", None, "[SDE] Eq. 6")
    psi = v_c ** (2 + 2 * w_g) * v_u ** (-2 * w_g) / ab_c
    if not _dlog_equals((2 + 2 * w_g) * sp.log(v_c) - 2 * w_g * sp.log(v_u) - sp.log(ab_c), (1 + 2 * k) / ab_c):
        raise AssertionError(f"{der.title}: the integrating factor is wrong")
    der.step(r"With the integrating factor $\Psi$ ($\Psi'/\Psi = (1+2k)/\bar\alpha$), "
             r"$P(1) = \Psi(1)\int_0^1 \frac{d\bar\alpha}{\bar\alpha\Psi} = \Psi(1)\int_0^1 v_c^{-2-2w}"
             r"v_u^{2w}\,d\bar\alpha$", sp.Eq(sp.Symbol("Psi"), psi))
    rho = v_u / v_c
    if sp.cancel(sp.diff(rho, ab_c) - (s_u ** 2 - s_c ** 2) / v_c ** 2) != 0:
        raise AssertionError(f"{der.title}: d(v_u/v_c)/du is not (s_u^2 - s_c^2)/v_c^2")
    integral = ((s_u ** 2 / s_c ** 2) ** (2 * w_g + 1) - 1) / ((2 * w_g + 1) * (s_u ** 2 - s_c ** 2))
    der.step(r"Substitute $\rho = v_u/v_c$ ($d\rho = (s_u^2 - s_c^2)\,d\bar\alpha/v_c^2$, $\rho$ from 1 to "
             r"$s_u^2/s_c^2$): the integral is $\int \rho^{2w}d\rho/(s_u^2 - s_c^2)$", sp.Eq(sp.Symbol("I"), integral))
    der.checks.append("d(v_u/v_c)/du = (s_u^2 - s_c^2)/v_c^2 (symbolic)")
    var_sde = s_c ** 2 * (s_u ** (4 * w_g + 2) - s_c ** (4 * w_g + 2)) / (
        (2 * w_g + 1) * s_u ** (4 * w_g) * (s_u ** 2 - s_c ** 2))
    if not _zero(sp.powsimp(sp.expand_power_base(psi.subs(ab_c, 1) * integral - var_sde, force=True), force=True)
                 .subs(w_g, 1)):
        raise AssertionError(f"{der.title}: the SDE variance does not simplify (w = 1)")
    der.step(r"so the reverse SDE's samples have variance", sp.Eq(sp.Symbol("Var_SDE"), var_sde))
    var_tilt = 1 / ((1 + w_g) / s_c ** 2 - w_g / s_u ** 2)
    der.step(r"The tilted density $p(x\mid c)^{1+w}p(x)^{-w}$ (normalisable when $(1+w)/s_c^2 > w/s_u^2$) is "
             r"Gaussian with precision $(1+w)/s_c^2 - w/s_u^2$:", sp.Eq(sp.Symbol("Var_tilted"), var_tilt))
    for e, name in ((var_ode, "Var_ODE"), (var_sde, "Var_SDE"), (var_tilt, "Var_tilted")):
        _assert_equal(der, e.subs(w_g, 0), s_c ** 2, f"{name} at w = 0 is s_c^2")
    if sp.simplify(sp.limit(var_sde.subs(w_g, 2), s_u, s_c) - s_c ** 2) != 0:
        raise AssertionError(f"{der.title}: Var_SDE at s_u = s_c is not s_c^2")
    der.checks.append("at s_u = s_c all three are s_c^2 (Var_SDE as a limit, w = 2)")
    pt = {s_c: 1, s_u: 2, w_g: 1}
    example = [sp.nsimplify(sp.simplify(e.subs(pt))) for e in (var_ode, var_sde, var_tilt)]
    if len(set(example)) != 3:
        raise AssertionError(f"{der.title}: expected three different variances at s_c=1, s_u=2, w=1, got {example}")
    der.step(r"At $s_c = 1$, $s_u = 2$, $w = 1$: (ODE, SDE, tilted)", sp.Tuple(*example))
    der.checks.append("the three variances differ at s_c = 1, s_u = 2, w = 1: " + ", ".join(map(str, example)))
    der.result = {"var_ode": var_ode, "var_sde": var_sde, "var_tilted": var_tilt, "example": sp.Tuple(*example)}

    got, want = [], []
    for sc, su, ww in ((1.0, 2.0, 1.0), (0.5, 1.5, 2.0), (1.2, 0.9, 0.5)):
        num = cfg_gaussian_moments(0.3, sc, -0.4, su, ww)
        vals = {s_c: sc, s_u: su, w_g: ww}
        got += [num["ode"][1], num["sde"][1]]
        want += [_num(var_ode, vals), _num(var_sde, vals)]
    worst = max(abs(g - v) / v for g, v in zip(got, want, strict=True))
    if worst > CONT_RTOL:
        raise AssertionError(f"{der.title}: numerical variances {got} vs closed forms {want}")
    der.checks.append(f"equals cfg_gaussian_moments (RK4 of the moment ODEs) at 3 settings incl. w = 0.5 "
                      f"(max rel. error < {CONT_RTOL:g})")
    return der


def cfg_gaussian_simulate(mu_c: float, s_c: float, mu_u: float, s_u: float, w: float, n: int = 20000,
                          n_steps: int = 2000, seed: int = 0, r0: float = 1e-3) -> dict[str, tuple[float, float]]:
    """Monte Carlo check of :func:`cfg_gaussian_terminal`: (mean, variance) of n samples of the guided PF-ODE (Heun)
    and the guided reverse SDE from x ~ N(0, 1) at √ᾱ = r0 to ᾱ = 1, with the exact guided score
    (1+w) ∇log q_t(x|c) - w ∇log q_t(x) ([CFG] Eq. 6; [SDE] Eq. 6 and 13), float64, in the variable l = log √ᾱ
    where dx = [(1 + k)x + c] dl (ODE) and dx = [(1 + 2k)x + 2c] dl + √2 dW_l (SDE). The SDE step is exact for
    coefficients frozen at the step's midpoint (an exponential Euler-Maruyama step; plain Euler-Maruyama is 5% off
    at w = 3, where |1 + 2k| reaches 28); the Monte Carlo standard error of a variance is √(2/n) (1% at n = 20000).
    'start' holds the sample moments of the starting x (the ODE is affine: var_ode / var_start is exact up to Heun).
    """
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, dtype=torch.float64, generator=g)
    xo, xs = x0.clone(), x0.clone()
    l0 = math.log(r0)
    h = -l0 / n_steps

    def kc(r: float) -> tuple[float, float]:
        u = r * r
        vc, vu = u * s_c ** 2 + 1 - u, u * s_u ** 2 + 1 - u
        return -(1 + w) / vc + w / vu, (1 + w) * r * mu_c / vc - w * r * mu_u / vu

    for i in range(n_steps):
        k1, c1 = kc(math.exp(l0 + i * h))
        k2, c2 = kc(math.exp(l0 + (i + 1) * h))
        d1 = (1 + k1) * xo + c1
        xe = xo + h * d1
        xo = xo + h / 2 * (d1 + (1 + k2) * xe + c2)  # Heun
        # SDE: the exact step of dx = (a x + b) dl + √2 dW with a, b frozen at the step's midpoint
        km, cm = kc(math.exp(l0 + (i + 0.5) * h))
        a, b = 1 + 2 * km, 2 * cm
        e = math.exp(a * h)
        xs = e * xs + (e - 1) / a * b + math.sqrt((e * e - 1) / a) * torch.randn(n, dtype=torch.float64, generator=g)
    return {"ode": (float(xo.mean()), float(xo.var())), "sde": (float(xs.mean()), float(xs.var())),
            "start": (float(x0.mean()), float(x0.var()))}


def cfg_gaussian_moments(mu_c: float, s_c: float, mu_u: float, s_u: float, w: float, n_steps: int = 4000,
                         r0: float = 1e-6) -> dict[str, tuple[float, float]]:
    """(mean, variance) of the guided PF-ODE's and the guided reverse SDE's terminal law, and of the normalised tilted
    density, for p(x|c) = N(mu_c, s_c²), p(x) = N(mu_u, s_u²), started at N(0, 1) at ᾱ = 0 ([CFG] Eq. 6).

    The moment ODEs of :func:`cfg_gaussian_terminal` are integrated with RK4 in log √ᾱ (smooth and non-stiff there)
    from √ᾱ = r0 to 1, float64. 'tilted' is (nan, nan) when (1+w)/s_c² <= w/s_u² (not normalisable).
    """
    def coeffs(r: float) -> tuple[float, float]:
        u = r * r
        vc, vu = u * s_c ** 2 + 1 - u, u * s_u ** 2 + 1 - u
        return -(1 + w) / vc + w / vu, (1 + w) * r * mu_c / vc - w * r * mu_u / vu  # score = k x + c

    def rhs(r: float, y: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        m_o, p_o, m_s, p_s = y
        k, c = coeffs(r)
        # in l = log r (u = r², du = 2u dl) every equation is smooth and non-stiff down to r -> 0
        return (1 + k) * m_o + c, 2 * (1 + k) * p_o, (1 + 2 * k) * m_s + 2 * c, 2 * (1 + 2 * k) * p_s + 2

    y = (0.0, 1.0, 0.0, 1.0)
    l0 = math.log(r0)
    h = -l0 / n_steps
    for i in range(n_steps):
        l = l0 + i * h
        k1 = rhs(math.exp(l), y)
        k2 = rhs(math.exp(l + h / 2), tuple(a + h / 2 * b for a, b in zip(y, k1, strict=True)))
        k3 = rhs(math.exp(l + h / 2), tuple(a + h / 2 * b for a, b in zip(y, k2, strict=True)))
        k4 = rhs(math.exp(l + h), tuple(a + h * b for a, b in zip(y, k3, strict=True)))
        y = tuple(a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4) for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4, strict=True))
    prec = (1 + w) / s_c ** 2 - w / s_u ** 2
    tilt = ((((1 + w) * mu_c / s_c ** 2 - w * mu_u / s_u ** 2) / prec, 1 / prec) if prec > 0
            else (math.nan, math.nan))
    return {"ode": (y[0], y[1]), "sde": (y[2], y[3]), "tilted": tilt}


# A registry of their own (DERIVATIONS keeps the course order of notebooks 01-06).
CONTINUOUS_DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "vp_sde_limit": vp_sde_limit,
    "pf_ode_gaussian": pf_ode_gaussian,
    "ddim_is_euler": ddim_is_euler,
    "snr_weight": snr_weight,
    "snr_bound_gaussian": snr_bound_gaussian,
    "v_angular_velocity": v_angular_velocity,
    "cfg_gaussian_terminal": cfg_gaussian_terminal,
}
__all__ += ["CONTINUOUS_DERIVATIONS", "vp_sde_limit", "pf_ode_gaussian", "ddim_is_euler", "snr_weight",
            "snr_bound_gaussian",
            "snr_bound_numbers", "v_angular_velocity", "cfg_gaussian_terminal", "cfg_gaussian_moments",
            "cfg_gaussian_simulate"]
