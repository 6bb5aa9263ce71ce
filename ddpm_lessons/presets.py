"""The lesson presets: which data, network, schedule and training defaults each notebook model uses, and
:func:`pretrained`, which returns it -- the shipped weights when the arguments are the shipped configuration,
else a model from the cache or trained now.

* Data sets (:data:`DATASETS`, :func:`load_dataset`) and their decoder levels (:data:`DATA_BINS`: 17 for the
  sklearn digits, 256 for 8-bit images, None for the continuous 2-D mixture), shared with ``ddpm-lessons train``.
* Architectures (:data:`ARCHITECTURES`, :func:`build_architecture`), the ``--preset`` of ``ddpm-lessons train``.
* Lesson presets (:data:`PRESETS`, :class:`Preset`): "mixture_8", "mixture_8_cond", "digits", "digits_cfg".
* :func:`resolve` turns ``pretrained``'s arguments into the full configuration (schedule, :class:`TrainConfig`,
  model spec, data spec) whose fingerprint decides whether a shipped model (``ddpm_lessons.lesson_models``) fits.

Profiles: the ``ci`` and ``cpu`` profiles load the same shipped models (trained once at the ``cpu`` profile's
sizes); the ``gpu`` profile's default is its bigger step count, which trains (and caches) a model of its own.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [V]     Salimans, Ho 2022, arXiv:2202.00512
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddpm_lessons.schedules import Schedule
from ddpm_lessons.train import TrainConfig, TrainResult, train

__all__ = ["DATASETS", "DATA_BINS", "NUM_CLASSES", "ARCHITECTURES", "DEFAULT_ARCHITECTURE", "load_dataset",
           "build_architecture", "Preset", "PRESETS", "Resolved", "resolve", "pretrained", "SHIPPED_PROFILES"]

DATASETS = ("mixture_8", "digits", "mnist", "fashion_mnist", "cifar10")
DATA_BINS: dict[str, int | None] = {"mixture_8": None, "digits": 17, "mnist": 256, "fashion_mnist": 256,
                                    "cifar10": 256}  # levels of the data in [-1, 1]; None: continuous
NUM_CLASSES = {"mixture_8": 8, "digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}
ARCHITECTURES = ("mixture_mlp", "digits_unet", "mnist_unet", "ddpm_cifar10")
DEFAULT_ARCHITECTURE = {"mixture_8": "mixture_mlp", "digits": "digits_unet", "mnist": "mnist_unet",
                        "fashion_mnist": "mnist_unet", "cifar10": "ddpm_cifar10"}
SHIPPED_PROFILES = ("ci", "cpu")  # profiles whose default sizes resolve to the shipped lesson models
_SHIPPED_SIZES = "cpu"  # the profile whose step counts the shipped models were trained with


def load_dataset(name: str, n_train: int = 100_000, seed: int = 0, data_dir: str | None = None,
                 download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Training data ``(x, y)`` of data set ``name``: x (N, 2) or (N, C, H, W) float in [-1, 1], y (N,) long.

    "mixture_8" draws ``n_train`` points with the generator seeded ``10_000 + seed``; "digits" is sklearn's train
    split (1437 images); MNIST / CIFAR-10 are read from ``data_dir`` (or downloaded by torchvision).
    """
    from ddpm_lessons import data

    if name == "mixture_8":
        x, y = data.mixture_8().sample(n_train, generator=torch.Generator().manual_seed(10_000 + seed))
        return x.float(), y.long()
    if name == "digits":
        return data.digits("train")
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if data_dir is None and not download:
        raise ValueError(f"--data-dir is required for --dataset {name} (or pass --download)")
    root = data_dir or str(Path.home() / ".cache" / "ddpm_lessons" / "data")
    if name in ("mnist", "fashion_mnist"):
        return data.load_mnist(root, "train", kind=name, download=download)
    return data.load_cifar10(root, "train", download=download)


def build_architecture(arch: str, num_classes: int = 0, objective: str = "eps", learn_sigma: bool = False,
                       **kw: Any) -> nn.Module:
    """A freshly initialised network of architecture ``arch`` (one of :data:`ARCHITECTURES`)."""
    from ddpm_lessons import models

    kw = dict(num_classes=num_classes, objective=objective, learn_sigma=learn_sigma, **kw)
    if arch == "mixture_mlp":
        return models.mixture_mlp(**kw)
    if arch == "digits_unet":
        return models.digits_unet(**kw)
    if arch == "mnist_unet":
        return models.UNet(in_channels=1, ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,),
                           dropout=0.1, image_size=28, **kw)
    if arch == "ddpm_cifar10":
        return models.ddpm_cifar10(**kw)
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {arch!r}")


