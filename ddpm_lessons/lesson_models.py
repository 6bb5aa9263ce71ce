"""The lesson models shipped with the package: safetensors weights plus a JSON model card, and how to retrain them.

Every model a notebook loads is trained once by this package's own loop (at the ``cpu`` profile's sizes) and
shipped in ``ddpm_lessons/pretrained/`` as ``<id>.safetensors`` (the EMA weights only; float16 for the digits
U-Nets, where the card's ``fp16_check`` shows the rounding changes nothing measured, float32 otherwise) and
``<id>.json``, the model card: preset and arguments, full :class:`~ddpm_lessons.train.TrainConfig`, model spec,
schedule, data spec, seed, steps, training time (with the machine's load), the loss curve, the metrics measured on
the shipped weights, the command that reproduces it and a fingerprint. Only safetensors and JSON are read: no
pickle is loaded from the package.

The fingerprint (``ddpm_lessons.cache.fingerprint``) hashes what decides the weights: model spec, preset and
TrainConfig, schedule values, data spec and ``train.TRAINING_SEMANTICS_VERSION``. :func:`find` matches a requested
configuration against the cards, so ``presets.pretrained`` returns a shipped model exactly when its arguments are
the shipped configuration; :func:`stale` lists shipped models whose fingerprint no longer matches the code
(tests/test_presets.py fails on them and prints the command below).

    ddpm-lessons lesson-models list                  # ids, sizes, fingerprints, headline metrics
    ddpm-lessons lesson-models retrain digits_simple # retrain one (or --all) into ddpm_lessons/pretrained/
    ddpm-lessons lesson-models retrain --all --out DIR --compare   # into DIR, then compare with the cards

Retraining reproduces a card's metrics within :data:`TOLERANCES`, not bit for bit: float32 kernels differ between
CPUs and thread counts, and training amplifies last-bit differences (bench/bench_pretrained.py checks all of them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["SHIPPED", "CLASSIFIER", "TOLERANCES", "pretrained_dir", "card", "find", "load", "load_state",
           "expected_fingerprint", "stale", "retrain", "evaluate", "compare", "regenerate_command", "add_subparser"]

# id -> the arguments of presets.pretrained (profile "cpu" sizes): every model a notebook loads
SHIPPED: dict[str, dict[str, Any]] = {
    "digits_simple": dict(name="digits", loss_type="simple"),  # notebooks 03, 04
    "digits_vlb": dict(name="digits", loss_type="vlb", learn_sigma=True),  # 04 (and 03's bound)
    "digits_hybrid": dict(name="digits", loss_type="hybrid", learn_sigma=True),  # 04
    "mixture_8_simple": dict(name="mixture_8", loss_type="simple"),  # 04, 05, 06
    "mixture_8_vlb_fixed": dict(name="mixture_8", loss_type="vlb", learn_sigma=False),  # 04
    "mixture_8_vlb": dict(name="mixture_8", loss_type="vlb", learn_sigma=True),  # 04
    "mixture_8_hybrid": dict(name="mixture_8", loss_type="hybrid", learn_sigma=True),  # 04
    "digits_cfg": dict(name="digits_cfg"),  # 06, 07
}
CLASSIFIER = "digit_classifier"  # metrics.digit_classifier(seed=0): the yardstick of every digits metric
_FP16 = {"digits"}  # data whose networks are shipped in float16 (if the fp16 check passes)
_FP16_MAX_REL_RMS = 2e-3  # fp16 rounding of the weights may change the network's output by this much (relative RMS)

# |retrained - card| allowed per metric (absolute), with the evaluation's own spread in mind
TOLERANCES: dict[str, float] = {
    "bpd": 0.10,  # bits/dim: seeds 0-2 of one config differ by ~0.03; stratified n_t = 100 estimate
    "sw_ratio_ddpm": 0.25,  # SW/floor (DDPM-100): the floor's relative spread is ~0.3 at 5,000 points
    "frechet": 3.0,  # classifier-feature Fréchet distance, 200 samples, 3 seeds
    "precision": 0.08,
    "recall": 0.08,
    "adherence": 0.03,
    "diversity_ratio": 0.05,
    "test_accuracy": 0.01,
}


def pretrained_dir() -> Path:
    """The folder of the shipped weights and cards inside the installed package."""
    return Path(__file__).resolve().parent / "pretrained"


def regenerate_command(model_id: str) -> str:
    return f"ddpm-lessons lesson-models retrain {model_id}"


@lru_cache(maxsize=64)
def _card_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def card(model_id: str) -> dict[str, Any]:
    """The model card (a dict) of shipped model ``model_id``; FileNotFoundError when it is not shipped."""
    if model_id not in SHIPPED and model_id != CLASSIFIER:
        raise ValueError(f"model_id must be one of {sorted([*SHIPPED, CLASSIFIER])}, got {model_id!r}")
    path = pretrained_dir() / f"{model_id}.json"
    return dict(_card_cached(str(path), path.stat().st_mtime_ns))


def find(fp: str) -> str | None:
    """The id of the shipped model whose card has fingerprint ``fp``, or None."""
    for model_id in SHIPPED:
        try:
            if card(model_id)["fingerprint"] == fp:
                return model_id
        except FileNotFoundError:
            continue
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_state(model_id: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(float32 state dict, card) of a shipped model, read with safetensors after checking the file's SHA-256."""
    from safetensors.torch import load_file

    c = card(model_id)
    path = pretrained_dir() / f"{model_id}.safetensors"
    if _sha256(path) != c["weights"]["sha256"]:
        raise ValueError(f"{path} does not match its card's SHA-256 (corrupted or replaced); "
                         f"run `{regenerate_command(model_id)}`")
    return {k: v.float() for k, v in load_file(str(path)).items()}, c


