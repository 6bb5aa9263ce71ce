"""Latency of ``ddpm_lessons.checks.check`` over the whole catalogue.

For every question and ``--repeat`` times, three kinds of answer, each typed differently every time: a correct
rewriting (the catalogue's equivalents, times k/k), a wrong one (a rewriting plus 1/(k+8): the ``incorrect`` path
with all its feedback) and a known mistake (times k/k). Each goes through the public ``check`` (worker process,
pipe round trip included). "cold" is the first check of each question in a fresh worker and its first wrong answer:
they build the question's sample points and its mistakes once. Prints median and worst latency per kind.

    python bench/bench_checks.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time


def _ms(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return 1e3 * (time.perf_counter() - t0), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="warm repetitions per answer (default 5)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    from ddpm_lessons.checks import check, questions, warm_up

    startup, _ = _ms(lambda: warm_up(wait=True))
    kinds: dict[str, list[float]] = {"correct": [], "incorrect": [], "known_mistake": []}
    cold: list[float] = []
    bad: list[str] = []
    for q in questions():
        # cold: the first check of a question builds its sample points, the first wrong answer its mistakes
        for kind, answer in (("correct", q.reference), ("incorrect", f"({q.reference}) + 1/7")):
            ms, res = _ms(lambda a=answer, qid=q.id: check(qid, a))
            cold.append(ms)
            if res.status != kind:
                bad.append(f"{q.id} {kind}: got {res.status}")
        # warm: distinct answers every time, so SymPy's construction cache does not flatter the numbers
        for k in range(args.repeat):
            eq = q.equivalents[k % len(q.equivalents)]
            mistake = q.mistakes[k % len(q.mistakes)].answer
            answers = {"correct": f"({eq})*{k + 2}/{k + 2}", "incorrect": f"({eq}) + 1/{k + 8}",
                       "known_mistake": f"({mistake})*{k + 2}/{k + 2}"}
            for kind, answer in answers.items():
                ms, res = _ms(lambda a=answer, qid=q.id: check(qid, a))
                kinds[kind].append(ms)
                if res.status != kind:
                    bad.append(f"{q.id} {kind}: {answer!r} got {res.status}")

    rows = [("answer kind", "n", "median ms", "worst ms")]
    for kind, vals in kinds.items():
        rows.append((f"{kind} (warm)", str(len(vals)), f"{statistics.median(vals):.1f}", f"{max(vals):.1f}"))
    all_warm = [v for vals in kinds.values() for v in vals]
    rows.append(("all (warm)", str(len(all_warm)), f"{statistics.median(all_warm):.1f}", f"{max(all_warm):.1f}"))
    rows.append(("first checks (cold)", str(len(cold)), f"{statistics.median(cold):.1f}", f"{max(cold):.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"ddpm_lessons.checks latency over {len(questions())} questions (worker start-up {startup:.0f} ms)")
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for b in bad:
        print("UNEXPECTED:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
