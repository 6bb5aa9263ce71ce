"""Retrain every shipped lesson model from scratch and compare its metrics with its model card (not run in CI).

    python bench/bench_pretrained.py                       # every shipped model, into a temporary folder
    python bench/bench_pretrained.py digits_simple digits_cfg --keep DIR

Each model is trained by ``ddpm_lessons.lesson_models.retrain`` (the command ``ddpm-lessons lesson-models retrain``
runs) into a scratch folder, never over the shipped files, and evaluated with the card's own protocol; the table
shows card value, retrained value, |difference| and the tolerance of ``lesson_models.TOLERANCES``. Retraining
reproduces the metrics, not the bits: float32 kernels and thread counts differ between machines. Exit status 1 when
a metric falls outside its tolerance. About 25 minutes on one idle core (training ~9 min, evaluation the rest).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from ddpm_lessons import lesson_models


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ids", nargs="*", help="model ids (default: all shipped)")
    ap.add_argument("--keep", default=None, help="write the retrained files here instead of a temporary folder")
    args = ap.parse_args(argv)
    ids = args.ids or [lesson_models.CLASSIFIER, *lesson_models.SHIPPED]
    out = args.keep or tempfile.mkdtemp(prefix="ddpm_lessons_retrain_")
    print(f"bench_pretrained: retraining {len(ids)} models into {out}; load average {os.getloadavg()[0]:.1f}")
    failures = 0
    rows = []
    for model_id in ids:
        card = lesson_models.card(model_id)
        t0 = time.perf_counter()
        new = lesson_models.retrain(model_id, out, progress=False)
        for metric, a, b, tol, ok in lesson_models.compare(card["metrics"], new["metrics"]):
            rows.append((model_id, metric, a, b, tol, ok))
            failures += not ok
        print(f"  {model_id:<22} trained {new['training']['wall_s']:7.1f} s (card {card['training']['wall_s']:7.1f} s)"
              f", total {time.perf_counter() - t0:6.1f} s, fingerprint "
              f"{'same' if new['fingerprint'] == card['fingerprint'] else 'DIFFERENT'}", flush=True)
    print(f"\n{'model':<22} {'metric':<26} {'card':>9} {'retrained':>10} {'|diff|':>8} {'tol':>6}")
    for model_id, metric, a, b, tol, ok in rows:
        print(f"{model_id:<22} {metric:<26} {a:9.3f} {b:10.3f} {abs(a - b):8.3f} {tol:6.2f} {'' if ok else 'OUTSIDE'}")
    print(f"\n{len(rows) - failures}/{len(rows)} metrics within tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
