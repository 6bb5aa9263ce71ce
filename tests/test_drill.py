"""Interview drill: every level populated, model answers pass their own checks, numbers match closed forms,
the terminal drill scores a scripted session."""

from __future__ import annotations

import io
import math
import re

import pytest

from ddpm_lessons import drill


def test_levels_and_kinds_are_populated():
    for level in drill.LEVELS:
        kinds = {q.kind for q in drill.bank(level)}
        assert kinds == {"derivation", "numeric", "reveal"}, (level, kinds)
    ids = [q.id for q in drill.bank()]
    assert len(ids) == len(set(ids))
    with pytest.raises(ValueError, match="level"):
        drill.bank("principal")


@pytest.mark.parametrize("q", drill.bank(kind="derivation"), ids=lambda q: q.id)
def test_derivation_model_answers_are_accepted(q):
    expr = re.sub(r"\s*\(\[.*$", "", q.model_answer).rstrip(".")
    assert drill.answer(q.id, expr).ok


def test_numeric_answers_match_closed_forms():
    # independent closed forms (not the package) for the values the bank computes with the package
    prod = 1.0
    for k in range(1000):
        prod *= 1 - (1e-4 + k * (0.02 - 1e-4) / 999)
    assert drill.get("mid_alpha_bar_T").expected() == pytest.approx(prod, rel=1e-9)
    assert drill.get("senior_kl_numeric").expected() == pytest.approx(0.5 * (math.log(4) + 0.5 - 1), rel=1e-6)
    assert drill.get("staff_ddim_sigma_numeric").expected() == pytest.approx(math.sqrt(0.4 * 0.375), rel=1e-9)
    assert drill.get("staff_cfg_scale").expected() == 4.0
    ab10 = 1.0
    for k in range(10):
        ab10 *= 1 - (1e-4 + k * (0.02 - 1e-4) / 9)
    lt = 0.5 * (-math.log(1 - ab10) + (1 - ab10) - 1) / math.log(2)
    assert drill.get("staff_short_chain").expected() == pytest.approx(lt, rel=1e-9)


def test_check_number_verdicts():
    assert drill.answer("senior_kl_numeric", "0.443").ok
    wrong = drill.answer("senior_kl_numeric", 4.43)
    assert wrong.status == "incorrect" and "factor" in wrong.feedback
    assert drill.answer("senior_kl_numeric", "zero").status == "invalid"
    assert "Not yet answered" in drill.answer("senior_kl_numeric", ...).feedback
    with pytest.raises(ValueError, match="reveal"):
        drill.answer("staff_lsimple", "because")


def test_terminal_drill_scores_a_session():
    qs = [q for q in drill.bank("staff")]
    script = []
    for q in qs:
        if q.kind == "reveal":
            script += ["my answer", "y"]
        elif q.kind == "numeric":
            script.append(repr(q.expected()))
        else:
            script.append("0")  # wrong on purpose
    out = io.StringIO()
    points, asked = drill.run_drill("staff", seed=0, inp=io.StringIO("\n".join(script) + "\n"), out=out)
    # the order is shuffled, so the scripted answers can land on other questions: only check bookkeeping here
    assert asked == len(qs) and 0 <= points <= asked and f"Score: {points}/{asked}" in out.getvalue()
    points, asked = drill.run_drill("mid", n=2, seed=1, inp=io.StringIO(""), out=io.StringIO())
    assert (points, asked) == (0, 0)  # end of input stops cleanly


def test_terminal_drill_in_order_answers():
    q = drill.get("senior_kl_numeric")
    out = io.StringIO()
    qs = list(drill.bank("senior"))
    import random

    random.Random(3).shuffle(qs)
    lines = []
    for item in qs:
        if item.kind == "reveal":
            lines += ["...", "n"]
        elif item.kind == "numeric":
            lines.append(f"{item.expected():.6g}")
        else:
            lines.append(re.sub(r"\s*\(\[.*$", "", item.model_answer).rstrip("."))
    points, asked = drill.run_drill("senior", seed=3, inp=io.StringIO("\n".join(lines) + "\n"), out=out)
    n_reveal = sum(item.kind == "reveal" for item in qs)
    assert asked == len(qs) and points == len(qs) - n_reveal, out.getvalue()
    assert q.prompt in out.getvalue()
