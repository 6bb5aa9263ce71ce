"""Latency of ``ddpm_lessons.checks``: ``check`` over the whole catalogue, ``check_derivation``, and the
``ddpm-lessons check`` command end to end.

For every question and ``--repeat`` times, three kinds of answer, each typed differently every time: a correct
rewriting (the catalogue's equivalents, times k/k), a wrong one (a rewriting plus 1/(k+8), squared: two changes away,
so the ``incorrect`` path runs every diagnosis) and a known mistake (times k/k). Each goes through the public
``check`` (worker process, pipe round trip included). "cold" is the first check of each question in a fresh worker
and its first wrong answer: they build the question's sample points and its mistakes once. Besides the wall time,
the worker's own CPU time per check is reported: on a loaded machine (several processes per core) wall times grow
with the load, CPU times much less.

``check_derivation``: the three derivation exercises (a valid chain and one broken at a named step).
CLI: ``python -m ddpm_lessons.checks.cli QID ANSWER``, ``ddpm-lessons check QID ANSWER`` and ``ddpm-lessons check
--list``, each a fresh process (interpreter start, worker start, SymPy import, one check), wall and CPU time
(parent + worker). ``--probes`` also prints the probe set's per-family figures (tests/test_checks_probes.py).

    python bench/bench_checks.py [--repeat 5] [--cli-runs 3] [--probes]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAINS = {
    "forward_var_induction": ("alpha_t*(1 - alpha_bar_prev) + beta_t = alpha_t - alpha_t*alpha_bar_prev + 1 - alpha_t "
                              "= 1 - alpha_bar_t", "alpha_t*(1 - alpha_bar_prev) + beta_t = alpha_t - alpha_bar_prev "
                              "+ 1 - alpha_t = 1 - alpha_bar_t"),
    "posterior_var_square": ("1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev)) = beta_t*(1 - alpha_bar_prev)/(alpha_t*(1 - "
                             "alpha_bar_prev) + beta_t) = beta_t*(1 - alpha_bar_prev)/(1 - alpha_bar_t)",
                             "1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev)) = beta_t*(1 - alpha_bar_prev)/(alpha_t*(1 - "
                             "alpha_bar_prev) + beta_t) = beta_t*(1 - alpha_bar_prev)/(1 - alpha_bar_prev)"),
    "kl_1d_chain": ("-log(2*pi*sigma1^2)/2 - 1/2 + log(2*pi*sigma2^2)/2 + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) = "
                    "log(sigma2/sigma1) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2",
                    "-log(2*pi*sigma1^2)/2 - 1/2 + log(2*pi*sigma2^2)/2 + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) = "
                    "log(sigma2^2/sigma1^2) + (sigma1^2 + (mu1 - mu2)^2)/(2*sigma2^2) - 1/2"),
}


def _ms(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return 1e3 * (time.perf_counter() - t0), out


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _cli_runs(argv: list[str], runs: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU (user + sys of the process and the worker it starts) seconds of ``argv``, ``runs`` times."""
    walls, cpus, code = [], [], 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        code = proc.returncode
    return walls, cpus, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="warm repetitions per answer (default 5)")
    ap.add_argument("--cli-runs", type=int, default=3, help="fresh CLI processes per command (default 3; 0 skips)")
    ap.add_argument("--probes", action="store_true", help="also run the probe set and print its figures")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    from ddpm_lessons.checks import check, check_derivation, questions, warm_up

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    startup, _ = _ms(lambda: warm_up(wait=True))
    kinds: dict[str, list[float]] = {"correct": [], "incorrect": [], "known_mistake": []}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    cold: list[float] = []
    bad: list[str] = []
    for q in questions():
        # cold: the first check of a question builds its sample points, the first wrong answer its mistakes
        for kind, answer in (("correct", q.reference), ("incorrect", f"(({q.reference}) + 1/7)^2")):
            ms, res = _ms(lambda a=answer, qid=q.id: check(qid, a))
            cold.append(ms)
            if res.status != kind:
                bad.append(f"{q.id} {kind}: got {res.status}")
        # warm: distinct answers every time, so SymPy's construction cache does not flatter the numbers
        for k in range(args.repeat):
            eq = q.equivalents[k % len(q.equivalents)]
            mistake = q.mistakes[k % len(q.mistakes)].answer
            answers = {"correct": f"({eq})*{k + 2}/{k + 2}", "incorrect": f"(({eq}) + 1/{k + 8})^2",
                       "known_mistake": f"({mistake})*{k + 2}/{k + 2}"}
            for kind, answer in answers.items():
                ms, res = _ms(lambda a=answer, qid=q.id: check(qid, a))
                kinds[kind].append(ms)
                cpu[kind].append(res.details.get("cpu_ms", float("nan")))
                if res.status != kind:
                    bad.append(f"{q.id} {kind}: {answer!r} got {res.status}")

    rows = [("answer kind", "n", "median ms", "worst ms", "worker CPU median ms")]
    for kind, vals in kinds.items():
        rows.append((f"{kind} (warm)", str(len(vals)), f"{statistics.median(vals):.1f}", f"{max(vals):.1f}",
                     f"{statistics.median(cpu[kind]):.1f}"))
    all_warm = [v for vals in kinds.values() for v in vals]
    all_cpu = [v for vals in cpu.values() for v in vals]
    rows.append(("all (warm)", str(len(all_warm)), f"{statistics.median(all_warm):.1f}", f"{max(all_warm):.1f}",
                 f"{statistics.median(all_cpu):.1f}"))
    rows.append(("first checks (cold)", str(len(cold)), f"{statistics.median(cold):.1f}", f"{max(cold):.1f}", ""))
    # check_derivation: valid and broken chains
    chain_ms: dict[str, list[float]] = {"valid chain": [], "broken chain": []}
    for qid, (good, broken) in CHAINS.items():
        for _ in range(args.repeat):
            for label, text, want in (("valid chain", good, "correct"), ("broken chain", broken, "known_mistake")):
                ms, res = _ms(lambda t=text, q=qid: check_derivation(q, t))
                chain_ms[label].append(ms)
                if res.status != want:
                    bad.append(f"check_derivation {qid} {label}: got {res.status}")
    for label, vals in chain_ms.items():
        rows.append((f"check_derivation, {label}", str(len(vals)), f"{statistics.median(vals):.1f}",
                     f"{max(vals):.1f}", ""))
    print(f"ddpm_lessons.checks latency over {len(questions())} questions (worker start-up {startup:.0f} ms; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs)")
    _print_table(rows)

    if args.cli_runs > 0:
        exe = shutil.which("ddpm-lessons", path=str(Path(sys.executable).parent)) or shutil.which("ddpm-lessons")
        cmds = [("python -m ddpm_lessons.checks.cli QID ANSWER",
                 [sys.executable, "-m", "ddpm_lessons.checks.cli", "score_from_eps", "-eps/sqrt(1-alpha_bar_t)"])]
        if exe:
            cmds += [("ddpm-lessons check QID ANSWER", [exe, "check", "score_from_eps", "-eps/sqrt(1-alpha_bar_t)"]),
                     ("ddpm-lessons check --list", [exe, "check", "--list"])]
        rows = [("command (fresh process)", "runs", "median wall s", "median CPU s", "exit")]
        for label, cmd in cmds:
            walls, cpus, code = _cli_runs(cmd, args.cli_runs)
            rows.append((label, str(len(walls)), f"{statistics.median(walls):.2f}", f"{statistics.median(cpus):.2f}",
                         str(code)))
            if code != 0:
                bad.append(f"{label}: exit {code}")
        print()
        _print_table(rows)

    if args.probes:
        sys.path.insert(0, str(ROOT))
        from tests.test_checks_probes import run_probes, table

        fig = run_probes()
        print("\nprobe set (tests/test_checks_probes.py):")
        print(table(fig))
    for b in bad:
        print("UNEXPECTED:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
