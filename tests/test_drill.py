"""Interview drill: every level populated, model answers pass their own checks, numbers match closed forms, the
terminal drill retries invalid input, gives one more try after a diagnosis, scores by level, and keeps progress
(spaced repetition) in the data directory."""

from __future__ import annotations

import io
import math
import random
import re
import subprocess
import sys

import pytest

from ddpm_lessons import drill


def model_expression(q: drill.DrillQuestion) -> str:
    """The expression a derivation question's model answer starts with (before ' ([', ': ' or '. ')."""
    return re.split(r" \(\[|: |\.\s|\.$", q.model_answer, maxsplit=1)[0].strip()


def test_levels_and_kinds_are_populated():
    for level in drill.LEVELS:
        kinds = {q.kind for q in drill.bank(level)}
        assert {"derivation", "numeric", "reveal"} <= kinds <= set(drill.KINDS), (level, kinds)
    ids = [q.id for q in drill.bank()]
    assert len(ids) == len(set(ids))
    with pytest.raises(ValueError, match="level"):
        drill.bank("principal")


def test_continuous_time_questions_at_senior_and_staff():
    # issue #18: SDE / PF-ODE / SNR / zero terminal SNR / v questions at senior and staff level
    ids = {q.id for q in drill.bank()}
    assert {"senior_vp_sde", "senior_vp_sde_diffusion", "senior_pf_ode", "senior_v_velocity"} <= ids
    assert {"staff_pf_ode_eps", "staff_ddim_ode", "staff_snr_weight", "staff_terminal_signal",
            "staff_sd_terminal_signal", "staff_zero_snr"} <= ids


@pytest.mark.parametrize("q", drill.bank(kind="derivation"), ids=lambda q: q.id)
def test_derivation_model_answers_are_accepted(q):
    assert drill.answer(q.id, model_expression(q)).ok, model_expression(q)


def test_errata_2_senior_score_is_the_conditional_score():
    # errata 2: -eps/sqrt(1 - alpha_bar_t) is the score of q(x_t | x_0), not of the marginal q_t(x_t)
    q = drill.get("senior_score")
    assert "q(x_t | x_0)" in q.prompt and "log q_t(x_t)" not in q.prompt.replace("q(x_t | x_0)", "")
    assert "E[ε | x_t]" in q.model_answer and "marginal" in q.model_answer
    assert drill.answer("senior_score", "-eps/sqrt(1 - alpha_bar_t)").ok


def test_errata_8_and_13_model_answers():
    # errata 8: Table 2 of [DDPM] compares mu-tilde- and eps-prediction; x0 is only a remark in Sec. 3.2
    text = drill.get("senior_eps_vs_x0").model_answer
    assert "x0-prediction was worse in their ablation" not in text and "x_0-prediction was worse" not in text
    assert "μ̃" in text and "§3.2" in text and "not a row of Table 2" in text
    # errata 13: ancestral sampling discretises the reverse VP-SDE; annealed Langevin is MCMC (the corrector)
    text = drill.get("senior_langevin").model_answer
    assert "same reverse-time dynamics" not in text and "different discretisation" not in text
    assert "MCMC" in text and "corrector" in text and "reverse-time VP-SDE" in text


def test_errata_26_docstring_and_no_dead_helpers():
    import inspect

    src = inspect.getsource(drill)
    assert 'drill.answer("kl_numeric"' not in src and 'drill.answer("senior_kl_numeric"' in src
    assert "_linear_snr_500" not in src


def test_drill_module_does_not_import_torch():
    code = "import sys, ddpm_lessons.drill; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_numeric_answers_match_closed_forms():
    # independent closed forms (not the package) for the values the bank computes with the package
    prod = 1.0
    for k in range(1000):
        prod *= 1 - (1e-4 + k * (0.02 - 1e-4) / 999)
    assert drill.get("mid_alpha_bar_T").expected() == pytest.approx(prod, rel=1e-9)
    assert drill.get("staff_terminal_signal").expected() == pytest.approx(math.sqrt(prod), rel=1e-9)
    sd = 1.0
    for k in range(1000):
        b = (0.00085 ** 0.5 + k * (0.012 ** 0.5 - 0.00085 ** 0.5) / 999) ** 2
        sd *= 1 - b
    assert drill.get("staff_sd_terminal_signal").expected() == pytest.approx(math.sqrt(sd), rel=1e-9)
    assert drill.get("staff_sd_terminal_signal").expected() == pytest.approx(0.068, abs=5e-4)  # [ZSNR]'s figure
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


