"""Equivalence engine: decide whether a parsed answer equals a question's reference, and explain when it does not.

Method. Free symbols are drawn uniformly from their declared domains (seeded per question, so every verdict is
reproducible), derived symbols are computed from their definitions (alpha_bar_t = alpha_bar_prev * alpha_t, ...), and
both expressions are evaluated at ``N_POINTS`` points with mpmath at ``DPS`` significant digits. The answer is
correct when every point agrees to a relative error of ``REL_TOL``; a NaN, an infinity or a complex value never
agrees. At 30 digits, two different closed forms of this course cannot agree at 40 random points by accident, and
an equivalent rewriting differs only by rounding (~1e-29). A screen in double precision at all points comes first
(fast); the verdict then rests on the first ``SCREEN`` points at 30 digits. When the difference to the reference
vanishes symbolically after substituting the definitions (tried only on small answers, where it is cheap), the
verdict also records a symbolic confirmation.

A wrong answer is compared against the question's known mistakes and the automatic ones of
:mod:`ddpm_lessons.checks.mistakes` (first on ``SCREEN`` points, then on all of them), so the feedback can name the
mistake. For answers linear in x_t, x_0, eps, ... the coefficients are compared one by one. Variants are evaluated
from memoized per-node values (:class:`_Memo`: the same operations as :func:`compile_expr`, bit for bit), since each
differs from its source at one place only; the per-question tables are built once, on the first wrong answer.

Everything here runs inside the worker process of :mod:`ddpm_lessons.checks.worker`, which enforces the time limit.
"""

from __future__ import annotations

import math
import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice
from typing import Any

import mpmath
import sympy as sp

from . import catalogue, notation
from .mistakes import Candidate, RawCandidate, raw_mistakes
from .parser import ParseError, parse

__all__ = ["DPS", "N_POINTS", "SCREEN", "REL_TOL", "prepared", "check_answer", "check_chain", "compile_expr",
           "EvalError", "MAX_STEPS"]

DPS = 30  # significant digits of every evaluation
N_POINTS = 40  # sample points per question
SCREEN = 8  # points used to screen mistakes before confirming on all N_POINTS
LINEAR_POINTS = 4  # points for the coefficient comparison (each costs len(linear_in) + 2 evaluations)
REL_TOL = mpmath.mpf("1e-20")  # rounding at 30 digits is ~1e-29; any real difference is >> 1e-20
ABS_FLOOR = mpmath.mpf("1e-24")  # two values both below this count as equal (a true zero vs rounding)
SYMBOLIC_MAX_NODES = 16  # symbolic confirmation only on answers (and references) this small: cancel() takes 10-100 ms
# on larger ones, and the numeric verdict does not need it
SYMBOLIC_CANCEL_NODES = 12  # ... and cancel() only on differences this small
SYMPY_MAX_LENGTH = 5000  # printed length cap for answers given as SymPy expressions
MAX_STEPS = 30  # steps of one derivation chain
MAX_DIAGNOSE = 300  # generated variants tried when diagnosing a learner's own expression
DIAGNOSE_MAX_NODES = 150  # the inverse search (variants of the learner's expression) only runs on answers this small
DIAGNOSE_BUDGET = 1.0  # seconds spent at most on that search (the worker's hard limit still bounds everything)

MP = mpmath.MPContext()  # private context: never changes the user's global mpmath precision
MP.dps = DPS

Value = Any  # an MP.mpf, or None for "undefined / not real / not finite"


class EvalError(ValueError):
    """The expression contains something the evaluator does not know."""


# -- numeric evaluation ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ops:
    """The arithmetic a compiled expression runs on: mpmath at DPS digits, or Python floats for screening."""

    rational: Callable[[int, int], Any]
    pi: Any
    e: Any
    sqrt: Callable[[Any], Any]
    power: Callable[[Any, Any], Any]
    funcs: dict[Any, Callable[[Any], Any]]


_MP_OPS = _Ops(lambda p, q: MP.mpf(p) / q, MP.pi, MP.e + 0, MP.sqrt, MP.power,
               {sp.exp: MP.exp, sp.log: MP.log, sp.Abs: abs, sp.sin: MP.sin, sp.cos: MP.cos})
_FLOAT_OPS = _Ops(lambda p, q: p / q, math.pi, math.e, math.sqrt, lambda a, b: a ** b,
                  {sp.exp: math.exp, sp.log: math.log, sp.Abs: abs, sp.sin: math.sin, sp.cos: math.cos})


