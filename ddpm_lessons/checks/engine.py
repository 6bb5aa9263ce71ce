"""Equivalence engine: decide whether a parsed answer equals a question's reference, and explain when it does not.

Method. Free symbols are drawn uniformly from their declared domains (seeded per question, so every verdict is
reproducible), derived symbols are computed from their definitions (alpha_bar_t = alpha_bar_prev * alpha_t, ...), and
both expressions are evaluated at ``N_POINTS`` points with mpmath at ``DPS`` significant digits. The answer is
correct when every point agrees to a relative error of ``REL_TOL``; a NaN, an infinity or a complex value never
agrees. At 30 digits, two different closed forms of this course cannot agree at 40 random points by accident, and
an equivalent rewriting differs only by rounding (~1e-29). When the difference is cheap to cancel symbolically
(``sympy.cancel`` after substituting the definitions), the verdict also records a symbolic confirmation.

A wrong answer is compared against the question's known mistakes and the automatic ones of
:mod:`ddpm_lessons.checks.mistakes` (first on ``SCREEN`` points, then on all of them), so the feedback can name the
mistake. For answers linear in x_t, x_0, eps, ... the coefficients are compared one by one.

Everything here runs inside the worker process of :mod:`ddpm_lessons.checks.worker`, which enforces the time limit.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import sympy as sp

from . import catalogue
from .mistakes import Candidate, auto_mistakes
from .parser import ParseError, parse

__all__ = ["DPS", "N_POINTS", "SCREEN", "REL_TOL", "prepared", "check_answer", "compile_expr", "EvalError"]

DPS = 30  # significant digits of every evaluation
N_POINTS = 40  # sample points per question
SCREEN = 8  # points used to screen mistakes before confirming on all N_POINTS
LINEAR_POINTS = 4  # points for the coefficient comparison (each costs len(linear_in) + 2 evaluations)
REL_TOL = mpmath.mpf("1e-20")  # rounding at 30 digits is ~1e-29; any real difference is >> 1e-20
ABS_FLOOR = mpmath.mpf("1e-24")  # two values both below this count as equal (a true zero vs rounding)
SYMBOLIC_MAX_OPS = 60  # only attempt symbolic confirmation on answers this small
SYMPY_MAX_LENGTH = 5000  # printed length cap for answers given as SymPy expressions

MP = mpmath.MPContext()  # private context: never changes the user's global mpmath precision
MP.dps = DPS

Value = Any  # an MP.mpf, or None for "undefined / not real / not finite"


class EvalError(ValueError):
    """The expression contains something the evaluator does not know."""


# -- numeric evaluation ----------------------------------------------------------------------------------------------
def compile_expr(expr: sp.Expr) -> Callable[[dict[str, Value]], Value]:
    """Turn a SymPy expression into a function env -> MP value (no ``eval``/``lambdify``: a closure per node)."""
    if expr.is_Symbol:
        name = expr.name
        return lambda env: env[name]
    if expr.is_Integer:
        val = MP.mpf(int(expr))
        return lambda env: val
    if expr.is_Rational:
        val = MP.mpf(int(expr.p)) / int(expr.q)
        return lambda env: val
    if expr is sp.pi:
        return lambda env: MP.pi
    if expr is sp.E:
        val = MP.e + 0
        return lambda env: val
    if expr.is_Add or expr.is_Mul:
        parts = [compile_expr(a) for a in expr.args]
        if expr.is_Add:
            def add(env: dict[str, Value]) -> Value:
                out = parts[0](env)
                for p in parts[1:]:
                    out = out + p(env)
                return out
            return add

        def mul(env: dict[str, Value]) -> Value:
            out = parts[0](env)
            for p in parts[1:]:
                out = out * p(env)
            return out
        return mul
    if expr.is_Pow:
        base = compile_expr(expr.base)
        ex = expr.exp
        if ex.is_Integer:
            n = int(ex)
            return lambda env: base(env) ** n
        if ex == sp.Rational(1, 2):
            return lambda env: MP.sqrt(base(env))
        if ex == sp.Rational(-1, 2):
            return lambda env: 1 / MP.sqrt(base(env))
        exf = compile_expr(ex)
        return lambda env: MP.power(base(env), exf(env))
    funcs = {sp.exp: MP.exp, sp.log: MP.log, sp.Abs: abs}
    if expr.func in funcs and len(expr.args) == 1:
        fn = funcs[expr.func]
        arg = compile_expr(expr.args[0])
        return lambda env: fn(arg(env))
    raise EvalError(f"cannot evaluate `{expr.func.__name__}`")


def _clean(val: Any) -> Value:
    """Real finite MP value, or None."""
    if isinstance(val, MP.mpc):
        if val.imag == 0 or abs(val.imag) <= ABS_FLOOR * max(1, abs(val.real)):
            val = val.real
        else:
            return None
    if not isinstance(val, MP.mpf):
        try:
            val = MP.mpf(val)
        except (TypeError, ValueError):
            return None
    if MP.isnan(val) or MP.isinf(val):
        return None
    return val


def _eval(f: Callable[[dict[str, Value]], Value], env: dict[str, Value]) -> Value:
    try:
        return _clean(f(env))
    except (ZeroDivisionError, ValueError, OverflowError, TypeError, ArithmeticError):
        return None


def _close(a: Value, b: Value) -> bool:
    if a is None or b is None:
        return False
    scale = max(abs(a), abs(b))
    if scale < ABS_FLOOR:
        return True
    return abs(a - b) <= REL_TOL * scale


def _all_close(mine: list[Value], other: list[Value]) -> bool:
    """Agreement at every point both lists have (a prefix: screens compare the first SCREEN points only)."""
    return all(_close(a, b) for a, b in zip(mine, other, strict=False))


def _rel_err(a: Value, b: Value) -> Any:
    scale = max(abs(a), abs(b))
    return MP.mpf(0) if scale < ABS_FLOOR else abs(a - b) / scale


def _fmt(x: Value, digits: int = 4) -> str:
    if x is None:
        return "undefined"
    return MP.nstr(x, digits)


# -- per-question preparation ----------------------------------------------------------------------------------------
@dataclass
class _Case:
    """A mistake evaluated at the sample points (screen values eagerly, the rest on demand)."""

    cand: Candidate
    fn: Callable[[dict[str, Value]], Value]
    screen: list[Value]
    full: list[Value] | None = None


@dataclass
class _Coef:
    """Reference coefficient of one linear variable (or of the constant term) and its mistakes."""

    name: str
    values: list[Value]
    cases: list[tuple[Candidate, list[Value]]] = field(default_factory=list)


def _symbol(name: str) -> sp.Symbol:
    spec = catalogue.VOCAB[name]
    if spec.kind == "integer":
        return sp.Symbol(name, integer=True, positive=True)
    if spec.kind == "positive":
        return sp.Symbol(name, positive=True)
    return sp.Symbol(name, real=True)


_ALL_NAMES = tuple(catalogue.VOCAB)


class Prepared:
    """A question ready for checking: symbols, sample points, reference values; mistakes built lazily."""

    def __init__(self, q: catalogue.Question):
        self.q = q
        self.symbols = {n: _symbol(n) for n in q.names}
        self.linear = [self.symbols[n] for n in q.linear_in]
        self.defs: dict[str, sp.Expr] = {}
        for name, text in q.definitions.items():
            self.defs[name] = self.parse(text)
        self.points = self._points()
        self.ref = self.parse(q.reference)
        self.ref_fn = compile_expr(self.ref)
        self.ref_vals = [_eval(self.ref_fn, env) for env in self.points]
        if any(v is None for v in self.ref_vals):
            raise RuntimeError(f"catalogue error: reference of {q.id} is undefined at a sample point")
        self._cases: list[_Case] | None = None
        self._coefs: list[_Coef] | None = None
        self._ref_free: sp.Expr | None = None

    def parse(self, text: str, source: str = "text") -> sp.Expr:
        """Parse learner text (``source="text"``) or the printed form of a SymPy expression (``"sympy"``)."""
        if source == "sympy":
            return parse(text, self.symbols, aliases=catalogue.ALIASES, elsewhere=_ALL_NAMES,
                         constants={"pi": sp.pi, "E": sp.E}, max_length=SYMPY_MAX_LENGTH)
        return parse(text, self.symbols, aliases=catalogue.ALIASES, elsewhere=_ALL_NAMES)

    def _points(self) -> list[dict[str, Value]]:
        rng = random.Random(zlib.crc32(self.q.id.encode()))
        fns = [(name, compile_expr(e)) for name, e in self.defs.items()]
        points = []
        for _ in range(N_POINTS):
            env: dict[str, Value] = {}
            for name in self.q.free:
                spec = self.q.spec(name)
                if spec.kind == "integer":
                    env[name] = MP.mpf(rng.randint(int(spec.lo), int(spec.hi)))
                else:
                    u = MP.mpf(rng.getrandbits(112)) / 2**112
                    lo, hi = MP.mpf(repr(spec.lo)), MP.mpf(repr(spec.hi))
                    env[name] = lo + (hi - lo) * u
            for name, fn in fns:
                val = _eval(fn, env)
                if val is None:
                    raise RuntimeError(f"catalogue error: definition of {name} in {self.q.id} is undefined")
                env[name] = val
            points.append(env)
        return points

    def expand_definitions(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every derived symbol replaced by its definition (in terms of free symbols only)."""
        for name in reversed(list(self.defs)):
            expr = expr.xreplace({self.symbols[name]: self.defs[name]})
        return expr

    @property
    def ref_free(self) -> sp.Expr:
        if self._ref_free is None:
            self._ref_free = self.expand_definitions(self.ref)
        return self._ref_free

    # -- mistakes --------------------------------------------------------------------------------------------------
    def _candidates(self) -> list[Candidate]:
        q = self.q
        cands = [Candidate(m.tag, m.hint, self.parse(m.answer), known=True) for m in q.mistakes]
        swaps = [(tag, hint, [(self.symbols[a], self.symbols[b]) for a, b in pairs]) for tag, hint, pairs in q.swaps]
        subs = [(tag, hint, {self.symbols[n]: self.parse(e) for n, e in pairs}) for tag, hint, pairs in q.substitutions]
        cands += auto_mistakes(self.ref, self.symbols, self.linear, swaps, subs)
        return cands

    def _dedupe(self, cands: list[Candidate], fn_of: Callable[[Candidate], Any], ref_screen: list[Value]
                ) -> list[tuple[Candidate, Any, list[Value]]]:
        kept: list[tuple[Candidate, Any, list[Value]]] = []
        for cand in cands:
            try:
                fn = fn_of(cand)
            except EvalError:
                continue
            vals = [_eval(fn, env) for env in self.points[:SCREEN]]
            if not cand.known:
                if any(v is None for v in vals) or _all_close(vals, ref_screen):
                    continue
            if any(_all_close(vals, k[2]) for k in kept):
                continue  # the same wrong answer as an earlier (higher-priority) candidate
            kept.append((cand, fn, vals))
        return kept

    @property
    def cases(self) -> list[_Case]:
        if self._cases is None:
            kept = self._dedupe(self._candidates(), lambda c: compile_expr(c.expr), self.ref_vals[:SCREEN])
            self._cases = [_Case(c, fn, vals) for c, fn, vals in kept]
        return self._cases

    def case_full(self, case: _Case) -> list[Value]:
        if case.full is None:
            case.full = case.screen + [_eval(case.fn, env) for env in self.points[SCREEN:]]
        return case.full

    @property
    def coefs(self) -> list[_Coef]:
        """Reference coefficients of each linear variable and of the constant term, with their own mistakes."""
        if self._coefs is None:
            zero = {v: 0 for v in self.linear}
            parts = [(v.name, sp.diff(self.ref, v)) for v in self.linear] + [("1", self.ref.xreplace(zero))]
            coefs = []
            for name, part in parts:
                vals = [_eval(compile_expr(part), env) for env in self.points[:SCREEN]]
                coef = _Coef(name, vals)
                if part != 0:
                    cands = auto_mistakes(part, self.symbols)
                    kept = self._dedupe(cands, lambda c: compile_expr(c.expr), vals)
                    coef.cases = [(c, v) for c, _, v in kept]
                coefs.append(coef)
            self._coefs = coefs
        return self._coefs


