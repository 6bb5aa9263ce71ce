"""``ddpm-lessons check``: run the catalogue's self-tests, list the questions, or check one typed answer.

    ddpm-lessons check                                    # every self-test, as a table; exit 0 iff all pass
    ddpm-lessons check --list                             # the question ids, their symbols and meanings
    ddpm-lessons check forward_var                        # the question: prompt, symbols, what to type
    ddpm-lessons check forward_var "1 - alpha_bar_t"      # one verdict; exit 0 iff correct
    ddpm-lessons check score_from_eps -eps/sqrt(1-alpha_bar_t)      # answers may start with `-`
    ddpm-lessons check forward_var_induction "alpha_t*(1 - alpha_bar_prev) + beta_t = 1 - alpha_bar_t"
    ddpm-lessons check posterior_var -                    # read the answer (or a multi-line derivation) from stdin

The answer is everything after the question id (quoting is optional; options go before the id). Answers with `=`
are derivations, checked step by step. This module imports neither torch nor nbformat, and no SymPy in this process:
the check runs in the checker's worker process. The lead's ``ddpm_lessons/cli.py`` wires it in with
``add_subparser(subparsers)`` and dispatches to ``run(args)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

__all__ = ["add_subparser", "build_parser", "run", "main"]

# exit codes for one checked answer
EXIT_CORRECT, EXIT_WRONG, EXIT_INVALID, EXIT_TIMEOUT = 0, 1, 2, 3


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--list", action="store_true", help="list the question ids, their symbols and meanings")
    p.add_argument("--timeout", type=float, default=None, help="hard time limit per check in seconds")
    p.add_argument("question", nargs="?", help="question id (see --list); omit to run every self-test")
    # REMAINDER: an answer may start with `-` (errata 28) and may be typed unquoted, in several words
    p.add_argument("answer", nargs=argparse.REMAINDER, help="your answer, e.g. \"sqrt(alpha_bar_t)*x_0\" "
                   "(`-` reads it from stdin)")
    p.set_defaults(handler=run)  # the convention of ddpm_lessons/cli.py: main() calls args.handler(args)
    return p


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to an ``argparse`` subparsers object; returns the new parser."""
    p = subparsers.add_parser("check", help="derivation checks: self-test the catalogue or check one answer",
                              description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    return _configure(p)


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser (``python -m ddpm_lessons.checks.cli``)."""
    return _configure(argparse.ArgumentParser(prog="ddpm-lessons check", description=__doc__.split("\n\n")[0]))


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if k == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _list(out: TextIO) -> int:
    from . import questions

    for q in questions():
        out.write(f"{q.id}  [{q.source}]  {q.title}\n    symbols: {q.symbols_help().replace('`', '')}\n")
    out.write("\nddpm-lessons check QUESTION shows a question in full; "
              "ddpm-lessons check QUESTION ANSWER checks an answer.\n")
    return 0


def _answer_text(args: argparse.Namespace) -> tuple[str | None, float | None]:
    """The answer (joined words; `-` reads stdin) and a `--timeout` typed after it, if any."""
    words = list(args.answer or [])
    timeout = args.timeout
    if len(words) >= 2 and words[-2] == "--timeout":
        try:
            timeout = float(words[-1])
            words = words[:-2]
        except ValueError:
            pass
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        return None, timeout
    if words == ["-"]:
        return sys.stdin.read(), timeout
    return " ".join(words), timeout


def _self_test(out: TextIO) -> int:
    from . import questions
    from .selftest import run as run_one

    rows = [["question", "reference", "rewritings", "known mistakes", "auto mistakes", "time", "result"]]
    failures: list[str] = []
    for q in questions():
        r = run_one(q.id)
        rows.append([q.id, "ok" if r.reference else "FAIL", f"{r.equivalents[0]}/{r.equivalents[1]}",
                     f"{r.known[0]}/{r.known[1]}", f"{r.auto[0]}/{r.auto[1]}", f"{r.seconds:.2f} s",
                     "PASS" if r.ok else "FAIL"])
        failures += [f"{q.id}: {f}" for f in r.failures]
    _table(rows, out)
    n_ok = sum(row[-1] == "PASS" for row in rows[1:])
    out.write(f"\n{n_ok}/{len(rows) - 1} questions pass their self-tests\n")
    for f in failures:
        out.write(f"  FAIL {f}\n")
    return 0 if not failures else 1


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Execute ``ddpm-lessons check`` with parsed ``args``; returns the process exit code."""
    out = out or sys.stdout
    from . import check, get_question, warm_up

    if getattr(args, "list", False):
        return _list(out)
    if args.question is None:
        return _self_test(out)
    if args.answer:
        warm_up(wait=False)  # start the worker (SymPy's import, ~0.4 s) while this process loads the catalogue
    try:
        q = get_question(args.question)
    except ValueError as err:
        out.write(f"error: {err}\n")
        return EXIT_INVALID
    answer, timeout = _answer_text(args)
    if answer is None:
        out.write(f"{q}\n  usage: ddpm-lessons check {q.id} \"<your answer>\"\n")
        return EXIT_INVALID
    res = check(q.id, answer, timeout=timeout)
    out.write(str(res) + "\n")
    if res.status == "invalid" and res.evidence != "no answer":
        out.write(f"  (ddpm-lessons check {q.id} shows the question and its symbols)\n")
    return {"correct": EXIT_CORRECT, "invalid": EXIT_INVALID, "timeout": EXIT_TIMEOUT}.get(res.status, EXIT_WRONG)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m ddpm_lessons.checks.cli``."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
