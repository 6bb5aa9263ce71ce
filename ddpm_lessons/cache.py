"""Storing trained models: the one cache folder, atomic writes, checkpoints, cache keys and fingerprints.

* :func:`cache_dir` -- ``$DDPM_LESSONS_CACHE``, else ``~/.cache/ddpm_lessons/models``: every file this package writes
  on its own (trained lesson models, classifiers, and under ``data/`` the digits split read from scikit-learn once,
  so that later kernels skip its 2-4 s import) goes there.
* :func:`atomic_write` / :func:`atomic_torch_save` -- write to a hidden temporary file beside the target, fsync,
  ``os.replace``: a reader sees the old file or the complete new one, never a partial file.
* :func:`save_checkpoint` / :func:`load` -- a :class:`~ddpm_lessons.train.TrainResult` as a ``torch.save`` file of
  plain tensors and JSON-like values, read back with ``weights_only=True`` (no arbitrary unpickling).
* :func:`cache_key` / :func:`fingerprint` -- hex SHA-256 of the canonical JSON of a configuration (tensors by the
  hash of their bytes, dataclasses as dicts). The cache key adds the package version (a new release retrains the
  user's cache); the fingerprint of a shipped lesson model adds only
  :data:`ddpm_lessons.train.TRAINING_SEMANTICS_VERSION`, bumped by hand when the loop or a loss changes meaning,
  so that editing a docstring does not invalidate shipped weights while changing what decides them does.
* :func:`get_or_train` -- return the trained model for a configuration from the cache, or train and store it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from ddpm_lessons import distributed as ddp
from ddpm_lessons.models import build_model, model_spec
from ddpm_lessons.schedules import Schedule
from ddpm_lessons.train import TRAINING_SEMANTICS_VERSION, TrainConfig, TrainResult

__all__ = ["cache_dir", "atomic_write", "atomic_torch_save", "save_checkpoint", "load", "canonical", "cache_key",
           "fingerprint", "get_or_train", "schedule_spec", "schedule_from_spec", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ddpm_lessons.checkpoint/1"


def cache_dir() -> Path:
    """``$DDPM_LESSONS_CACHE`` if set, else ``~/.cache/ddpm_lessons/models`` (created on first write)."""
    env = os.environ.get("DDPM_LESSONS_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ddpm_lessons" / "models"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary file in ``path``'s folder, fsync, then ``os.replace`` it onto ``path``.

    If ``write`` raises, the temporary file is removed and the error propagates; after a hard kill a hidden
    ``.<name>.*.tmp`` may stay behind, never a partial ``path``. The file ends up with mode 0644.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private (0600); the file is as readable as any other written file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


# --------------------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------------------


def schedule_spec(sched: Schedule) -> dict[str, Any]:
    """:meth:`Schedule.spec`: a plain, exact description (name, T, β_1..β_T in float64; more for respaced ones)."""
    return sched.spec()


def schedule_from_spec(spec: dict[str, Any]) -> Schedule:
    """:meth:`Schedule.from_spec`: rebuild a schedule saved by :func:`schedule_spec`."""
    return Schedule.from_spec(spec)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _plain(obj: Any) -> Any:
    """JSON-like copy (dicts, lists, str, numbers, bools, None) for storage with weights_only loading."""
    return json.loads(json.dumps(obj, default=str))


def _payload(result: TrainResult) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_spec": model_spec(result.model),
        "model": _cpu_state(result.model),
        "ema": _cpu_state(result.ema_model),
        "train_config": asdict(result.config),
        "history": {k: [float(v) for v in vals] for k, vals in result.history.items()},
        "sched": schedule_spec(result.sched) if result.sched is not None else None,
        "meta": _plain(result.meta),
    }


def save_checkpoint(result: TrainResult, path: str | os.PathLike) -> Path:
    """Save a :class:`TrainResult` atomically (only on DDP rank 0; other ranks return the path unchanged)."""
    if not ddp.is_main():
        return Path(path)
    return atomic_torch_save(_payload(result), path)


def _result_from_payload(payload: dict[str, Any], map_location: str | torch.device = "cpu",
                         build_fn: Callable[[], nn.Module] | None = None) -> TrainResult:
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"not a ddpm_lessons checkpoint (format {payload.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})" if isinstance(payload, dict)
                         else "not a ddpm_lessons checkpoint")
    model = build_fn() if build_fn is not None else build_model(payload["model_spec"])
    ema_model = copy.deepcopy(model)
    model.load_state_dict(payload["model"], strict=True)  # shape or key mismatches raise here
    ema_model.load_state_dict(payload["ema"], strict=True)
    model.to(map_location).eval()
    ema_model.to(map_location).eval().requires_grad_(False)
    cfg = TrainConfig(**payload["train_config"])
    sched = schedule_from_spec(payload["sched"]) if payload.get("sched") else None
    return TrainResult(model=model, ema_model=ema_model, history=payload["history"], config=cfg, sched=sched,
                       meta=payload.get("meta") or {})


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TrainResult:
    """Load a checkpoint written by :meth:`TrainResult.save` (safe ``weights_only`` unpickling)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    return _result_from_payload(payload, map_location)


