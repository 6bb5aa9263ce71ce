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
        "sqrt(x_t)(x_0)",
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


# -- fuzzing -----------------------------------------------------------------------------------------------------------
_ALPHABET = "x_t0a1lpha_bar sqrtexplog()+-*/^.,eps2 9" + "[]{}'\"=:;\\|&%!@#~`<>" + "\u03b1\u221a\u00b2"


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
