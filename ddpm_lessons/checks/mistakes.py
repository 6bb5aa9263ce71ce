"""Automatic mistakes: wrong answers generated from a reference expression.

Each rule rewrites one place of the reference (or swaps symbols everywhere) the way learners typically go wrong:
alpha_t <-> alpha_bar_t, alpha_bar_t <-> alpha_bar_prev, a dropped or extra square root, a dropped square, an
inverted ratio, a wrong sign, a factor of 2 or 1/2, a missing term, factor or denominator, the square root or square
of the whole answer (std vs variance), one-place symbol swaps, and the per-question swaps (KL arguments,
conditional/unconditional) and substitutions (the s = 1 + w guidance convention in both directions). Applied to the
learner's own answer instead of the reference, the same rules find mistakes made in a rewritten form
(:meth:`Candidate.inverse` names them). The engine evaluates every
variant at the question's sample points, drops those equal to the reference, keeps the first of any that are equal to
each other (rules are listed in priority order) and names the one a wrong answer matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import sympy as sp

__all__ = ["Candidate", "RawCandidate", "RULE_HINTS", "INVERSE", "auto_mistakes", "raw_mistakes", "describe_site",
           "rebuild_path"]

# tag -> hint; {site} is replaced by " (look at the part with `alpha_bar_t`)" or "".
RULE_HINTS: dict[str, str] = {
    "alpha_swap": "alpha_t (one step) and alpha_bar_t (the product over all steps) look swapped{site}.",
    "prev_swap": "alpha_bar_t and alpha_bar_prev look swapped (an off-by-one in t){site}.",
    "beta_swap": "beta_t and beta_tilde_t look swapped{site}.",
    "dropped_sqrt": "A square root seems to be missing{site}.",
    "extra_sqrt": "There seems to be an extra square root{site}: a standard deviation where a variance belongs?",
    "whole_sqrt": "Your answer is the square root of the right one: a standard deviation where a variance belongs?",
    "whole_square": "Your answer is the square of the right one: a variance where a standard deviation belongs?",
    "dropped_square": "A square seems to be missing{site}: sigma where sigma^2 belongs?",
    "inverted_ratio": "A ratio seems to be upside down{site}.",
    "sign_error": "A sign looks wrong{site}.",
    "factor_2": "A term is twice what it should be{site}.",
    "factor_half": "A term is half what it should be{site}.",
    "whole_factor_2": "Your answer is twice the right one (off by a factor of 2).",
    "whole_factor_half": "Your answer is half the right one (off by a factor of 1/2).",
    "missing_term": "A term seems to be missing{site}.",
    "dropped_denominator": "A denominator seems to be missing{site}.",
    "missing_factor": "A factor seems to be missing{site}.",
    # only found by undoing a change in the learner's own expression (see INVERSE)
    "extra_square": "There seems to be an extra square{site}.",
    "extra_term": "There seems to be an extra term{site}.",
    "extra_factor": "There seems to be an extra factor{site}.",
    "extra_denominator": "There seems to be an extra denominator{site}.",
}
_NAMED_SITE = ("missing_term", "missing_factor", "dropped_denominator", "extra_term", "extra_factor",
               "extra_denominator")  # hints that quote the term or factor itself when it is short
_ONE_SWAP_HINT = "`{a}` where `{b}` belongs, at one place{site}."
# A rule applied to the *learner's* expression that gives the reference names the inverse mistake: removing a square
# root from the answer fixes it <=> the answer has an extra square root. Swaps, signs and inversions undo themselves.
INVERSE: dict[str, str] = {
    "dropped_sqrt": "extra_sqrt", "extra_sqrt": "dropped_sqrt", "whole_sqrt": "whole_square",
    "whole_square": "whole_sqrt", "dropped_square": "extra_square", "missing_term": "extra_term",
    "missing_factor": "extra_factor", "dropped_denominator": "extra_denominator", "factor_2": "factor_half",
    "factor_half": "factor_2",
}
_SYMBOL_SWAPS = [("alpha_swap", "alpha_t", "alpha_bar_t"), ("prev_swap", "alpha_bar_t", "alpha_bar_prev"),
                 ("beta_swap", "beta_t", "beta_tilde_t")]
_HALF = sp.Rational(1, 2)


@dataclass
class Candidate:
    """One wrong answer: its ``tag``, the ``hint`` shown when it matches, and the expression."""

    tag: str
    hint: str
    expr: sp.Expr
    known: bool = False
    site: str = ""  # the site description, e.g. " (look at the part with `alpha_bar_t`)"
    swap: tuple[str, str] | None = None  # (typed, meant) for a one-place symbol swap

    def inverse(self) -> Candidate:
        """The mistake a learner made if applying this rule to *their* answer gives the reference."""
        tag = INVERSE.get(self.tag, self.tag)
        if self.swap is not None:
            a, b = self.swap
            return Candidate(tag, _ONE_SWAP_HINT.format(a=b, b=a, site=self.site), self.expr, site=self.site,
                             swap=(b, a))
        if tag == self.tag and self.tag not in RULE_HINTS:
            return self  # a question's own swap or substitution: the same wording either way
        if self.hint in (RULE_HINTS["whole_factor_2"], RULE_HINTS["whole_factor_half"]):
            whole = "whole_factor_2" if tag == "factor_2" else "whole_factor_half"
            return Candidate(tag, RULE_HINTS[whole], self.expr)
        return Candidate(tag, RULE_HINTS[tag].format(site=self.site), self.expr, site=self.site)


def describe_site(site: sp.Expr | None, linear: Iterable[sp.Symbol]) -> str:
    """' (look at the part with `a`, `b`)' naming the site's symbols other than the linear variables."""
    if site is None:
        return ""
    if site.is_Number:
        return " (a constant term)"
    names = sorted(s.name for s in site.free_symbols - set(linear))
    if not names:
        return ""
    return " (look at the part with " + ", ".join(f"`{n}`" for n in names[:3]) + ")"