def load(model_id: str, device: str | torch.device = "cpu"):
    """The shipped diffusion model ``model_id`` as a :class:`~ddpm_lessons.train.TrainResult` (EMA weights only:
    ``result.model is result.ema_model``), in eval mode on ``device``; ``result.card`` is its card."""
    from ddpm_lessons import presets
    from ddpm_lessons.cache import canonical
    from ddpm_lessons.models import build_model
    from ddpm_lessons.train import TrainConfig, TrainResult

    if model_id not in SHIPPED:
        raise ValueError(f"model_id must be one of {sorted(SHIPPED)}, got {model_id!r}")
    state, c = load_state(model_id)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        model = build_model(c["model_spec"])
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    if c["train_config"].get("channels_last") and any(p.ndim == 4 for p in model.parameters()):
        model = model.to(memory_format=torch.channels_last)  # as it was trained: ~20% faster convolutions on a CPU
    args = dict(SHIPPED[model_id])
    sched = presets.resolve(args.pop("name"), profile="cpu", **args).sched  # the schedule the code builds for it
    if canonical(sched) != c["schedule"]["canonical"]:
        raise ValueError(f"the {sched.name} schedule no longer has the values {model_id} was trained with; "
                         f"run `{regenerate_command(model_id)}`")
    meta = {"preset": c["preset"], "data": c["data"]["name"], "conditional": c["data"]["conditional"],
            "shipped": True, "model_id": model_id, "fingerprint": c["fingerprint"], "from_cache": False}
    return TrainResult(model=model, ema_model=model, history={k: list(v) for k, v in c["history"].items()},
                       config=TrainConfig(**c["train_config"]), sched=sched, meta=meta, card=c)


def _classifier_key_config() -> dict[str, Any]:
    from ddpm_lessons import metrics

    return metrics.classifier_key_config(0)


def expected_fingerprint(model_id: str) -> str:
    """The fingerprint the current code gives the configuration of ``model_id``."""
    from ddpm_lessons import presets
    from ddpm_lessons.cache import fingerprint

    if model_id == CLASSIFIER:
        return fingerprint(_classifier_key_config())
    args = dict(SHIPPED[model_id])
    return presets.resolve(args.pop("name"), profile="cpu", **args).fingerprint()


def stale() -> dict[str, str]:
    """Shipped models whose card is missing or whose fingerprint differs from the code's: id -> what is wrong."""
    out = {}
    for model_id in [*SHIPPED, CLASSIFIER]:
        try:
            fp = card(model_id)["fingerprint"]
        except FileNotFoundError:
            out[model_id] = "no model card"
            continue
        now = expected_fingerprint(model_id)
        if fp != now:
            out[model_id] = f"card fingerprint {fp}, code gives {now}"
    return out


# --------------------------------------------------------------------------------------------------------------
# Metrics measured on the shipped weights
# --------------------------------------------------------------------------------------------------------------


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else float("nan"),
            "values": values}


