"""Profiles and devices: which sizes the notebooks run at, and where.

``profile()`` picks the sizes the notebooks use:

* ``ci``  -- ``CI=true`` or ``DDPM_LESSONS_PROFILE=ci``: short training for any model that is not shipped (the tests);
* ``cpu`` -- the default without CUDA: the shipped lesson models and the same evaluation sizes as ``ci``, each
  notebook in about 10-30 s on 2 CPU cores (bench/bench_notebooks.py);
* ``gpu`` -- CUDA present: bigger models and data.

The maths a notebook shows is the same in every profile; only sizes (training steps, sample counts, model width)
change. ``sizes(name)`` returns the numbers for one profile, so a notebook reads ``S = sizes()`` and uses
``S.mixture_train_steps``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

PROFILES = ("ci", "cpu", "gpu")


def profile() -> str:
    """Return the active profile name: ``ci``, ``cpu`` or ``gpu``.

    ``DDPM_LESSONS_PROFILE`` wins when set; otherwise ``CI=true`` selects ``ci``, and CUDA selects ``gpu``.
    """
    explicit = os.environ.get("DDPM_LESSONS_PROFILE", "").strip().lower()
    if explicit:
        if explicit not in PROFILES:
            raise ValueError(f"DDPM_LESSONS_PROFILE={explicit!r} is not one of {PROFILES}")
        return explicit
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return "ci"
    return "gpu" if torch.cuda.is_available() else "cpu"


def device() -> torch.device:
    """The device the notebooks train on: CUDA when present (and the profile is ``gpu``), else CPU."""
    if profile() == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass(frozen=True)
class Sizes:
    """Sizes a notebook reads from the active profile."""

    name: str
    T: int  # diffusion steps of the trained models
    mixture_train_steps: int  # optimiser steps for the 2-D MLP denoiser
    digits_train_steps: int  # optimiser steps for the digits U-Net
    n_samples: int  # 2-D samples drawn for metrics and plots
    n_images: int  # digit images generated per evaluation
    mc_samples: int  # Monte Carlo draws for the numeric checks
    batch_size: int


# Training steps (for models that are not shipped): cpu reaches the issue-4 quality targets in about 20 s (mixture)
# and 60 s (digits, two threads) on a 2-core machine (bench/bench_quality.py); ci trains a fraction of that. The
# evaluation sizes (samples, Monte Carlo draws) are the same in ci and cpu: both load the same shipped lesson models,
# so a learner's run on a laptop prints what the committed notebooks show, within each notebook's 30 s budget.
_SIZES = {
    "ci": Sizes("ci", T=1000, mixture_train_steps=1500, digits_train_steps=120, n_samples=2000, n_images=200,
                mc_samples=200_000, batch_size=256),
    "cpu": Sizes("cpu", T=1000, mixture_train_steps=4000, digits_train_steps=1000, n_samples=2000, n_images=200,
                 mc_samples=200_000, batch_size=256),
    "gpu": Sizes("gpu", T=1000, mixture_train_steps=20000, digits_train_steps=20000, n_samples=20000, n_images=5000,
                 mc_samples=4_000_000, batch_size=512),
}


def sizes(name: str | None = None) -> Sizes:
    """Sizes for profile ``name`` (default: the active profile)."""
    name = name or profile()
    if name not in _SIZES:
        raise ValueError(f"profile {name!r} is not one of {PROFILES}")
    return _SIZES[name]


def cache_dir() -> Path:
    """The package's one cache folder, :func:`ddpm_lessons.cache.cache_dir` (kept here for old imports)."""
    from .cache import cache_dir as _cache_dir

    return _cache_dir()
