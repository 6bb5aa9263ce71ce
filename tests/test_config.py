"""Profiles, sizes, the training device and the cache folder (ddpm_lessons.config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpm_lessons import config


def test_profile_from_the_environment(monkeypatch):
    monkeypatch.delenv("DDPM_LESSONS_PROFILE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert config.profile() == "ci"
    monkeypatch.setenv("CI", "")
    assert config.profile() == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("DDPM_LESSONS_PROFILE", " CPU ")  # explicit wins over CI, case and spaces ignored
    monkeypatch.setenv("CI", "1")
    assert config.profile() == "cpu"
    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "laptop")
    with pytest.raises(ValueError, match="laptop"):
        config.profile()


def test_sizes_per_profile(monkeypatch):
    ci, cpu, gpu = (config.sizes(name) for name in config.PROFILES)
    assert (ci.name, cpu.name, gpu.name) == config.PROFILES
    assert ci.T == cpu.T == gpu.T == 1000  # the maths is the same in every profile; only the sizes change
    for small, big in ((ci, cpu), (cpu, gpu)):
        assert small.mixture_train_steps <= big.mixture_train_steps and small.n_samples <= big.n_samples
    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "ci")
    assert config.sizes() is ci
    with pytest.raises(ValueError, match="profile"):
        config.sizes("tpu")


def test_device_is_cpu_outside_the_gpu_profile(monkeypatch):
    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "cpu")
    assert config.device() == torch.device("cpu")
    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "gpu")
    assert config.device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_cache_dir_is_the_package_cache(monkeypatch, tmp_path):
    from ddpm_lessons import cache

    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == cache.cache_dir() == Path(tmp_path / "c")
    monkeypatch.delenv("DDPM_LESSONS_CACHE")
    assert config.cache_dir() == cache.cache_dir()
