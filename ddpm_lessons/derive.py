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

__all__ = ["Step", "Derivation", "forward_marginal", "posterior_completing_square", "gaussian_kl_1d",
           "gaussian_kl_isotropic", "ddim_marginal", "posterior_mean_eps", "lt_weight", "DERIVATIONS",
           "all_derivations"]

NUM_RTOL = 1e-9  # float64 package vs exact SymPy value: agreement to ~1e-15 expected; 1e-9 leaves room for (1-ab)

# The symbols (positive where the domain is; SymPy then simplifies sqrt(a*b) = sqrt(a)*sqrt(b) correctly).
alpha_t, alpha_tm1, alpha_bar_prev = sp.symbols("alpha_t alpha_tm1 alpha_bar_prev", positive=True)
alpha_bar_t, beta_t, sigma_t, eta = sp.symbols("alpha_bar_t beta_t sigma_t eta", positive=True)
x_0, x_t, x_tm1, x_tm2, x = sp.symbols("x_0 x_t x_tm1 x_tm2 x", real=True)
eps, eps_theta, z, eps1, eps2 = sp.symbols("eps eps_theta z eps1 eps2", real=True)
mu1, mu2 = sp.symbols("mu1 mu2", real=True)
sigma1, sigma2, delta2 = sp.symbols("sigma1 sigma2 delta2", positive=True)
d = sp.Symbol("d", integer=True, positive=True)

# alpha_bar_t = alpha_bar_prev * alpha_t and beta_t = 1 - alpha_t, substituted before simplifying.
SCHEDULE = {alpha_bar_t: alpha_bar_prev * alpha_t, beta_t: 1 - alpha_t}

_NAMES = {"alpha_bar_t": r"\bar\alpha_t", "alpha_bar_prev": r"\bar\alpha_{t-1}", "alpha_t": r"\alpha_t",
          "alpha_tm1": r"\alpha_{t-1}", "beta_t": r"\beta_t", "sigma_t": r"\sigma_t", "eta": r"\eta",
          "x_0": "x_0", "x_t": "x_t", "x_tm1": "x_{t-1}", "x_tm2": "x_{t-2}", "x": "x", "eps": r"\epsilon",
          "eps_theta": r"\epsilon_\theta", "eps1": r"\epsilon'", "eps2": r"\epsilon''", "z": "z",
          "mu1": r"\mu_1", "mu2": r"\mu_2", "sigma1": r"\sigma_1", "sigma2": r"\sigma_2",
          "delta2": r"\lVert\mu_1-\mu_2\rVert^2", "d": "d", "mu_tilde_t": r"\tilde\mu_t",
          "beta_tilde_t": r"\tilde\beta_t", "mu_theta": r"\mu_\theta", "lambda_t": r"\lambda_t", "KL": r"\mathrm{KL}"}