@dataclass(frozen=True)
class Preset:
    """How :func:`pretrained` builds one named model: data, network and training defaults."""

    data: str  # "mixture_8" | "digits"
    conditional: bool
    train: dict[str, Any]  # TrainConfig defaults (steps come from ddpm_lessons.config.sizes())
    model: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the architecture
    n_train: int = 0  # number of 2-D training points drawn from the mixture (0 for image sets)
    objective: str = "eps"  # what the network predicts unless pretrained(objective=...) says otherwise
    schedule: str = "linear"  # noise schedule unless pretrained(schedule=...) says otherwise

    @property
    def architecture(self) -> str:
        return DEFAULT_ARCHITECTURE[self.data]

    @property
    def bins(self) -> int | None:
        """Decoder levels of the data (errata 3: the loss trains the L_0 that bits_per_dim scores)."""
        return DATA_BINS[self.data]


PRESETS: dict[str, Preset] = {
    # 2-D 8-component mixture, unconditional MLP; EMA and cosine decay both matter here (see bench/bench_quality.py).
    "mixture_8": Preset("mixture_8", False, dict(batch_size=256, lr=2e-3, warmup=100, ema_decay=0.995),
                        n_train=100_000),
    # The same mixture with its component labels, for 2-D classifier-free guidance.
    "mixture_8_cond": Preset("mixture_8", True, dict(batch_size=256, lr=2e-3, warmup=100, ema_decay=0.995,
                                                     p_uncond=0.2), n_train=100_000),
    # sklearn digits, class-conditional with label dropout, for the sampling / DDIM / CFG lessons; lr and batch tuned
    # for a ~1-minute CPU budget (bench/bench_quality.py). p_uncond 0.05, below [CFG]'s 0.1-0.2: in that budget the
    # conditional model needs the labels most (adherence at w = 0: 97.9-98.2 % over seeds 0-2 vs 96.9-97.7 % with
    # 0.1), and the unconditional half still guides (adherence 100 % at w = 3). 8x8 images lose their
    # information early under the linear schedule ([IDDPM] Sec. 3.2), so the digits use the cosine schedule; with it,
    # ε-prediction is unstable near t = T (x0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t) with ᾱ_T = 2.4e-9), and the
    # v-objective ([V] Sec. 4) is not. Measured at 1080 steps, DDIM-50, w = 0: ε/linear 95.6 % class adherence,
    # v/linear 97.0 % (diversity 0.89 of the real images'), v/cosine 97.0-97.6 % (diversity 0.91).
    "digits_cfg": Preset("digits", True, dict(batch_size=64, lr=4e-3, warmup=100, ema_decay=0.995,
                                              p_uncond=0.05), objective="v", schedule="cosine"),
    # sklearn digits, unconditional, the [DDPM] setup (ε-prediction, linear schedule) for the bits/dim lesson.
    "digits": Preset("digits", False, dict(batch_size=64, lr=4e-3, warmup=100, ema_decay=0.995)),
}


