"""Training loop, checkpoints and the model cache the notebooks share.

:func:`train` minimises ``ddpm_lessons.losses.training_losses`` ([DDPM] Algorithm 1 with L_simple, Eq. 14; the true
bound, Eq. 5/12; or the hybrid loss of [IDDPM] Eq. 16) for the model's objective (ε, x0 or v [V]) with AdamW [AdamW],
linear warm-up, optional cosine decay [SGDR], gradient-norm clipping and an exponential moving average of the
weights (EMA, decay 0.9999 in [DDPM] App. B; shorter runs want a shorter memory). Label dropout ``p_uncond``
replaces the class by the model's null label so one network learns both the conditional and the unconditional
noise prediction that classifier-free guidance combines [CFG] Sec. 3.2.

Practicalities: a ``tqdm.auto`` progress bar shows the loss; a NaN/inf loss stops training with a
``FloatingPointError`` naming the step; under one seed the run is bit-for-bit repeatable on the CPU (the global RNG is
forked, so the caller's random state is untouched); it uses fused AdamW and channels_last for images, on CUDA
also bf16 autocast and optionally ``torch.compile``, and checks the loss for NaN only every ``log_every`` steps so
that the loop never waits for the GPU. Under ``torchrun`` it trains with DistributedDataParallel (see
``ddpm_lessons.distributed``): every rank draws the same global batch, noise and time steps from shared seeds and
takes its own slice, so N processes train exactly like one process with the same global batch.

Model cache: :func:`get_or_train` keys a trained model by a hash of its full configuration, stores it under
``$DDPM_LESSONS_CACHE`` (default ``~/.cache/ddpm_lessons/models``) with an atomic write, and retrains (with a
warning naming the file) when a file is unreadable or does not match; :func:`pretrained` builds the models the
notebooks use ("mixture_8", "mixture_8_cond", "digits_cfg", "digits") with sizes from the active profile.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [V]     Salimans, Ho 2022, arXiv:2202.00512
    [AdamW] Loshchilov, Hutter 2019, arXiv:1711.05101
    [MinSNR] Hang et al. 2023, Efficient Diffusion Training via Min-SNR Weighting Strategy, arXiv:2303.09556
    [SGDR]  Loshchilov, Hutter 2017, arXiv:1608.03983
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
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddpm_lessons import distributed as ddp
from ddpm_lessons.models import build_model, model_spec
from ddpm_lessons.schedules import Schedule

__all__ = [
    "TrainConfig",
    "TrainResult",
    "EMA",
    "train",
    "min_snr_weight",
    "save_checkpoint",
    "load",
    "atomic_torch_save",
    "cache_dir",
    "cache_key",
    "get_or_train",
    "pretrained",
    "PRESETS",
    "schedule_spec",
    "schedule_from_spec",
]

LOSS_TYPES = ("simple", "vlb", "hybrid")
LR_DECAYS = ("none", "cosine")
CHECKPOINT_FORMAT = "ddpm_lessons.checkpoint/1"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`. Every field enters the model-cache key."""

    steps: int = 2000  # optimiser steps
    batch_size: int = 256  # global batch, split evenly over DDP ranks
    lr: float = 1e-3  # peak learning rate, reached after `warmup` steps
    warmup: int = 100  # linear warm-up from lr/warmup (5000 steps in [DDPM] App. B)
    lr_decay: str = "cosine"  # "cosine": to min_lr_ratio * lr at the last step; "none": constant after warm-up
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0  # max global gradient norm ([DDPM] App. B: 1.0); None disables
    ema_decay: float = 0.999  # 0 disables the average (the EMA model then equals the model)
    ema_warmup: bool = True  # use min(ema_decay, (1 + n) / (10 + n)) so early weights are forgotten quickly
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    p_uncond: float = 0.0  # label dropout probability for classifier-free guidance ([CFG]: 0.1 or 0.2)
    loss_type: str = "simple"  # "simple" | "vlb" | "hybrid" (see ddpm_lessons.losses.training_losses)
    lambda_vlb: float = 1e-3  # weight of the VLB term in the hybrid loss ([IDDPM] Sec. 3.1)
    snr_gamma: float | None = None  # Min-SNR-gamma weighting ([MinSNR]; gamma = 5 there); None: uniform as L_simple
    objective: str | None = None  # if set, must equal model.objective (a guard for configs and the cache key)
    seed: int = 0
    device: str | None = None  # None: the model's device
    bf16: bool = True  # bf16 autocast of the forward pass, CUDA only
    compile: bool = False  # torch.compile the model for training
    channels_last: bool = True  # channels_last memory format for image models (about 15% faster on CPU too)
    log_every: int = 50  # history interval (and NaN check interval on CUDA)
    max_seconds: float | None = None  # stop early after this wall time (makes the run timing dependent)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(isinstance(self.steps, int) and self.steps >= 1, f"steps must be an integer >= 1, got {self.steps!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr!r}")
        need(isinstance(self.warmup, int) and self.warmup >= 0, f"warmup must be an integer >= 0, got {self.warmup!r}")
        need(self.lr_decay in LR_DECAYS, f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        need(0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(0.0 <= self.p_uncond <= 1.0, f"p_uncond must be in [0, 1], got {self.p_uncond!r}")
        need(self.loss_type in LOSS_TYPES, f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        need(self.objective in (None, "eps", "x0", "v"),
             f"objective must be None, 'eps', 'x0' or 'v', got {self.objective!r}")
        need(self.snr_gamma is None or (math.isfinite(self.snr_gamma) and self.snr_gamma > 0),
             f"snr_gamma must be a finite number > 0 or None, got {self.snr_gamma!r}")
        need(self.snr_gamma is None or self.loss_type == "simple",
             f"snr_gamma reweights the 'simple' loss only, got loss_type={self.loss_type!r}")
        need(isinstance(self.log_every, int) and self.log_every >= 1,
             f"log_every must be an integer >= 1, got {self.log_every!r}")
        need(self.max_seconds is None or self.max_seconds > 0,
             f"max_seconds must be > 0 or None, got {self.max_seconds!r}")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))

    def lr_at(self, step: int) -> float:
        """Learning rate used for optimiser step ``step`` (1-based)."""
        if self.warmup and step <= self.warmup:
            return self.lr * step / self.warmup
        if self.lr_decay == "none":
            return self.lr
        span = max(self.steps - self.warmup, 1)
        progress = min(max(step - self.warmup, 0) / span, 1.0)
        floor = self.min_lr_ratio * self.lr
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))  # [SGDR] Eq. 5


