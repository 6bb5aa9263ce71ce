"""Self-tests of the catalogue: every question accepts its reference and rewritings and names its mistakes.

For each question: the reference is ``correct``; each listed equivalent rewriting is ``correct``; each listed known
mistake is a ``known_mistake`` with that tag; and each automatic mistake (as the engine keeps it after removing
variants equal to the reference or to an earlier mistake) typed back in as text is recognised with its own tag.
All checks go through the public :func:`ddpm_lessons.checks.check`, i.e. through the worker process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from . import catalogue

__all__ = ["SelfTestRow", "auto_mistake_answers", "run"]


@dataclass
class SelfTestRow:
    """Outcome of the self-test of one question: ``(passed, total)`` per group and a list of failures."""

    question: str
    reference: bool
    equivalents: tuple[int, int]
    known: tuple[int, int]
    auto: tuple[int, int]
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def auto_mistake_answers(question_id: str) -> list[tuple[str, str]]:
    """``(tag, answer text)`` for every automatic mistake the engine keeps for this question."""
    from . import engine

    p = engine.prepared(question_id)
    return [(c.cand.tag, sp.sstr(c.cand.expr)) for c in p.cases if not c.cand.known]


def run(question_id: str, check: Callable | None = None) -> SelfTestRow:
    """Self-test one question (``check`` defaults to :func:`ddpm_lessons.checks.check`)."""
    if check is None:
        from . import check
    q = catalogue.by_id(question_id)
    t0 = time.perf_counter()
    failures: list[str] = []

    def expect(answer: str, status: str, tag: str | None, what: str) -> bool:
        res = check(q.id, answer)
        if res.status == status and res.mistake == tag:
            return True
        failures.append(f"{what}: {answer!r} -> {res.status} ({res.mistake}): {res.feedback}")
        return False

    ref_ok = expect(q.reference, "correct", None, "reference")
    eq = sum(expect(a, "correct", None, "equivalent") for a in q.equivalents)
    known = sum(expect(m.answer, "known_mistake", m.tag, "known mistake") for m in q.mistakes)
    autos = auto_mistake_answers(q.id)
    auto = sum(expect(a, "known_mistake", tag, "auto mistake") for tag, a in autos)
    if len(q.equivalents) < 3:
        failures.append(f"only {len(q.equivalents)} equivalent rewritings (at least 3 required)")
    return SelfTestRow(q.id, ref_ok, (eq, len(q.equivalents)), (known, len(q.mistakes)), (auto, len(autos)),
                       failures, time.perf_counter() - t0)
