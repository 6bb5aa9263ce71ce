"""Data-parallel training: two CPU processes (gloo), started with torchrun's environment, end with the same weights,
and those weights are the ones a single process reaches with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    from ddpm_lessons import schedules
    from ddpm_lessons.models import MLPDenoiser
    from ddpm_lessons.train import TrainConfig, train

    rank = int(os.environ.get("RANK", "0"))
    torch.manual_seed(100 + rank)  # different initial weights on each rank: DDP must start from rank 0's
    model = MLPDenoiser(dim=2, hidden=32, num_blocks=1, emb_dim=16, num_classes=4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1024, 2, generator=g), torch.randint(0, 4, (1024,), generator=g)
    cfg = TrainConfig(steps=25, batch_size=64, lr=3e-3, warmup=5, p_uncond=0.2, log_every=5)
    r = train(model, schedules.linear(100), x, y, cfg, progress=False)
    torch.save({"model": r.model.state_dict(), "ema": r.ema_model.state_dict(), "loss": r.history["loss"],
                "world": r.meta["world_size"]}, os.path.join(sys.argv[1], f"rank{rank}.pt"))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(ddp_dir)],
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port), stderr=subprocess.PIPE)
             for r in range(2)]
    single = subprocess.Popen([sys.executable, "-c", WORKER, str(single_dir)], env=_env(), stderr=subprocess.PIPE)
    for p in [*procs, single]:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-3000:]

    r0, r1 = (torch.load(ddp_dir / f"rank{r}.pt", weights_only=True) for r in range(2))
    one = torch.load(single_dir / "rank0.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2 and one["world"] == 1
    for part in ("model", "ema"):
        for k, v in r0[part].items():
            assert torch.equal(v, r1[part][k]), f"{part}.{k} differs between the ranks"
    # each rank saw its own half of every batch, so their losses differ ...
    assert r0["loss"] != r1["loss"]
    # ... but the averaged gradient is the full batch's: the same weights as one process with batch 64, up to the
    # float32 summation order of the all-reduce (Adam's normalised steps keep that at the 1e-6 level over 25 steps)
    for k, v in one["model"].items():
        assert torch.allclose(r0["model"][k], v, rtol=1e-4, atol=1e-5), k


@pytest.mark.slow
def test_cli_train_runs_under_torchrun(tmp_path):
    out = tmp_path / "mixture.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ddpm_lessons.cli", "train", "--dataset", "mixture_8", "--n-train", "2000", "--steps", "10",
           "--batch-size", "64", "--device", "cpu", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, env=_env(DDPM_LESSONS_CACHE=str(tmp_path)), capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert out.is_file()
    assert proc.stdout.decode().count("world size 2") == 1  # only rank 0 prints
    from ddpm_lessons.cache import load

    r = load(out)
    assert r.meta["world_size"] == 2 and r.history["step"][-1] == 10