def min_snr_weight(sched: Schedule, gamma: float, objective: str) -> torch.Tensor:
    """Min-SNR-gamma weights per time step, shape (T+1,) float64 (entry 0 unused), for the objective's MSE.

    [MinSNR] weights the x0-MSE by min(SNR_t, gamma). The ε-MSE equals SNR_t times the x0-MSE and the v-MSE
    equals (SNR_t + 1) times it, so the same weighting is min(SNR_t, gamma) / SNR_t for "eps" and
    min(SNR_t, gamma) / (SNR_t + 1) for "v". Low-noise steps (large SNR) are down-weighted; high-noise steps keep
    the weight of L_simple for ε.
    """
    from ddpm_lessons.forward import _check_objective

    _check_objective(objective)
    snr = sched.snr.clone()
    snr[0] = snr[1]  # index 0 (no noise) is never drawn; keep the table finite
    clipped = snr.clamp(max=float(gamma))
    if objective == "eps":
        return clipped / snr
    if objective == "v":
        return clipped / (snr + 1.0)
    return clipped


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model, its EMA copy (sample from this one), the history.

    ``history`` holds lists ``step``, ``loss`` (mean over the interval), ``lr`` and ``time`` (seconds since the start),
    one entry every ``log_every`` steps: ``plt.plot(h["step"], h["loss"])``. ``sched`` and ``meta`` (data set name
    and the like) travel with checkpoints. Both models are returned in eval mode on the training device.
    """

    model: nn.Module
    ema_model: nn.Module
    history: dict[str, list[float]]
    config: TrainConfig
    sched: Schedule | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall time of the training loop."""
        return float(self.history["time"][-1]) if self.history.get("time") else 0.0

    def save(self, path: str | os.PathLike) -> Path:
        """Write model + EMA + config + history (+ schedule, meta) to ``path`` atomically (see :func:`load`)."""
        return save_checkpoint(self, path)