_PREPARED: dict[str, Prepared] = {}


def prepared(question_id: str) -> Prepared:
    """The cached :class:`Prepared` for a question id (``KeyError`` if unknown)."""
    if question_id not in _PREPARED:
        _PREPARED[question_id] = Prepared(catalogue.by_id(question_id))
    return _PREPARED[question_id]


# -- checking -------------------------------------------------------------------------------------------------------
def _result(qid: str, status: str, feedback: str, evidence: str, mistake: str | None = None,
            answer: str | None = None, details: dict | None = None) -> dict[str, Any]:
    return {"question": qid, "status": status, "feedback": feedback, "evidence": evidence, "mistake": mistake,
            "answer": answer, "details": details or {}}


def _linear_feedback(p: Prepared, fn: Callable[[dict[str, Value]], Value]) -> tuple[str, dict[str, str]]:
    """Compare the answer's coefficients of the linear variables with the reference's (at LINEAR_POINTS points)."""
    names = [v.name for v in p.linear]
    pretty = ", ".join(f"`{n}`" for n in names)
    coef_vals: dict[str, list[Value]] = {n: [] for n in names + ["1"]}
    linear_ok = True
    for env in p.points[:LINEAR_POINTS]:
        env0 = dict(env, **{n: MP.mpf(0) for n in names})
        c0 = _eval(fn, env0)
        coef_vals["1"].append(c0)
        total = c0
        for n in names:
            cn = _eval(fn, dict(env0, **{n: MP.mpf(1)}))
            cn = None if cn is None or c0 is None else cn - c0
            coef_vals[n].append(cn)
            total = None if total is None or cn is None else total + cn * env[n]
        full = _eval(fn, env)
        if total is None or full is None or not _close(total, full):
            linear_ok = False
    if not linear_ok:
        return f"The correct answer is linear in {pretty}; yours is not.", {}
    verdicts: dict[str, str] = {}
    lines = []
    for coef in p.coefs:
        mine = coef_vals[coef.name]
        label = "The term without " + pretty if coef.name == "1" else f"The coefficient of `{coef.name}`"
        if _all_close(mine, coef.values[:LINEAR_POINTS]):
            verdicts[coef.name] = "right"
            if coef.name != "1":
                lines.append(f"{label} is right.")
            continue
        verdicts[coef.name] = "wrong"
        if coef.name == "1" and all(v == 0 for v in coef.values):
            lines.append(f"There should be no term without {pretty}.")
            continue
        if coef.name != "1" and all(v is not None and abs(v) < ABS_FLOOR for v in mine):
            lines.append(f"{label} is missing (your answer does not contain `{coef.name}`).")
            continue
        why = next((c.hint for c, vals in coef.cases if _all_close(mine, vals)), None)
        lines.append(f"{label} is wrong" + (f": {why[0].lower()}{why[1:]}" if why else "."))
    return " ".join(lines), verdicts