def pixel_histogram_bpd() -> float:
    """Bits/dim of the digits test split under independent per-pixel histograms of the train split (17 levels,
    add-one smoothing): the baseline a diffusion bound should beat; log2(17) = 4.09 is the uniform one."""
    from ddpm_lessons import data

    x_tr, _ = data.digits("train")
    x_te, _ = data.digits("test")
    level = lambda x: torch.round((x.flatten(1).double() + 1) * 8).long()  # noqa: E731 -- [-1, 1] -> 0..16
    lt, le = level(x_tr), level(x_te)
    counts = torch.stack([torch.bincount(lt[:, j], minlength=17) for j in range(64)]).double() + 1.0  # (64, 17)
    logp = (counts / counts.sum(1, keepdim=True)).log2()
    return float(-logp[torch.arange(64)[None, :], le].mean())


def _digits_unconditional(model: nn.Module, sched, var_type: str = "beta_tilde") -> dict[str, Any]:
    from ddpm_lessons import data, losses, metrics, samplers

    x_te, _ = data.digits("test")
    b = losses.bits_per_dim(model, sched, x_te, bins=17, var_type=var_type, n_t=100,
                            generator=torch.Generator().manual_seed(14))
    tot = b["total"].double()
    out: dict[str, Any] = {
        "bpd": float(tot.mean()), "bpd_se": float(tot.std() / math.sqrt(tot.numel())),
        "bpd_prior": float(b["prior"].mean()), "bpd_decoder": float(b["decoder"].mean()),
        "bpd_protocol": f"losses.bits_per_dim on the 360 test digits, bins=17, var_type={var_type!r}, n_t=100 "
                        "(stratified over log t), generator seed 14",
        "uniform_bpd": math.log2(17), "pixel_histogram_bpd": pixel_histogram_bpd(),
    }
    clf = metrics.digit_classifier()
    real_f = clf.features(x_te)
    rows: dict[str, list[float]] = {"frechet": [], "precision": [], "recall": []}
    for s in range(3):
        imgs = samplers.sample(model, sched, (200, 1, 8, 8), method="ddpm", steps=100, clip_x0=True,
                               generator=torch.Generator().manual_seed(s), progress=False).cpu()
        f = clf.features(imgs)
        p, r = metrics.knn_precision_recall(real_f, f)
        rows["frechet"].append(metrics.frechet_distance(real_f, f))
        rows["precision"].append(p)
        rows["recall"].append(r)
    x_tr, _ = data.digits("train")
    tr_f = clf.features(x_tr[torch.randperm(x_tr.shape[0], generator=torch.Generator().manual_seed(0))[:200]])
    p_real, r_real = metrics.knn_precision_recall(real_f, tr_f)
    out.update(beats_uniform=out["bpd"] < out["uniform_bpd"],  # what the bound beats, said on the card
               beats_pixel_histograms=out["bpd"] < out["pixel_histogram_bpd"])
    out.update({k: _mean_sd(v) for k, v in rows.items()})
    out.update(frechet_real=metrics.frechet_distance(real_f, tr_f), precision_real=p_real, recall_real=r_real,
               sample_protocol="200 samples x seeds 0-2, ancestral DDPM respaced to 100 steps, clip_x0; features of "
                               "metrics.digit_classifier(); *_real: 200 train images scored the same way")
    return out


def _mixture(model: nn.Module, sched, learn_sigma: bool) -> dict[str, Any]:
    from ddpm_lessons import data, losses, metrics, samplers

    mix = data.mixture_8()
    n = 5000
    sw = metrics.sliced_wasserstein
    floor = metrics.metric_floor(sw, lambda m, g: mix.sample(m, generator=g)[0], n, n_repeats=5,
                                 generator=torch.Generator().manual_seed(12345))
    ratios = []
    for s in range(5):
        x = samplers.sample(model, sched, (n, 2), method="ddpm", steps=100, generator=torch.Generator().manual_seed(s),
                            progress=False)
        ratios.append(sw(x, mix.sample(n, generator=torch.Generator().manual_seed(10_000 + s))[0]) / floor.mean)
    x_held = mix.sample(2000, generator=torch.Generator().manual_seed(777))[0]
    b = losses.bits_per_dim(model, sched, x_held, bins=None, n_t=100, generator=torch.Generator().manual_seed(14))
    tot = b["total"].double()
    entropy_bits = -float(mix.log_prob(x_held.double()).mean()) / (2 * math.log(2))
    return {"sw_ratio_ddpm": _mean_sd(ratios), "sw_floor": floor.mean, "sw_floor_sd": floor.std,
            "sw_protocol": "SW-2 (256 projections) of 5,000 samples (seeds 0-4) of ancestral DDPM respaced to 100 "
                           "steps to fresh data draws, divided by the mean SW-2 between two data draws (5 repeats)",
            "bpd": float(tot.mean()), "bpd_se": float(tot.std() / math.sqrt(tot.numel())),
            "bpd_protocol": "bound in bits/dim (continuous decoder, bins=None, n_t=100 stratified over log t, "
                            "generator seed 14) on 2,000 held-out points",
            "entropy_bpd": entropy_bits}


