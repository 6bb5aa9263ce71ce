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

__all__ = ["Candidate", "RULE_HINTS", "INVERSE", "auto_mistakes", "describe_site"]

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


def _rewrite_each(expr: sp.Expr, rule: Rule) -> Iterator[tuple[sp.Expr, sp.Expr]]:
    """Apply ``rule`` at every node of ``expr`` in turn: yields (rewritten whole expression, site)."""
    yield from rule(expr)
    if expr.is_Atom:
        return
    args = list(expr.args)
    for i, arg in enumerate(args):
        for new_arg, site in _rewrite_each(arg, rule):
            new_args = args.copy()
            new_args[i] = new_arg
            yield expr.func(*new_args), site


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

    The variants are built unevaluated (``sympy.evaluate(False)``): they are only ever evaluated numerically, and
    SymPy's automatic simplification with positive symbols costs ~5 ms a variant.
    """
    with sp.evaluate(False):
        return _auto_mistakes(ref, names, set(linear), swaps, substitutions, whole)


def _auto_mistakes(ref: sp.Expr, names: dict[str, sp.Symbol], linear: set[sp.Symbol],
                   swaps: Iterable[tuple[str, str, Iterable[tuple[sp.Symbol, sp.Symbol]]]],
                   substitutions: Iterable[tuple[str, str, dict[sp.Symbol, sp.Expr]]],
                   whole: bool) -> list[Candidate]:
    out: list[Candidate] = []
    free = ref.free_symbols

    for tag, hint, pairs in swaps:
        mapping = {}
        for a, b in pairs:
            mapping[a], mapping[b] = b, a
        out.append(Candidate(tag, hint, ref.xreplace(mapping)))
    for tag, hint, mapping in substitutions:
        out.append(Candidate(tag, hint, ref.xreplace(mapping)))
    for tag, a, b in _SYMBOL_SWAPS:
        if a in names and b in names and (names[a] in free or names[b] in free):
            out.append(Candidate(tag, RULE_HINTS[tag].format(site=""),
                                 ref.xreplace({names[a]: names[b], names[b]: names[a]})))
    for tag, a, b in _SYMBOL_SWAPS:  # one occurrence only
        if a in names and b in names:
            for src, dst in ((names[a], names[b]), (names[b], names[a])):
                def one(e: sp.Expr, src: sp.Symbol = src, dst: sp.Symbol = dst) -> Iterator[tuple[sp.Expr, sp.Expr]]:
                    if e == src:
                        yield dst, e
                for new, _site in _rewrite_each(ref, one):
                    out.append(Candidate(tag, _ONE_SWAP_HINT.format(a=dst.name, b=src.name, site=""), new,
                                         swap=(dst.name, src.name)))

    def has_linear(e: sp.Expr) -> bool:
        return bool(e.free_symbols & linear)

    def add(tag: str, rule: Rule) -> None:
        for new, site in _rewrite_each(ref, rule):
            where = describe_site(site, linear)
            if tag in _NAMED_SITE and site is not None and not site.is_Number:
                printed = sp.sstr(site, order="none")
                if len(printed) <= 40:
                    where = f": `{printed}`"
            out.append(Candidate(tag, RULE_HINTS[tag].format(site=where), new, site=where))

    def dropped_sqrt(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Pow and e.exp in (_HALF, -_HALF):
            yield e.base ** (sp.Integer(1) if e.exp > 0 else sp.Integer(-1)), e

    def extra_sqrt(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if has_linear(e) or e.is_Number:
            return
        if e.is_Symbol or e.is_Add or (e.is_Pow and e.exp.is_Integer):
            yield sp.sqrt(e), e

    def dropped_square(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Pow and e.exp in (2, -2):
            yield e.base ** (sp.Integer(1) if e.exp > 0 else sp.Integer(-1)), e

    def inverted_ratio(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Pow and e.exp.is_negative and not has_linear(e.base):
            yield e.base ** (-e.exp), e
        if e.is_Mul:
            factors = [f for f in e.args if not f.is_Number and not has_linear(f)]
            if len(factors) > 1:  # the whole ratio upside down
                yield sp.Mul(*[f ** -1 if f in factors else f for f in e.args]), e
            for i, f in enumerate(e.args):  # one factor moved across the fraction bar
                if f in factors and not (f.is_Pow and f.exp.is_negative):
                    yield sp.Mul(*e.args[:i], f ** -1, *e.args[i + 1:]), f

    def sign_error(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield sp.Add(*e.args[:i], -term, *e.args[i + 1:]), term

    def factor_2(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield sp.Add(*e.args[:i], 2 * term, *e.args[i + 1:]), term

    def missing_term(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield sp.Add(*e.args[:i], *e.args[i + 1:]), term

    def dropped_denominator(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Mul:
            for i, f in enumerate(e.args):
                if f.is_Pow and f.exp.is_negative and not has_linear(f):
                    yield sp.Mul(*e.args[:i], *e.args[i + 1:]), f

    def missing_factor(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Mul:
            for i, f in enumerate(e.args):
                if not f.is_Number and not has_linear(f) and not (f.is_Pow and f.exp.is_negative):
                    yield sp.Mul(*e.args[:i], *e.args[i + 1:]), f

    def factor_half(e: sp.Expr) -> Iterator[tuple[sp.Expr, sp.Expr]]:
        if e.is_Add:
            for i, term in enumerate(e.args):
                yield sp.Add(*e.args[:i], _HALF * term, *e.args[i + 1:]), term

    add("dropped_sqrt", dropped_sqrt)
    add("dropped_square", dropped_square)
    add("extra_sqrt", extra_sqrt)
    if whole:
        out.append(Candidate("whole_sqrt", RULE_HINTS["whole_sqrt"], sp.sqrt(ref)))
        out.append(Candidate("whole_square", RULE_HINTS["whole_square"], ref ** 2))
    add("inverted_ratio", inverted_ratio)
    if whole:
        out.append(Candidate("sign_error", RULE_HINTS["sign_error"].format(site=""), -ref))
    add("sign_error", sign_error)
    if whole:
        out.append(Candidate("factor_2", RULE_HINTS["whole_factor_2"], 2 * ref))
        out.append(Candidate("factor_half", RULE_HINTS["whole_factor_half"], _HALF * ref))
    add("factor_2", factor_2)
    add("factor_half", factor_half)
    add("dropped_denominator", dropped_denominator)
    add("missing_term", missing_term)
    add("missing_factor", missing_factor)
    return out