def _coefficient_summary(verdicts: dict[str, str]) -> str:
    """' Right: coefficient of `x_t`. Wrong: coefficient of `x_0`.' (empty when the answer is not linear)."""
    def names(kind: str) -> str:
        return ", ".join("the term without them" if n == "1" else f"`{n}`" for n, v in verdicts.items()
                         if v == kind and (n != "1" or kind == "wrong"))
    right, wrong = names("right"), names("wrong")
    if not verdicts or not right or not wrong:
        return ""
    return f" Coefficients right: {right}; wrong: {wrong}."


def _ratio_feedback(mine: list[Value], ref: list[Value]) -> str | None:
    if any(v is None for v in mine) or any(abs(r) < ABS_FLOOR for r in ref):
        return None
    ratios = [a / b for a, b in zip(mine, ref, strict=True)]
    if all(_close(r, ratios[0]) for r in ratios):
        r = ratios[0]
        if _close(r, MP.mpf(-1)):
            return "Your answer has the wrong overall sign."
        frac = Fraction(float(r)).limit_denominator(64)
        shown = str(frac) if _close(MP.mpf(frac.numerator) / frac.denominator, r) else MP.nstr(r, 6)
        return f"Your answer is a constant multiple ({shown}) of the correct one."
    diffs = [a - b for a, b in zip(mine, ref, strict=True)]
    if all(_close(d, diffs[0]) for d in diffs):
        frac = Fraction(float(diffs[0])).limit_denominator(64)
        shown = str(frac) if _close(MP.mpf(frac.numerator) / frac.denominator, diffs[0]) else MP.nstr(diffs[0], 6)
        return f"Your answer differs from the correct one by a constant ({shown})."
    return None