# --------------------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------------------


def canonical(obj: Any) -> Any:
    """Canonical JSON-able form of a configuration (tensors by the SHA-256 of their bytes, tuples as lists,
    dataclasses as dicts, a :class:`Schedule` by its name and β values, never its private memo of tables)."""
    if isinstance(obj, Schedule):
        return canonical(schedule_spec(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical(asdict(obj))
    if torch.is_tensor(obj):
        t = obj.detach().cpu()
        return {"tensor": hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest(), "dtype": str(t.dtype),
                "shape": list(t.shape)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ValueError(f"key_config holds a value of type {type(obj).__name__} that has no canonical form")


def _digest(full: dict[str, Any], n: int) -> str:
    text = json.dumps(full, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def cache_key(key_config: dict[str, Any]) -> str:
    """First 20 hex digits of the SHA-256 of ``key_config``'s canonical JSON, the package version and
    :data:`~ddpm_lessons.train.TRAINING_SEMANTICS_VERSION`."""
    from ddpm_lessons import __version__

    return _digest({"config": canonical(key_config), "package_version": __version__,
                    "training_semantics": TRAINING_SEMANTICS_VERSION}, 20)


def fingerprint(key_config: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``key_config``'s canonical JSON and
    :data:`~ddpm_lessons.train.TRAINING_SEMANTICS_VERSION` (not the package version, not source text)."""
    return _digest({"config": canonical(key_config), "training_semantics": TRAINING_SEMANTICS_VERSION}, 16)


# --------------------------------------------------------------------------------------------------------------
# The model cache
# --------------------------------------------------------------------------------------------------------------


def _load_cached(path: Path, key: str, key_config: dict[str, Any], build_fn: Callable[[], nn.Module],
                 map_location: str | torch.device) -> tuple[TrainResult | None, str]:
    """(result, "") for a good cache file, else (None, what is wrong with it)."""
    try:
        with warnings.catch_warnings():  # torch's own warnings about a foreign file add nothing to ours
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- truncated zip, bad pickle, foreign file: all mean "rebuild"
        return None, f"is unreadable or corrupted ({type(err).__name__})"
    if not isinstance(payload, dict) or payload.get("cache_key") != key:
        stored = payload.get("cache_key") if isinstance(payload, dict) else None
        return None, f"holds key {stored!r}, not {key!r}"
    if payload.get("key_config") != canonical(key_config):
        return None, "holds a different configuration than its key says"
    try:
        result = _result_from_payload(payload, map_location, build_fn=build_fn)
    except Exception as err:  # noqa: BLE001 -- missing fields, wrong shapes or names in the state dict
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        return None, f"does not fit the model ({type(err).__name__}: {first})"
    result.meta = {**result.meta, "cache_path": str(path), "from_cache": True}
    return result, ""


def get_or_train(key_config: dict[str, Any], build_fn: Callable[[], nn.Module],
                 train_fn: Callable[[nn.Module], TrainResult], name: str = "model", cache: bool = True,
                 map_location: str | torch.device = "cpu") -> TrainResult:
    """Return the trained model for ``key_config`` from the cache, or build and train it and store it.

    The file is ``cache_dir() / f"{name}-{cache_key(key_config)}.pt"``. It stores the key and the canonical
    configuration; a file that cannot be read, holds another key, or whose weights do not fit ``build_fn()``'s model
    is reported with a ``UserWarning`` naming it and replaced by a freshly trained model. Only that one file is
    written (atomically); nothing else in the folder is touched. ``cache=False`` trains without reading or writing.
    """
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"name must be a plain file-name stem, got {name!r}")
    key = cache_key(key_config)
    path = cache_dir() / f"{name}-{key}.pt"
    if cache and path.exists():
        result, problem = _load_cached(path, key, key_config, build_fn, map_location)
        if result is not None:
            return result
        warnings.warn(f"model cache file {path} {problem}; retraining and replacing it", stacklevel=2)
    model = build_fn()
    result = train_fn(model)
    if cache and ddp.is_main():
        payload = _payload(result)
        payload["cache_key"] = key
        payload["key_config"] = canonical(key_config)
        atomic_torch_save(payload, path)
        result.meta = {**result.meta, "cache_path": str(path), "from_cache": False}
    return result
