"""The safe parser: what it accepts, what it builds, and the messages it gives for what it rejects."""

from __future__ import annotations

import pytest
import sympy as sp

from ddpm_lessons.checks import catalogue
from ddpm_lessons.checks.parser import MAX_DEPTH, MAX_EXPONENT, MAX_LENGTH, MAX_NODES, ParseError, parse

NAMES = {n: sp.Symbol(n, positive=True) for n in ("alpha_t", "alpha_bar_t", "alpha_bar_prev", "beta_t")}
NAMES.update({n: sp.Symbol(n, real=True) for n in ("x_t", "x_0", "eps")})
ALL = tuple(catalogue.VOCAB)
S = NAMES


def p(text: str) -> sp.Expr:
    return parse(text, NAMES, aliases=catalogue.ALIASES, elsewhere=ALL)


def err(text: str) -> str:
    with pytest.raises(ParseError) as e:
        p(text)
    return str(e.value)


@pytest.mark.parametrize("text, expected", [
    ("sqrt(alpha_bar_t)*x_0", sp.sqrt(S["alpha_bar_t"]) * S["x_0"]),
    ("alpha_bar_t^(1/2)*x_0", sp.sqrt(S["alpha_bar_t"]) * S["x_0"]),  # ^ is power, not XOR
    ("alpha_bar_t**0.5*x_0", sp.sqrt(S["alpha_bar_t"]) * S["x_0"]),  # floats become exact rationals
    ("1 - alpha_bar_t^2", 1 - S["alpha_bar_t"] ** 2),  # ^ binds tighter than -, as in maths
    ("-x_t/2", -S["x_t"] / 2),
    ("+x_t", S["x_t"]),
    ("exp(log(alpha_t))", S["alpha_t"]),
    ("ln(alpha_t)", sp.log(S["alpha_t"])),
    ("abs(x_t)", sp.Abs(S["x_t"])),
    ("xt + x0 + epsilon", S["x_t"] + S["x_0"] + S["eps"]),  # aliases
    ("alpha_bar_tm1", S["alpha_bar_prev"]),
    ("\u221a(\u1fb1_t)\u00b7x\u2080", sp.sqrt(S["alpha_bar_t"]) * S["x_0"]),  # pasted Unicode
    ("x_t \u2212 \u03b5", S["x_t"] - S["eps"]),
    ("2*pi", 2 * sp.pi),
    ("1_000*x_t", 1000 * S["x_t"]),
    ("  (x_t)\n", S["x_t"]),
    # implicit multiplication, and a function or √ binding the next atom
    ("2x_t", 2 * S["x_t"]),
    ("sqrt(alpha_t) x_0", sp.sqrt(S["alpha_t"]) * S["x_0"]),
    ("alpha_t x_0", S["alpha_t"] * S["x_0"]),
    ("(x_t)(x_0)", S["x_t"] * S["x_0"]),
    ("alpha_t(1 - x_0)", S["alpha_t"] * (1 - S["x_0"])),
    ("sqrt alpha_t", sp.sqrt(S["alpha_t"])),
    ("\u221a\u1fb1_t x_0", sp.sqrt(S["alpha_bar_t"]) * S["x_0"]),
    ("\u221a(1\u2212\u1fb1_t)\u03b5", sp.sqrt(1 - S["alpha_bar_t"]) * S["eps"]),
    ("log alpha_t x_0", sp.log(S["alpha_t"]) * S["x_0"]),
    ("np.sqrt(alpha_t) * math.exp(x_0) + torch.log(alpha_bar_t)", sp.sqrt(S["alpha_t"]) * sp.exp(S["x_0"])
     + sp.log(S["alpha_bar_t"])),
    # paper ASCII and other notations
    ("x_{t}", S["x_t"]),
    ("alpha_bar_{t-1}", S["alpha_bar_prev"]),
    ("alpha_bar_(t-1)", S["alpha_bar_prev"]),
    ("abar_t + abar_prev + alphabar_t", 2 * S["alpha_bar_t"] + S["alpha_bar_prev"]),
    ("alpha_prod_t_prev*alpha_prod_t", S["alpha_bar_prev"] * S["alpha_bar_t"]),  # diffusers' names
    ("alpha_bar_t - 1", S["alpha_bar_t"] - 1),  # with spaces: minus one, not a subscript
    ("eps_theta + noise", 2 * S["eps"]),
    # Unicode: subscripts, flattened subscripts, combining marks, superscripts, PDF spaces
    ("\u1fb1\u209c\u208b\u2081", S["alpha_bar_prev"]),
    ("\u03b1\u0304_t", S["alpha_bar_t"]),
    ("\u03b2_t\u00b2", S["beta_t"] ** 2),
    ("x\u2080\u2009\u00b7\u00a0\u03b1\u209c", S["x_0"] * S["alpha_t"]),
    ("\u03b5\u0302", S["eps"]),
    # LaTeX
    ("\\frac{\\beta_t (1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t}", S["beta_t"] * (1 - S["alpha_bar_prev"])
     / (1 - S["alpha_bar_t"])),
    ("$\\sqrt{\\bar{\\alpha}_t}\\,\\mathbf{x}_0$", sp.sqrt(S["alpha_bar_t"]) * S["x_0"]),
    ("\\left(1-\\bar\\alpha_t\\right)^{1/2}\\boldsymbol{\\epsilon}", sp.sqrt(1 - S["alpha_bar_t"]) * S["eps"]),
    ("\\frac12 x_t \\cdot \\alpha_t \\times 2", S["x_t"] * S["alpha_t"]),
    ("\\frac{1}{\\sqrt{\\alpha_t}}\\left(x_t - \\frac{\\beta_t}{\\sqrt{1-\\bar\\alpha_t}}\\varepsilon_\\theta\\right)",
     (S["x_t"] - S["beta_t"] / sp.sqrt(1 - S["alpha_bar_t"]) * S["eps"]) / sp.sqrt(S["alpha_t"])),
])
def test_accepts_and_builds(text: str, expected: sp.Expr) -> None:
    assert sp.simplify(p(text) - expected) == 0