def _symbol_feedback(p: Prepared, expr: sp.Expr) -> str:
    """Name the symbols the answer lacks or has in excess, in the reference's own (typed) terms."""
    def base(e: sp.Expr) -> set[sp.Symbol]:
        return p.expand_definitions(e).free_symbols

    mine, need = base(expr), p.ref_free.free_symbols
    missing = sorted(s.name for s in p.ref.free_symbols if not base(s) & mine)
    extra = sorted(s.name for s in expr.free_symbols if not base(s) & need)
    parts = []
    if missing:
        parts.append("The correct answer depends on " + ", ".join(f"`{n}`" for n in missing) + "; yours does not.")
    if extra:
        parts.append("Yours depends on " + ", ".join(f"`{n}`" for n in extra) + ", which the correct answer does not.")
    return " ".join(parts)


def _counterexample(p: Prepared, mine: list[Value]) -> str:
    for i, (a, b) in enumerate(zip(mine, p.ref_vals, strict=False)):
        if not _close(a, b):
            env = p.points[i]
            at = ", ".join(f"{n}={_fmt(env[n], 3)}" for n in p.q.free)
            return f"For example at {at}: yours gives {_fmt(a)}, the correct answer {_fmt(b)}."
    return ""


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _radical_of_sum(expr: sp.Expr) -> bool:
    return any(e.is_Pow and not e.exp.is_Integer and e.base.has(sp.Add) for e in sp.preorder_traversal(expr))