def _session(qid: str, lines: list[str], **kw) -> tuple[tuple[int, int], str]:
    """Run the drill on exactly one question (level filter + n=1 + a progress that puts it first)."""
    q = drill.get(qid)
    prog = drill.Progress(None)
    prog.items = {other.id: {"box": 4, "seen": 1, "correct": 1, "missed": False, "last": 0.0}
                  for other in drill.bank(q.level) if other.id != qid}
    prog.items[qid] = {"box": 0, "seen": 1, "correct": 0, "missed": True, "last": 1.0}
    out = io.StringIO()
    res = drill.run_drill(q.level, n=1, inp=io.StringIO("\n".join(lines) + "\n"), out=out, progress=prog, **kw)
    return res, out.getvalue()


def test_invalid_input_gets_the_hint_and_another_try():
    (points, asked), out = _session("mid_forward_var", ["abar", "1 - alpha_bar_t"])
    assert (points, asked) == (1, 1)
    assert "did you mean `alpha_bar_t`" in out and "Try again" in out and "Model answer" not in out


def test_wrong_answer_gets_its_diagnosis_and_one_more_try():
    (points, asked), out = _session("mid_forward_var", ["sqrt(1 - alpha_bar_t)", r"1 - \bar\alpha_t"])
    assert (points, asked) == (1, 1)
    assert "standard deviation" in out and "One more try" in out and "Model answer" not in out
    (points, asked), out = _session("mid_forward_var", ["sqrt(1 - alpha_bar_t)", "alpha_bar_t"])
    assert (points, asked) == (0, 1) and "Model answer: 1 - alpha_bar_t" in out
    (points, asked), out = _session("mid_forward_var", ["sqrt(1 - alpha_bar_t)"], tries=1)
    assert (points, asked) == (0, 1) and "Model answer" in out and "One more try" not in out


def test_multi_line_derivation_answer():
    lines = ["1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev)) =", "(1 - alpha_bar_prev)/(1 - alpha_bar_t)*beta_t"]
    (points, asked), out = _session("senior_posterior_var", lines)
    assert (points, asked) == (1, 1), out


def test_score_by_level_and_spaced_repetition(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_LESSONS_DATA_DIR", str(tmp_path))
    assert drill.data_dir() == tmp_path
    prog = drill.Progress.default()
    qs = list(drill.bank("mid"))
    script = []
    order = prog.order(qs, random.Random(0))
    missed = order[0]
    for q in order:
        if q.kind in ("reveal", "code"):
            script += ["my answer", "n" if q is missed else "y"]
        elif q.kind == "numeric":
            script += ["1e9", "1e9"] if q is missed else [repr(q.expected())]
        else:
            script += ["0", "0"] if q is missed else [model_expression(q)]
    out = io.StringIO()
    points, asked = drill.run_drill("mid", seed=0, inp=io.StringIO("\n".join(script) + "\n"), out=out, progress=prog)
    text = out.getvalue()
    assert asked == len(qs) and points == len(qs) - 1, text
    assert f"Score: {points}/{asked}" in text and f"mid     {points}/{asked}" in text
    # saved to disk; the missed question comes first next time, then the weakest boxes
    again = drill.Progress.default()
    assert again.items[missed.id]["missed"] and again.items[missed.id]["box"] == 0
    assert again.order(qs, random.Random(1))[0].id == missed.id
    again.reset()
    assert not (tmp_path / "drill_progress.json").exists() and drill.Progress.default().items == {}


def test_end_of_input_stops_cleanly():
    points, asked = drill.run_drill("mid", n=2, seed=1, inp=io.StringIO(""), out=io.StringIO())
    assert (points, asked) == (0, 0)


def test_cli_reset_flag(tmp_path, monkeypatch):
    import argparse

    monkeypatch.setenv("DDPM_LESSONS_DATA_DIR", str(tmp_path))
    (tmp_path / "drill_progress.json").write_text('{"version": 1, "questions": {"mid_forward_var": '
                                                  '{"box": 0, "seen": 1, "correct": 0, "missed": true, "last": 1}}}')
    parser = argparse.ArgumentParser()
    drill.add_subparser(parser.add_subparsers())
    args = parser.parse_args(["drill", "--reset", "--n", "1", "--level", "mid"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert args.handler(args) == 0
    assert not (tmp_path / "drill_progress.json").exists()


def test_notebook_08_covers_the_whole_bank():
    """Notebook 08 is the drill bank laid out as cells: every question's prompt is there and every checked question is
    checked, so a question added to (or removed from) ``drill.bank`` cannot silently miss the notebook."""
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "08_interview_drill.ipynb").read_text())
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    answered = set(re.findall(r'drill\.answer\("(\w+)"', code))
    checked = set(re.findall(r'checks\.check(?:_derivation)?\("(\w+)"', code))
    bank = [q for level in drill.LEVELS for q in drill.bank(level)]
    for q in bank:
        assert q.prompt.splitlines()[0][:60] in markdown, q.id
        if q.kind == "derivation":
            assert q.check_id in checked, q.id
        elif q.kind in ("numeric", "code"):
            assert q.id in answered, q.id
    assert answered <= {q.id for q in bank}, answered - {q.id for q in bank}