def compile_expr(expr: sp.Expr, ops: _Ops = _MP_OPS) -> Callable[[dict[str, Value]], Value]:
    """Turn a SymPy expression into a function env -> value (no ``eval``/``lambdify``: a closure per node).

    ``ops``: mpmath at :data:`DPS` digits (the default, every verdict) or floats (``compile_float``: a fast screen).
    """
    if expr.is_Symbol:
        name = expr.name
        return lambda env: env[name]
    if expr.is_Rational:
        val = ops.rational(int(expr.p), int(expr.q))
        return lambda env: val
    if expr is sp.pi:
        pi = ops.pi
        return lambda env: pi
    if expr is sp.E:
        e = ops.e
        return lambda env: e
    if expr.is_Add or expr.is_Mul:
        parts = [compile_expr(a, ops) for a in expr.args]
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
        base = compile_expr(expr.base, ops)
        ex = expr.exp
        if ex.is_Integer:
            n = int(ex)
            return lambda env: base(env) ** n
        sqrt = ops.sqrt
        if ex == sp.Rational(1, 2):
            return lambda env: sqrt(base(env))
        if ex == sp.Rational(-1, 2):
            return lambda env: 1 / sqrt(base(env))
        exf = compile_expr(ex, ops)
        power = ops.power
        return lambda env: power(base(env), exf(env))
    if expr.func in ops.funcs and len(expr.args) == 1:
        fn = ops.funcs[expr.func]
        arg = compile_expr(expr.args[0], ops)
        return lambda env: fn(arg(env))
    raise EvalError(f"cannot evaluate `{expr.func.__name__}`")


def compile_float(expr: sp.Expr) -> Callable[[dict[str, float]], float | None]:
    """``compile_expr`` on Python floats: ~20x faster, used only to screen (every verdict is confirmed in mpmath)."""
    return compile_expr(expr, _FLOAT_OPS)


_F_ERRORS = (ZeroDivisionError, ValueError, OverflowError, TypeError, ArithmeticError)
_ERR = object()  # a point where a float evaluation raised: the whole expression is undefined there


def _eval_f(f: Callable[[dict[str, float]], Any], env: dict[str, float]) -> float | None:
    try:
        v = f(env)
    except _F_ERRORS:
        return None
    return _post_f(v)


def _post_f(v: Any) -> float | None:
    """A raw float evaluation as a real finite float, or None (as :func:`_eval_f` reports it)."""
    if v is _ERR:
        return None
    if isinstance(v, complex):
        if abs(v.imag) > 1e-12 * max(1.0, abs(v.real)):
            return None
        v = v.real
    try:
        v = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


class _Memo:
    """Values of expression nodes at a few points, memoized per node: floats (``_FLOAT_OPS``, bit for bit what
    :func:`compile_float` computes) or mpmath (``_MP_OPS``, what :func:`compile_expr` computes): the same operations
    in the same order. Raw values: ``_ERR`` where the evaluation raised; :func:`_post_f` / :func:`_post_mp` turn
    them into what :func:`_eval_f` / :func:`_eval` report.

    A variant from :func:`~.mistakes.raw_mistakes` shares every node but those on one path with the expression it
    was made from, so its values cost one operation per ancestor instead of building, compiling and evaluating the
    whole tree: the one-change search screens hundreds of variants this way and builds only the few that pass.
    """

    def __init__(self, envs: list[dict[str, Any]], ops: _Ops = _FLOAT_OPS):
        self.envs = envs
        self.ops = ops
        self.memo: dict[sp.Expr, tuple | EvalError] = {}

    def values(self, expr: sp.Expr) -> tuple:
        """Raw values of ``expr`` at the points (``_ERR`` where it raised); EvalError as :func:`compile_float`."""
        hit = self.memo.get(expr)
        if hit is None:
            try:
                hit = self._compute(expr)
            except EvalError as err:
                hit = err
            self.memo[expr] = hit
        if isinstance(hit, EvalError):
            raise hit
        return hit

    def raw_values(self, raw: Any) -> tuple:
        """Raw values of a :class:`~.mistakes.RawCandidate` without building it."""
        vals = self.values(raw.new)
        for node, i in reversed(raw.path):
            if node.is_Pow and i == 1:  # a new exponent: how it is evaluated depends on it
                return self.values(raw.expr())
            vals = self._apply(node, [vals if j == i else None for j in range(len(node.args))])
        return vals

    def _compute(self, expr: sp.Expr) -> tuple:
        if expr.is_Symbol:
            name = expr.name
            return tuple(env[name] for env in self.envs)
        if expr.is_Rational:
            return (self.ops.rational(int(expr.p), int(expr.q)),) * len(self.envs)
        if expr is sp.pi:
            return (self.ops.pi,) * len(self.envs)
        if expr is sp.E:
            return (self.ops.e,) * len(self.envs)
        return self._apply(expr, [None] * len(expr.args))

    def _apply(self, expr: sp.Expr, given: list[tuple | None]) -> tuple:
        """``expr``'s operation on its args' values (``given[j]`` instead of arg j's own where not None)."""
        args = expr.args
        if expr.is_Add or expr.is_Mul:
            parts = [self.values(a) if g is None else g for a, g in zip(args, given, strict=True)]
            add = expr.is_Add
            out = []
            for vals in zip(*parts, strict=True):
                if any(v is _ERR for v in vals):  # identity: ``in`` would call mpf.__eq__ on every value
                    out.append(_ERR)
                    continue
                try:
                    acc = vals[0]
                    for v in vals[1:]:
                        acc = acc + v if add else acc * v
                except _F_ERRORS:
                    acc = _ERR
                out.append(acc)
            return tuple(out)
        if expr.is_Pow:
            base = self.values(args[0]) if given[0] is None else given[0]
            ex = expr.exp
            if ex.is_Integer:
                n = int(ex)
                return self._map(lambda b: b ** n, base)
            sqrt = self.ops.sqrt
            if ex == sp.Rational(1, 2):
                return self._map(sqrt, base)
            if ex == sp.Rational(-1, 2):
                return self._map(lambda b: 1 / sqrt(b), base)
            exv = self.values(ex)
            power = self.ops.power
            return tuple(_ERR if b is _ERR or e is _ERR else self._call(power, b, e)
                         for b, e in zip(base, exv, strict=True))
        if expr.func in self.ops.funcs and len(args) == 1:
            arg = self.values(args[0]) if given[0] is None else given[0]
            return self._map(self.ops.funcs[expr.func], arg)
        raise EvalError(f"cannot evaluate `{expr.func.__name__}`")

    @staticmethod
    def _call(fn: Callable[..., Any], *xs: Any) -> Any:
        try:
            return fn(*xs)
        except _F_ERRORS:
            return _ERR

    def _map(self, fn: Callable[[Any], Any], vals: tuple) -> tuple:
        return tuple(_ERR if v is _ERR else self._call(fn, v) for v in vals)