def latex(expr: sp.Basic) -> str:
    """LaTeX with the paper's symbols (alpha_bar_t -> \\bar\\alpha_t, ...)."""
    names = {s: _NAMES[s.name] for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name in _NAMES}
    return sp.latex(expr, symbol_names=names)


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
    shown = "0" if worst == 0 else f"{worst:.0e}"
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
             sp.Eq(x_tm1, sp.sqrt(alpha_tm1) * x_tm2 + sp.sqrt(1 - alpha_tm1) * eps1), "[DDPM] Eq. 2")
    two = sp.expand(sp.sqrt(alpha_t) * (sp.sqrt(alpha_tm1) * x_tm2 + sp.sqrt(1 - alpha_tm1) * eps1)
                    + sp.sqrt(1 - alpha_t) * eps2)
    der.step(r"then $x_t$ from $x_{t-1}$, substituted:", sp.Eq(x_t, two))
    mean2 = two.subs({eps1: 0, eps2: 0})
    var2 = sp.expand(two.coeff(eps1) ** 2 + two.coeff(eps2) ** 2)
    der.step(r"A sum of independent zero-mean Gaussians is Gaussian; variances add. Mean coefficient and variance:",
             sp.Tuple(sp.simplify(mean2 / x_tm2), sp.factor(var2)))
    der.step(r"So two steps are one step with $\alpha_t\alpha_{t-1}$ in place of $\alpha_t$:",
             sp.Eq(var2, 1 - alpha_t * alpha_tm1, evaluate=False))
    if (sp.simplify(var2 - (1 - alpha_t * alpha_tm1)) != 0
            or sp.simplify(mean2 - sp.sqrt(alpha_t * alpha_tm1) * x_tm2) != 0):
        raise AssertionError("two-step composition failed")
    der.checks.append(r"two-step variance = 1 - alpha_t*alpha_tm1 (symbolic)")

    der.step(r"Induction: assume $x_{t-1} = \sqrt{\bar\alpha_{t-1}}x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\epsilon'$ "
             r"(true at $t-1 = 0$ with $\bar\alpha_0 = 1$). One more step:")
    xt = sp.expand(sp.sqrt(alpha_t) * (sp.sqrt(alpha_bar_prev) * x_0 + sp.sqrt(1 - alpha_bar_prev) * eps1)
                   + sp.sqrt(1 - alpha_t) * eps2)
    der.step("", sp.Eq(x_t, xt))
    mean = sp.simplify(xt.subs({eps1: 0, eps2: 0}))
    var = sp.expand(xt.coeff(eps1) ** 2 + xt.coeff(eps2) ** 2)
    der.step(r"Mean and variance, with $\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$:",
             sp.Tuple(mean, sp.simplify(var)), "[DDPM] Eq. 4")
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
    der.step(r"Bayes: $q(x_{t-1}\mid x_t,x_0) \propto q(x_t\mid x_{t-1})\,q(x_{t-1}\mid x_0)$, so with $x = x_{t-1}$ "
             r"the log-density is, up to a constant,", None, "[DDPM] Eq. 6")
    logq = -sp.Rational(1, 2) * ((x_t - sp.sqrt(alpha_t) * x) ** 2 / beta_t
                                 + (x - sp.sqrt(alpha_bar_prev) * x_0) ** 2 / (1 - alpha_bar_prev))
    der.step("", logq)
    poly = sp.Poly(sp.expand(logq), x)
    a2, a1 = poly.coeff_monomial(x ** 2), poly.coeff_monomial(x)
    precision = sp.simplify(-2 * a2)
    b = sp.simplify(a1)
    der.step(r"Collect powers of $x$: $-\tfrac12(A x^2 - 2Bx) + C$ with precision $A$ and $B$:",
             sp.Tuple(precision, b))
    der.step(r"A Gaussian $\mathcal N(\mu, s^2)$ has log-density $-\tfrac{1}{2s^2}(x^2 - 2\mu x) + C$, so "
             r"$s^2 = 1/A$ and $\mu = B/A$. Substituting $\beta_t = 1-\alpha_t$, "
             r"$\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$:")
    var = sp.factor(sp.simplify((1 / precision).subs(SCHEDULE)))
    mean = sp.simplify((b / precision).subs(SCHEDULE))
    der.step(r"Variance $\tilde\beta_t$:", sp.Eq(sp.Symbol("beta_tilde_t"), var), "[DDPM] Eq. 7")
    der.step(r"Mean $\tilde\mu_t$:", sp.Eq(sp.Symbol("mu_tilde_t"), sp.collect(sp.expand(mean), [x_0, x_t])),
             "[DDPM] Eq. 7")
    _assert_equal(der, var, BETA_TILDE, "variance = beta_tilde ([DDPM] Eq. 7)")
    _assert_equal(der, mean, MU_TILDE, "mean = mu_tilde ([DDPM] Eq. 7)")
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
    der.step(r"$\mathrm{KL}(p\|q) = \mathbb E_{x\sim p}[\log p(x) - \log q(x)]$ with "
             r"$p = \mathcal N(\mu_1,\sigma_1^2)$, $q = \mathcal N(\mu_2,\sigma_2^2)$. The integrand:")
    integrand = sp.expand(_log_normal(x, mu1, sigma1) - _log_normal(x, mu2, sigma2))
    der.step("", integrand)
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
    der.step(r"Assume $q(x_t\mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}x_0, 1-\bar\alpha_t)$, i.e. "
             r"$x_t - \sqrt{\bar\alpha_t}x_0 = \sqrt{1-\bar\alpha_t}\,\epsilon$ ([DDIM] Lemma 1's induction step):")
    xprev = sp.sqrt(alpha_bar_prev) * x_0 + c * sp.sqrt(1 - alpha_bar_t) * eps + sigma_t * z
    der.step("", sp.Eq(x_tm1, xprev))
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
    der.step(r"At $\eta = 1$, $\sigma_t^2 = \tilde\beta_t$, and the mean becomes $\tilde\mu_t$: DDIM with "
             r"$\eta = 1$ is DDPM's ancestral sampler.",
             sp.Eq(sigma_t ** 2, sp.factor(sp.simplify((SIGMA_DDIM ** 2).subs(eta, 1).subs(SCHEDULE)))))
    _assert_equal(der, (SIGMA_DDIM ** 2).subs(eta, 1), BETA_TILDE, "sigma_t(eta=1)^2 = beta_tilde")
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
    der.step(r"Collect $x_t$ and $\epsilon$ (with $\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$, $\beta_t = 1-\alpha_t$):",
             sp.collect(sp.expand(mu), [x_t, eps]))
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
    der.step(r"so per dimension $\tfrac{1}{2\sigma_t^2}(\tilde\mu_t - \mu_\theta)^2 = \lambda_t(\epsilon - "
             r"\epsilon_\theta)^2$ with", sp.Eq(sp.Symbol("lambda_t"), lam), "[DDPM] Eq. 12")
    _assert_equal(der, lam, LAMBDA_T, "lambda_t = beta_t^2/(2 sigma_t^2 alpha_t (1-alpha_bar_t))")
    der.step(r"that is,", sp.Eq(sp.Symbol("lambda_t"), LAMBDA_T), "[DDPM] Eq. 12")
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
