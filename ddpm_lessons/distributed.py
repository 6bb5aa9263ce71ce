"""Data-parallel training under ``torchrun``: process-group set-up from the environment and rank helpers.

``torchrun --nproc_per_node=N ...`` starts N copies of the same program with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init_from_env` joins the process group when
``WORLD_SIZE > 1`` (NCCL on CUDA, Gloo on CPU) and is a no-op otherwise, so the same entry point runs unchanged
alone or distributed. ``ddpm_lessons.train.train`` then wraps the model in ``DistributedDataParallel`` [DDP]
(which broadcasts rank 0's initial weights and all-reduces gradients, so every rank holds the same weights after
every step), gives each rank its own shard of every shuffled epoch, and lets only rank 0 print and save.

References:
    [DDP] Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
          arXiv:2006.15704
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "is_main", "local_device", "barrier",
           "cleanup"]


def _env_world_size() -> int:
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"WORLD_SIZE must be a positive integer, got {value!r}")
    return n


def init_from_env(device: str | torch.device | None = None) -> bool:
    """Join the process group described by torchrun's environment when ``WORLD_SIZE > 1``.

    The backend is NCCL when ``device`` is CUDA (each rank then uses ``cuda:LOCAL_RANK``) and Gloo otherwise.
    Returns True when this process is part of a group of more than one process (already initialised or now).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if _env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build of torch")
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return dist.get_world_size() > 1


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0: the only process that prints, shows progress bars and writes files."""
    return rank() == 0


def local_device(device: str | torch.device) -> torch.device:
    """``device`` with the CUDA index replaced by ``LOCAL_RANK`` when distributed on CUDA."""
    dev = torch.device(device)
    if dev.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