F_TOL = 1e-8  # relative agreement required of the float screen (double rounding is ~1e-16; cancellation costs digits)


def _close_f(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return False
    scale = max(abs(a), abs(b))
    return scale < 1e-12 or abs(a - b) <= F_TOL * scale


def _all_close_f(mine: list[float | None], other: list[float | None]) -> bool:
    return all(_close_f(a, b) for a, b in zip(mine, other, strict=False))


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


def _post_mp(v: Any) -> Value:
    """A raw mpmath evaluation (:class:`_Memo` on ``_MP_OPS``) as :func:`_eval` reports it."""
    if v is _ERR:
        return None
    try:
        return _clean(v)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError, ArithmeticError):
        return None


def _loosely_close(fa: float | None, fb: float | None) -> bool:
    """False only where :func:`_close` is False for sure for the values these floats round (``float(value)``, None
    for None): a cheap first test."""
    if fa is None or fb is None:
        return False
    scale = max(abs(fa), abs(fb))
    if not math.isfinite(scale) or scale < 1e-23:
        return True  # beyond the float range: let the exact test decide
    return abs(fa - fb) <= 1e-12 * scale  # rounding to floats moves a 1e-20 agreement by ~2e-16 at most


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
    fvals: list[float | None] = field(default_factory=list)  # float values at all N_POINTS (the fast screen)


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
        self.aliases = dict(catalogue.ALIASES)
        if "z" in q.names:
            self.aliases["noise"] = ""  # fresh noise z or the predicted eps? ambiguous here: not an alias
        self.constants: dict[str, sp.Expr] = {"pi": sp.pi}
        for name, text in notation.MACROS.items():  # diffusers' beta_prod_t = 1 - alpha_bar_t, ...
            try:
                self.constants[name] = parse(text, self.symbols, constants={})
            except ParseError:
                pass  # the macro needs a symbol this question does not have
        self.defs: dict[str, sp.Expr] = {}
        for name, text in q.definitions.items():
            self.defs[name] = self.parse(text)
        self.points = self._points()
        self.ref = self.parse(q.reference)
        self.ref_fn = compile_expr(self.ref)
        self.ref_vals = [_eval(self.ref_fn, env) for env in self.points]
        if any(v is None for v in self.ref_vals):
            raise RuntimeError(f"catalogue error: reference of {q.id} is undefined at a sample point")
        self.fpoints = [{k: float(v) for k, v in env.items()} for env in self.points]
        self.ref_f = self.float_values(self.ref)
        self._cases: list[_Case] | None = None
        self._coefs: list[_Coef] | None = None
        self._ref_free: sp.Expr | None = None
        self._swaps_subs: tuple[list, list] | None = None
        self._base: dict[sp.Symbol, set[sp.Symbol]] = {}

    def parse(self, text: str, source: str = "text") -> sp.Expr:
        """Parse learner text (``source="text"``) or the printed form of a SymPy expression (``"sympy"``)."""
        if source == "sympy":
            return parse(text, self.symbols, aliases=self.aliases, elsewhere=_ALL_NAMES,
                         constants={**self.constants, "E": sp.E}, max_length=SYMPY_MAX_LENGTH)
        return parse(text, self.symbols, aliases=self.aliases, elsewhere=_ALL_NAMES, constants=self.constants,
                     ddim=self.q.ddim)

    def float_values(self, expr: sp.Expr) -> list[float | None]:
        """``expr`` at every sample point in double precision (the screen; None where undefined)."""
        fn = compile_float(expr)
        return [_eval_f(fn, env) for env in self.fpoints]

    def is_lhs(self, part: str) -> bool:
        """True when ``part`` (the text before the first ``=``) names the asked quantity (``mu_tilde``,
        ``beta_tilde_t``, ``x_{t-1}``, ``sigma_t(eta)``) rather than being the first step of a derivation."""
        if not notation.is_name_like(part):
            return False
        ident = re.match(r"\s*([A-Za-z][A-Za-z0-9_]*)", part).group(1).rstrip("_")
        if ident in self.q.asked:
            return True
        try:
            self.parse(part)
        except ParseError:
            return True  # not an expression of this question: a name for the answer
        return False

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

    def base_symbols(self, sym: sp.Symbol) -> set[sp.Symbol]:
        """The free symbols ``sym`` stands for (itself, or those of its definition), memoized."""
        hit = self._base.get(sym)
        if hit is None:
            hit = self._base[sym] = self.expand_definitions(sym).free_symbols
        return hit

    @property
    def ref_free(self) -> sp.Expr:
        if self._ref_free is None:
            self._ref_free = self.expand_definitions(self.ref)
        return self._ref_free

    # -- mistakes --------------------------------------------------------------------------------------------------
    @property
    def swaps_subs(self) -> tuple[list, list]:
        """The question's own swaps and substitutions as SymPy pairs (the extra rules of the mistake generator)."""
        if self._swaps_subs is None:
            q = self.q
            swaps = [(tag, hint, [(self.symbols[a], self.symbols[b]) for a, b in pairs])
                     for tag, hint, pairs in q.swaps]
            subs = [(tag, hint, {self.symbols[n]: self.parse(e) for n, e in pairs})
                    for tag, hint, pairs in q.substitutions]
            self._swaps_subs = (swaps, subs)
        return self._swaps_subs

    def _raw_candidates(self) -> list[tuple[bool, RawCandidate]]:
        """(known, variant): the question's known mistakes, then the automatic ones, in priority order."""
        q = self.q
        known = [Candidate(m.tag, m.hint, self.parse(m.answer), known=True) for m in q.mistakes]
        out = [(True, RawCandidate(c.expr, (), lambda _e, c=c: c)) for c in known]
        swaps, subs = self.swaps_subs
        return out + [(False, raw) for raw in raw_mistakes(self.ref, self.symbols, self.linear, swaps, subs)]

    def _candidates(self) -> list[Candidate]:
        return [raw.build() for _, raw in self._raw_candidates()]

    def _dedupe(self, cands: list[tuple[bool, RawCandidate]], ref_screen: list[Value]
                ) -> list[tuple[Candidate, list[Value]]]:
        """The candidates that differ from the reference and from every earlier candidate (at ``SCREEN`` points
        in mpmath), built; values from a :class:`_Memo`, so only the kept ones are ever built or compiled."""
        memo = _Memo(self.points[:SCREEN], _MP_OPS)
        kept: list[tuple[Candidate, list[Value]]] = []
        kept_f: list[list[float | None]] = []  # the kept values rounded to floats, for the cheap first test
        for known, raw in cands:
            try:
                vals = [_post_mp(v) for v in memo.raw_values(raw)]
            except EvalError:
                continue
            if not known:
                if any(v is None for v in vals) or _all_close(vals, ref_screen):
                    continue
                if all(abs(v) < 1e-12 * (1 + abs(r)) for v, r in zip(vals, ref_screen, strict=False)):
                    continue  # a degenerate variant (x/x inside a root, ...): zero, not a teachable mistake
            fl = _as_floats(vals)
            if any(all(_loosely_close(a, b) for a, b in zip(fl, kf, strict=False)) and _all_close(vals, k[1])
                   for k, kf in zip(kept, kept_f, strict=True)):
                continue  # the same wrong answer as an earlier (higher-priority) candidate
            kept.append((raw.build(), vals))
            kept_f.append(fl)
        return kept

    @property
    def cases(self) -> list[_Case]:
        if self._cases is None:
            kept = self._dedupe(self._raw_candidates(), self.ref_vals[:SCREEN])
            fmemo = _Memo(self.fpoints)
            self._cases = [_Case(c, compile_expr(c.expr), vals, fvals=[_post_f(v) for v in fmemo.values(c.expr)])
                           for c, vals in kept]
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
                    kept = self._dedupe([(False, raw) for raw in raw_mistakes(part, self.symbols)], vals)
                    coef.cases = kept
                coefs.append(coef)
            self._coefs = coefs
        return self._coefs


