"""Hostile input: nothing a learner types is ever executed, and the parser neither crashes nor hangs.

Every attack string below would create the sentinel file if any part of it were evaluated as Python; the tests
check each is ``invalid`` and that the file does not exist, in the parser (this process) and through ``check``
(the worker process).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddpm_lessons.checks import catalogue, check
from ddpm_lessons.checks.parser import ParseError, parse

NAMES = {n: sp.Symbol(n, real=True) for n in ("x_t", "x_0", "eps", "alpha_bar_t", "alpha_t", "beta_t")}


def attacks(sentinel: Path) -> list[str]:
    s = str(sentinel)
    touch = f"__import__('os').system('touch {s}')"
    return [
        touch,
        f"__import__(\"os\").system(\"touch {s}\")",
        f"open('{s}', 'w').write('x')",
        f"exec(\"open('{s}','w')\")",
        f"eval(\"open('{s}','w')\")",
        f"(lambda: open('{s}', 'w'))()",
        f"[open('{s}', 'w') for _ in range(1)]",
        f"(open('{s}', 'w') for _ in x_t)",
        f"{{open('{s}', 'w')}}",
        f"{{'a': open('{s}', 'w')}}",
        f"f'{{open(\"{s}\", \"w\")}}'",
        f"(y := open('{s}', 'w'))",
        f"x_t if open('{s}', 'w') else x_0",
        f"x_t and open('{s}', 'w')",
        f"not open('{s}', 'w')",
        f"x_t < open('{s}', 'w')",
        f"x_t[open('{s}', 'w')]",
        "().__class__.__bases__[0].__subclasses__()",
        "x_t.__class__.__mro__",
        "x_t.__class__",
        "__builtins__",
        "__import__",
        "_",
        "globals()",
        "locals()",
        "vars()",
        "dir()",
        "getattr(x_t, 'func')",
        "breakpoint()",
        "exit()",
        "quit()",
        "input()",
        "print(1)",
        "sympify('x')",
        "Symbol('x')",
        "S.One",
        "Integer(1)",
        "import os",
        "from os import system",
        "lambda x: x",
        "yield x_t",
        "await x_t",
        "*x_t",
        "**x_t",
        "x_t @ x_0",
        "x_t % 2",
        "x_t << 2",
        "x_t | x_0",
        "~x_t",
        "...",
        "b'x'",
        "'x_t'",
        "x_t;x_0",
        "x_t # comment",
        "x_t\n__import__('os')",
        "sqrt(x_t, key=1)",
        "sqrt(*x_t)",
        "9**9**9**9",
        "9^9^9^9",
        "10**10**10",
        "2**2**2**2**2**2",
        "(10^40)^60",
        "1" * 50 + "*x_t",
        "x_t" + "+x_t" * 5000,
        "(" * 1000 + "x_t" + ")" * 1000,
        "-" * 900 + "x_t",
        "sqrt(" * 200 + "x_t" + ")" * 200,
        "\x00",
        "x_t\x00",
        "\u202ex_t",
    ]


def _no_sentinel(sentinel: Path) -> None:
    assert not sentinel.exists(), "an attack string was executed"


def test_parser_rejects_every_attack_in_process(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    for text in attacks(sentinel):
        t0 = time.perf_counter()
        with pytest.raises(ParseError):
            parse(text, NAMES, aliases=catalogue.ALIASES, elsewhere=tuple(catalogue.VOCAB))
        assert time.perf_counter() - t0 < 0.5, f"slow rejection of {text[:60]!r}"  # ~0.2 ms each, 2500x margin
        _no_sentinel(sentinel)


def test_check_rejects_every_attack_in_the_worker(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    for text in attacks(sentinel):
        r = check("posterior_mean_x0", text)
        assert r.status == "invalid", (text[:80], r.status, r.feedback)
        assert r.feedback.startswith(("Invalid input:", "Not yet answered"))  # "..." is a placeholder
        _no_sentinel(sentinel)


def test_hostile_sympy_objects(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    x_t = sp.Symbol("x_t")
    for expr in (sp.Symbol(f"__import__('os').system('touch {sentinel}')"), sp.Symbol("__class__"),
                 sp.Function("open")(x_t), sp.Integral(x_t, x_t), sp.Derivative(sp.Function("f")(x_t), x_t)):
        assert check("forward_mean", expr).status == "invalid"
        _no_sentinel(sentinel)
    # a SymPy answer travels to the worker as printed text and is re-parsed there: no object is ever unpickled,
    # so a user-defined function class is just an unknown name
    assert "`Evil` is not an allowed function" in check("forward_mean", sp.Function("Evil")(x_t)).feedback


def test_call_syntax_on_a_result_is_a_product_not_a_call() -> None:
    # "sqrt(x_t)(x_0)" was an attack-shaped call of a call; with implicit multiplication it is the product
    # sqrt(x_t)*x_0, built node by node like any other answer (nothing is called)
    out = parse("sqrt(x_t)(x_0)", NAMES)
    assert out == sp.sqrt(NAMES["x_t"]) * NAMES["x_0"]


# -- LaTeX hostile input -----------------------------------------------------------------------------------------------
LATEX_ATTACKS = [
    r"\input{/etc/passwd}", r"\include{x}", r"\def\x{1}\x", r"\newcommand{\x}{1}\x", r"\renewcommand{\frac}{x}",
    r"\let\a=\b", r"\catcode`\^=7", r"\csname x\endcsname", r"\write18{touch pwned}", r"\immediate\write18{ls}",
    r"\usepackage{x}", r"\begin{verbatim}x\end{verbatim}x", r"\directlua{os.execute('touch pwned')}",
    r"\expandafter\x", r"\href{http://x}{x_t}", r"\url{x}", r"\verb|x|", r"\special{x}", r"\openin1=x",
    r"\frac{x_t}", r"\sqrt", r"\frac{}{}", r"\sqrt[3]{x_t}", r"\bar{x_t + x_0}", "{" * 5000 + "x_t" + "}" * 5000,
    r"\frac{" * 200 + "x_t" + "}{2}" * 200, r"\sqrt{" * 500 + "x_t" + "}" * 500, "$" * 3000, "\\" * 600,
    r"\left(" * 400 + "x_t" + r"\right)" * 400, "x_t^{" * 300 + "2" + "}" * 300, r"x_t}", r"{x_t",
]


@pytest.mark.parametrize("text", LATEX_ATTACKS, ids=range(len(LATEX_ATTACKS)))
def test_latex_hostile_input_is_rejected_fast(text: str, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ParseError) as e:
        parse(text, NAMES, aliases=catalogue.ALIASES, elsewhere=tuple(catalogue.VOCAB))
    assert str(e.value) and time.perf_counter() - t0 < 0.5
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_latex_megabyte_input_is_rejected_by_length_first() -> None:
    big = r"\frac{x_t}{2} + " * 70_000  # ~1 MB
    t0 = time.perf_counter()
    with pytest.raises(ParseError, match="too long"):
        parse(big, NAMES)
    assert time.perf_counter() - t0 < 0.1
    r = check("forward_mean", big)  # rejected before the worker round trip
    assert r.status == "invalid" and r.evidence == "input size"


def test_latex_nesting_within_the_length_cap_is_bounded() -> None:
    # 333 nested \sqrt{ fit in 1000 characters: stopped by the LaTeX depth cap, not by Python's recursion limit
    deep = r"\sqrt{" * 140 + "x_t" + "}" * 140
    assert len(deep) <= 1000
    with pytest.raises(ParseError, match="too deeply nested"):
        parse(deep, NAMES)
    r = check("forward_mean", deep)
    assert r.status == "invalid" and "nested" in r.feedback


# -- fuzzing -----------------------------------------------------------------------------------------------------------
_ALPHABET = ("x_t0a1lpha_bar sqrtexplog()+-*/^.,eps2 9" + "[]{}'\"=:;\\|&%!@#~`<>" + "\u03b1\u221a\u00b2"
             + "\u1fb1\u2080\u209c\u208b\u0304\u2009$")


_LATEX_WORDS = st.sampled_from([r"\frac", r"\sqrt", r"\bar", r"\alpha", r"\beta", r"\epsilon", r"\left(", r"\right)",
                                r"\cdot", r"\input", r"\def", "{", "}", "^", "_", "x_t", "t-1", "1", "-", "+", " ", "$",
                                r"\mathbf", r"\tilde", r"\,", r"\\", "&", "="])


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LATEX_WORDS, max_size=60).map("".join))
def test_fuzz_latex(text: str) -> None:
    _parse_or_error(text)


def _parse_or_error(text: str) -> None:
    t0 = time.perf_counter()
    try:
        out = parse(text, NAMES, aliases=catalogue.ALIASES, elsewhere=tuple(catalogue.VOCAB))
    except ParseError as e:
        assert str(e)  # every rejection has a message
    else:
        assert isinstance(out, sp.Expr)
    assert time.perf_counter() - t0 < 2.0  # no hang (typical: well under 1 ms)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=_ALPHABET, max_size=120))
def test_fuzz_characters(text: str) -> None:
    _parse_or_error(text)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_fuzz_any_unicode(text: str) -> None:
    _parse_or_error(text)


_atoms = st.sampled_from(["x_t", "x_0", "eps", "alpha_bar_t", "alpha_t", "beta_t", "0", "1", "2", "9", "0.5",
                          "1e-300", "1e300", "64", "65", "-1", "pi", "abar"])


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "^", "**"]), children).map(
        lambda t: f"({t[0]}){t[1]}({t[2]})")
    call = st.tuples(st.sampled_from(["sqrt", "exp", "log", "abs", "ln"]), children).map(lambda t: f"{t[0]}({t[1]})")
    return binary | call | children.map(lambda c: f"-({c})")


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(_atoms, _combine, max_leaves=30))
def test_fuzz_expressions(text: str) -> None:
    """Well-formed arithmetic with power towers, huge and tiny numbers, logs of zero: parse or a clean error."""
    _parse_or_error(text)
