"""Wall time of every notebook and of the whole suite, per profile.

    python bench/bench_notebooks.py                  # ci and cpu profiles, a fresh model cache for each
    python bench/bench_notebooks.py --profiles ci    # one profile

Each notebook runs in a fresh kernel (nbclient), in order, with one model cache per profile that starts empty, so
a notebook's time includes training every model that no earlier notebook needed; the peer for the "suite" line is
the CI budget the issues set (30 s per notebook in the ci profile).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path, profile: str, cache: str) -> float:
    os.environ["DDPM_LESSONS_PROFILE"] = profile
    os.environ["DDPM_LESSONS_CACHE"] = cache
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", nargs="+", default=["ci", "cpu"])
    ap.add_argument("notebooks", nargs="*", help="default: every notebook")
    args = ap.parse_args()
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    results = {}
    for profile in args.profiles:
        with tempfile.TemporaryDirectory() as cache:
            for p in paths:
                results[(p.stem, profile)] = run(p, profile, cache)
                print(f"  {p.stem:<36} {profile:<4} {results[(p.stem, profile)]:7.1f} s", flush=True)
    print(f"\n{'notebook':<36}" + "".join(f"{pr + ' (s)':>10}" for pr in args.profiles))
    for p in paths:
        print(f"{p.stem:<36}" + "".join(f"{results[(p.stem, pr)]:>10.1f}" for pr in args.profiles))
    print(f"{'suite':<36}" + "".join(f"{sum(results[(p.stem, pr)] for p in paths):>10.1f}" for pr in args.profiles))
    if "ci" in args.profiles:
        worst = max(results[(p.stem, "ci")] for p in paths)
        print(f"\nci profile: slowest notebook {worst:.1f} s = {worst / 30:.2f}x the 30 s budget")


if __name__ == "__main__":
    main()
