"""Tests of the continuous-time and CFG derivations appended to ddpm_lessons.derive (notebooks 07 and 09).

Each derivation asserts its own symbolic and numerical checks when run; these tests run them, pin the results a
notebook prints, and check the CFG closed forms against an independent Monte Carlo simulation.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp

from ddpm_lessons import derive


@pytest.mark.parametrize("name", ["vp_sde_limit", "pf_ode_gaussian", "ddim_is_euler", "snr_weight",
                                  "snr_bound_gaussian", "v_angular_velocity", "cfg_gaussian_terminal"])
def test_derivation_runs_and_checks(name):
    der = derive.CONTINUOUS_DERIVATIONS[name]()
    assert der.checks and der.result
    assert "$" in der._repr_markdown_()


def test_vp_sde_limit_gap_shrinks_like_one_over_T():
    gaps = derive.vp_sde_limit().result["gap"]
    assert gaps[1] == pytest.approx(-0.065, abs=0.005)  # "about 7% at T = 1000" (issue #18)
    assert all(abs(b / a) == pytest.approx(0.1, rel=0.15) for a, b in zip(gaps[1:], gaps[2:], strict=False))


def test_cfg_closed_forms():
    r = derive.cfg_gaussian_terminal().result
    assert tuple(r["example"]) == (sp.Rational(1, 4), sp.Rational(7, 16), sp.Rational(4, 7))
    s_c, s_u, w = derive.s_c, derive.s_u, derive.w_g
    assert sp.simplify(r["var_ode"] - s_c ** (2 + 2 * w) / s_u ** (2 * w)) == 0
    # w = 1 by hand: s_c^2 (s_c^4 + s_c^2 s_u^2 + s_u^4) / (3 s_u^4)
    want = s_c ** 2 * (s_c ** 4 + s_c ** 2 * s_u ** 2 + s_u ** 4) / (3 * s_u ** 4)
    assert sp.simplify(sp.factor(r["var_sde"].subs(w, 1)) - want) == 0


@pytest.mark.parametrize("mu_c, s_c, mu_u, s_u, w", [(0.3, 1.0, -0.4, 2.0, 1.0), (1.0, 0.5, 0.0, 1.5, 3.0)])
def test_cfg_closed_forms_against_simulation(mu_c, s_c, mu_u, s_u, w):
    sim = derive.cfg_gaussian_simulate(mu_c, s_c, mu_u, s_u, w, n=20000, seed=1)
    mom = derive.cfg_gaussian_moments(mu_c, s_c, mu_u, s_u, w)
    vals = {derive.s_c: s_c, derive.s_u: s_u, derive.w_g: w}
    r = derive.cfg_gaussian_terminal().result
    var_ode, var_sde = (float(r[k].subs(vals)) for k in ("var_ode", "var_sde"))
    # the ODE is affine in x_T: output variance / input variance is exact up to Heun's error (< 1e-4 here)
    assert sim["ode"][1] / sim["start"][1] == pytest.approx(var_ode, rel=1e-3)
    # SDE: Monte Carlo standard error of a variance is var * sqrt(2/n) = 1%; 5 standard errors, plus 0.5% weak error
    assert sim["sde"][1] == pytest.approx(var_sde, rel=5 * math.sqrt(2 / 20000) + 5e-3)
    assert sim["sde"][0] == pytest.approx(mom["sde"][0], abs=5 * math.sqrt(var_sde / 20000) + 5e-3)
    assert var_sde != pytest.approx(var_ode, rel=0.05)
    assert mom["tilted"][1] != pytest.approx(var_ode, rel=0.05)


def test_snr_bound_schedule_invariance_and_convergence():
    num = derive.snr_bound_numbers()
    lo, hi = num["range"]
    assert lo == pytest.approx(4.04e-5, rel=0.01) and hi == pytest.approx(1.0e4, rel=0.01)
    L = num["continuous"]
    for name in ("linear", "cosine"):
        errs = [v - L for v in num[name]]
        assert all(e > 0 for e in errs)  # more steps: a tighter bound, from above ([VDM] §4)
        assert all(b < a for a, b in zip(errs, errs[1:], strict=False))
        assert errs[-1] < 0.02 * L
    assert abs(num["linear"][1] - num["cosine"][1]) > 1.0  # at T = 100 the schedules still differ


def test_snr_weight_is_vlb_weight():
    r = derive.snr_weight().result["weight"]
    vals = {derive.alpha_bar_t: 0.3, derive.alpha_bar_prev: 0.4}
    assert float(r.subs(vals)) == pytest.approx(((0.4 / 0.6) / (0.3 / 0.7) - 1) / 2)