_PREPARED: dict[str, Prepared] = {}


def warm() -> None:
    """Run SymPy's first-use imports now (the first evaluated sum imports ``sympy.tensor``, ~50 ms): the worker calls
    this before it reports ready, so a worker started early (``warm_up``) has them done before the first check."""
    parse("1 - sqrt(x)*x", {"x": sp.Symbol("x", positive=True)})


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


def _as_floats(vals: list[Value]) -> list[float | None]:
    return [None if v is None else float(v) for v in vals]


def _linear_feedback(p: Prepared, expr: sp.Expr) -> tuple[str, dict[str, str]]:
    """Compare the answer's coefficients of the linear variables with the reference's (at LINEAR_POINTS points).

    A diagnosis, not a verdict: it runs in floats (the verdict itself rests on the 30-digit comparison)."""
    names = [v.name for v in p.linear]
    pretty = ", ".join(f"`{n}`" for n in names)
    try:
        fn = compile_float(expr)
    except EvalError:
        return "", {}
    coef_vals: dict[str, list[float | None]] = {n: [] for n in names + ["1"]}
    linear_ok = True
    for env in p.fpoints[:LINEAR_POINTS]:
        env0 = dict(env, **{n: 0.0 for n in names})
        c0 = _eval_f(fn, env0)
        coef_vals["1"].append(c0)
        total = c0
        for n in names:
            cn = _eval_f(fn, dict(env0, **{n: 1.0}))
            cn = None if cn is None or c0 is None else cn - c0
            coef_vals[n].append(cn)
            total = None if total is None or cn is None else total + cn * env[n]
        full = _eval_f(fn, env)
        if total is None or full is None or not _close_f(total, full):
            linear_ok = False
    if not linear_ok:
        return f"The correct answer is linear in {pretty}; yours is not.", {}
    verdicts: dict[str, str] = {}
    lines = []
    for coef in p.coefs:
        mine = coef_vals[coef.name]
        label = "The term without " + pretty if coef.name == "1" else f"The coefficient of `{coef.name}`"
        if _all_close_f(mine, _as_floats(coef.values[:LINEAR_POINTS])):
            verdicts[coef.name] = "right"
            if coef.name != "1":
                lines.append(f"{label} is right.")
            continue
        verdicts[coef.name] = "wrong"
        if coef.name == "1" and all(v == 0 for v in coef.values):
            lines.append(f"There should be no term without {pretty}.")
            continue
        if coef.name != "1" and all(v is not None and abs(v) < 1e-12 for v in mine):
            lines.append(f"{label} is missing (your answer does not contain `{coef.name}`).")
            continue
        why = next((c.hint for c, vals in coef.cases if _all_close_f(mine, _as_floats(vals[:LINEAR_POINTS]))), None)
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
        return p.base_symbols(e) if e.is_Symbol else p.expand_definitions(e).free_symbols

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


