"""The fast paths of the mistake search change no verdict: memoized node values are bit for bit those of the compiled
expressions, the lazy generator yields the same variants in the same order, and building variants leaves SymPy's
construction cache alone (issue #15's latency)."""

from __future__ import annotations

import math

import pytest
import sympy as sp

from ddpm_lessons.checks import engine
from ddpm_lessons.checks.mistakes import auto_mistakes, raw_mistakes

QIDS = ["posterior_mean_x0", "ddim_update", "kl_1d", "zero_snr_rescale", "cfg_s", "forward_var_induction"]
ANSWERS = {"posterior_mean_x0": "sqrt(alpha_bar_prev)*beta_t*x_0/(1 - alpha_bar_t) + sqrt(alpha_t)*(1 - "
                                "alpha_bar_prev)*x_t/(1 - alpha_bar_t) + 1/7",
           "kl_1d": "(log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2)^2"}


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b or (math.isnan(a) and math.isnan(b))


def _sources(qid: str) -> list[sp.Expr]:
    p = engine.prepared(qid)
    out = [p.ref, sp.expand(p.ref)]
    if qid in ANSWERS:
        out.append(p.parse(ANSWERS[qid]))
    return out


@pytest.mark.parametrize("qid", QIDS)
def test_memoized_values_are_those_of_the_compiled_variants(qid: str) -> None:
    p = engine.prepared(qid)
    swaps, subs = p.swaps_subs
    n = 0
    for src in _sources(qid):
        f_all, f_one, mp3 = engine._Memo(p.fpoints), engine._Memo(p.fpoints[:1]), engine._Memo(p.points[:3],
                                                                                                 engine._MP_OPS)
        for raw in raw_mistakes(src, p.symbols, p.linear, swaps, subs):
            expr = raw.expr()
            ff, fm = engine.compile_float(expr), engine.compile_expr(expr)
            want_f = [engine._eval_f(ff, env) for env in p.fpoints]
            got_f = [engine._post_f(v) for v in f_all.raw_values(raw)]
            assert all(_same(a, b) for a, b in zip(got_f, want_f, strict=True)), expr
            assert _same(engine._post_f(f_one.raw_values(raw)[0]), want_f[0]), expr
            want_mp = [repr(engine._eval(fm, env)) for env in p.points[:3]]
            assert [repr(engine._post_mp(v)) for v in mp3.raw_values(raw)] == want_mp, expr
            n += 1
    assert n > 20


@pytest.mark.parametrize("qid", QIDS)
def test_lazy_variants_are_the_built_ones_in_order(qid: str) -> None:
    p = engine.prepared(qid)
    swaps, subs = p.swaps_subs
    for src in _sources(qid):
        built = auto_mistakes(src, p.symbols, p.linear, swaps, subs)
        lazy = [raw.build() for raw in raw_mistakes(src, p.symbols, p.linear, swaps, subs)]
        assert [(c.tag, c.hint, c.site, c.swap, c.expr) for c in built] == \
               [(c.tag, c.hint, c.site, c.swap, c.expr) for c in lazy]


def test_building_variants_keeps_sympys_cache_and_evaluation() -> None:
    """``sympy.evaluate(False)`` clears SymPy's whole cache on entry and exit: the generator must not use it."""
    from sympy.core.parameters import global_parameters

    p = engine.prepared("posterior_mean_x0")
    x = sp.Symbol("x_probe_cache", positive=True)
    kept = sp.sqrt(x + 3) * x  # an evaluated construction, in the cache now
    before = sp.Add.__new__.cache_info().currsize
    variants = auto_mistakes(p.ref, p.symbols, p.linear)
    assert variants and global_parameters.evaluate
    assert sp.Add.__new__.cache_info().currsize >= before > 0
    assert sp.sqrt(x + 3) * x is kept  # still the cached object
