"""The probe set of issue #15: answers typed as learners would, across notation families, right and wrong, plus hostile
and ambiguous input, all through the public ``check`` (worker process, hard time limit).

Right answers: every catalogue question's reference and rewritings, each rendered by an independent printer (below,
written for these tests; it shares no code with the checker's front ends) in four notations -- plain Python-style,
paper ASCII (``abar_t``, ``alpha_bar_{t-1}``, implicit multiplication), Unicode as pasted from a PDF (``√ᾱ_t x₀``,
``ᾱₜ₋₁``, thin spaces) and LaTeX (SymPy's own ``latex()`` with the course's symbol macros, as our derivations render)
-- plus hand-written answers in other papers' and libraries' notations (diffusers, DDIM's convention, ``np.``).
Wrong answers: each question's known mistakes and typical slips applied to the reference, rendered in a notation that
rotates with the question, plus hand-written wrong answers (several made in a rewritten form). Hostile: the attack
strings of test_checks_security.py and LaTeX macros. Ambiguous: input that must get a "did you mean" instead of a
verdict.

Done-when figures checked here: >= 90% of right answers accepted per family, every wrong answer rejected, >= 85% of
wrong answers named as a known mistake, no hostile input executed or accepted, every check under 6 s.
``python bench/bench_checks.py --probes`` prints the same figures as a table.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import sympy as sp

from ddpm_lessons.checks import catalogue, check, questions

# -- an independent printer ------------------------------------------------------------------------------------------
_PAPER = {
    "alpha_bar_t": ["abar_t", "alphabar_t", "alpha_bar_{t}", "alpha_bar_t", "abar_{t}"],
    "alpha_bar_prev": ["alpha_bar_{t-1}", "abar_{t-1}", "alpha_bar_(t-1)", "abar_prev", "alphabar_{t-1}"],
    "alpha_t": ["alpha_t", "alpha_{t}"], "alpha_tm1": ["alpha_{t-1}", "alpha_tm1"],
    "beta_t": ["beta_t", "beta_{t}"], "beta_tm1": ["beta_{t-1}"], "beta_tilde_t": ["beta_tilde_t", "betatilde_t"],
    "x_t": ["x_t", "x_{t}"], "x_0": ["x_0", "x_{0}", "x0"], "x_tm2": ["x_{t-2}"], "eps": ["eps", "epsilon"],
    "eps_c": ["eps_c", "eps_cond"], "eps_u": ["eps_u", "eps_uncond"], "sigma_t": ["sigma_t", "sigma_{t}"],
    "mu1": ["mu_1", "mu1"], "mu2": ["mu_2", "mu2"], "sigma1": ["sigma_1"], "sigma2": ["sigma_2"],
    "alpha_bar_1": ["alpha_bar_1", "abar_1"], "alpha_bar_T": ["alpha_bar_T", "abar_T"],
}
_UNI = {
    "alpha_bar_t": ["ᾱ_t", "ᾱₜ", "\u03b1\u0304_t"], "alpha_bar_prev": ["ᾱ_{t-1}", "ᾱₜ₋₁", "ᾱ_{t−1}"],
    "alpha_t": ["α_t", "αₜ"], "alpha_tm1": ["α_{t-1}", "αₜ₋₁"], "beta_t": ["β_t", "βₜ"], "beta_tm1": ["β_{t-1}"],
    "beta_tilde_t": ["β̃_t"], "x_t": ["x_t", "xₜ"], "x_0": ["x₀", "x_0"], "x_tm2": ["x_{t-2}", "xₜ₋₂"],
    "eps": ["ε", "ϵ"], "eps_c": ["ε_c"], "eps_u": ["ε_u"], "sigma_t": ["σ_t", "σₜ"], "eta": ["η"],
    "mu1": ["μ₁", "μ_1"], "mu2": ["μ₂", "μ_2"], "sigma1": ["σ₁", "σ_1"], "sigma2": ["σ₂", "σ_2"], "phi": ["φ"],
    "alpha_bar_1": ["ᾱ₁", "ᾱ_1"], "alpha_bar_T": ["ᾱ_T"],
}
_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _name(sym: sp.Symbol, family: str, rng: random.Random) -> str:
    table = {"paper": _PAPER, "unicode": _UNI}.get(family, {})
    return rng.choice(table.get(sym.name, [sym.name]))


def render(expr: sp.Expr, family: str, rng: random.Random) -> str:
    """``expr`` as a learner would type it in ``family`` ("plain", "paper" or "unicode")."""
    uni = family == "unicode"
    implicit = family != "plain"

    def atom(e: sp.Expr) -> bool:
        return e.is_Symbol or (e.is_Integer and e >= 0) or e.is_Function

    def go(e: sp.Expr, prec: int) -> str:  # prec: 0 sum, 1 product, 2 power base
        if e.is_Symbol:
            return _name(e, family, rng)
        if e is sp.pi:
            return "π" if uni else "pi"
        if e.is_Integer:
            s = str(e)
            return f"({s})" if e < 0 and prec > 0 else s
        if e.is_Rational:
            s = f"{e.p}/{e.q}"
            return f"({s})" if prec > 0 else s
        if e.is_Add:
            terms = list(e.args)
            rng.shuffle(terms)
            out = go(terms[0], 0)
            for t in terms[1:]:
                c, rest = t.as_coeff_Mul()
                if c < 0:
                    out += (" − " if uni else " - ") + go(-t, 1)
                else:
                    out += " + " + go(t, 1)
            return f"({out})" if prec > 0 else out
        if e.is_Mul:
            c, rest = e.as_coeff_Mul()
            if c < 0:
                body = go(-e, 1)
                out = ("−" if uni else "-") + body
                return f"({out})" if prec > 0 else out
            num, den = sp.fraction(e)
            if den != 1:
                out = f"{go(num, 1)}/{go(den, 2)}"
                return f"({out})" if prec > 1 else out
            factors = list(sp.Mul.make_args(e))
            parts = [go(f, 1) for f in factors]
            if implicit:
                # a space or nothing between factors ("2 x_0", "√ᾱ_t x₀", "(1 + w)ε_c"); `*` after a number
                out = parts[0]
                for part in parts[1:]:
                    sep = rng.choice([" ", " ", "·"]) if uni else rng.choice([" ", " ", "*"])
                    out += sep + part
            else:
                out = "*".join(parts)
            return f"({out})" if prec > 1 else out
        if e.is_Pow:
            b, x = e.base, e.exp
            if x == sp.Rational(1, 2):
                if uni and atom(b):
                    return "√" + go(b, 2)
                return ("√" if uni else "sqrt") + "(" + go(b, 0) + ")"
            if x == -1:
                return f"1/{go(b, 2)}"
            if x.is_Integer and x < 0:
                return f"1/{go(b ** -x, 2)}"
            if x == sp.Rational(-1, 2):
                return f"1/{go(sp.sqrt(b), 2)}"
            if uni and x.is_Integer and 0 < x < 10:
                return go(b, 2) + str(x).translate(_SUP)
            return f"{go(b, 2)}^{go(x, 2) if not x.is_Rational or x.is_Integer else '(' + go(x, 0) + ')'}"
        if e.is_Function:
            name = {"exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "Abs": "abs"}[e.func.__name__]
            return f"{name}({go(e.args[0], 0)})"
        raise ValueError(f"cannot render {e!r}")

    return go(expr, 0)


def render_latex(expr: sp.Expr) -> str:
    names = {sp.Symbol(n, **_assumptions(n)): catalogue.VOCAB[n].latex for n in catalogue.VOCAB}
    mapping = {s: names[s] for s in expr.free_symbols if s in names}
    return "$" + sp.latex(expr, symbol_names=mapping) + "$"


def _assumptions(name: str) -> dict[str, bool]:
    kind = catalogue.VOCAB[name].kind
    return {"integer": True, "positive": True} if kind == "integer" else (
        {"positive": True} if kind == "positive" else {"real": True})


def _expr(q: catalogue.Question, text: str) -> sp.Expr:
    from ddpm_lessons.checks import engine

    return engine.prepared(q.id).parse(text)


# -- the probes ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    qid: str
    text: str
    family: str
    right: bool | None  # True right, False wrong, None hostile/ambiguous (must be invalid)


# hand-written right answers in other papers' and libraries' notations and in mixed styles
_OTHER_RIGHT = [
    ("forward_mean", "np.sqrt(alpha_prod_t) * x0"), ("forward_mean", "torch.sqrt(alphas_bar_t)*x_start"),
    ("forward_mean", "mu = sqrt(abar_t) x_0"), ("forward_var", "beta_prod_t"), ("forward_var", "Var = 1 - ᾱ_t"),
    ("forward_sample", "alpha_prod_t**0.5 * x0 + beta_prod_t**0.5 * noise"),
    ("forward_sample", "x_t = sqrt_alpha_bar_t*x_0 + sqrt_one_minus_alpha_bar_t*eps"),
    ("posterior_var", "beta_prod_t_prev / beta_prod_t * current_beta_t"),
    ("posterior_var", r"\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t"),
    ("posterior_mean_x0", "(alpha_prod_t_prev**0.5 * current_beta_t / beta_prod_t) * x0 + "
                          "(current_alpha_t**0.5 * beta_prod_t_prev / beta_prod_t) * x_t"),
    ("posterior_mean_eps", "1/math.sqrt(alpha_t) * (x_t - beta_t/math.sqrt(1 - alpha_bar_t) * eps_theta)"),
    ("x0_from_eps", "(x_t - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)"),
    ("x0_from_eps", "x0_hat = (xt - sqrt(1 - abar_t)*eps_hat)/sqrt(abar_t)"),
    ("ddim_sigma", "eta*sqrt((1 - alpha_tm1)/(1 - alpha_t))*sqrt(1 - alpha_t/alpha_tm1)"),  # DDIM's own notation
    ("ddim_sigma", r"\sigma_t(\eta) = \eta\sqrt{\frac{1-\alpha_{t-1}}{1-\alpha_t}}"
                   r"\sqrt{1-\frac{\alpha_t}{\alpha_{t-1}}}"),
    ("ddim_sigma", "eta * sqrt(beta_prod_t_prev/beta_prod_t) * sqrt(1 - alpha_prod_t/alpha_prod_t_prev)"),
    ("ddim_update", "sqrt(alpha_tm1)*(x_t - sqrt(1 - alpha_t)*eps)/sqrt(alpha_t) + sqrt(1 - alpha_tm1 - sigma_t^2)*eps "
                    "+ sigma_t*z"),  # DDIM Eq. 12 as printed
    ("ddim_update", "x_{t-1} = alpha_prod_t_prev**0.5 * (x_t - beta_prod_t**0.5 * eps)/alpha_prod_t**0.5 "
                    "+ (1 - alpha_prod_t_prev - sigma_t**2)**0.5 * eps + sigma_t * z"),
    ("cfg_w", "noise_pred_text + w*(noise_pred_text - noise_pred_uncond)"), ("cfg_w", "(1+w)eps_cond - w eps_uncond"),
    ("cfg_s", "noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)"),
    ("snr", "alpha_prod_t / beta_prod_t"), ("snr", r"\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}"),
    ("v_from_eps", "alpha_prod_t**0.5 * noise - beta_prod_t**0.5 * x0"),
    ("x0_from_v", "sqrt(alpha_prod_t)*x_t - sqrt(beta_prod_t)*v"),
    ("kl_1d", "np.log(sigma_2/sigma_1) + (sigma_1**2 + (mu_1 - mu_2)**2)/(2*sigma_2**2) - 0.5"),
    ("kl_1d", r"D_{KL} = \log\frac{\sigma_2}{\sigma_1} + \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{2\sigma_2^2} - \frac12"),
    ("tweedie", "(x_t + (1 - alpha_prod_t) * score)/sqrt(alpha_prod_t)"),
    ("dsm_target", "-(x_t - sqrt(alpha_prod_t) x_0)/beta_prod_t"),
    ("lt_weight", "beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))"),
    ("vp_sde_drift", "f(x, t) = -1/2 beta(t) x(t)"), ("vp_sde_diffusion", "g(t) = sqrt(beta(t))"),
    ("pf_ode_drift_eps", "-1/2 beta(t) (x(t) - eps/sqrt(1 - alpha_bar(t)))"),
    ("v_velocity", r"\cos\phi\,\epsilon - \sin\phi\,x_0"), ("flow_velocity", "u = eps - x_0"),
    ("snr_weight", "lambda_t = (SNR(t-1)/SNR(t) - 1)/2"),
]

# hand-written wrong answers (several in a rewritten form, several in other notations): all must be rejected
_WRONG = [
    ("forward_mean", "sqrt(alpha_t)*x_0"), ("forward_mean", "√(1−ᾱ_t)x₀"), ("forward_mean", "alpha_prod_t * x0"),
    ("forward_var", "sqrt(1 - alpha_bar_t)"), ("forward_var", "1 - alpha_t"), ("forward_var", r"1-\bar\alpha_{t-1}"),
    ("forward_var", "1 - alpha_t*alpha_bar_t"), ("forward_sample", "alpha_bar_t x_0 + (1 - alpha_bar_t) eps"),
    ("forward_sample", "sqrt(alpha_bar_t)*x_0 + (1 - alpha_bar_t)*eps"),
    ("two_step_var", "beta_t + beta_tm1"), ("two_step_var", "1 - alpha_t - alpha_tm1"),
    ("posterior_var", "beta_t"), ("posterior_var", "1/(alpha_t/beta_t + 1/(1 - alpha_bar_t))"),  # rewritten form
    ("posterior_var", "sqrt((1-alpha_bar_prev)/(1-alpha_bar_t)*beta_t)"),  # std for variance
    ("posterior_var", "(1 - alpha_t)(1 - alpha_bar_prev)/(1 - alpha_bar_prev)"),
    ("posterior_var", "beta_t*(1 - alpha_bar_prev)/(alpha_t*(1 - alpha_bar_prev))"),  # dropped + beta_t
    ("posterior_mean_eps", "1/sqrt(alpha_t)*(x_t - beta_t/(1 - alpha_bar_t)*eps)"),
    ("posterior_mean_eps", "(x_t - beta_t/sqrt(1 - alpha_bar_t)*eps)/alpha_t"),
    ("posterior_mean_eps",
     r"\frac{1}{\sqrt{\alpha_t}}\left(x_t + \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\right)"),
    ("x0_from_eps", "(x_t - sqrt(1 - alpha_t)*eps)/sqrt(alpha_t)"), ("x0_from_eps", "x_t/√ᾱ_t − √(1−ᾱ_t) ε"),
    ("x0_from_eps", "(x_t - sqrt(1/alpha_bar_t - 1)*eps)/sqrt(alpha_bar_t)"),
    ("kl_1d", "log(sigma1/sigma2) + (sigma2^2 + (mu1 - mu2)^2)/(2*sigma1^2) - 1/2"),
    ("kl_1d", "log(sigma2^2/sigma1^2) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2"),
    ("kl_1d", "log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2)"),
    ("kl_1d", "log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/sigma2^2 - 1/2"),
    ("kl_isotropic", "d*log(sigma2/sigma1) + (sigma1^2 + delta2)/(2*sigma2^2) - d/2"),
    ("lt_weight", "1/(2*sigma_t^2)"), ("lt_weight", "beta_t^2/(2*sigma_t*alpha_t*(1 - alpha_bar_t))"),
    ("score_from_eps", "eps/sqrt(1 - alpha_bar_t)"), ("score_from_eps", "-eps/(1 - alpha_bar_t)"),
    ("tweedie", "(x_t + sqrt(1 - alpha_bar_t)*score)/sqrt(alpha_bar_t)"), ("tweedie", "x_t + (1 - abar_t) score"),
    ("dsm_target", "-(x_t - sqrt(alpha_bar_t)*x_0)/sqrt(1 - alpha_bar_t)"),
    ("ddim_sigma", "eta*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*(1 - alpha_bar_t/alpha_bar_prev)"),
    ("ddim_sigma", "eta*sqrt((1 - alpha_bar_t)/(1 - alpha_bar_prev))*sqrt(1 - alpha_bar_t/alpha_bar_prev)"),
    ("cfg_w", "eps_u + w*(eps_c - eps_u)"), ("cfg_w", "(1 - w)*eps_c + w*eps_u"), ("cfg_w", "(1+w) ε_u − w ε_c"),
    ("cfg_s", "eps_u + (s-1)*(eps_c - eps_u)"), ("cfg_s", "(1 + s)*eps_c - s*eps_u"),
    ("v_from_eps", "sqrt(1 - alpha_bar_t)*eps - sqrt(alpha_bar_t)*x_0"),
    ("x0_from_v", "(x_t - sqrt(1 - alpha_bar_t)*v)/sqrt(alpha_bar_t)"),
    ("snr", "sqrt(alpha_bar_t)/sqrt(1 - alpha_bar_t)"), ("snr", "(1 - alpha_bar_t)/alpha_bar_t"),
    ("vp_sde_drift", "-beta(t) x(t)"), ("vp_sde_diffusion", "beta_t"),
    ("pf_ode_drift_eps", "-beta_t/2*(x_t - 2*eps/sqrt(1 - alpha_bar_t))"),
    ("snr_weight", "(snr_prev - snr_t)/2"), ("zero_snr_rescale", "sqrt(alpha_bar_t) - sqrt(alpha_bar_T)"),
    ("v_velocity", "cos(phi)*eps + sin(phi)*x_0"), ("flow_velocity", "x_0 - eps"),
    ("forward_var_induction", "1 - alpha_bar_prev + beta_t"),
    ("posterior_var_square", "alpha_t/beta_t + 1/(1 - abar_prev)"),
]

# must be answered with a question, never a verdict
_AMBIGUOUS = [
    ("posterior_var", "(1-alpha_bar_t-1)/(1-alpha_bar_t)*beta_t"), ("forward_var", "1 - alpha_bar_t-1"),
    ("forward_mean", "√1−ᾱ_t x_0"), ("forward_var", "√1−ᾱ_t"), ("posterior_var", "β_t(1−ᾱt−1)/(1−ᾱt)"),
    ("ddim_sigma", "eta*sqrt((1 - alpha_tm1)/(1 - alpha_bar_t))*sqrt(1 - alpha_bar_t/alpha_tm1)"),
    ("forward_mean", "sqrt(alphas_cumprod[t]) * x_0"), ("ddim_update", "sqrt(alpha_bar_prev)*x_t + noise"),
]


def _slips(q: catalogue.Question, ref: sp.Expr) -> list[sp.Expr]:
    """Typical slips applied to the reference (generated here, independently of the checker's mistake rules)."""
    syms = {s.name: s for s in ref.free_symbols}
    out = []
    if "alpha_bar_t" in syms and "alpha_t" in {n for n in q.names}:
        out.append(ref.subs(syms["alpha_bar_t"], sp.Symbol("alpha_t", positive=True)))
    if "alpha_bar_t" in syms and "alpha_bar_prev" in q.names:
        out.append(ref.subs(syms["alpha_bar_t"], sp.Symbol("alpha_bar_prev", positive=True)))
    out.append(-ref)
    out.append(2 * ref)
    sqrts = [e for e in sp.preorder_traversal(ref) if e.is_Pow and e.exp == sp.Rational(1, 2)]
    if sqrts:
        out.append(ref.subs(sqrts[0], sqrts[0].base))
    return out


def probes() -> list[Probe]:
    rng = random.Random(15)
    out: list[Probe] = []
    for q in questions():
        forms = [q.reference, *q.equivalents]
        for k, text in enumerate(forms):
            expr = _expr(q, text)
            out.append(Probe(q.id, text if k else sp.sstr(expr), "plain", True))
            out.append(Probe(q.id, render(expr, "paper", rng), "paper", True))
            out.append(Probe(q.id, render(expr, "unicode", rng), "unicode", True))
            out.append(Probe(q.id, render_latex(expr), "latex", True))
        wrong = [_expr(q, m.answer) for m in q.mistakes] + _slips(q, _expr(q, q.reference))
        fams = ["plain", "paper", "unicode", "latex"]
        for k, expr in enumerate(wrong):
            fam = fams[(k + len(q.id)) % 4]
            text = render_latex(expr) if fam == "latex" else render(expr, fam, rng)
            out.append(Probe(q.id, text, f"wrong-{fam}", False))
    out += [Probe(qid, text, "other", True) for qid, text in _OTHER_RIGHT]
    out += [Probe(qid, text, "wrong-handwritten", False) for qid, text in _WRONG]
    out += [Probe(qid, text, "ambiguous", None) for qid, text in _AMBIGUOUS]
    from tests.test_checks_security import LATEX_ATTACKS, attacks

    sentinel = Path("/nonexistent-dir-ddpm-lessons/pwned")
    out += [Probe("posterior_mean_x0", text, "hostile", None) for text in attacks(sentinel) + LATEX_ATTACKS]
    return out


@dataclass
class Figures:
    by_family: dict[str, Counter]
    worst_s: float
    failures: list[str]


def run_probes() -> Figures:
    by_family: dict[str, Counter] = defaultdict(Counter)
    failures: list[str] = []
    worst = 0.0
    for pr in probes():
        t0 = time.perf_counter()
        r = check(pr.qid, pr.text, timeout=5.0)
        worst = max(worst, time.perf_counter() - t0)
        c = by_family[pr.family]
        c["n"] += 1
        c[r.status] += 1
        if pr.right is True and r.status != "correct":
            failures.append(f"[{pr.family}] {pr.qid}: {pr.text!r} -> {r.status}: {r.feedback[:160]}")
        if pr.right is False:
            if r.status == "correct":
                failures.append(f"[{pr.family}] ACCEPTED WRONG {pr.qid}: {pr.text!r}")
            elif r.status != "known_mistake":
                failures.append(f"[{pr.family}] unnamed {pr.qid}: {pr.text!r} -> {r.status}: {r.feedback[:120]}")
        if pr.right is None and r.status != "invalid":
            failures.append(f"[{pr.family}] NOT INVALID {pr.qid}: {pr.text[:60]!r} -> {r.status}")
    return Figures(dict(by_family), worst, failures)


def table(fig: Figures) -> str:
    rows = ["family               n   correct  named  incorrect  invalid  timeout   rate"]
    for fam, c in sorted(fig.by_family.items()):
        n = c["n"]
        if fam.startswith("wrong"):
            rate = f"named {c['known_mistake'] / n:6.1%}"
        elif fam in ("hostile", "ambiguous"):
            rate = f"invalid {c['invalid'] / n:6.1%}"
        else:
            rate = f"accepted {c['correct'] / n:6.1%}"
        rows.append(f"{fam:<18} {n:4d}  {c['correct']:7d}  {c['known_mistake']:5d}  {c['incorrect']:9d}  "
                    f"{c['invalid']:7d}  {c['timeout']:7d}   {rate}")
    rows.append(f"worst check: {fig.worst_s:.2f} s")
    return "\n".join(rows)


@pytest.fixture(scope="module")
def figures() -> Figures:
    return run_probes()


def test_probe_set_is_large_and_covers_every_family() -> None:
    ps = probes()
    fams = Counter(p.family for p in ps)
    assert len(ps) >= 500
    assert {"plain", "paper", "unicode", "latex", "other", "hostile", "ambiguous"} <= set(fams)
    assert sum(n for f, n in fams.items() if f.startswith("wrong")) >= 100


def test_right_answers_accepted_per_family(figures: Figures) -> None:
    print("\n" + table(figures))
    for fam in ("plain", "paper", "unicode", "latex", "other"):
        c = figures.by_family[fam]
        assert c["correct"] / c["n"] >= 0.90, (fam, c, [f for f in figures.failures if f.startswith(f"[{fam}]")])


def test_every_wrong_answer_rejected_and_most_named(figures: Figures) -> None:
    wrong = [c for fam, c in figures.by_family.items() if fam.startswith("wrong")]
    assert sum(c["correct"] for c in wrong) == 0, [f for f in figures.failures if "ACCEPTED" in f]
    n = sum(c["n"] for c in wrong)
    named = sum(c["known_mistake"] for c in wrong)
    assert named / n >= 0.85, (named, n, [f for f in figures.failures if "unnamed" in f])


def test_hostile_and_ambiguous_input_is_invalid_and_bounded(figures: Figures) -> None:
    for fam in ("hostile", "ambiguous"):
        c = figures.by_family[fam]
        assert c["invalid"] == c["n"], [f for f in figures.failures if f.startswith(f"[{fam}]")]
    assert figures.worst_s < 6.0
