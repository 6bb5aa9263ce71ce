"""Derivation checks: type a derivation, get a verdict and a useful hint.

    >>> from ddpm_lessons.checks import check, check_derivation
    >>> check("forward_var", "1 - alpha_bar_t").status
    'correct'
    >>> check("forward_mean", r"\\sqrt{\\bar\\alpha_t}\\,x_0").status    # LaTeX, Unicode and paper ASCII too
    'correct'
    >>> check_derivation("forward_var_induction",
    ...                  "alpha_t*(1 - alpha_bar_prev) + beta_t = alpha_t - alpha_t*alpha_bar_prev + 1 - alpha_t"
    ...                  " = 1 - alpha_bar_t").status
    'correct'

``check(question_id, answer)`` accepts a string or a SymPy expression (its symbols are matched by name). The string
may be plain (``sqrt(alpha_bar_t)*x_0``, ``^`` or ``**`` for powers, ``sqrt, exp, log, abs, sin, cos``), paper-style
ASCII (``sqrt(abar_t) x_0``, ``alpha_bar_{t-1}``), Unicode pasted from a PDF (``√ᾱ_t x₀``) or LaTeX
(``\\frac{\\beta_t(1-\\bar\\alpha_{t-1})}{1-\\bar\\alpha_t}``); each question lists its symbols with their meanings
(``print(get_question(qid))``). A leading ``name =`` is dropped; more ``=`` make the answer a derivation, checked
step by step as by ``check_derivation(question_id, steps)``, which names the first step that breaks and what
changed there. The answer is parsed without evaluating any Python (:mod:`.notation`, :mod:`.parser`), compared with
the reference at 40 random points at 30 digits (:mod:`.engine`), matched against known and automatically generated
mistakes (:mod:`.mistakes`), all inside a killable worker process with a hard time limit (:mod:`.worker`).
``questions()`` lists the catalogue (:mod:`.catalogue`). ``check_function(exercise_id, fn)`` grades code
(:mod:`.code`, imported on first use: it needs torch).

References: see :mod:`ddpm_lessons.checks.catalogue` for the formulas' sources ([DDPM] arXiv:2006.11239, [DDIM]
arXiv:2010.02502, [CFG] arXiv:2207.12598, ...).
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

from .worker import DEFAULT_TIMEOUT, client

if TYPE_CHECKING:
    from .catalogue import Question
    from .result import CheckResult

__all__ = ["check", "check_derivation", "check_function", "exercises", "questions", "get_question", "CheckResult",
           "Question", "STATUSES", "warm_up", "DEFAULT_TIMEOUT"]


def __getattr__(name: str) -> Any:
    """``check_function`` and ``exercises`` live in :mod:`.code`, which imports torch: load it on first use only.
    ``Question`` and ``CheckResult``, ``STATUSES`` load on first use too: ``ddpm-lessons check`` starts the worker
    process before this process imports the catalogue, so the two start-ups overlap."""
    if name in ("check_function", "exercises"):
        from . import code

        return getattr(code, name)
    if name in ("Question", "QUESTIONS"):
        from . import catalogue

        return getattr(catalogue, name)
    if name in ("CheckResult", "STATUSES"):
        from . import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLACEHOLDERS = {"...", "?", "???", "todo", "your answer", "answer"}
_MAX_SEND = 20_000  # characters; longer input is rejected here, without a round trip (the parser caps at 1000/5000)


def questions() -> tuple[Question, ...]:
    """Every question of the catalogue, in course order."""
    from .catalogue import QUESTIONS

    return QUESTIONS


def get_question(question_id: str) -> Question:
    """The question with id ``question_id``; ValueError (with suggestions) for an unknown id."""
    import difflib

    from .catalogue import QUESTIONS

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


def _unanswered(q: Question, what: str = "your expression as a string") -> CheckResult:
    from .result import CheckResult

    warm_up(wait=False)  # placeholders are checked first in the notebooks: get the worker going meanwhile
    return CheckResult(q.id, "invalid", f"Not yet answered: replace the placeholder with {what}, using the "
                       f"symbols {q.symbols_help()}.", evidence="no answer")


def _is_placeholder(answer: Any) -> bool:
    return answer is None or answer is Ellipsis or (isinstance(answer, str) and
                                                     answer.strip().strip("\"'").lower() in _PLACEHOLDERS | {""})


def _check_timeout(timeout: float | None) -> float:
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


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
    from .result import CheckResult

    q = get_question(question_id)
    timeout = _check_timeout(timeout)
    if _is_placeholder(answer):
        return _unanswered(q)
    t0 = time.perf_counter()
    converted = _to_text(answer)
    if isinstance(converted, str):
        return CheckResult(q.id, "invalid", f"Invalid input: {converted}.", evidence="input type")
    text, source = converted
    if len(text) > _MAX_SEND:
        return CheckResult(q.id, "invalid", f"Invalid input: answer too long ({len(text)} characters).",
                           evidence="input size")
    return _run(q, text, source, timeout, None, t0)


def _run(q: Question, text: str, source: str, timeout: float, steps: list[str] | None, t0: float) -> CheckResult:
    from .result import CheckResult

    res = client().request(q.id, text, source, timeout, steps=steps)
    if res is None:  # no worker process available here: check in-process, without the hard limit
        from . import engine

        res = (engine.check_chain(q.id, steps, source=source) if steps is not None
               else engine.check_answer(q.id, text, source=source))
        res["evidence"] += " (in-process: no hard time limit)"
    return CheckResult(question=res["question"], status=res["status"], feedback=res["feedback"],
                       mistake=res.get("mistake"), evidence=res.get("evidence", ""), answer=res.get("answer"),
                       details=res.get("details") or {},
                       elapsed_ms=1e3 * (time.perf_counter() - t0))


def check_derivation(question_id: str, steps: Any, *, timeout: float | None = None) -> CheckResult:
    """Check a whole derivation ``expr_1 = expr_2 = ... = expr_n`` of one quantity, step by step.

    Each step must equal the one before under the question's definitions and assumptions (e.g. ``alpha_bar_t =
    alpha_bar_prev * alpha_t``, ``beta_t = 1 - alpha_t``), and the last must equal the asked quantity. The verdict
    names the first step that breaks and, where one change explains it, what changed there ("step 2 → 3: a square
    root seems to be missing (look at the part with `alpha_bar_t`)", "step 1 → 2 replaced `alpha_bar_t` by
    `alpha_t` at one place: it is valid only if α_t = ᾱ_t"); ``result.details["steps"]`` has one status per step
    (``valid``, ``broken``, ``not checked``) and ``details["broken"]`` the 1-based number of the broken step.
    The whole chain runs as one check under one hard time limit.

    Args:
        question_id: an id from :func:`questions`, e.g. ``"forward_var_induction"``, ``"posterior_var_square"``,
            ``"kl_1d_chain"`` (derivation exercises), or any other question.
        steps: one string with the steps joined by ``=`` (a leading ``name =`` naming the quantity is dropped; line
            breaks are spaces; a multi-line string without ``=`` has one step per line), or a list of steps
            (strings or SymPy expressions). Every notation :func:`check` accepts is accepted. A placeholder
            (``None``, ``...``, or a step that is ``...``) gives "invalid: Not yet answered".
        timeout: hard limit in seconds for the whole chain (default :data:`DEFAULT_TIMEOUT`).

    Returns:
        A :class:`CheckResult`: ``correct``, ``known_mistake`` (the break is a named change), ``incorrect``,
        ``invalid`` (a step does not parse, or fewer steps than the exercise asks for) or ``timeout``.
    """
    from .result import CheckResult

    q = get_question(question_id)
    timeout = _check_timeout(timeout)
    what = "your steps joined by `=`"
    if _is_placeholder(steps):
        return _unanswered(q, what)
    t0 = time.perf_counter()
    if isinstance(steps, str):
        if "=" not in steps and len([ln for ln in steps.splitlines() if ln.strip()]) > 1:
            items = [ln for ln in steps.splitlines() if ln.strip()]
        else:
            items = [steps]
    elif isinstance(steps, (list, tuple)):
        items = list(steps)
    else:
        return CheckResult(q.id, "invalid", "Invalid input: steps must be a string such as `a = b = c` or a list of "
                           f"steps, got {type(steps).__name__}.", evidence="input type")
    texts: list[str] = []
    source = "text"
    for k, item in enumerate(items, 1):
        if _is_placeholder(item) or (isinstance(item, str) and re.search(r"(^|=)\s*(\.\.\.|…)\s*(=|$)", item)):
            return _unanswered(q, what)
        converted = _to_text(item)
        if isinstance(converted, str):
            return CheckResult(q.id, "invalid", f"Invalid input in step {k}: {converted}.", evidence="input type")
        text, src = converted
        source = "sympy" if src == "sympy" else source
        texts.append(text)
    total = sum(len(t) for t in texts)
    if total > _MAX_SEND:
        return CheckResult(q.id, "invalid", f"Invalid input: derivation too long ({total} characters).",
                           evidence="input size")
    return _run(q, " = ".join(texts), source, timeout, texts, t0)