Rule = Callable[[sp.Expr], Iterator[tuple[sp.Expr, sp.Expr]]]


Path = tuple[tuple[sp.Expr, int], ...]  # (ancestor, index of the arg taken), from the root down


def _preorder(expr: sp.Expr, path: Path = ()) -> Iterator[tuple[sp.Expr, Path]]:
    """Every node of ``expr`` with its path, in pre-order (a node, then its args in order)."""
    yield expr, path
    for i, arg in enumerate(expr.args):
        yield from _preorder(arg, path + ((expr, i),))


def _sites(nodes: list[tuple[sp.Expr, Path]], rule: Rule) -> Iterator[tuple[sp.Expr, sp.Expr, Path]]:
    """Apply ``rule`` at every node in turn (``nodes``: :func:`_preorder`): yields (replacement, site, path)."""
    for node, path in nodes:
        for new, site in rule(node):
            yield new, site, path


def rebuild_path(new: sp.Expr, path: Path) -> sp.Expr:
    """The whole expression: ``new`` put in place at the end of ``path``, every ancestor rebuilt unevaluated."""
    for node, i in reversed(path):
        args = list(node.args)
        args[i] = new
        new = _rebuild(node, args)
    return new


class RawCandidate:
    """A variant not built yet: ``new`` replaces the node at the end of ``path`` (the whole expression when ``path``
    is empty). The engine screens it numerically from the values of ``new`` and the ancestors' other args, and only
    :meth:`build` s the few that pass: the whole expression and the hint (printing the site costs more than the
    numeric screen)."""

    __slots__ = ("new", "path", "make")

    def __init__(self, new: sp.Expr, path: Path, make: Callable[[sp.Expr], Candidate]):
        self.new, self.path, self.make = new, path, make

    def expr(self) -> sp.Expr:
        return rebuild_path(self.new, self.path)

    def build(self) -> Candidate:
        return self.make(self.expr())


def auto_mistakes(ref: sp.Expr, names: dict[str, sp.Symbol], linear: Iterable[sp.Symbol] = (),
                  swaps: Iterable[tuple[str, str, Iterable[tuple[sp.Symbol, sp.Symbol]]]] = (),
                  substitutions: Iterable[tuple[str, str, dict[sp.Symbol, sp.Expr]]] = (),
                  whole: bool = True) -> list[Candidate]:
    """Generate wrong variants of ``ref``, in priority order.

    Args:
        ref: the reference answer, written with the question's symbols (derived ones not substituted).
        names: the question's symbols by name (swaps only apply to symbols the question has).
        linear: variables the answer is linear in; rules leave them alone (no sqrt(x_t)).
        swaps: ``(tag, hint, pairs)``: each pair of symbols exchanged simultaneously.
        substitutions: ``(tag, hint, mapping)``: a simultaneous substitution.
        whole: also apply whole-expression rules (sign, factor 2, extra sqrt of everything).

    The variants are built unevaluated (each node constructed with ``evaluate=False``): they are only ever evaluated
    numerically, and SymPy's automatic simplification with positive symbols costs ~5 ms a variant. The global
    ``sympy.evaluate(False)`` switch would build the same trees, but each switch clears SymPy's whole cache
    (~0.5 ms, and every later construction starts cold).
    """
    return [raw.build() for raw in raw_mistakes(ref, names, linear, swaps, substitutions, whole)]


