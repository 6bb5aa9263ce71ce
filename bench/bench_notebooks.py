"""Wall time of every notebook and of the suite, per profile, as the markdown table of bench/README.md.

    python bench/bench_notebooks.py                         # ci and cpu profiles, a fresh model cache for each
    python bench/bench_notebooks.py --profiles ci --threads 2
    python bench/bench_notebooks.py notebooks/04_training_objectives.ipynb

Each notebook runs top to bottom in a fresh kernel (nbclient), in order, with one model cache per profile that
starts empty: the shipped lesson models load from the package, and a notebook's time includes training whatever
else it asks for. ``--threads`` sets OMP_NUM_THREADS / MKL_NUM_THREADS of the kernels (default 1, as ``make test``).
Peers: the 30 s budget per notebook in the ci and cpu profiles and 3 minutes for the cpu suite (issue 14); the
load average at the start and end is printed, because other jobs on a shared machine inflate wall times.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 30.0  # per notebook, ci and cpu profiles
SUITE_BUDGET_S = {"cpu": 180.0}


def run(path: Path, profile: str, cache: str, threads: int) -> float:
    os.environ.update(DDPM_LESSONS_PROFILE=profile, DDPM_LESSONS_CACHE=cache, OMP_NUM_THREADS=str(threads),
                      MKL_NUM_THREADS=str(threads))
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    return time.perf_counter() - t0


def table(results: dict[tuple[str, str], float], stems: list[str], profiles: list[str]) -> str:
    """The markdown table: one row per profile, one column per notebook (its two-digit number) and the suite."""
    short = [s.split("_")[0] for s in stems]
    lines = ["| profile | " + " | ".join(short) + " | suite |", "|---|" + "---|" * (len(short) + 1)]
    for pr in profiles:
        cells = [f"{results[(s, pr)]:.1f}" for s in stems]
        lines.append(f"| {pr} (s) | " + " | ".join(cells) + f" | {sum(results[(s, pr)] for s in stems):.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", nargs="+", default=["ci", "cpu"])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of each kernel (default 1)")
    ap.add_argument("notebooks", nargs="*", help="default: every notebook")
    args = ap.parse_args()
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    stems = [p.stem for p in paths]
    load0 = os.getloadavg()[0]
    results: dict[tuple[str, str], float] = {}
    for profile in args.profiles:
        with tempfile.TemporaryDirectory() as cache:
            for p in paths:
                results[(p.stem, profile)] = run(p, profile, cache, args.threads)
                print(f"  {p.stem:<36} {profile:<4} {results[(p.stem, profile)]:7.1f} s", flush=True)
    print(f"\nbench_notebooks: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} thread(s) per kernel, load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at "
          f"the end, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(table(results, stems, args.profiles))
    for pr in args.profiles:
        worst = max(stems, key=lambda s: results[(s, pr)])
        suite = sum(results[(s, pr)] for s in stems)
        line = (f"\n{pr}: slowest notebook {worst} {results[(worst, pr)]:.1f} s = "
                f"{results[(worst, pr)] / BUDGET_S:.2f}x the {BUDGET_S:.0f} s budget")
        if pr in SUITE_BUDGET_S:
            line += f"; suite {suite:.1f} s = {suite / SUITE_BUDGET_S[pr]:.2f}x the {SUITE_BUDGET_S[pr]:.0f} s budget"
        print(line)


if __name__ == "__main__":
    main()
