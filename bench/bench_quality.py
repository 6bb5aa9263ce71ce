"""Time to quality on the CPU: the 2-D mixture and the digits targets of issue 4, printed as tables.

    python bench/bench_quality.py                 # both parts, the issue's protocol (about 10 minutes on 1 core)
    python bench/bench_quality.py --part mixture  # or digits; --ablate adds the no-EMA / constant-lr mixture run

Mixture (8 components, ``ddpm_lessons.data.mixture_8``): the ``mixture_8`` preset of ``ddpm_lessons.train`` is
trained from scratch (no cache) and timed; samples from DDPM (all 1000 steps) and DDIM (50 steps, eta = 0) are
scored by the sliced Wasserstein distance SW-2 to a fresh held-out draw, divided by the finite-sample floor (SW-2
between two independent data draws of the same size). Each figure is the mean over ``--seeds`` evaluation seeds of
``--n`` points; the floor's own mean and spread are printed beside it. Targets: training <= 20 s, DDPM <= 1.1x,
DDIM-50 <= 1.2x the floor.

Digits (scikit-learn 8x8, class-conditional with label dropout): the ``digits_cfg`` preset is trained and timed;
for w in {0, 1, 3, 5} it draws ``--per-class`` images of each class with DDIM-50 and reports the classifier's class
adherence, within-class diversity relative to the real test images, k-NN precision / recall and the Fréchet
distance in the classifier's features (``ddpm_lessons.metrics.digit_report``), with the classifier's own test
accuracy. Targets: training <= 60 s; w = 0: adherence >= 97 % and diversity >= 90 % of the real images';
w = 3: adherence >= 99 %.

Timing: wall-clock seconds of training (data, model and the loop) with ``--threads`` intra-op threads: two on an
idle machine, one when other processes load the cores (two threads then ran up to ten times slower). Times measured
while other jobs load the CPU are pessimistic; the CPU-seconds column shows the work done.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import sys
import time

import torch

from ddpm_lessons import data, metrics
from ddpm_lessons.presets import pretrained
from ddpm_lessons.samplers import sample

# Optimiser steps that fit the time budgets on this machine kind (2 cores), measured with this script:
# mixture 3.6 ms/step on one thread (two threads do not help the small MLP); digits about 83 ms/step on one thread,
# 55 ms/step on two threads of an idle machine (channels_last and fused AdamW, batch 64).
MIXTURE_STEPS = 4000
DIGITS_STEPS = {1: 700, 2: 1000}  # by thread count


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _train_timed(name: str, steps: int | None, **kw):
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    result = pretrained(name, steps=steps, profile="cpu", device="cpu", cache=False, progress=False, retrain=True,
                        **kw)  # retrain=True: time the training, never load the shipped model
    return result, time.perf_counter() - wall0, _cpu_seconds() - cpu0


def bench_mixture(args: argparse.Namespace) -> list[dict]:
    mix = data.mixture_8()

    def sampler(n: int, g: torch.Generator | None) -> torch.Tensor:
        return mix.sample(n, generator=g)[0]

    def sw(a: torch.Tensor, b: torch.Tensor) -> float:
        return metrics.sliced_wasserstein(a, b)

    floor = metrics.metric_floor(sw, sampler, args.n, n_repeats=max(args.seeds, 2),
                                 generator=torch.Generator().manual_seed(12345))
    print(f"\nfloor: SW-2 between two data draws of {args.n} points = {floor.mean:.4f} +- {floor.std:.4f} "
          f"(relative spread {floor.std / floor.mean:.2f}, {len(floor.values)} repeats)")
    runs = [("preset (EMA + cosine decay)", {})]
    if args.ablate:
        runs.append(("ablation: no EMA, constant lr", {"ema_decay": 0.0, "lr_decay": "none"}))
    rows = []
    for label, overrides in runs:
        result, wall, cpu = _train_timed("mixture_8", args.mixture_steps, **overrides)
        cfg = result.config
        for method, steps in (("ddpm", None), ("ddim", 50)):
            ratios = []
            t0 = time.perf_counter()
            for s in range(args.seeds):
                x = sample(result.ema_model, result.sched, (args.n, 2), method=method, steps=steps,
                           generator=torch.Generator().manual_seed(s), progress=False)
                ratios.append(sw(x, sampler(args.n, torch.Generator().manual_seed(10_000 + s))) / floor.mean)
            m, sd = _mean_sd(ratios)
            rows.append(dict(run=label, steps=cfg.steps, train_s=wall, cpu_s=cpu,
                             sampler=f"{method.upper()}-{steps or result.sched.T}", ratio=m, sd=sd,
                             se=sd / math.sqrt(len(ratios)), sample_s=time.perf_counter() - t0,
                             target=1.1 if method == "ddpm" else 1.2))
    print(f"\n{'run':32s} {'steps':>6s} {'train s':>8s} {'cpu s':>6s} {'sampler':>10s} {'SW/floor':>9s} "
          f"{'sd':>6s} {'se':>6s} {'target':>7s} {'sample s':>9s}")
    for r in rows:
        ok = "ok" if r["ratio"] <= r["target"] else "MISS"
        print(f"{r['run']:32s} {r['steps']:6d} {r['train_s']:8.1f} {r['cpu_s']:6.1f} {r['sampler']:>10s} "
              f"{r['ratio']:9.3f} {r['sd']:6.3f} {r['se']:6.3f} {'<=' + format(r['target'], '.1f'):>5s} {ok:4s}"
              f"{r['sample_s']:7.1f}")
    print(f"(train target <= 20 s; SW/floor: mean over {args.seeds} seeds of {args.n} points, sd across seeds, "
          f"se = sd/sqrt(seeds); a perfect sampler scores about 0.95 with the floor's spread)")
    return rows


def bench_digits(args: argparse.Namespace) -> list[dict]:
    classifier = metrics.digit_classifier()
    result, wall, cpu = _train_timed("digits_cfg", args.digits_steps)
    model, sched = result.ema_model, result.sched
    labels = torch.arange(10).repeat_interleave(args.per_class)
    rows = []
    for w in (0.0, 1.0, 3.0, 5.0):
        t0 = time.perf_counter()
        x = sample(model, sched, (labels.numel(), 1, 8, 8), method="ddim", steps=50, cond=labels, w=w,
                   generator=torch.Generator().manual_seed(0), progress=False)
        rep = metrics.digit_report(x.clamp(-1, 1), labels, classifier)
        rows.append(dict(w=w, sample_s=time.perf_counter() - t0, **rep))
    print(f"\ndigits_cfg: {result.config.steps} steps, batch {result.config.batch_size}, p_uncond "
          f"{result.config.p_uncond}: trained in {wall:.1f} s wall ({cpu:.1f} CPU s); target <= 60 s")
    print(f"classifier test accuracy: {classifier.test_accuracy:.3f}; DDIM-50 (eta 0), {args.per_class} images per "
          f"class; real test images' within-class diversity {rows[0]['diversity_real']:.3f}")
    print(f"\n{'w':>4s} {'adherence':>10s} {'diversity':>10s} {'div/real':>9s} {'precision':>10s} {'recall':>7s} "
          f"{'Frechet':>8s} {'clf acc':>8s}")
    for r in rows:
        print(f"{r['w']:4.0f} {r['adherence']:10.3f} {r['diversity']:10.3f} {r['diversity_ratio']:9.3f} "
              f"{r['precision']:10.3f} {r['recall']:7.3f} {r['frechet']:8.2f} {r['classifier_test_accuracy']:8.3f}")
    print("(targets: w=0 adherence >= 0.97 and div/real >= 0.90; w=3 adherence >= 0.99)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "mixture", "digits"), default="all")
    parser.add_argument("--seeds", type=int, default=10, help="evaluation seeds (mixture)")
    parser.add_argument("--n", type=int, default=5000, help="points per evaluation (mixture)")
    parser.add_argument("--per-class", type=int, default=100, help="generated images per class (digits)")
    parser.add_argument("--mixture-steps", type=int, default=MIXTURE_STEPS)
    parser.add_argument("--digits-steps", type=int, default=None, help="default: 600 on 1 thread, 900 on 2")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: 2 when the load average is below 0.5, else 1)")
    parser.add_argument("--ablate", action="store_true", help="also train the mixture without EMA / lr decay")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.threads is None:  # two threads on a busy machine ran up to 10x slower than one (oversubscription)
        args.threads = 2 if load < 0.5 and (os.cpu_count() or 1) >= 2 else 1
    if args.digits_steps is None:
        args.digits_steps = DIGITS_STEPS[min(args.threads, 2)]
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DDPM_LESSONS_PROFILE", "cpu")
    print(f"bench_quality: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {args.threads} thread(s), load average at start {load:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    if args.part in ("all", "mixture"):
        bench_mixture(args)
    if args.part in ("all", "digits"):
        bench_digits(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