class EMA:
    """Exponential moving average of a model's parameters: θ̄ ← d θ̄ + (1 - d) θ after each step ([DDPM] App. B).

    With ``warmup`` the decay at update n is min(decay, (1 + n)/(10 + n)) so the average forgets the random
    initialisation quickly in short runs. Buffers are copied. The update uses foreach kernels and no host sync.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.warmup = warmup
        self.n = 0
        self._ema_p = [p for p in self.module.parameters() if p.dtype.is_floating_point]
        self._ema_b = list(self.module.buffers())
        self._source: tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current weights (same architecture as the copy)."""
        if self._source is None or self._source[0] is not model:  # cache the lists: no module walk per step
            params = [p.detach() for p in model.parameters() if p.dtype.is_floating_point]
            self._source = (model, params, list(model.buffers()))
        _, new_p, new_b = self._source
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n)) if self.warmup else self.decay
        if self._ema_p:
            torch._foreach_lerp_(self._ema_p, new_p, 1.0 - d)
        for b_ema, b in zip(self._ema_b, new_b, strict=True):
            b_ema.copy_(b)


class _Net(nn.Module):
    """The model as the loss sees it: autocast forward, float32 output, channels_last input, model attributes.

    Wraps the (possibly DDP-wrapped and/or compiled) network ``inner`` while exposing ``objective``,
    ``learn_sigma``, ``num_classes`` and ``null_label`` of the underlying ``model``.
    """

    def __init__(self, inner: nn.Module, model: nn.Module, autocast: bool, channels_last: bool) -> None:
        super().__init__()
        self.inner = inner
        self.objective = getattr(model, "objective", "eps")
        self.learn_sigma = getattr(model, "learn_sigma", False)
        self.num_classes = getattr(model, "num_classes", 0)
        self.null_label = getattr(model, "null_label", None)
        self._autocast = autocast
        self._channels_last = channels_last

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self._channels_last and xt.ndim == 4:
            xt = xt.contiguous(memory_format=torch.channels_last)
        if self._autocast:
            with torch.autocast(device_type=xt.device.type, dtype=torch.bfloat16):
                out = self.inner(xt, t, cond)
            return out.float()  # the losses' arithmetic (KL, log-likelihood) stays in float32
        return self.inner(xt, t, cond)


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _noise_generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def train(model: nn.Module, sched: Schedule, data_x: torch.Tensor, data_y: torch.Tensor | None = None,
          cfg: TrainConfig | None = None, *, progress: bool = True, meta: dict[str, Any] | None = None,
          **overrides: Any) -> TrainResult:
    """Train ``model`` on ``data_x`` (N, ...) (with labels ``data_y`` (N,) for a class-conditional model).

    Args:
        model: a model following the package protocol (``model(xt, t, cond)``, ``objective``, ``learn_sigma``,
            ``num_classes``, ``null_label``); trained in place and returned as ``result.model``.
        sched: the diffusion schedule (a full chain, not a respaced one).
        data_x: training data (N, D) or (N, C, H, W), float.
        data_y: class ids (N,) in 0..num_classes-1, or None (unconditional training; a conditional model then
            always sees its null label).
        cfg: a :class:`TrainConfig`; keyword ``overrides`` replace its fields (``train(..., steps=100)``).
        progress: show a ``tqdm.auto`` bar with the running loss (rank 0 only).
        meta: free-form, JSON-like facts to store with the result (data set name, preset).

    Returns:
        :class:`TrainResult` with the model, its EMA copy, the history and the config.

    Raises:
        ValueError: inconsistent inputs (naming the argument).
        FloatingPointError: the loss became NaN or infinite ("loss became nan at step 123").
    """
    from ddpm_lessons.data import batches
    from ddpm_lessons.losses import training_losses

    cfg = dataclasses.replace(cfg or TrainConfig(), **overrides)
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a ddpm_lessons.schedules.Schedule, got {type(sched).__name__}")
    if not torch.equal(sched.timesteps, torch.arange(sched.T + 1)):
        raise ValueError("sched is a respaced chain; train on the full schedule and respace it for sampling")
    if not torch.is_tensor(data_x) or data_x.ndim < 2 or data_x.shape[0] < 1 or not data_x.is_floating_point():
        raise ValueError("data_x must be a float tensor of shape (N, ...) with N >= 1")
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if data_y is not None:
        if num_classes <= 0:
            raise ValueError("data_y was given but the model is unconditional (model.num_classes is 0)")
        if data_y.shape != (data_x.shape[0],):
            raise ValueError(f"data_y must have shape ({data_x.shape[0]},), got {tuple(data_y.shape)}")
        if int(data_y.min()) < 0 or int(data_y.max()) >= num_classes:
            raise ValueError(f"data_y must hold class ids in 0..{num_classes - 1}")
        data_y = data_y.long()
    elif cfg.p_uncond > 0:
        raise ValueError("p_uncond > 0 needs labels data_y (label dropout of an unconditional data set)")
    objective = getattr(model, "objective", "eps")
    if cfg.objective is not None and cfg.objective != objective:
        raise ValueError(f"cfg.objective={cfg.objective!r} but model.objective={objective!r}")

    device = torch.device(cfg.device) if cfg.device is not None else _model_device(model)
    distributed = ddp.init_from_env(device)
    device = ddp.local_device(device)
    rank, world = ddp.rank(), ddp.world_size()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of processes ({world})")
    if cfg.batch_size > data_x.shape[0]:
        raise ValueError(f"batch_size must be in 1..{data_x.shape[0]} (the data-set size), got {cfg.batch_size}")
    cuda = device.type == "cuda"
    channels_last = cfg.channels_last and data_x.ndim == 4
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    data_x = data_x.to(device)
    data_y = data_y.to(device) if data_y is not None else None
    B, b = cfg.batch_size, cfg.batch_size // world
    sl = slice(rank * b, (rank + 1) * b)  # this rank's share of every global batch
    main = ddp.is_main()

    fork_devices = [device] if cuda else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(cfg.seed * 1000 + rank)  # dropout masks: distinct per rank, repeatable per seed
        g_data = torch.Generator().manual_seed(cfg.seed)  # the same on every rank: same global batches
        g_noise = _noise_generator(cfg.seed + 7919, device)  # the same on every rank: t, eps, label dropout
        inner: nn.Module = model
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            # DDP broadcasts rank 0's weights to every rank here; gradients are all-reduced in backward.
            inner = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
        if cfg.compile:
            inner = torch.compile(inner)
        net = _Net(inner, model, autocast=cfg.bf16 and cuda, channels_last=channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr_at(1), betas=cfg.adam_betas, weight_decay=cfg.weight_decay,
                                fused=True)  # fused kernels exist on CPU and CUDA (8% faster than foreach on CPU)
        stream = batches(data_x, data_y, batch_size=B, generator=g_data)
        null = getattr(model, "null_label", None)
        null = num_classes if null is None else int(null)

        snr_weight = None if cfg.snr_gamma is None else min_snr_weight(sched, cfg.snr_gamma, objective).to(device)
        history: dict[str, list[float]] = {"step": [], "loss": [], "lr": [], "time": []}
        loss_sum = torch.zeros((), device=device)
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        bad_val = torch.zeros((), device=device)
        check_every = 1 if device.type == "cpu" else cfg.log_every
        since_log = 0
        bar = None
        if progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, desc="training", leave=False)
        model.train()
        start = time.perf_counter()
        step = 0
        try:
            for step in range(1, cfg.steps + 1):
                x0, y = next(stream)
                x0 = x0[sl]
                t = torch.randint(1, sched.T + 1, (B,), generator=g_noise, device=device)[sl]  # [DDPM] Alg. 1
                noise = torch.randn((B, *x0.shape[1:]), generator=g_noise, device=device)[sl]
                cond = None
                if y is not None:
                    cond = y[sl]
                    if cfg.p_uncond > 0:
                        drop = torch.rand(B, generator=g_noise, device=device)[sl] < cfg.p_uncond
                        cond = torch.where(drop, torch.full_like(cond, null), cond)  # [CFG] Alg. 1
                lr = cfg.lr_at(step)
                for group in opt.param_groups:
                    group["lr"] = lr
                loss = training_losses(net, sched, x0, t=t, noise=noise, cond=cond, loss_type=cfg.loss_type,
                                       lambda_vlb=cfg.lambda_vlb)
                if snr_weight is not None:
                    loss = loss * snr_weight[t].to(loss.dtype)
                loss = loss.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                opt.step()
                ema.update(model)

                detached = loss.detach().float()
                newly_bad = (bad_step < 0) & ~torch.isfinite(detached)
                bad_step = torch.where(newly_bad, torch.full_like(bad_step, step), bad_step)
                bad_val = torch.where(newly_bad, detached, bad_val)
                loss_sum += torch.nan_to_num(detached)
                since_log += 1
                last = step == cfg.steps
                if step % check_every == 0 or step % cfg.log_every == 0 or last:
                    if int(bad_step) >= 0:  # host sync: every step on the CPU, every log_every steps on CUDA
                        raise FloatingPointError(
                            f"loss became {float(bad_val)} at step {int(bad_step)} (lr={cfg.lr_at(int(bad_step)):.3g},"
                            f" loss_type={cfg.loss_type!r}); lower lr, keep grad_clip, or check the data for "
                            f"NaN/inf")
                if step % cfg.log_every == 0 or last:
                    mean_loss = float(loss_sum) / since_log
                    elapsed = time.perf_counter() - start
                    history["step"].append(step)
                    history["loss"].append(mean_loss)
                    history["lr"].append(lr)
                    history["time"].append(elapsed)
                    loss_sum.zero_()
                    since_log = 0
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                if bar is not None:
                    bar.update(1)
                if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
                    if since_log:  # record the tail of the last interval
                        history["step"].append(step)
                        history["loss"].append(float(loss_sum) / since_log)
                        history["lr"].append(lr)
                        history["time"].append(time.perf_counter() - start)
                    break
        finally:
            if bar is not None:
                bar.close()
    model.eval()
    ema.module.eval()
    run_meta = dict(meta or {})
    run_meta.setdefault("steps_done", step)
    run_meta.setdefault("world_size", world)
    return TrainResult(model=model, ema_model=ema.module, history=history, config=cfg, sched=sched, meta=run_meta)


