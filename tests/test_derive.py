"""The SymPy derivations: each runs its own symbolic and numeric assertions; here we check what they return."""

from __future__ import annotations

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