@pytest.mark.parametrize("text, fragment", [
    ("abar", "unknown symbol `abar` -- did you mean `alpha_bar_t`?"),
    ("alpha_bar", "did you mean `alpha_bar_t`"),
    ("beta", "`beta` is not defined here -- did you mean `beta_t`?"),
    ("sigma", "`sigma` is not defined here"),
    ("beta_tilde_t", "`beta_tilde_t` is not defined here"),
    ("sigma_t", "`sigma_t` is not defined here"),
    ("foo", "unknown symbol `foo`"),
    ("sqrt", "needs an argument"),
    ("x_t sqrt", "needs an argument"),
    ("tan(x_t)", "`tan` is not an allowed function"),
    ("x_{t+5}", "subscript"),
    ("\\alpha_t \\input{x}", "`\\input` is not supported"),
    ("alpha_bar_t-1", "did you mean \u1fb1_{t-1} (type `alpha_bar_prev`) or \u1fb1_t \u2212 1 (type `alpha_bar_t - 1`"),
    ("\u221a1\u2212\u1fb1_t", "type `sqrt(1 - alpha_bar_t)`"),
    ("sqrt 1 - alpha_bar_t", "type `sqrt(1 - alpha_bar_t)`"),
    ("2 3", "two numbers in a row"),
    ("sqrt(x_t, x_0)", "exactly one argument"),
    ("x_t // 2", "use `/`"),
    ("(x_t", "1 `(` not closed"),
    ("x_t)", "`)` has no matching `(`"),
    ("x_t +", "ends with an operator"),
    ("x_t = 1", "without `=`"),
    ("|x_t|", "abs(...)"),
    ("x_t, x_0", "found a comma"),
    ("e*x_t", "exp("),
    ("", "empty answer"),
    ("1/0", "division by zero"),
    ("log(0)", "log(0)"),
    ("sqrt(-1)", "not real"),
    ("0^-1", "division by zero"),
    ("1j", "unknown symbol `j`"),
    ("1e999", "out of range"),
    ("x_t ^ 65", "exponent too large"),
    ("x_t ^ (-65)", "exponent too large"),
    ("2^64^2", "exponent too large"),
    ("9**9**9**9", "exponent too large"),
    ("(10^40)^60", "number too large"),
    ("1" * 40, "integer literal too long"),
    ("x_t*" * 300 + "x_t", "too long"),
    ("sqrt(" * 70 + "x_t" + ")" * 70, "nested"),
    ("-(" * 150 + "x_t" + ")" * 150, "nested"),
    ("(" * 300 + "x_t" + ")" * 300, "nested"),  # Python's own parser limit, reported the same way
    ("x_t + " * 200 + "x_t", "at most"),
])
def test_rejects_with_helpful_message(text: str, fragment: str) -> None:
    assert fragment in err(text)


def test_caps_are_the_documented_ones() -> None:
    assert MAX_LENGTH == 1000 and MAX_NODES == 400 and MAX_DEPTH == 60 and MAX_EXPONENT == 64
    p("x_t^64")  # the cap itself is allowed
    p("(" * 80 + "x_t" + ")" * 80)  # redundant parentheses add no depth


def test_suggestions_only_name_symbols_of_the_question() -> None:
    msg = err("alpha_bar_prevv")
    assert "`alpha_bar_prev`" in msg and "alphabar_prev" not in msg  # an alias is shown as its canonical name


def test_sympy_objects_are_not_names() -> None:
    # beta, gamma, E, I, S, N, Q are SymPy objects under sympify; here they are just unknown names
    for name in ("gamma", "I", "S", "N", "Q", "oo", "zoo", "nan", "Symbol", "Integer"):
        assert "unknown symbol" in err(name) or "not defined here" in err(name)


def test_constants_mapping_is_respected() -> None:
    assert parse("E*x_t", NAMES, constants={"E": sp.E}) == sp.E * S["x_t"]
    with pytest.raises(ParseError):
        parse("pi", NAMES, constants={})


def test_non_string_rejected() -> None:
    with pytest.raises(ParseError):
        parse(3, NAMES)  # type: ignore[arg-type]