def _symbolic_confirmation(p: Prepared, expr: sp.Expr) -> bool:
    """True when the difference to the reference cancels symbolically; only tried where that is cheap.

    ``sympy.cancel`` treats every radical as an independent generator, so it can only prove identities whose
    square roots of sums appear in the same form on both sides; with such radicals it can also take 100+ ms to
    fail. It is therefore skipped when a radical of a sum is left in the difference, keeping the attempt to a few ms.
    """
    if sp.count_ops(expr) > SYMBOLIC_MAX_OPS:
        return False
    diff = p.expand_definitions(expr) - p.ref_free
    if diff == 0:
        return True
    if _radical_of_sum(diff):
        return False
    return sp.cancel(diff) == 0


def check_answer(question_id: str, text: str, *, source: str = "text",
                 on_partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Check ``text`` against question ``question_id``; returns the fields of a ``CheckResult`` as a dict.

    ``source`` is ``"text"`` for typed answers or ``"sympy"`` for the printed form of a SymPy expression (which may
    also use ``E`` and be longer). ``on_partial`` receives the numeric verdict of a correct answer before the
    (optional) symbolic confirmation, so the caller can still report it if the confirmation runs out of time.
    """
    p = prepared(question_id)
    qid = question_id
    try:
        expr = p.parse(text, source)
    except ParseError as err:
        return _result(qid, "invalid", _sentence(f"Invalid input: {err}"), "parser", answer=text)
    shown = sp.sstr(expr, order="none")  # "none": skips SymPy's term sorting, the costly part of printing
    try:
        fn = compile_expr(expr)
    except EvalError as err:
        return _result(qid, "invalid", _sentence(f"Invalid input: {err}"), "parser", answer=shown)

    mine = [_eval(fn, env) for env in p.points[:SCREEN]]
    n_bad = sum(v is None for v in mine)
    if _all_close(mine, p.ref_vals):
        mine += [_eval(fn, env) for env in p.points[SCREEN:]]
        if _all_close(mine, p.ref_vals):
            err = max(_rel_err(a, b) for a, b in zip(mine, p.ref_vals, strict=True))
            evidence = f"numeric: {N_POINTS} random points at {DPS} digits, max rel. error {MP.nstr(err, 2)}"
            res = _result(qid, "correct", "Correct.", evidence, answer=shown)
            if on_partial is not None:
                on_partial(res)
            if _symbolic_confirmation(p, expr):
                res["evidence"] = evidence + "; symbolic: the difference cancels to 0"
            return res

    # Wrong: does it match a known or an automatic mistake?
    for case in p.cases:
        if _all_close(mine[:SCREEN], case.screen):
            full = p.case_full(case)
            if len(mine) < N_POINTS:
                mine += [_eval(fn, env) for env in p.points[len(mine):]]
            if _all_close(mine, full):
                feedback = case.cand.hint
                details: dict[str, Any] = {"known": case.cand.known}
                if p.linear:
                    _, verdicts = _linear_feedback(p, fn)
                    details["coefficients"] = verdicts
                    feedback += _coefficient_summary(verdicts)
                return _result(qid, "known_mistake", feedback,
                               f"numeric: equals the mistake `{case.cand.tag}` at {N_POINTS} points",
                               mistake=case.cand.tag, answer=shown, details=details)

    # Plain incorrect: say as much as we can.
    parts = ["Not equivalent to the expected answer."]
    details = {}
    if n_bad:
        parts.append("Your expression is undefined or not real at some valid inputs (division by zero, or the log "
                     "or square root of a negative number).")
    sym = _symbol_feedback(p, expr)
    if sym:
        parts.append(sym)
    ratio = _ratio_feedback(mine[:SCREEN], p.ref_vals[:SCREEN])
    if ratio:
        parts.append(ratio)
    if p.linear:
        lin, verdicts = _linear_feedback(p, fn)
        if lin:
            parts.append(lin)
        details["coefficients"] = verdicts
    if not ratio:
        parts.append(_counterexample(p, mine[:SCREEN]))
    n_diff = sum(not _close(a, b) for a, b in zip(mine[:SCREEN], p.ref_vals, strict=False))
    return _result(qid, "incorrect", " ".join(x for x in parts if x),
                   f"numeric: differs from the reference at {n_diff} of {SCREEN} points", answer=shown,
                   details=details)