# --------------------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------------------


def schedule_spec(sched: Schedule) -> dict[str, Any]:
    """A plain, exact description of a (full-chain) schedule: its name and β_1..β_T as float64 values."""
    return {"name": sched.name, "T": int(sched.T), "beta": sched.beta[1:].clone()}


def schedule_from_spec(spec: dict[str, Any]) -> Schedule:
    """Rebuild a schedule saved by :func:`schedule_spec`."""
    from ddpm_lessons.schedules import from_beta

    return from_beta(torch.as_tensor(spec["beta"], dtype=torch.float64), name=str(spec.get("name", "custom")))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target's folder, fsync, then ``os.replace`` onto ``path``.

    A reader sees either the old file or the complete new one, never a partial file; if the write fails the
    temporary file is removed (after a hard kill a hidden ``.<name>.*.tmp`` may stay behind, never ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


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


def _plain(obj: Any) -> Any:
    """JSON-like copy (dicts, lists, str, numbers, bools, None) for storage with weights_only loading."""
    return json.loads(json.dumps(obj, default=str))


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
# Model cache
# --------------------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$DDPM_LESSONS_CACHE`` if set, else ``~/.cache/ddpm_lessons/models`` (created on first write)."""
    env = os.environ.get("DDPM_LESSONS_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ddpm_lessons" / "models"


def _canonical(obj: Any) -> Any:
    """Canonical JSON-able form of a configuration (tensors by value, tuples as lists, dataclasses as dicts)."""
    if isinstance(obj, Schedule):  # by value (name, T, beta), never its private memo of derived tables
        return _canonical(schedule_spec(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(asdict(obj))
    if torch.is_tensor(obj):
        t = obj.detach().cpu()
        return {"tensor": hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest(), "dtype": str(t.dtype),
                "shape": list(t.shape)}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ValueError(f"key_config holds a value of type {type(obj).__name__} that has no canonical form")


def cache_key(key_config: dict[str, Any]) -> str:
    """Hex SHA-256 (first 20 characters) of the canonical JSON of ``key_config`` plus the package version."""
    from ddpm_lessons import __version__

    full = {"config": _canonical(key_config), "package_version": __version__}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


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
    if payload.get("key_config") != _canonical(key_config):
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
        payload["key_config"] = _canonical(key_config)
        atomic_torch_save(payload, path)
        result.meta = {**result.meta, "cache_path": str(path), "from_cache": False}
    return result


# --------------------------------------------------------------------------------------------------------------
# Ready-made models for the notebooks
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """How :func:`pretrained` builds one named model: data, network and training defaults."""

    data: str  # "mixture_8" | "digits"
    conditional: bool
    train: dict[str, Any]  # TrainConfig defaults (steps come from ddpm_lessons.config.sizes())
    model: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the model preset
    n_train: int = 0  # number of 2-D training points drawn from the mixture (0 for image sets)
    objective: str = "eps"  # what the network predicts unless pretrained(objective=...) says otherwise
    schedule: str = "linear"  # noise schedule unless pretrained(schedule=...) says otherwise


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


def _preset_data(preset: Preset, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    from ddpm_lessons import data

    if preset.data == "mixture_8":
        g = torch.Generator().manual_seed(10_000 + seed)
        x, y = data.mixture_8().sample(preset.n_train, generator=g)
        return x.float(), (y.long() if preset.conditional else None)
    if preset.data == "digits":
        x, y = data.digits("train")
        return x, (y if preset.conditional else None)
    raise ValueError(f"unknown preset data {preset.data!r}")


def _preset_model(name: str, preset: Preset, objective: str, learn_sigma: bool) -> nn.Module:
    from ddpm_lessons.models import digits_unet, mixture_mlp

    if preset.data == "mixture_8":
        return mixture_mlp(num_classes=8 if preset.conditional else 0, objective=objective, learn_sigma=learn_sigma,
                           **preset.model)
    return digits_unet(num_classes=10 if preset.conditional else 0, objective=objective, learn_sigma=learn_sigma,
                       **preset.model)


def pretrained(name: str, loss_type: str = "simple", objective: str | None = None, steps: int | None = None,
               schedule: str | None = None, T: int | None = None, learn_sigma: bool | None = None,
               profile: str | None = None, seed: int = 0, device: str | torch.device | None = None,
               cache: bool = True, progress: bool = True, **train_overrides: Any) -> TrainResult:
    """A trained model for a notebook, from the cache or trained now (seconds in the ``ci`` profile).

    Args:
        name: one of :data:`PRESETS` -- "mixture_8", "mixture_8_cond", "digits_cfg", "digits".
        loss_type: "simple", "vlb" or "hybrid" ("hybrid" and "vlb" default to ``learn_sigma=True``).
        objective: what the network predicts, "eps", "x0" or "v"; None: the preset's ("v" for "digits_cfg",
            "eps" for the others).
        steps: optimiser steps; None takes ``ddpm_lessons.config.sizes(profile)`` (mixture / digits steps).
        schedule: "linear" ([DDPM]) or "cosine" ([IDDPM]); None: the preset's ("cosine" for "digits_cfg",
            "linear" for the others). T defaults to ``sizes().T``.
        learn_sigma: learn the reverse variance ([IDDPM]); None: True for the "vlb" and "hybrid" losses.
        profile: "ci", "cpu" or "gpu"; None: the active profile.
        seed: training seed (data draw, initialisation, noise).
        device: training device; None: the profile's device.
        cache: read and write the model cache (see :func:`get_or_train`).
        train_overrides: further :class:`TrainConfig` fields (e.g. ``ema_decay=0``, ``lr_decay="none"``).

    Returns:
        :class:`TrainResult`; sample from ``result.ema_model`` with ``result.sched``. ``result.meta`` names the data.
    """
    from ddpm_lessons import config, schedules

    if name not in PRESETS:
        raise ValueError(f"name must be one of {sorted(PRESETS)}, got {name!r}")
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
    dev = torch.device(device) if device is not None else config.device()
    train_kw = {**preset.train, **train_overrides, "steps": int(steps), "loss_type": loss_type,
                "objective": objective, "seed": seed}
    cfg = TrainConfig(**train_kw)

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _preset_model(name, preset, objective, learn_sigma)

    probe = build()
    key_config = {"preset": name, "data": {"name": preset.data, "n_train": preset.n_train,
                                           "conditional": preset.conditional},
                  "model": model_spec(probe), "schedule": sched, "train": asdict(cfg)}
    meta = {"preset": name, "data": preset.data, "conditional": preset.conditional}

    def fit(model: nn.Module) -> TrainResult:
        x, y = _preset_data(preset, seed)
        return train(model.to(dev), sched, x, y, cfg, progress=progress, meta=meta)

    result = get_or_train(key_config, build, fit, name=name, cache=cache, map_location=dev)
    result.sched = sched
    return result
