"""The SymPy derivations: each runs its own symbolic and numeric assertions; here we check what they return."""

from __future__ import annotations

import re

import pytest
import sympy as sp

from ddpm_lessons import derive
from ddpm_lessons.checks import check


@pytest.fixture(scope="module")
def derivations() -> dict[str, derive.Derivation]:
    return {name: fn() for name, fn in derive.DERIVATIONS.items()}  # each raises AssertionError on a mismatch


def test_every_derivation_checks_itself(derivations: dict[str, derive.Derivation]) -> None:
    assert list(derivations) == ["forward_marginal", "posterior_completing_square", "gaussian_kl_1d",
                                 "gaussian_kl_isotropic", "ddim_marginal", "posterior_mean_eps", "lt_weight"]
    for name, der in derivations.items():
        assert len(der) >= 4, name
        assert any("(symbolic)" in c for c in der.checks), name
        assert any("equals" in c and "points" in c for c in der.checks), name  # against the package, numerically
        assert der.result


def test_display(derivations: dict[str, derive.Derivation]) -> None:
    der = derivations["posterior_completing_square"]
    md = der._repr_markdown_()
    assert md.startswith("**Posterior") and "$$" in md and "[DDPM] Eq. 7" in md and "Checked:" in md
    assert r"\tilde\beta_t" in md and r"\bar\alpha_{t-1}" in md  # the paper's symbols, not ASCII names
    assert der._repr_latex_().startswith("$\\begin{aligned}")
    step = next(s for s in der if s.expr is not None)
    assert step._repr_latex_().startswith("$\\displaystyle") and step._repr_markdown_()
    assert str(der).startswith("Posterior") and "checked:" in str(der)
    assert isinstance(der[0], derive.Step)


def test_results_are_accepted_by_the_checker(derivations: dict[str, derive.Derivation]) -> None:
    """The derived closed forms pass the derivation checks of the catalogue (two independent routes agree)."""
    pairs = [
        ("forward_mean", derivations["forward_marginal"].result["mean"]),
        ("forward_var", derivations["forward_marginal"].result["var"]),
        ("posterior_mean_x0", derivations["posterior_completing_square"].result["mean"]),
        ("posterior_var", derivations["posterior_completing_square"].result["var"]),
        ("kl_1d", derivations["gaussian_kl_1d"].result["kl"]),
        ("kl_isotropic", derivations["gaussian_kl_isotropic"].result["kl"]),
        ("ddim_sigma", derivations["ddim_marginal"].result["sigma"]),
        ("posterior_mean_eps", derivations["posterior_mean_eps"].result["mean"]),
        ("lt_weight", derivations["lt_weight"].result["weight"]),
    ]
    for qid, expr in pairs:
        r = check(qid, expr)
        assert r.ok, (qid, r.status, r.feedback)


def test_assertions_can_fail() -> None:
    der = derive.Derivation("probe")
    with pytest.raises(AssertionError):
        derive._assert_equal(der, derive.MU_TILDE, derive.MU_TILDE + derive.x_0 / 1000, "mean")
    with pytest.raises(AssertionError):
        derive._assert_equal(der, derive.BETA_TILDE, derive.beta_t, "variance")
    with pytest.raises(AssertionError):
        derive._assert_close(der, [1.0, 2.0], [1.0, 2.0 + 1e-6], "values")
    derive._assert_equal(der, sp.sqrt(derive.alpha_bar_t), sp.sqrt(derive.alpha_t) * sp.sqrt(derive.alpha_bar_prev),
                         "schedule relations are substituted")
    assert der.checks == ["schedule relations are substituted (symbolic)"]


def _denominators(expr: sp.Basic) -> list[sp.Basic]:
    return [a.base for a in sp.preorder_traversal(expr) if isinstance(a, sp.Pow) and a.exp.is_negative]


def test_steps_read_like_the_paper(derivations: dict[str, derive.Derivation]) -> None:
    """Errata 22-23: every displayed expression has its text, no step shows ``a = a``, no denominator is written as
    ``alpha_bar - 1`` (SymPy's form), and sums start like the paper's (``1 - alpha_bar_t``)."""
    for name, der in derivations.items():
        for i, s in enumerate(der, 1):
            where = f"{name} step {i}"
            assert s.text.strip(), where  # erratum 22: step 6 of forward_marginal had an expression and no text
            if s.expr is None:
                continue
            eqs = [s.expr] if isinstance(s.expr, sp.Equality) else [e for e in s.expr.args
                                                                    if isinstance(e, sp.Equality)]
            for e in eqs:
                assert e.lhs != e.rhs, where  # erratum 22: step 4 rendered "1 - a b = 1 - a b"
            for den in _denominators(s.expr):  # erratum 23: "(alpha_bar_prev - 1)/(alpha_bar_prev alpha_t - 1)"
                const = den.as_coeff_Add()[0] if isinstance(den, sp.Add) else 0
                assert const >= 0, (where, den)
            assert not re.search(r"- [^+]*\+ 1(\s|\\right|\}|$)", derive.latex(s.expr)), where  # "- a + 1"


def test_paper_forms_are_displayed(derivations: dict[str, derive.Derivation]) -> None:
    """Erratum 23: the posterior shows [DDPM] Eq. 7 as printed; erratum 17: Eq. 6 is the Gaussian, not Bayes' ratio."""
    der = derivations["posterior_completing_square"]
    shown = [derive.latex(s.expr) for s in der if s.expr is not None]
    assert r"\tilde\beta_t = \frac{\beta_t \left(1 - \bar\alpha_{t-1}\right)}{1 - \bar\alpha_t}" in shown
    assert any(r"\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}} \beta_t x_0}{1 - \bar\alpha_t}" in tex for tex in shown)
    eq6 = [s for s in der if "Eq. 6" in s.ref]
    assert len(eq6) == 1 and r"\mathcal N(x_{t-1};" in eq6[0].text and "propto" not in eq6[0].text
    assert "Eq. 6" not in der[0].ref  # the Bayes step cites the two factors it multiplies, Eq. 2 and Eq. 4
    ddim = derivations["ddim_marginal"]
    assert derive.latex(ddim[len(ddim) - 1].expr) == (
        r"\sigma_t^{2} = \frac{\beta_t \left(1 - \bar\alpha_{t-1}\right)}{1 - \bar\alpha_t}")
    fm = [derive.latex(s.expr) for s in derivations["forward_marginal"] if s.expr is not None]
    assert r"\alpha_t \left(1 - \bar\alpha_{t-1}\right) + \beta_t = 1 - \bar\alpha_t" in fm  # the induction, unexpanded
    assert r"\alpha_t \beta_{t-1} + \beta_t = 1 - \alpha_t \alpha_{t-1}" in fm


def test_printed_errors_are_portable() -> None:
    """Erratum 22 / issue 14: float64 round-off (0 on one CPU, 1e-16 on another) prints the same text."""
    shown = []
    for err in (0.0, 1e-16, 3e-13):
        der = derive.Derivation("probe")
        derive._assert_close(der, [1.0 + err], [1.0], "values")
        shown.append(der.checks[-1])
    assert len(set(shown)) == 1 and shown[0].endswith("(max rel. error < 1e-10)")
    for name, fn in derive.DERIVATIONS.items():
        if name in ("forward_marginal", "gaussian_kl_isotropic"):
            assert all("max rel. error" not in c or "< 1e-10" in c for c in fn().checks), name
