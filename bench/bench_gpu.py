"""GPU benchmark: our ``ddpm_cifar10`` U-Net against diffusers' ``UNet2DModel`` in the same configuration.

Measures, in one run on one card, same batch and precision (bf16 autocast):
  * training throughput (images/s): ours eager / ours compiled (channels_last, fused AdamW) vs diffusers eager /
    diffusers compiled;
  * DDIM-50 sampling throughput at batch 256: ours (``ddpm_lessons.samplers.sample`` over a model compiled with
    CUDA graphs, coefficients as Python floats, no host synchronisation per step) vs diffusers' scheduler loop (eager);
  * model FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``) and the achieved fraction of the card's
    measured bf16 matmul throughput;
  * (CUDA only) whether one package training-loss step and a DDIM chain run without host synchronisation.
Prints a table and ratios against diffusers; targets (issue 9): training >= 1.5x diffusers compiled and >= 27% of
the matmul ceiling; DDIM-50 >= 3x diffusers' eager loop.

    python bench/bench_gpu.py                 # on a CUDA machine, ~4 minutes
    python bench/bench_gpu.py --smoke         # tiny sizes on the CPU: checks the script runs, numbers meaningless
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ddpm_lessons import samplers, schedules
from ddpm_lessons.models import UNet, count_parameters, ddpm_cifar10


def diffusers_unet(ch: int, image_size: int, smoke: bool) -> torch.nn.Module:
    """diffusers' UNet2DModel in the DDPM CIFAR-10 layout (google/ddpm-cifar10-32): widths ch·(1, 2, 2, 2),
    2 layers per block, attention at 16x16 (the second level), GroupNorm 32, dropout 0.1."""
    from diffusers import UNet2DModel

    mult = (1, 2) if smoke else (1, 2, 2, 2)
    down = ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D")[: len(mult)]
    up = ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")[-len(mult):]
    return UNet2DModel(sample_size=image_size, in_channels=3, out_channels=3, block_out_channels=[ch * m for m in mult],
                       layers_per_block=2, down_block_types=down, up_block_types=up, dropout=0.1,
                       norm_num_groups=8 if smoke else 32, attention_head_dim=None)


class DiffusersAdapter(torch.nn.Module):
    """Our model protocol over UNet2DModel: our t (1..T) is diffusers' timestep t - 1."""

    objective, learn_sigma, num_classes, null_label = "eps", False, 0, None

    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, xt, t, cond=None):
        return self.unet(xt, t - 1).sample


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn: Callable[[], None], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def matmul_tflops(device: torch.device, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    sec = timeit(lambda: a @ b, device, warmup=3, iters=20)
    return 2 * n ** 3 / sec / 1e12


def train_flops_per_image(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, call) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        out = call(model, x, t)
        out.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / x.shape[0]


def make_train_step(model, call, batch, image_size, device, use_bf16, channels_last):
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, fused=device.type == "cuda")
    x0 = torch.randn(batch, 3, image_size, image_size, device=device)
    if channels_last:
        x0 = x0.to(memory_format=torch.channels_last)
    sched = schedules.linear(1000)
    ab = sched.alpha_bar.float().to(device)

    def step():
        t = torch.randint(1, 1001, (batch,), device=device)
        eps = torch.randn_like(x0)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps  # [DDPM] Eq. 4
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = F.mse_loss(call(model, xt, t).float(), eps)  # [DDPM] Eq. 14
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def host_sync_report(model: torch.nn.Module, device: torch.device, image_size: int) -> str:
    """Run one package training-loss step (forward and backward) and a 2-step DDIM chain twice: the first call copies
    the schedule tables to the device, the second runs under ``torch.cuda.set_sync_debug_mode("error")``, where any
    host synchronisation raises. Returns one line for the report."""
    from ddpm_lessons import losses

    sched = schedules.linear(1000)
    g = torch.Generator(device).manual_seed(0)
    x0 = torch.randn(8, 3, image_size, image_size, device=device, generator=g)

    def once() -> None:
        model.train()
        t = torch.randint(1, sched.T + 1, (8,), device=device, generator=g)
        noise = torch.randn(x0.shape, device=device, generator=g)
        losses.training_losses(model, sched, x0, t=t, noise=noise).mean().backward()
        model.eval()
        with torch.no_grad():
            samplers.sample(model, sched, tuple(x0.shape), method="ddim", steps=2, progress=False, device=device,
                            generator=g)

    once()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        once()
        return "host synchronisations in one training-loss step and a DDIM chain: none"
    except RuntimeError as err:
        return f"host synchronisation found: {str(err).strip().splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
        model.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--sample-batch", type=int, default=256)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU; numbers meaningless")
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("no CUDA device: run with --smoke on the CPU to check the script, or on a GPU machine")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    smoke = args.smoke
    ch, image_size = (16, 16) if smoke else (128, 32)
    batch, sbatch = (4, 4) if smoke else (args.batch, args.sample_batch)
    iters, steps = (2, 3) if smoke else (args.iters, args.ddim_steps)
    use_bf16 = device.type == "cuda"
    compile_ok = not args.no_compile and device.type == "cuda"

    ours = (UNet(in_channels=3, ch=ch, ch_mult=(1, 2), num_res_blocks=2, attn_resolutions=(8,), image_size=16,
                 num_groups=8) if smoke else ddpm_cifar10()).to(device)
    theirs = DiffusersAdapter(diffusers_unet(ch, image_size, smoke)).to(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# bench_gpu  {datetime.date.today()}  device={name}  torch={torch.__version__}  "
          f"python={platform.python_version()}")
    import diffusers

    print(f"# diffusers={diffusers.__version__}  params ours={count_parameters(ours):,}  "
          f"diffusers={count_parameters(theirs):,}")

    def call(m, x, t):
        return m(x, t)

    peak = matmul_tflops(device, 1024 if smoke else 8192)
    xf = torch.randn(4, 3, image_size, image_size, device=device)
    tf = torch.randint(1, 1001, (4,), device=device)
    flops = train_flops_per_image(ours, xf, tf, call)
    print(f"# measured bf16 matmul: {peak:.1f} TFLOP/s; training FLOPs per image (fwd+bwd): {flops / 1e9:.1f} GFLOP")

    rows = []

    def run_train(name, model, compiled, channels_last):
        model.train()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        m = torch.compile(model) if compiled else model
        step = make_train_step(m, call, batch, image_size, device, use_bf16, channels_last)
        sec = timeit(step, device, warmup=3 if not compiled else 5, iters=iters)
        ips = batch / sec
        rows.append((f"train {name}", ips, flops * ips / 1e12 / peak))
        if channels_last:
            model.to(memory_format=torch.contiguous_format)

    run_train("diffusers eager", theirs, False, False)
    if compile_ok:
        run_train("diffusers compiled", theirs, True, False)
    run_train("ours eager", ours, False, device.type == "cuda")
    if compile_ok:
        run_train("ours compiled", ours, True, True)

    sched = schedules.linear(1000)
    # sampling FLOPs per image: forward only, one call per step
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        ours.eval()(xf, tf)
    fwd_flops = fc.get_total_flops() / 4

    def run_sample(name, model, compiled, ours_loop):
        model.eval()
        shape = (sbatch, 3, image_size, image_size)
        if ours_loop:
            m = torch.compile(model, mode="reduce-overhead") if compiled else model

            def go():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    samplers.sample(m, sched, shape, method="ddim", steps=steps, progress=False, device=device)
        else:
            from diffusers import DDIMScheduler

            sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                timestep_spacing="leading")
            sch.set_timesteps(steps)

            def go():
                x = torch.randn(shape, device=device)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    for k in sch.timesteps:
                        eps = model.unet(x, k).sample
                        x = sch.step(eps, k, x).prev_sample

        sec = timeit(go, device, warmup=1 if not compiled else 2, iters=1 if smoke else 3)
        ips = sbatch / sec
        rows.append((f"DDIM-{steps} {name}", ips, fwd_flops * steps * ips / 1e12 / peak))

    run_sample("diffusers eager loop", theirs, False, False)
    run_sample("ours eager", ours, False, True)
    if compile_ok:
        run_sample("ours compiled (CUDA graphs)", ours, True, True)

    if device.type == "cuda":
        print(host_sync_report(ours, device, image_size))

    base = {r[0].split()[0]: r[1] for r in rows if "diffusers" in r[0] and ("compiled" in r[0] or "DDIM" in r[0])}
    base.setdefault("train", next(r[1] for r in rows if r[0] == "train diffusers eager"))
    print(f"\n{'run':<42}{'images/s':>12}{'of matmul peak':>16}{'vs diffusers':>14}")
    for name, ips, frac in rows:
        ref = base.get(name.split()[0])
        print(f"{name:<42}{ips:>12.1f}{100 * frac:>15.1f}%{ips / ref:>13.2f}x")
    print("\n(training ratios are against diffusers compiled when compiled runs exist, else eager; "
          "sampling against diffusers' eager scheduler loop)")


if __name__ == "__main__":
    main()