def _digits_cfg(model: nn.Module, sched) -> dict[str, Any]:
    from ddpm_lessons import metrics, samplers

    labels = torch.arange(10).repeat_interleave(30)
    out: dict[str, Any] = {}
    for w in (0.0, 1.0, 3.0):
        x = samplers.sample(model, sched, (labels.numel(), 1, 8, 8), method="ddim", steps=50, cond=labels, w=w,
                            generator=torch.Generator().manual_seed(0), progress=False)
        rep = metrics.digit_report(x.clamp(-1, 1), labels)
        out[f"w={w:g}"] = {k: rep[k] for k in ("adherence", "diversity_ratio", "precision", "recall", "frechet")}
    out["protocol"] = "DDIM-50 (eta 0), 30 images per class, seed 0, clamped to [-1, 1]; metrics.digit_report"
    return out


def evaluate(model_id: str, model: nn.Module, sched) -> dict[str, Any]:
    """The card's metrics of ``model`` (the shipped weights of ``model_id``), one thread, fixed seeds."""
    if model_id == CLASSIFIER:
        from ddpm_lessons import data

        x, y = data.digits("test")
        return {"test_accuracy": float((model.predict(x) == y).double().mean())}
    args = SHIPPED[model_id]
    with torch.no_grad():
        if args["name"] == "digits_cfg":
            return _digits_cfg(model, sched)
        if args["name"] == "digits":
            return _digits_unconditional(model, sched)
        return _mixture(model, sched, bool(args.get("learn_sigma")))


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    """Flat {metric: value} of the metrics :data:`TOLERANCES` covers (means where there are several seeds)."""
    flat: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict) and "mean" in v:
            flat[k] = v["mean"]
        elif isinstance(v, dict):
            flat.update({f"{k} {kk}": vv for kk, vv in _headline(v).items()})
        elif isinstance(v, int | float) and k.split(" ")[-1] in TOLERANCES:
            flat[k] = float(v)
    return {k: v for k, v in flat.items() if k.split(" ")[-1] in TOLERANCES}


def compare(card_metrics: dict[str, Any], new_metrics: dict[str, Any]) -> list[tuple[str, float, float, float, bool]]:
    """Rows (metric, card, new, tolerance, within) for every metric of :data:`TOLERANCES` on the card."""
    a, b = _headline(card_metrics), _headline(new_metrics)
    rows = []
    for k in a:
        tol = TOLERANCES[k.split(" ")[-1]]
        rows.append((k, a[k], b.get(k, float("nan")), tol, abs(a[k] - b.get(k, float("nan"))) <= tol))
    return rows


# --------------------------------------------------------------------------------------------------------------
# Retraining
# --------------------------------------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _write_json(path: Path, obj: Any) -> None:
    from ddpm_lessons.cache import atomic_write

    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()))


def _save_weights(state: dict[str, torch.Tensor], path: Path) -> str:
    from safetensors.torch import save

    from ddpm_lessons.cache import atomic_write

    blob = save({k: v.contiguous() for k, v in state.items()})
    atomic_write(path, lambda f: f.write(blob))
    return hashlib.sha256(blob).hexdigest()


