"""Issue #15 through the public API: notations the checker reads, ambiguity it refuses to guess, diagnoses of
mistakes (also in rewritten forms), whole derivations checked step by step, and the torch-free check path."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import sympy as sp

from ddpm_lessons.checks import check, check_derivation, get_question, questions


# -- the issue's own examples ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("qid, answer", [
    ("x0_from_eps", r"\frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}"),
    ("x0_from_eps", "(x_t - sqrt{1 - abar_t} eps_theta(x_t,t))/sqrt{abar_t}"),
    ("posterior_mean_eps", "1/\u221a\u03b1_t (x_t \u2212 \u03b2_t/\u221a(1\u2212\u1fb1_t) \u03b5_\u03b8(x_t, t))"),
    ("tweedie", "(x_t + (1 - alpha_bar_t) s_theta(x_t, t))/sqrt(alpha_bar_t)"),
])
def test_model_outputs_written_as_calls(qid: str, answer: str) -> None:
    r = check(qid, answer)
    assert r.ok, (r.status, r.feedback)


@pytest.mark.parametrize("qid, answer", [
    ("forward_mean", "\u221a\u1fb1_t x_0"),  # was: "use `*`", then "a square root seems to be missing"
    ("posterior_var", "(1-alpha_bar_{t-1})/(1-alpha_bar_t)*beta_t"),  # was: "braces are not allowed"
    ("posterior_var", r"\frac{\beta_t (1-\bar\alpha_{t-1})}{1-\bar\alpha_t}"),  # our own rendering
    # DDIM Eq. 16 in DDIM's own notation
    ("ddim_sigma", "eta*sqrt((1 - alpha_tm1)/(1 - alpha_t))*sqrt(1 - alpha_t/alpha_tm1)"),
    ("forward_var", "Var(x_t|x_0) = 1 - \u1fb1\u209c"),
    ("posterior_mean_x0",
     "mu_tilde = sqrt(abar_prev) beta_t/(1 - abar_t) x0 + sqrt(alpha_t)(1 - abar_prev)/(1 - abar_t) xt"),
    ("forward_sample", "np.sqrt(alpha_prod_t)*x0 + np.sqrt(beta_prod_t)*noise"),  # diffusers' names
    ("cfg_w", "noise_pred_uncond + (1 + w)*(noise_pred_text - noise_pred_uncond)"),
    ("snr_weight", r"\lambda_t = \frac{1}{2}\left(\frac{\mathrm{SNR}(t-1)}{\mathrm{SNR}(t)} - 1\right)"),
])
def test_issue_examples_are_accepted(qid: str, answer: str) -> None:
    r = check(qid, answer)
    assert r.ok, (r.status, r.feedback)


@pytest.mark.parametrize("qid, answer, fragment", [
    ("posterior_var", "(1-alpha_bar_t-1)/(1-alpha_bar_t)*beta_t", "did you mean \u1fb1_{t-1} (type `alpha_bar_prev`)"),
    ("forward_var", "\u221a1\u2212\u1fb1_t", "did you mean \u221a(1 - alpha_bar_t) (type `sqrt(1 - alpha_bar_t)`)"),
    ("posterior_var", "\u03b2_t(1\u2212\u1fb1t\u22121)/(1\u2212\u1fb1t)", "is ambiguous"),  # flattened subscripts
    ("ddim_sigma", "eta*sqrt((1 - alpha_tm1)/(1 - alpha_bar_t))*sqrt(1 - alpha_bar_t/alpha_tm1)",
     "which convention do you mean?"),
    ("forward_mean", "sqrt(alphas_cumprod[t])*x_0", "`alphas_cumprod[t]` is our \u1fb1_{t+1}"),
    ("ddim_update", "sqrt(alpha_bar_prev)*x_t + noise", "`noise` is ambiguous here"),
])
def test_ambiguous_input_is_a_question_not_a_verdict(qid: str, answer: str, fragment: str) -> None:
    r = check(qid, answer)
    assert r.status == "invalid" and fragment in r.feedback, r.feedback


@pytest.mark.parametrize("qid, answer, tag", [
    ("cfg_s", "eps_u + (s-1)*(eps_c - eps_u)", "guidance_convention"),  # was a misleading "factor of 2"
    ("cfg_w", "eps_c + (w + 1)*(eps_c - eps_u)", "guidance_convention"),
    ("posterior_var", "sqrt((1-alpha_bar_prev)/(1-alpha_bar_t)*beta_t)", "whole_sqrt"),  # std for variance
    ("ddim_sigma", "eta^2*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*(1 - alpha_bar_t/alpha_bar_prev)", "whole_square"),
    ("posterior_var", "1/(alpha_t/beta_t + 1/(1 - alpha_bar_t))", "prev_swap"),  # in a rewritten form
    ("posterior_var", "1/(alpha_t/beta_t + 1/sqrt(1 - alpha_bar_prev))", "extra_sqrt"),  # in a rewritten form
    ("posterior_var", "(1 - alpha_bar_prev)*beta_t", "dropped_denominator"),
    ("snr", "alpha_bar_t/(2*(1 - alpha_bar_t))", "factor_half"),
    ("x0_from_eps", "(x_t - sqrt(1 - alpha_bar_t)*eps)/sqrt(alpha_t)", "alpha_swap"),  # one-place swap
])
def test_generated_diagnoses(qid: str, answer: str, tag: str) -> None:
    r = check(qid, answer)
    assert (r.status, r.mistake) == ("known_mistake", tag), (r.mistake, r.feedback)


def test_one_place_swap_names_both_symbols() -> None:
    r = check("posterior_mean_x0", "sqrt(alpha_bar_t)*beta_t/(1 - alpha_bar_t)*x_0 "
                                   "+ sqrt(alpha_t)*(1 - alpha_bar_prev)/(1 - alpha_bar_t)*x_t")
    assert r.mistake == "prev_swap" and "`alpha_bar_t` where `alpha_bar_prev` belongs" in r.feedback


# -- say what to type --------------------------------------------------------------------------------------------------
_TYPOS = ["abar", "alpha_bar", "beta", "alpha", "sigma", "eps_", "x", "alpha_bar_prevv", "betta_t", "epsilon_c",
          "alpha_bar_t-1", "\u221a1\u2212\u1fb1_t", "sqrt(alphas_cumprod[t])", "x_{t+5}", r"\alpha \input{x}"]


@pytest.mark.parametrize("qid", ["forward_mean", "posterior_var", "ddim_update", "cfg_w", "kl_1d"])
def test_invalid_messages_list_the_symbols_and_suggestions_are_valid_input(qid: str) -> None:
    q = get_question(qid)
    for typo in _TYPOS:
        r = check(qid, typo)
        if r.status != "invalid":
            continue
        assert "Symbols here:" in r.feedback and all(f"`{n}`" in r.feedback for n in q.names), r.feedback
        # every suggestion ("did you mean `X`", "type `X`") is itself valid input for this question
        for suggestion in re.findall(r"(?:did you mean|type) `([^`]+)`", r.feedback):
            if suggestion.endswith("(...)"):
                continue
            assert check(qid, suggestion).status != "invalid", (typo, suggestion, check(qid, suggestion).feedback)


# -- derivations ------------------------------------------------------------------------------------------------------
CHAINS = {
    "forward_var_induction": "alpha_t*(1 - alpha_bar_prev) + beta_t = alpha_t - alpha_t*alpha_bar_prev + 1 - alpha_t "
                             "= 1 - alpha_bar_t",
    "posterior_var_square": "1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev)) = beta_t*(1 - alpha_bar_prev)/(alpha_t*(1 - "
                            "alpha_bar_prev) + beta_t) = beta_t*(1 - alpha_bar_prev)/(1 - alpha_bar_t)",
    "kl_1d_chain": "-log(2*pi*sigma1^2)/2 - 1/2 + log(2*pi*sigma2^2)/2 + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) "
                   "= log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
}


@pytest.mark.parametrize("qid", sorted(CHAINS))
def test_exercise_chains_are_accepted(qid: str) -> None:
    r = check_derivation(qid, CHAINS[qid])
    assert r.ok and r.details["steps"] == ["valid"] * len(r.details["steps"]) and r.details["broken"] is None
    assert get_question(qid).start and get_question(qid).min_steps >= 2
    assert check_derivation(qid, get_question(qid).start + " = " + get_question(qid).reference).ok or \
        get_question(qid).min_steps > 2
    # the same chain as a list, and through check() with `=`
    steps = CHAINS[qid].split(" = ")
    assert check_derivation(qid, steps).ok and check(qid, CHAINS[qid]).ok


def test_broken_step_is_named_with_what_changed() -> None:
    r = check_derivation("forward_var_induction", "alpha_t*(1 - alpha_bar_prev) + beta_t = "
                         "alpha_t - alpha_t*alpha_bar_prev + 1 - alpha_t = 1 - alpha_t")
    assert (r.status, r.mistake, r.details["broken"]) == ("known_mistake", "missing_factor", 3)
    assert r.details["steps"] == ["valid", "valid", "broken"]
    assert "Steps 1-2 are right. Step 2 \u2192 3" in r.feedback and "`alpha_bar_prev`" in r.feedback
    # "valid only if": a one-place swap between two steps
    r = check_derivation("posterior_var_square", [
        "1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev))",
        "beta_t*(1 - alpha_bar_prev)/(alpha_t*(1 - alpha_bar_prev) + beta_t)",
        "beta_t*(1 - alpha_bar_prev)/(1 - alpha_bar_prev)", "beta_tilde_t"])
    assert r.details["broken"] == 3 and "valid only if" in r.feedback and "\u1fb1_t = \u1fb1_{t-1}" in r.feedback
    assert "Step 4 is right again" in r.feedback
    # a broken step that is one of the question's own known mistakes is named as that mistake
    start = get_question("kl_1d_chain").start
    r = check_derivation("kl_1d_chain",
                         start + " = log(sigma2^2/sigma1^2) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2")
    assert (r.mistake, r.details["broken"]) == ("log_variance_ratio", 2)
    # a factor lost: sqrt(alpha_t) on the way in a LaTeX chain
    r = check_derivation("posterior_mean_eps", [
        r"\frac{1}{\sqrt{\alpha_t}}\left(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\right)",
        r"\frac{x_t}{\sqrt{\alpha_t}} - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon"])
    assert r.status == "known_mistake" and r.details["broken"] == 2 and "sqrt(alpha_t)" in r.feedback, r.feedback


def test_first_step_wrong_and_undiagnosed_breaks() -> None:
    r = check_derivation("forward_var_induction", "1 - alpha_bar_prev + beta_t = 1 - alpha_bar_t")
    assert r.details["broken"] == 1 and r.feedback.startswith("Step 1 is not the asked quantity")
    r = check_derivation("forward_var_induction",
                         "alpha_t*(1 - alpha_bar_prev) + beta_t = exp(alpha_t) = 1 - alpha_bar_t")
    assert r.status == "incorrect" and r.details["broken"] == 2 and "does not equal step 1" in r.feedback


def test_chain_inputs_and_placeholders() -> None:
    assert check_derivation("forward_var_induction", "alpha_t*(1 - alpha_bar_prev) + beta_t = ... = 1 - alpha_bar_t"
                            ).feedback.startswith("Not yet answered")
    for empty in (None, ..., "", "..."):
        assert check_derivation("kl_1d_chain", empty).feedback.startswith("Not yet answered")
    r = check_derivation("posterior_var_square", "1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev)) = beta_tilde_t")
    assert r.status == "invalid" and "at least 3 steps" in r.feedback
    multi = "alpha_t*(1 - alpha_bar_prev) + beta_t\nalpha_t - alpha_t*alpha_bar_prev + 1 - alpha_t\n1 - alpha_bar_t"
    assert check_derivation("forward_var_induction", multi).ok  # one step per line
    r = check_derivation("forward_var_induction", "Var = alpha_t*(1 - alpha_bar_prev) + beta_t = 1 - abar_t")
    assert r.ok and len(r.details["steps"]) == 2  # the leading `Var =` is a name, dropped
    r = check_derivation("forward_var_induction", "alpha_t*(1 - alpha_bar_prev) + beta_t = 1 - abar")
    assert r.status == "invalid" and "step 2" in r.feedback and "Symbols here:" in r.feedback
    ab, abp, at = sp.symbols("alpha_bar_t alpha_bar_prev alpha_t", positive=True)
    assert check_derivation("forward_var_induction", [at * (1 - abp) + (1 - at), 1 - ab]).ok  # SymPy steps
    assert check_derivation("forward_var_induction", 3).status == "invalid"
    with pytest.raises(ValueError, match="question_id"):
        check_derivation("no_such_question", "x")


def test_chain_is_bounded_like_one_check() -> None:
    r = check_derivation("forward_var", ["1 - alpha_bar_t", "exp(exp(exp(exp(5/2))))*alpha_t"], timeout=1.0)
    assert r.status == "timeout"
    assert check_derivation("forward_var", "1 - alpha_bar_t = 1 - alpha_t*alpha_bar_prev").ok


def test_every_catalogue_reference_checks_as_a_one_step_chain() -> None:
    for q in questions():
        assert check_derivation(q.id, [q.reference] * max(q.min_steps, 1)).ok, q.id


# -- the check path stays light ------------------------------------------------------------------------------------
def test_check_path_imports_neither_torch_nor_nbformat() -> None:
    code = ("import sys; from ddpm_lessons.checks import check, check_derivation; import ddpm_lessons.checks.cli; "
            "r = check('forward_var', '1 - alpha_bar_t'); assert r.ok, r; "
            "print(sorted(m for m in ('torch', 'nbformat', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # even SymPy stays in the worker process
    code = "import sys, ddpm_lessons.checks.engine; print('torch' in sys.modules or 'nbformat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # and the worker's own imports