def _smaller_than(expr: sp.Expr, limit: int) -> bool:
    for n, _ in enumerate(sp.preorder_traversal(expr)):
        if n >= limit:
            return False
    return True


def _symbolic_confirmation(p: Prepared, expr: sp.Expr) -> bool:
    """True when the difference to the reference vanishes symbolically; only tried where that is cheap.

    The definitions are substituted (alpha_bar_t = alpha_bar_prev * alpha_t, ...) and SymPy's automatic
    simplification decides; ``sympy.cancel`` is tried only on tiny differences without radicals (it treats every
    radical as an independent generator, and costs 10-100 ms even on moderate rational functions, which is more than
    the whole numeric verdict). The numeric verdict never depends on this.
    """
    if not _smaller_than(expr, SYMBOLIC_MAX_NODES) or not _smaller_than(p.ref, SYMBOLIC_MAX_NODES):
        return False  # a node count with early exit: sympy.count_ops itself costs milliseconds on large answers
    diff = p.expand_definitions(expr) - p.ref_free
    if diff == 0:
        return True
    if not _smaller_than(diff, SYMBOLIC_CANCEL_NODES) or _radical_of_sum(diff) or any(
            e.is_Pow and not e.exp.is_Integer for e in sp.preorder_traversal(diff)):
        return False
    return sp.cancel(diff) == 0


def _invalid_feedback(p: Prepared, message: str) -> str:
    """The parser's message plus the names this question accepts, with their meanings (every invalid verdict)."""
    return _sentence(f"Invalid input: {message}") + f" Symbols here: {p.q.symbols_help()}."