def raw_mistakes(ref: sp.Expr, names: dict[str, sp.Symbol], linear: Iterable[sp.Symbol] = (),
                 swaps: Iterable[tuple[str, str, Iterable[tuple[sp.Symbol, sp.Symbol]]]] = (),
                 substitutions: Iterable[tuple[str, str, dict[sp.Symbol, sp.Expr]]] = (),
                 whole: bool = True) -> Iterator[RawCandidate]:
    """The variants of :func:`auto_mistakes`, in the same order, generated lazily and not yet built."""
    return _raw_mistakes(ref, names, set(linear), swaps, substitutions, whole)


# Unevaluated constructors: the trees ``sympy.evaluate(False)`` gives, without touching the global switch, and
# without SymPy's construction cache (``cacheit`` keeps the undecorated constructor as ``__wrapped__``): hundreds of
# throw-away variants per answer would otherwise evict the entries that make parsing the next answer fast.
_ASSOC_NEW = getattr(sp.Add.__new__, "__wrapped__", sp.Add.__new__)  # AssocOp.__new__, shared by Add and Mul
_POW_NEW = getattr(sp.Pow.__new__, "__wrapped__", sp.Pow.__new__)


def _add(*args: sp.Expr) -> sp.Expr:
    return _ASSOC_NEW(sp.Add, *args, evaluate=False)


def _mul(*args: sp.Expr) -> sp.Expr:
    return _ASSOC_NEW(sp.Mul, *args, evaluate=False)


def _pow(base: sp.Expr, exp: sp.Expr) -> sp.Expr:
    return _POW_NEW(sp.Pow, base, exp, evaluate=False)


def _twice(e: sp.Expr) -> sp.Expr:
    return _mul(e, sp.Integer(2)) if e.is_Number else _mul(sp.Integer(2), e)  # ``2 * e``: a Number multiplies first


def _neg(e: sp.Expr) -> sp.Expr:
    # Add.__neg__ is the only negation that goes through a (switch-dependent) constructor; Mul, Number and every
    # other Expr negate by rearranging args, the same either way
    return _mul(sp.S.NegativeOne, e) if e.is_Add else -e


def _rebuild(e: sp.Expr, args: list[sp.Expr]) -> sp.Expr:
    if e.is_Add or e.is_Mul:
        return _ASSOC_NEW(e.func, *args, evaluate=False)
    if e.is_Pow:
        return _POW_NEW(sp.Pow, *args, evaluate=False)
    return e.func(*args, evaluate=False)


def _xreplace(e: sp.Expr, rule: dict[sp.Expr, sp.Expr]) -> sp.Expr:
    """``e.xreplace(rule)`` building unevaluated nodes (as :meth:`sympy.Basic.xreplace` under ``evaluate(False)``)."""
    return _xreplace_rec(e, rule)[0] if rule else e


def _xreplace_rec(e: sp.Expr, rule: dict[sp.Expr, sp.Expr]) -> tuple[sp.Expr, bool]:
    if e in rule:
        return rule[e], True
    args, changed = [], False
    for a in e.args:
        new, ch = _xreplace_rec(a, rule)
        args.append(new)
        changed |= ch
    if changed:
        return _rebuild(e, args), True
    return e, False


def _plain(tag: str, hint: str) -> Callable[[sp.Expr], Candidate]:
    return lambda expr: Candidate(tag, hint, expr)


