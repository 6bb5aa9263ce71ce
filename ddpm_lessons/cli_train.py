"""``ddpm-lessons train`` and ``ddpm-lessons sample``: train a model to a checkpoint, draw samples to a PNG.

    ddpm-lessons train --dataset mixture_8 --steps 4000 --out mixture.pt
    ddpm-lessons train --dataset digits --conditional --p-uncond 0.1 --out digits.pt
    ddpm-lessons train --dataset cifar10 --data-dir ~/data --device cuda --compile --out cifar.pt
    torchrun --nproc_per_node=2 -m ddpm_lessons.cli_train train --dataset digits --out digits.pt   (DDP)
    ddpm-lessons sample --checkpoint digits.pt --sampler ddim --steps 50 --w 3 --out grid.png
    ddpm-lessons sample --preset mixture_8 --sampler ddpm --n 5000 --out scatter.png

``train`` runs unchanged under ``torchrun`` (see ``ddpm_lessons.distributed``); only rank 0 prints and writes.
Handlers return exit codes: 0 success, 2 bad arguments (with a message naming the option).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["add_subparsers", "cmd_train", "cmd_sample", "main", "DATASETS", "MODEL_PRESETS"]

DATASETS = ("mixture_8", "digits", "mnist", "fashion_mnist", "cifar10")
MODEL_PRESETS = ("mixture_mlp", "digits_unet", "mnist_unet", "ddpm_cifar10")
_DEFAULT_PRESET = {"mixture_8": "mixture_mlp", "digits": "digits_unet", "mnist": "mnist_unet",
                   "fashion_mnist": "mnist_unet", "cifar10": "ddpm_cifar10"}
_NUM_CLASSES = {"mixture_8": 8, "digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}


def add_subparsers(subparsers: Any) -> None:
    """Register the ``train`` and ``sample`` sub-commands on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("train", help="train a diffusion model and save a checkpoint",
                              description="Train a diffusion model (DDP under torchrun) and save a checkpoint.")
    p.add_argument("--dataset", choices=DATASETS, default="mixture_8")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX / CIFAR-10 python files")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST / CIFAR-10")
    p.add_argument("--preset", choices=MODEL_PRESETS, default=None, help="model (default: by data set)")
    p.add_argument("--conditional", action="store_true", help="class-conditional model (labels of the data set)")
    p.add_argument("--objective", choices=("eps", "x0", "v"), default="eps")
    p.add_argument("--loss", choices=("simple", "vlb", "hybrid"), default="simple")
    p.add_argument("--learn-sigma", action="store_true", help="learn the variance (implied by vlb / hybrid)")
    p.add_argument("--schedule", choices=("linear", "cosine"), default="linear")
    p.add_argument("--T", type=int, default=1000, help="diffusion steps")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's size)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--ema-decay", type=float, default=None)
    p.add_argument("--p-uncond", type=float, default=None, help="label dropout for classifier-free guidance")
    p.add_argument("--n-train", type=int, default=100_000, help="points drawn from the 2-D mixture")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the profile's device)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.set_defaults(handler=cmd_train)

    s = subparsers.add_parser("sample", help="draw samples from a checkpoint or preset into a PNG",
                              description="Draw samples and save an image grid (images) or a scatter plot (2-D).")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint written by `ddpm-lessons train`")
    src.add_argument("--preset", help="a ddpm_lessons.train.pretrained name (mixture_8, digits_cfg, ...)")
    s.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default: all T)")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 deterministic, 1 ancestral)")
    s.add_argument("--w", type=float, default=0.0, help="classifier-free guidance weight (0: conditional)")
    s.add_argument("--class", dest="cls", type=int, default=None,
                   help="class to draw (conditional models; default: all classes in turn)")
    s.add_argument("--n", type=int, default=None, help="number of samples (default 64 images / 2000 points)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None)
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    s.add_argument("--save-tensor", default=None, help="also save the samples as a .pt tensor")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--out", required=True, help="output PNG")
    s.set_defaults(handler=cmd_sample)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    from ddpm_lessons import data

    if args.dataset == "mixture_8":
        return data.mixture_8().sample(args.n_train, generator=torch.Generator().manual_seed(10_000 + args.seed))
    if args.dataset == "digits":
        return data.digits("train")
    if args.data_dir is None and not args.download:
        raise ValueError(f"--data-dir is required for --dataset {args.dataset} (or pass --download)")
    root = args.data_dir or str(Path.home() / ".cache" / "ddpm_lessons" / "data")
    if args.dataset in ("mnist", "fashion_mnist"):
        return data.load_mnist(root, "train", kind=args.dataset, download=args.download)
    return data.load_cifar10(root, "train", download=args.download)


def _build_model(preset: str, num_classes: int, objective: str, learn_sigma: bool) -> torch.nn.Module:
    from ddpm_lessons import models

    kw = dict(num_classes=num_classes, objective=objective, learn_sigma=learn_sigma)
    if preset == "mixture_mlp":
        return models.mixture_mlp(**kw)
    if preset == "digits_unet":
        return models.digits_unet(**kw)
    if preset == "mnist_unet":
        return models.UNet(in_channels=1, ch=64, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,),
                           dropout=0.1, image_size=28, **kw)
    return models.ddpm_cifar10(**kw)


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``train``: returns 0 on success, 2 on bad arguments."""
    from ddpm_lessons import config, schedules
    from ddpm_lessons import distributed as ddp
    from ddpm_lessons.train import PRESETS, TrainConfig, train

    preset = args.preset or _DEFAULT_PRESET[args.dataset]
    expected_ndim = 2 if args.dataset == "mixture_8" else 4
    if (preset == "mixture_mlp") != (expected_ndim == 2):
        return _error(f"--preset {preset} does not fit --dataset {args.dataset}")
    if args.T < 1:
        return _error(f"--T must be >= 1, got {args.T}")
    try:
        x, y = _load_data(args)
        sched = schedules.linear(args.T) if args.schedule == "linear" else schedules.cosine(args.T)
        sizes = config.sizes()
        defaults = dict(PRESETS["mixture_8" if args.dataset == "mixture_8" else "digits"].train)
        defaults.pop("p_uncond", None)
        steps = args.steps or (sizes.mixture_train_steps if args.dataset == "mixture_8" else sizes.digits_train_steps)
        overrides = {k: v for k, v in dict(batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                                           ema_decay=args.ema_decay).items() if v is not None}
        p_uncond = args.p_uncond if args.p_uncond is not None else (0.1 if args.conditional else 0.0)
        cfg = TrainConfig(**{**defaults, **overrides, "steps": steps, "loss_type": args.loss,
                             "objective": args.objective, "seed": args.seed, "p_uncond": p_uncond,
                             "compile": args.compile,
                             "device": args.device or str(config.device())})
        learn_sigma = args.learn_sigma or args.loss in ("vlb", "hybrid")
        num_classes = _NUM_CLASSES[args.dataset] if args.conditional else 0
        torch.manual_seed(args.seed)
        model = _build_model(preset, num_classes, args.objective, learn_sigma)
        meta = {"dataset": args.dataset, "preset": preset, "data_shape": list(x.shape[1:])}
        result = train(model, sched, x, y if args.conditional else None, cfg, progress=not args.no_progress,
                       meta=meta)
    except ValueError as err:
        ddp.cleanup()
        return _error(str(err))
    path = result.save(args.out)
    if ddp.is_main():
        h = result.history
        print(f"trained {preset} on {args.dataset}: {h['step'][-1]} steps in {result.seconds:.1f} s, "
              f"final loss {h['loss'][-1]:.4f}, world size {ddp.world_size()} -> {path}")
    ddp.cleanup()
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Handler of ``sample``: returns 0 on success, 2 on bad arguments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddpm_lessons import config, plotting
    from ddpm_lessons.samplers import sample
    from ddpm_lessons.train import load, pretrained

    device = torch.device(args.device) if args.device else config.device()
    try:
        if args.checkpoint:
            if not Path(args.checkpoint).is_file():
                return _error(f"--checkpoint {args.checkpoint} does not exist")
            result = load(args.checkpoint, map_location=device)
        else:
            result = pretrained(args.preset, device=device, progress=not args.no_progress)
    except ValueError as err:
        return _error(str(err))
    model = result.model if args.raw else result.ema_model
    if result.sched is None:
        return _error("the checkpoint holds no schedule")
    sched = result.sched
    is_image = hasattr(model, "image_size")
    n = args.n or (64 if is_image else 2000)
    if n < 1:
        return _error(f"--n must be >= 1, got {n}")
    shape = (n, model.in_channels, model.image_size, model.image_size) if is_image else (n, model.dim)
    cond = None
    if model.num_classes > 0:
        if args.cls is not None:
            if not 0 <= args.cls < model.num_classes:
                return _error(f"--class must be in 0..{model.num_classes - 1}, got {args.cls}")
            cond = torch.full((n,), args.cls, dtype=torch.long)
        else:
            cond = torch.arange(n) % model.num_classes
    elif args.cls is not None or args.w != 0:
        return _error("--class and --w need a class-conditional model")
    try:
        x = sample(model, sched, shape, method=args.sampler, steps=args.steps, eta=args.eta,
                   cond=None if cond is None else cond.to(device), w=args.w,
                   generator=torch.Generator().manual_seed(args.seed), progress=not args.no_progress,
                   device=device).cpu()
    except ValueError as err:
        return _error(str(err))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{args.sampler}{'' if args.steps is None else f'-{args.steps}'}" + (f", w={args.w:g}" if cond is not None
                                                                                  else "")
    if is_image:
        order = torch.argsort(cond, stable=True) if cond is not None else torch.arange(n)
        nrow = model.num_classes if cond is not None and args.cls is None else None
        fig, (ax,) = plotting.new_axes(1, width=6, height=6)
        plotting.show_images(x[order], ax=ax, nrow=nrow, title=title)
    else:
        fig, (ax,) = plotting.new_axes(1, width=5, height=5)
        plotting.scatter2d(x, ax=ax, c=None if cond is None else cond.numpy(), cmap="tab10" if cond is not None
                           else None, title=title)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    if args.save_tensor:
        torch.save(x, args.save_tensor)
    print(f"{n} samples ({args.sampler}, {args.steps or sched.T} steps) -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m ddpm_lessons.cli_train train ...``, e.g. under torchrun)."""
    parser = argparse.ArgumentParser(prog="ddpm_lessons.cli_train")
    add_subparsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