@dataclass
class Resolved:
    """The full configuration behind one :func:`pretrained` call (see :func:`resolve`)."""

    name: str
    preset: Preset
    sched: Schedule
    cfg: TrainConfig
    objective: str
    learn_sigma: bool
    seed: int
    build: Callable[[], nn.Module]  # a freshly initialised network (seeded: the same weights every call)
    key_config: dict[str, Any]  # what decides the weights: the cache key and the shipped fingerprint hash it
    args: dict[str, Any]  # the arguments as given to resolve() (for model cards)

    def fingerprint(self) -> str:
        from ddpm_lessons.cache import fingerprint

        return fingerprint(self.key_config)

    def data(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = load_dataset(self.preset.data, n_train=self.preset.n_train or 100_000, seed=self.seed)
        return x, (y if self.preset.conditional else None)


def _data_spec(preset: Preset) -> dict[str, Any]:
    from ddpm_lessons import data

    spec: dict[str, Any] = {"name": preset.data, "conditional": preset.conditional, "bins": preset.bins}
    if preset.data == "mixture_8":
        mix = data.mixture_8()
        spec.update(n_train=preset.n_train, draw_seed="10000 + seed", weights=mix.weights, means=mix.means,
                    stds=mix.stds)
    else:
        spec.update(split="train", split_seed=0, n_train=1437)
    return spec


def resolve(name: str, loss_type: str = "simple", objective: str | None = None, steps: int | None = None,
            schedule: str | None = None, T: int | None = None, learn_sigma: bool | None = None,
            profile: str | None = None, seed: int = 0, **train_overrides: Any) -> Resolved:
    """The configuration :func:`pretrained` trains for these arguments (no training; see :func:`pretrained`)."""
    from ddpm_lessons import config, schedules
    from ddpm_lessons.models import model_spec

    if name not in PRESETS:
        raise ValueError(f"name must be one of {sorted(PRESETS)}, got {name!r}")
    args = dict(name=name, loss_type=loss_type, objective=objective, steps=steps, schedule=schedule, T=T,
                learn_sigma=learn_sigma, seed=seed, **train_overrides)
    preset = PRESETS[name]
    objective = preset.objective if objective is None else objective
    schedule = preset.schedule if schedule is None else schedule
    if schedule not in ("linear", "cosine"):
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
    sizes = config.sizes(profile)
    T = sizes.T if T is None else T
    sched = schedules.linear(T) if schedule == "linear" else schedules.cosine(T)
    if steps is None:
        steps = sizes.mixture_train_steps if preset.data == "mixture_8" else sizes.digits_train_steps
    if learn_sigma is None:
        learn_sigma = loss_type in ("vlb", "hybrid")
    cfg = TrainConfig(**{**preset.train, "bins": preset.bins, **train_overrides, "steps": int(steps),
                         "loss_type": loss_type, "objective": objective, "seed": seed})
    num_classes = NUM_CLASSES[preset.data] if preset.conditional else 0

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_architecture(preset.architecture, num_classes, objective, learn_sigma, **preset.model)

    with torch.random.fork_rng(devices=[]):  # the spec only (a CPU build takes milliseconds; the meta device
        spec = model_spec(build_architecture(preset.architecture, num_classes, objective, learn_sigma,  # imports
                                             **preset.model))  # seconds of torch internals on first use)
    key_config = {"preset": name, "preset_spec": asdict(preset), "data": _data_spec(preset), "model": spec,
                  "schedule": sched, "train": asdict(cfg)}
    return Resolved(name=name, preset=preset, sched=sched, cfg=cfg, objective=objective, learn_sigma=learn_sigma,
                    seed=seed, build=build, key_config=key_config, args=args)


def pretrained(name: str, loss_type: str = "simple", objective: str | None = None, steps: int | None = None,
               schedule: str | None = None, T: int | None = None, learn_sigma: bool | None = None,
               profile: str | None = None, seed: int = 0, device: str | torch.device | None = None,
               cache: bool = True, progress: bool = True, retrain: bool = False,
               **train_overrides: Any) -> TrainResult:
    """A trained lesson model: the shipped one (loaded in well under 2 s), from the cache, or trained now.

    In the ``ci`` and ``cpu`` profiles, arguments left at their defaults (or set to the shipped values) return the
    model shipped in ``ddpm_lessons/pretrained/`` (``ddpm-lessons lesson-models list``): the digits U-Net with the
    "simple", "vlb" (learned variance) or "hybrid" loss; the mixture MLP with "simple", "vlb" (fixed or learned
    variance) or "hybrid"; "digits_cfg". Any other configuration (other steps, schedule, seed, T, overrides), and
    the ``gpu`` profile's bigger default sizes, train and cache as before (see ``ddpm_lessons.cache.get_or_train``).

    Args:
        name: one of :data:`PRESETS` -- "mixture_8", "mixture_8_cond", "digits_cfg", "digits".
        loss_type: "simple", "vlb" or "hybrid" ("hybrid" and "vlb" default to ``learn_sigma=True``).
        objective: what the network predicts, "eps", "x0" or "v"; None: the preset's ("v" for "digits_cfg",
            "eps" for the others).
        steps: optimiser steps; None takes ``ddpm_lessons.config.sizes(profile)`` (mixture / digits steps), or the
            shipped model's in the ``ci`` and ``cpu`` profiles when one fits.
        schedule: "linear" ([DDPM]) or "cosine" ([IDDPM]); None: the preset's ("cosine" for "digits_cfg",
            "linear" for the others). T defaults to ``sizes().T``.
        learn_sigma: learn the reverse variance ([IDDPM]); None: True for the "vlb" and "hybrid" losses.
        profile: "ci", "cpu" or "gpu"; None: the active profile.
        seed: training seed (data draw, initialisation, noise).
        device: device of the returned model (and of training); None: the profile's device.
        cache: read and write the model cache when training.
        retrain: ignore the shipped models and train this profile's configuration (cached like any other); to
            reproduce a shipped model and its card, use ``ddpm-lessons lesson-models retrain ID``.
        train_overrides: further :class:`TrainConfig` fields (e.g. ``ema_decay=0``, ``lr_decay="none"``).

    Returns:
        :class:`TrainResult`; sample from ``result.ema_model`` with ``result.sched``. ``result.meta`` names the data
        (and ``shipped``: True for a shipped model, whose ``result.card`` is its model card and whose
        ``result.model`` is the EMA model: only EMA weights are shipped).
    """
    from ddpm_lessons import config, lesson_models
    from ddpm_lessons.cache import get_or_train

    prof = profile or config.profile()
    dev = torch.device(device) if device is not None else config.device()
    kw = dict(loss_type=loss_type, objective=objective, schedule=schedule, T=T, learn_sigma=learn_sigma, seed=seed,
              **train_overrides)
    if not retrain and (steps is not None or prof in SHIPPED_PROFILES):
        shipped_try = resolve(name, steps=steps, profile=prof if steps is not None else _SHIPPED_SIZES, **kw)
        model_id = lesson_models.find(shipped_try.fingerprint())
        if model_id is not None:
            return lesson_models.load(model_id, device=dev)
    r = resolve(name, steps=steps, profile=prof, **kw)
    meta = {"preset": name, "data": r.preset.data, "conditional": r.preset.conditional, "shipped": False}

    def fit(model: nn.Module) -> TrainResult:
        x, y = r.data()
        return train(model.to(dev), r.sched, x, y, r.cfg, progress=progress, meta=meta)

    result = get_or_train(r.key_config, r.build, fit, name=name, cache=cache, map_location=dev)
    result.sched = r.sched
    return result