def _raw_mistakes(ref: sp.Expr, names: dict[str, sp.Symbol], linear: set[sp.Symbol],
                  swaps: Iterable[tuple[str, str, Iterable[tuple[sp.Symbol, sp.Symbol]]]],
                  substitutions: Iterable[tuple[str, str, dict[sp.Symbol, sp.Expr]]],
                  whole: bool) -> Iterator[RawCandidate]:
    free = ref.free_symbols
    nodes = list(_preorder(ref))

    for tag, hint, pairs in swaps:
        mapping = {}
        for a, b in pairs:
            mapping[a], mapping[b] = b, a
        yield RawCandidate(_xreplace(ref, mapping), (), _plain(tag, hint))
    for tag, hint, mapping in substitutions:
        yield RawCandidate(_xreplace(ref, mapping), (), _plain(tag, hint))
    for tag, a, b in _SYMBOL_SWAPS:
        if a in names and b in names and (names[a] in free or names[b] in free):
            yield RawCandidate(_xreplace(ref, {names[a]: names[b], names[b]: names[a]}), (),
                               _plain(tag, RULE_HINTS[tag].format(site="")))
    for tag, a, b in _SYMBOL_SWAPS:  # one occurrence only
        if a in names and b in names:
            for src, dst in ((names[a], names[b]), (names[b], names[a])):
                def one(e: sp.Expr, src: sp.Symbol = src, dst: sp.Symbol = dst) -> Iterator[tuple[sp.Expr, sp.Expr]]:
                    if e == src:
                        yield dst, e

                def make_swap(expr: sp.Expr, tag: str = tag, src: sp.Symbol = src, dst: sp.Symbol = dst) -> Candidate:
                    return Candidate(tag, _ONE_SWAP_HINT.format(a=dst.name, b=src.name, site=""), expr,
                                     swap=(dst.name, src.name))
                for new, _site, path in _sites(nodes, one):
                    yield RawCandidate(new, path, make_swap)

    lin_memo: dict[sp.Expr, bool] = {}

    def has_linear(e: sp.Expr) -> bool:  # memoized: several rules ask at every node, and free_symbols is not cached
        hit = lin_memo.get(e)
        if hit is None:
            hit = lin_memo[e] = bool(e.free_symbols & linear)
        return hit

    def add(tag: str, rule: Rule) -> Iterator[RawCandidate]:
        for new, site, path in _sites(nodes, rule):
            def make(expr: sp.Expr, tag: str = tag, site: sp.Expr = site) -> Candidate:
                where = describe_site(site, linear)
                if tag in _NAMED_SITE and site is not None and not site.is_Number:
                    printed = sp.sstr(site, order="none")
                    if len(printed) <= 40:
                        where = f": `{printed}`"
                return Candidate(tag, RULE_HINTS[tag].format(site=where), expr, site=where)
            yield RawCandidate(new, path, make)

    def dropped_sqrt(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Pow and e.exp in (_HALF, -_HALF):
            yield _pow(e.base, sp.Integer(1) if e.exp > 0 else sp.Integer(-1)), e

    def extra_sqrt(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if has_linear(e) or e.is_Number:
            return
        if e.is_Symbol or e.is_Add or (e.is_Pow and e.exp.is_Integer):
            yield _pow(e, _HALF), e

    def dropped_square(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Pow and e.exp in (2, -2):
            yield _pow(e.base, sp.Integer(1) if e.exp > 0 else sp.Integer(-1)), e

    def inverted_ratio(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Pow and e.exp.is_negative and not has_linear(e.base):
            yield _pow(e.base, _neg(e.exp)), e
        if e.is_Mul:
            factors = [f for f in e.args if not f.is_Number and not has_linear(f)]
            if len(factors) > 1:  # the whole ratio upside down
                yield _mul(*[_pow(f, sp.S.NegativeOne) if f in factors else f for f in e.args]), e
            for i, f in enumerate(e.args):  # one factor moved across the fraction bar
                if f in factors and not (f.is_Pow and f.exp.is_negative):
                    yield _mul(*e.args[:i], _pow(f, sp.S.NegativeOne), *e.args[i + 1:]), f

    def sign_error(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield _add(*e.args[:i], _neg(term), *e.args[i + 1:]), term

    def factor_2(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield _add(*e.args[:i], _twice(term), *e.args[i + 1:]), term

    def missing_term(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield _add(*e.args[:i], *e.args[i + 1:]), term

    def dropped_denominator(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Mul:
            for i, f in enumerate(e.args):
                if f.is_Pow and f.exp.is_negative and not has_linear(f):
                    yield _mul(*e.args[:i], *e.args[i + 1:]), f

    def missing_factor(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Mul:
            for i, f in enumerate(e.args):
                if not f.is_Number and not has_linear(f) and not (f.is_Pow and f.exp.is_negative):
                    yield _mul(*e.args[:i], *e.args[i + 1:]), f

    def factor_half(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield _add(*e.args[:i], _mul(_HALF, term), *e.args[i + 1:]), term

    yield from add("dropped_sqrt", dropped_sqrt)
    yield from add("dropped_square", dropped_square)
    yield from add("extra_sqrt", extra_sqrt)
    if whole:
        yield RawCandidate(_pow(ref, _HALF), (), _plain("whole_sqrt", RULE_HINTS["whole_sqrt"]))
        yield RawCandidate(_pow(ref, sp.Integer(2)), (), _plain("whole_square", RULE_HINTS["whole_square"]))
    yield from add("inverted_ratio", inverted_ratio)
    if whole:
        yield RawCandidate(_neg(ref), (), _plain("sign_error", RULE_HINTS["sign_error"].format(site="")))
    yield from add("sign_error", sign_error)
    if whole:
        yield RawCandidate(_twice(ref), (), _plain("factor_2", RULE_HINTS["whole_factor_2"]))
        yield RawCandidate(_mul(_HALF, ref), (), _plain("factor_half", RULE_HINTS["whole_factor_half"]))
    yield from add("factor_2", factor_2)
    yield from add("factor_half", factor_half)
    yield from add("dropped_denominator", dropped_denominator)
    yield from add("missing_term", missing_term)
    yield from add("missing_factor", missing_factor)