def _fp16_check(model: nn.Module, sched, x0: torch.Tensor) -> dict[str, float]:
    """Relative RMS change of the network's output when its weights are rounded to float16 (fixed x_t and t)."""
    import copy

    from ddpm_lessons import forward

    g = torch.Generator().manual_seed(3)
    n = x0.shape[0]
    t = torch.randint(1, sched.T + 1, (n,), generator=g)
    xt = forward.q_sample(sched, x0, t, torch.randn(x0.shape, generator=g))
    half = copy.deepcopy(model)
    half.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    with torch.no_grad():
        a, b = model(xt, t), half(xt, t)
    return {"rel_rms": float((a - b).pow(2).mean().sqrt() / a.pow(2).mean().sqrt()), "n": n}


def retrain(model_id: str, out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``model_id`` from scratch with the package's loop, write its safetensors and card to ``out_dir``
    (default: the package's ``pretrained/`` folder) and return the card. One intra-op thread (the shipped models
    were trained so; the wall time depends on the machine's load, recorded on the card)."""
    from ddpm_lessons import __version__, data, presets
    from ddpm_lessons.cache import canonical, fingerprint, schedule_spec
    from ddpm_lessons.models import count_parameters, model_spec
    from ddpm_lessons.train import TRAINING_SEMANTICS_VERSION, train

    out = Path(out_dir) if out_dir is not None else pretrained_dir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    try:
        if model_id == CLASSIFIER:
            return _retrain_classifier(out, load0)
        if model_id not in SHIPPED:
            raise ValueError(f"model_id must be one of {sorted([*SHIPPED, CLASSIFIER])}, got {model_id!r}")
        args = dict(SHIPPED[model_id])
        r = presets.resolve(args.pop("name"), profile="cpu", **args)
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        x, y = r.data()
        result = train(r.build(), r.sched, x, y, r.cfg, progress=progress)
        wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
        load1 = os.getloadavg()[0]
        ema = result.ema_model.cpu().eval()
        check = None
        dtype = torch.float32
        if r.preset.data in _FP16:
            x_te, _ = data.digits("test")
            check = _fp16_check(ema, r.sched, x_te)
            if check["rel_rms"] <= _FP16_MAX_REL_RMS:
                dtype = torch.float16
        state = {k: v.detach().to(dtype) for k, v in ema.state_dict().items()}
        sha = _save_weights(state, out / f"{model_id}.safetensors")
        ema.load_state_dict({k: v.float() for k, v in state.items()})  # evaluate exactly what is shipped
        eval0 = time.perf_counter()
        metrics = evaluate(model_id, ema, r.sched)
        c = {
            "id": model_id, "preset": r.name, "pretrained_args": r.args, "preset_spec": r.key_config["preset_spec"],
            "train_config": json.loads(json.dumps(canonical(r.cfg))), "model_spec": model_spec(ema),
            "parameters": count_parameters(ema), "data": canonical(r.key_config["data"]),
            "schedule": {"name": r.sched.name, "T": r.sched.T, "canonical": canonical(schedule_spec(r.sched))},
            "seed": r.seed, "steps": result.meta["steps_done"],
            "training": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": 1,
                         "load_average_start": load0, "load_average_end": load1,
                         "note": "one intra-op thread on a shared 2-core machine; wall time is inflated by the "
                                 "load average shown (other jobs), CPU seconds are the work done"},
            "history": result.history,
            "weights": {"file": f"{model_id}.safetensors", "dtype": str(dtype).replace("torch.", ""),
                        "bytes": (out / f"{model_id}.safetensors").stat().st_size, "sha256": sha,
                        "ema_only": True, "fp16_check": check, "fp16_max_rel_rms": _FP16_MAX_REL_RMS},
            "metrics": metrics, "evaluation_s": round(time.perf_counter() - eval0, 1),
            "command": regenerate_command(model_id),
            "fingerprint": fingerprint(r.key_config), "training_semantics_version": TRAINING_SEMANTICS_VERSION,
            "package_version": __version__, "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        _write_json(out / f"{model_id}.json", c)
        _card_cached.cache_clear()
        return c
    finally:
        torch.set_num_threads(threads)


def _retrain_classifier(out: Path, load0: float) -> dict[str, Any]:
    from ddpm_lessons import __version__, metrics
    from ddpm_lessons.cache import canonical, fingerprint
    from ddpm_lessons.train import TRAINING_SEMANTICS_VERSION

    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    clf = metrics._train_classifier(0)
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    state = {k: v.detach().float() for k, v in clf.state_dict().items()}
    sha = _save_weights(state, out / f"{CLASSIFIER}.safetensors")
    key = _classifier_key_config()
    c = {"id": CLASSIFIER, "preset": "metrics.digit_classifier(seed=0)", "train_config": canonical(key),
         "seed": 0, "steps": key["train"]["epochs"] * (1437 // key["train"]["batch_size"]),
         "training": {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": 1, "load_average_start": load0,
                      "load_average_end": os.getloadavg()[0]},
         "weights": {"file": f"{CLASSIFIER}.safetensors", "dtype": "float32", "sha256": sha, "ema_only": False,
                     "bytes": (out / f"{CLASSIFIER}.safetensors").stat().st_size},
         "metrics": evaluate(CLASSIFIER, clf, None), "command": regenerate_command(CLASSIFIER),
         "fingerprint": fingerprint(key), "training_semantics_version": TRAINING_SEMANTICS_VERSION,
         "package_version": __version__, "torch": torch.__version__,
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    _write_json(out / f"{CLASSIFIER}.json", c)
    _card_cached.cache_clear()
    return c


# --------------------------------------------------------------------------------------------------------------
# ddpm-lessons lesson-models ...
# --------------------------------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    print(f"{'id':<22} {'dtype':<8} {'kB':>6} {'steps':>6} {'train s':>8}  fingerprint       stale")
    bad = stale()
    for model_id in [*SHIPPED, CLASSIFIER]:
        try:
            c = card(model_id)
        except FileNotFoundError:
            print(f"{model_id:<22} (not shipped)")
            continue
        w = c["weights"]
        print(f"{model_id:<22} {w['dtype']:<8} {w['bytes'] / 1024:6.0f} {c['steps']:>6} "
              f"{c['training']['wall_s']:8.1f}  {c['fingerprint']}  {'STALE' if model_id in bad else ''}")
    for model_id, why in bad.items():
        print(f"stale: {model_id}: {why}; run `{regenerate_command(model_id)}`")
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    ids = [*SHIPPED, CLASSIFIER] if args.all else args.ids
    unknown = [i for i in ids if i not in SHIPPED and i != CLASSIFIER]
    if unknown or not ids:
        print(f"error: give model ids from {[*SHIPPED, CLASSIFIER]} or --all (got {unknown or 'none'})",
              file=sys.stderr)
        return 2
    order = [CLASSIFIER] if CLASSIFIER in ids else []  # the digits metrics use the classifier
    failed = 0
    for model_id in order + [i for i in ids if i != CLASSIFIER]:
        before = None
        if args.compare:
            try:
                before = card(model_id)["metrics"]
            except FileNotFoundError:
                before = None
        c = retrain(model_id, args.out, progress=not args.no_progress)
        print(f"{model_id}: {c['steps']} steps, {c['training']['wall_s']} s wall ({c['training']['cpu_s']} CPU s), "
              f"{c['weights']['bytes'] / 1024:.0f} kB {c['weights']['dtype']} -> {Path(args.out or pretrained_dir())}")
        if before is not None:
            for k, a, b, tol, ok in compare(before, c["metrics"]):
                failed += not ok
                print(f"  {k:<28} card {a:8.3f}  now {b:8.3f}  tol {tol:5.2f}  {'ok' if ok else 'OUTSIDE'}")
    return 1 if failed else 0


def add_subparser(subparsers: Any) -> None:
    """Register ``lesson-models`` (with ``list`` and ``retrain``) on an argparse sub-parser collection."""
    p = subparsers.add_parser("lesson-models", help="list or retrain the lesson models shipped with the package",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="lesson_command", required=True)
    ls = sub.add_parser("list", help="shipped models, sizes, fingerprints; names the stale ones")
    ls.set_defaults(handler=_cmd_list)
    rt = sub.add_parser("retrain", help="retrain shipped models with the package's loop and rewrite their cards")
    rt.add_argument("ids", nargs="*", help=f"model ids: {', '.join([*SHIPPED, CLASSIFIER])}")
    rt.add_argument("--all", action="store_true", help="every shipped model")
    rt.add_argument("--out", default=None, help="folder for weights and cards (default: the package's pretrained/)")
    rt.add_argument("--compare", action="store_true", help="compare the new metrics with the current cards")
    rt.add_argument("--no-progress", action="store_true")
    rt.set_defaults(handler=_cmd_retrain)
