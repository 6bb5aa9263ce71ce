"""Derivation checks: type a derivation, get a verdict and a useful hint.

    >>> from ddpm_lessons.checks import check
    >>> check("forward_var", "1 - alpha_bar_t").status
    'correct'

``check(question_id, answer)`` accepts a string (``^`` or ``**`` for powers; ``sqrt, exp, log, abs``; the question's
symbol names such as ``x_t, x_0, eps, alpha_t, alpha_bar_t, alpha_bar_prev, beta_t``) or a SymPy expression (its
symbols are matched by name). The answer is parsed without evaluating any Python (:mod:`.parser`), compared with the
reference at 40 random points at 30 digits (:mod:`.engine`), matched against known and automatically generated
mistakes (:mod:`.mistakes`), all inside a killable worker process with a hard time limit (:mod:`.worker`).
``questions()`` lists the catalogue (:mod:`.catalogue`).

References: see :mod:`ddpm_lessons.checks.catalogue` for the formulas' sources ([DDPM] arXiv:2006.11239, [DDIM]
arXiv:2010.02502, [CFG] arXiv:2207.12598, ...).
"""

from __future__ import annotations

import difflib
import math
import re
import time
from typing import Any

from .catalogue import QUESTIONS, Question
from .result import STATUSES, CheckResult
from .worker import DEFAULT_TIMEOUT, client

__all__ = ["check", "questions", "get_question", "CheckResult", "Question", "STATUSES", "warm_up", "DEFAULT_TIMEOUT"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLACEHOLDERS = {"...", "?", "???", "todo", "your answer", "answer"}
_MAX_SEND = 20_000  # characters; longer input is rejected here, without a round trip (the parser caps at 1000/5000)


def questions() -> tuple[Question, ...]:
    """Every question of the catalogue, in course order."""
    return QUESTIONS


def get_question(question_id: str) -> Question:
    """The question with id ``question_id``; ValueError (with suggestions) for an unknown id."""
    for q in QUESTIONS:
        if q.id == question_id:
            return q
    ids = [q.id for q in QUESTIONS]
    close = difflib.get_close_matches(str(question_id), ids, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"question_id must be one of the catalogue ids (see questions()), got {question_id!r}.{hint}")


def warm_up(wait: bool = False) -> bool:
    """Start the worker process now (it otherwise starts on the first check, ~0.5 s). Returns True when ready."""
    return client().start(wait=wait)


def _unanswered(q: Question) -> CheckResult:
    warm_up(wait=False)  # placeholders are checked first in the notebooks: get the worker going meanwhile
    return CheckResult(q.id, "invalid", "Not yet answered: replace the placeholder with your expression as a "
                       f"string, using the symbols {', '.join(q.names)}.", evidence="no answer")


def _to_text(answer: Any) -> tuple[str, str] | str:
    """(text, source) for the worker, or an error message for the learner."""
    if isinstance(answer, str):
        return answer, "text"
    if isinstance(answer, bool):
        return f"expected an expression, got {answer!r}"
    if isinstance(answer, (int, float)):
        if isinstance(answer, float) and not math.isfinite(answer):
            return "the answer is not a finite number"
        return repr(answer), "text"
    try:
        import sympy as sp
    except ImportError:  # pragma: no cover - sympy is a dependency
        sp = None
    if sp is not None and isinstance(answer, sp.Basic):
        if isinstance(answer, sp.Equality):
            answer = answer.rhs
        if not isinstance(answer, sp.Expr):
            return f"expected a SymPy expression, got {type(answer).__name__}"
        for s in answer.free_symbols:
            if not isinstance(s, sp.Symbol) or not _NAME.fullmatch(s.name):
                return (f"SymPy symbol `{s}` has no plain name; create symbols with names such as "
                        "`sympy.Symbol('alpha_bar_t')`")
        return sp.sstr(answer, order="none"), "sympy"
    return f"expected a string or a SymPy expression, got {type(answer).__name__}"


def check(question_id: str, answer: Any, *, timeout: float | None = None) -> CheckResult:
    """Check an answer to the question ``question_id``.

    Args:
        question_id: an id from :func:`questions`, e.g. ``"posterior_mean_x0"``.
        answer: a string such as ``"sqrt(alpha_bar_t)*x_0"``, a SymPy expression, or a placeholder (``None``,
            ``""``, ``...``), which gives an "invalid: Not yet answered" result.
        timeout: hard limit in seconds (default :data:`DEFAULT_TIMEOUT`); a check running longer is stopped and
            reported with status ``timeout``.

    Returns:
        A :class:`CheckResult`; ``result.ok`` is True for a correct answer.

    Raises:
        ValueError: for an unknown ``question_id`` or a non-positive ``timeout``.
    """
    q = get_question(question_id)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if answer is None or answer is Ellipsis or (isinstance(answer, str) and
                                                 answer.strip().strip("\"'").lower() in _PLACEHOLDERS | {""}):
        return _unanswered(q)
    t0 = time.perf_counter()
    converted = _to_text(answer)
    if isinstance(converted, str):
        return CheckResult(q.id, "invalid", f"Invalid input: {converted}.", evidence="input type")
    text, source = converted
    if len(text) > _MAX_SEND:
        return CheckResult(q.id, "invalid", f"Invalid input: answer too long ({len(text)} characters).",
                           evidence="input size")
    res = client().request(q.id, text, source, float(timeout))
    if res is None:  # no worker process available here: check in-process, without the hard limit
        from . import engine

        res = engine.check_answer(q.id, text, source=source)
        res["evidence"] += " (in-process: no hard time limit)"
    return CheckResult(question=res["question"], status=res["status"], feedback=res["feedback"],
                       mistake=res.get("mistake"), evidence=res.get("evidence", ""), answer=res.get("answer"),
                       details=res.get("details") or {},
                       elapsed_ms=1e3 * (time.perf_counter() - t0))