def _values(p: Prepared, fn: Callable[[dict[str, Value]], Value], n: int = N_POINTS) -> list[Value]:
    return [_eval(fn, env) for env in p.points[:n]]


def diagnose(p: Prepared, target: sp.Expr, target_f: list[float | None], expr: sp.Expr, mine_f: list[float | None],
             deadline: float | None = None, forward: bool = True) -> Candidate | None:
    """Name the single change that turns ``target`` into ``expr``, or None. ``*_f``: float values at all points.

    Forward: every automatic mistake of ``target``. Inverse: every automatic mistake of the learner's own ``expr``
    that gives ``target`` (so a square root dropped while rewriting into another form is still found, and described
    in the learner's form). Candidates are screened in floats at all points and confirmed in mpmath at ``SCREEN``
    points; the first screens (1 point, then 4) run unbuilt, on memoized node values (:class:`_Memo`), so only the
    few variants that pass are ever built as trees. ``deadline`` (``time.monotonic()``) bounds the search.
    ``forward=False`` skips the forward search (the reference's own mistakes are precomputed in
    :attr:`Prepared.cases`).
    """
    swaps, subs = p.swaps_subs
    searches: list[tuple[sp.Expr, list[float | None], bool, sp.Expr]] = []
    if forward:
        searches.append((target, mine_f, False, expr))
    if forward:
        expanded = sp.expand(target)  # a factor lost from one term of a product is a change of the expanded form
        if expanded != target:
            searches.append((expanded, mine_f, False, expr))
    if _smaller_than(expr, DIAGNOSE_MAX_NODES):
        searches.append((expr, target_f, True, target))
    screen1, screen4 = _Memo(p.fpoints[:1]), _Memo(p.fpoints[:4])
    for source, against, inverse, other in searches:
        raws = islice(raw_mistakes(source, p.symbols, p.linear, swaps, subs), MAX_DIAGNOSE)
        other_mp: list[Value] | None = None
        while True:
            try:
                raw = next(raws)
            except StopIteration:
                break
            except (TypeError, ValueError, RecursionError):
                break  # the generator failed on this expression: no further variants of it
            if deadline is not None and time.monotonic() > deadline:
                return None
            try:  # most variants fail at the first point: screen on 1, then 4 (unbuilt), then on all of them
                if not _close_f(_post_f(screen1.raw_values(raw)[0]), against[0]):
                    continue
                first = screen4.raw_values(raw)
            except EvalError:
                continue
            if not all(_close_f(_post_f(v), b) for v, b in zip(first, against[:4], strict=True)):
                continue
            cand = raw.build()
            try:
                ffn = compile_float(cand.expr)
            except EvalError:
                continue
            if not all(_close_f(_eval_f(ffn, env), b) for env, b in zip(p.fpoints, against, strict=True)):
                continue
            if other_mp is None:
                other_mp = _values(p, compile_expr(other), SCREEN)
            if _all_close(_values(p, compile_expr(cand.expr), SCREEN), other_mp):
                return cand.inverse() if inverse else cand
    return None


def _single(p: Prepared, expr: sp.Expr, fn: Callable[[dict[str, Value]], Value], shown: str,
            on_partial: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """The verdict on one parsed answer."""
    qid = p.q.id
    mine_f = p.float_values(expr)
    mine = [_eval(fn, env) for env in p.points[:SCREEN]]  # every verdict rests on these 30-digit values
    n_bad = sum(v is None for v in mine) + sum(v is None for v in mine_f[SCREEN:])
    if _all_close_f(mine_f, p.ref_f) and _all_close(mine, p.ref_vals):
        err = max(_rel_err(a, b) for a, b in zip(mine, p.ref_vals, strict=False))
        evidence = (f"numeric: {N_POINTS} random points (in double precision; {SCREEN} of them at {DPS} digits, max "
                    f"rel. error {MP.nstr(err, 2)})")
        res = _result(qid, "correct", "Correct.", evidence, answer=shown)
        if on_partial is not None:
            on_partial(res)
        if _symbolic_confirmation(p, expr):
            res["evidence"] = evidence + "; symbolic: the difference cancels to 0"
        return res

    def named(cand: Candidate) -> dict[str, Any]:
        feedback = cand.hint
        details: dict[str, Any] = {"known": cand.known}
        if p.linear:
            _, verdicts = _linear_feedback(p, expr)
            details["coefficients"] = verdicts
            feedback += _coefficient_summary(verdicts)
        return _result(qid, "known_mistake", feedback, f"numeric: equals the mistake `{cand.tag}` at {N_POINTS} "
                       f"points ({SCREEN} at {DPS} digits)", mistake=cand.tag, answer=shown, details=details)

    # Wrong: does it match a known or an automatic mistake of the reference?
    for case in p.cases:
        if _all_close_f(mine_f, case.fvals) and _all_close(mine, case.screen):  # floats first: cheaper
            return named(case.cand)
    # ... or is it one change away from the reference in the learner's own form?
    if not n_bad:
        cand = diagnose(p, p.ref, p.ref_f, expr, mine_f, deadline=time.monotonic() + DIAGNOSE_BUDGET, forward=False)
        if cand is not None:
            return named(cand)

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
        lin, verdicts = _linear_feedback(p, expr)
        if lin:
            parts.append(lin)
        details["coefficients"] = verdicts
    if not ratio:
        parts.append(_counterexample(p, mine[:SCREEN]))
    n_diff = sum(not _close(a, b) for a, b in zip(mine[:SCREEN], p.ref_vals, strict=False))
    return _result(qid, "incorrect", " ".join(x for x in parts if x),
                   f"numeric: differs from the reference at {n_diff} of {SCREEN} points", answer=shown,
                   details=details)


def _parse_one(p: Prepared, text: str, source: str) -> tuple[sp.Expr, Callable, str] | str:
    """(expression, compiled function, printed form), or the learner's error message."""
    try:
        expr = p.parse(text, source)
    except ParseError as err:
        return str(err)
    try:
        fn = compile_expr(expr)
    except EvalError as err:
        return str(err)
    return expr, fn, sp.sstr(expr, order="none")  # "none": skips SymPy's term sorting, the costly part of printing


def _front_parts(p: Prepared, text: str) -> list[str] | str:
    """The answer split at ``=`` after the LaTeX/Unicode front ends, its leading ``name =`` dropped; or an error."""
    try:
        front = notation.front(text)
    except notation.NotationError as err:
        return str(err)
    except RecursionError:
        return "the expression is too deeply nested"
    if "=" not in front:
        return [front]
    parts = notation.split_chain(front)
    if len(parts) > 1 and p.is_lhs(parts[0]):
        parts = parts[1:]
    return parts


def check_answer(question_id: str, text: str, *, source: str = "text",
                 on_partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Check ``text`` against question ``question_id``; returns the fields of a ``CheckResult`` as a dict.

    ``source`` is ``"text"`` for typed answers or ``"sympy"`` for the printed form of a SymPy expression (which may
    also use ``E`` and be longer). ``on_partial`` receives the numeric verdict of a correct answer before the
    (optional) symbolic confirmation, so the caller can still report it if the confirmation runs out of time.
    A leading ``name =`` naming the asked quantity is dropped; any further ``=`` makes the answer a derivation,
    checked by :func:`check_chain`.
    """
    p = prepared(question_id)
    parts = _front_parts(p, text) if source == "text" else [text]
    if isinstance(parts, str):
        return _result(question_id, "invalid", _invalid_feedback(p, parts), "parser", answer=text)
    if len(parts) > 1:
        return check_chain(question_id, parts, source=source)
    parsed = _parse_one(p, parts[0], source)
    if isinstance(parsed, str):
        return _result(question_id, "invalid", _invalid_feedback(p, parsed), "parser", answer=text)
    expr, fn, shown = parsed
    return _single(p, expr, fn, shown, on_partial)


def _step_change_hint(cand: Candidate, k: int) -> str:
    """'Step 2 -> 3: ...' wording for a change found between two steps."""
    if cand.swap is not None:
        typed, meant = cand.swap
        a, b = catalogue.VOCAB[typed].shown, catalogue.VOCAB[meant].shown
        return (f"step {k} \u2192 {k + 1} replaced `{meant}` by `{typed}` at one place: it is valid only if "
                f"{a} = {b}.")
    hint = cand.hint[0].lower() + cand.hint[1:]
    return f"step {k} \u2192 {k + 1}: {hint}"


def check_chain(question_id: str, steps: list[str], *, source: str = "text") -> dict[str, Any]:
    """Check a derivation ``steps[0] = steps[1] = ...`` of question ``question_id``.

    Every step must equal the one before under the question's definitions (alpha_bar_t = alpha_bar_prev * alpha_t,
    ...), and the last must equal the reference; since all steps are the same quantity, the first step that differs
    from the reference is where the chain breaks. The verdict names it and, where one change explains it, what changed
    ("step 3 -> 4: a square root seems to be missing (look at the part with `alpha_bar_t`)", "... valid only if
    ᾱ_t = α_t"). ``details["steps"]`` has one status per step: ``valid``, ``broken``, or ``not checked``.
    """
    p = prepared(question_id)
    q = p.q
    texts: list[str] = []
    for step in steps:
        sub = _front_parts(p, step) if source == "text" else [step]
        if isinstance(sub, str):
            return _result(q.id, "invalid", _invalid_feedback(p, f"step {len(texts) + 1}: {sub}"), "parser",
                           answer=step)
        texts += sub
    if len(texts) > MAX_STEPS:
        return _result(q.id, "invalid", _invalid_feedback(p, f"at most {MAX_STEPS} steps, got {len(texts)}"),
                       "input size")
    if len(texts) < q.min_steps:
        start = f", starting from `{q.start}`" if q.start else ""
        return _result(q.id, "invalid", f"Show the derivation: at least {q.min_steps} steps joined by `=`{start}.",
                       "too few steps")
    parsed = []
    for k, text in enumerate(texts, 1):
        if not text.strip():
            return _result(q.id, "invalid", _invalid_feedback(p, f"step {k} is empty (two `=` in a row?)"),
                           "parser")
        one = _parse_one(p, text, source)
        if isinstance(one, str):
            return _result(q.id, "invalid", _invalid_feedback(p, f"step {k} (`{text.strip()[:60]}`): {one}"),
                           "parser", answer=text)
        parsed.append(one)
    fvals = [p.float_values(expr) for expr, _, _ in parsed]
    vals = [_values(p, fn, SCREEN) for _, fn, _ in parsed]
    shown = " = ".join(sh for _, _, sh in parsed)
    n = len(parsed)
    ok = [_all_close_f(f, p.ref_f) and _all_close(v, p.ref_vals) for f, v in zip(fvals, vals, strict=True)]
    statuses = ["valid"] * n
    if all(ok):
        evidence = (f"numeric: each of {n} steps equals the reference at {N_POINTS} random points (double precision; "
                    f"{SCREEN} of them at {DPS} digits)")
        what = "the answer" if n == 1 else f"all {n} steps are equal, each to the one before, and to the asked quantity"
        return _result(q.id, "correct", f"Correct: {what}.", evidence, answer=shown,
                       details={"steps": statuses, "broken": None})
    k = ok.index(False)  # 0-based index of the first step that is not the asked quantity
    statuses = ["valid"] * k + ["broken"] + ["not checked"] * (n - k - 1)
    details = {"steps": statuses, "broken": k + 1}
    deadline = time.monotonic() + DIAGNOSE_BUDGET
    if k == 0:
        single = _single(p, parsed[0][0], parsed[0][1], parsed[0][2], None)
        lead = "Step 1 is not the asked quantity" if n > 1 else "Not the asked quantity"
        fb = f"{lead}: {single['feedback'][0].lower()}{single['feedback'][1:]}"
        return _result(q.id, single["status"], fb, single["evidence"], mistake=single["mistake"], answer=shown,
                       details={**details, **single["details"]})
    later = [i + 1 for i in range(k + 1, n) if ok[i]]
    tail = (f" (Step {later[0]} is right again: the error was undone later, but the chain is broken at step {k + 1}.)"
            if later else "")
    prev_expr, cur_expr = parsed[k - 1][0], parsed[k][0]
    # What changed between the two steps: a one-place symbol swap ("valid only if ...") is the most specific answer;
    # next, the broken step being one of the question's own known mistakes; then any other single change.
    change = diagnose(p, prev_expr, fvals[k - 1], cur_expr, fvals[k], deadline=deadline)
    known = next((c.cand for c in p.cases if c.cand.known and _all_close_f(fvals[k], c.fvals)
                  and _all_close(vals[k], c.screen)), None)
    cand = change if change is not None and (change.swap is not None or known is None) else known
    valid = f"Steps 1-{k} are right." if k > 1 else "Step 1 is right."
    if cand is not None:
        fb = f"{valid} {_step_change_hint(cand, k)[0].upper()}{_step_change_hint(cand, k)[1:]}{tail}"
        return _result(q.id, "known_mistake", fb, f"numeric: step {k + 1} equals step {k} with the change "
                       f"`{cand.tag}` at {N_POINTS} points", mistake=cand.tag, answer=shown, details=details)
    i = next((j for j, (a, b) in enumerate(zip(vals[k - 1], vals[k], strict=True)) if not _close(a, b)), None)
    if i is None:  # the 30-digit points agree, the float screen does not: show a float point
        i = next(j for j, (a, b) in enumerate(zip(fvals[k - 1], fvals[k], strict=True)) if not _close_f(a, b))
        a_v, b_v = fvals[k - 1][i], fvals[k][i]
        shown_a, shown_b = ("undefined" if v is None else f"{v:.4g}" for v in (a_v, b_v))
    else:
        shown_a, shown_b = _fmt(vals[k - 1][i]), _fmt(vals[k][i])
    env = p.points[i]
    at = ", ".join(f"{n_}={_fmt(env[n_], 3)}" for n_ in q.free)
    fb = (f"{valid} Step {k + 1} does not equal step {k}: e.g. at {at}, step {k} gives {shown_a}, "
          f"step {k + 1} gives {shown_b}.{tail}")
    return _result(q.id, "incorrect", fb, f"numeric: step {k + 1} differs from step {k}", answer=shown,
                   details=details)
