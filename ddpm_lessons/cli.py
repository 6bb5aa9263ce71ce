"""The ``ddpm-lessons`` command: derivation checks, the interview drill, training and sampling, the shipped lesson
models, student exports.

    ddpm-lessons check                       run every question's self-test and print a table
    ddpm-lessons check QUESTION "answer"     check one typed answer (exit 1 unless correct)
    ddpm-lessons drill [--level senior]      interview drill in the terminal
    ddpm-lessons train --dataset digits ...  train a model to a checkpoint (runs unchanged under torchrun)
    ddpm-lessons sample --checkpoint m.pt    draw samples from a checkpoint or a lesson preset into a PNG
    ddpm-lessons lesson-models list|retrain  the lesson models shipped with the package
    ddpm-lessons export-student OUT/         notebooks with solutions removed
    ddpm-lessons exercise list|stub|check    code exercises (ddpm_lessons.checks.code)
    ddpm-lessons profile                     show the active profile, device and sizes

    torchrun --nproc_per_node=2 -m ddpm_lessons.cli train --dataset digits --out digits.pt   (DDP)
    ddpm-lessons sample --checkpoint digits.pt --sampler ddim --steps 50 --w 3 --out grid.png

Each command's module is imported only when that command runs: ``ddpm-lessons --help`` imports neither torch nor
nbformat, and ``ddpm-lessons check`` stays free of torch (``ddpm_lessons.checks.cli``). Handlers return exit
codes: 0 success, 1 a failed check, 2 bad arguments (with a message naming the option).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

# command -> (module that registers it with add_subparser(subparsers), one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("ddpm_lessons.checks.cli", "derivation checks: self-test the catalogue or check one answer"),
    "drill": ("ddpm_lessons.drill", "interview drill in the terminal"),
    "train": ("ddpm_lessons.cli", "train a diffusion model and save a checkpoint"),
    "sample": ("ddpm_lessons.cli", "draw samples from a checkpoint or preset into a PNG"),
    "lesson-models": ("ddpm_lessons.lesson_models", "list or retrain the lesson models shipped with the package"),
    "export-student": ("ddpm_lessons.student", "write the notebooks with solutions removed"),
    "exercise": ("ddpm_lessons.checks.code", "code exercises: list, stub ID, check ID FILE, capstone FILE"),
    "profile": ("ddpm_lessons.cli", "show the active profile, device and sizes"),
}
_FORWARD = {"exercise"}  # commands whose module parses its own arguments: main(argv) gets everything after the name
_EXTRA = {"nbformat": "dev", "nbclient": "dev", "jupyterlab": "dev"}  # optional packages -> the extra with them


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------------------------
# train, sample, profile (torch is imported inside the handlers)
# --------------------------------------------------------------------------------------------------------------


def add_subparser(subparsers: Any, only: str | None = None) -> None:
    """Register ``train``, ``sample`` and ``profile`` (or just ``only``) on an argparse sub-parser collection."""
    from ddpm_lessons.presets import ARCHITECTURES, DATASETS

    if only in (None, "train"):
        p = subparsers.add_parser("train", help=COMMANDS["train"][1],
                                  description="Train a diffusion model (DDP under torchrun) and save a checkpoint.")
        p.add_argument("--dataset", choices=DATASETS, default="mixture_8")
        p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX / CIFAR-10 python files")
        p.add_argument("--download", action="store_true", help="let torchvision download MNIST / CIFAR-10")
        p.add_argument("--preset", choices=ARCHITECTURES, default=None, help="architecture (default: by data set)")
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
    if only in (None, "sample"):
        s = subparsers.add_parser("sample", help=COMMANDS["sample"][1],
                                  description="Draw samples and save an image grid (images) or a scatter plot (2-D).")
        src = s.add_mutually_exclusive_group(required=True)
        src.add_argument("--checkpoint", help="a checkpoint written by `ddpm-lessons train`")
        src.add_argument("--preset", help="a lesson preset of presets.pretrained (mixture_8, digits_cfg, ...)")
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
    if only in (None, "profile"):
        subparsers.add_parser("profile", help=COMMANDS["profile"][1]).set_defaults(handler=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from ddpm_lessons import config

    print(f"profile: {config.profile()}  device: {config.device()}")
    for k, v in vars(config.sizes()).items():
        print(f"  {k}: {v}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``train``: returns 0 on success, 2 on bad arguments."""
    import torch

    from ddpm_lessons import config, schedules
    from ddpm_lessons import distributed as ddp
    from ddpm_lessons.presets import (
        DATA_BINS,
        DEFAULT_ARCHITECTURE,
        NUM_CLASSES,
        PRESETS,
        build_architecture,
        load_dataset,
    )
    from ddpm_lessons.train import TrainConfig, train

    arch = args.preset or DEFAULT_ARCHITECTURE[args.dataset]
    if (arch == "mixture_mlp") != (args.dataset == "mixture_8"):
        return _error(f"--preset {arch} does not fit --dataset {args.dataset}")
    if args.T < 1:
        return _error(f"--T must be >= 1, got {args.T}")
    try:
        x, y = load_dataset(args.dataset, n_train=args.n_train, seed=args.seed, data_dir=args.data_dir,
                            download=args.download)
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
                             "bins": DATA_BINS[args.dataset], "compile": args.compile,
                             "device": args.device or str(config.device())})
        learn_sigma = args.learn_sigma or args.loss in ("vlb", "hybrid")
        num_classes = NUM_CLASSES[args.dataset] if args.conditional else 0
        torch.manual_seed(args.seed)
        model = build_architecture(arch, num_classes, args.objective, learn_sigma)
        meta = {"dataset": args.dataset, "preset": arch, "data_shape": list(x.shape[1:])}
        result = train(model, sched, x, y if args.conditional else None, cfg, progress=not args.no_progress,
                       meta=meta)
    except ValueError as err:
        ddp.cleanup()
        return _error(str(err))
    path = result.save(args.out)
    if ddp.is_main():
        h = result.history
        print(f"trained {arch} on {args.dataset}: {h['step'][-1]} steps in {result.seconds:.1f} s, "
              f"final loss {h['loss'][-1]:.4f}, world size {ddp.world_size()} -> {path}")
    ddp.cleanup()
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Handler of ``sample``: returns 0 on success, 2 on bad arguments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ddpm_lessons import config, plotting
    from ddpm_lessons.cache import load
    from ddpm_lessons.presets import pretrained
    from ddpm_lessons.samplers import sample

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
    title = f"{args.sampler}{'' if args.steps is None else f'-{args.steps}'}"
    title += f", w={args.w:g}" if cond is not None else ""
    if is_image:
        order = torch.argsort(cond, stable=True) if cond is not None else torch.arange(n)
        nrow = model.num_classes if cond is not None and args.cls is None else None
        fig, (ax,) = plotting.new_axes(1, width=6, height=6)
        plotting.show_images(x[order], ax=ax, nrow=nrow, title=title)
    else:
        fig, (ax,) = plotting.new_axes(1, width=5, height=5)
        plotting.scatter2d(x, ax=ax, c=None if cond is None else cond.numpy(),
                           cmap="tab10" if cond is not None else None, title=title)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    if args.save_tensor:
        torch.save(x, args.save_tensor)
    print(f"{n} samples ({args.sampler}, {args.steps or sched.T} steps) -> {out}")
    return 0


# --------------------------------------------------------------------------------------------------------------
# The parser: only the chosen command's module is imported
# --------------------------------------------------------------------------------------------------------------


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv``: its first token that does not start with '-' (None for ``--help``)."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def _register(sub: Any, command: str) -> None:
    module_name = COMMANDS[command][0]
    if module_name == "ddpm_lessons.cli":
        add_subparser(sub, only=command)
        return
    module = importlib.import_module(module_name)
    register = getattr(module, "add_subparser", None) or module.add_subparsers
    register(sub)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every command listed; only ``command`` (if given) gets its real arguments, so
    building it imports that command's module and nothing else."""
    parser = argparse.ArgumentParser(prog="ddpm-lessons", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        if name == command:
            _register(sub, name)
        else:
            sub.add_parser(name, help=help_text, add_help=False)  # a placeholder: listed, never parsed
    return parser


def _needs_extra(err: ModuleNotFoundError, command: str | None) -> int:
    """Exit 2 with the install line when ``err`` is an optional package of an extra (errata 27), else re-raise."""
    extra = _EXTRA.get((err.name or "").split(".")[0])
    if extra is None:
        raise err
    return _error(f"`ddpm-lessons {command}` needs {err.name}, which comes with the {extra} extra: "
                  f"pip install 'ddpm-lessons[{extra}]'")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    try:  # a command whose optional dependency is missing says which extra to install, at import or at run time
        if command in _FORWARD:
            rest = argv[argv.index(command) + 1:]
            return int(importlib.import_module(COMMANDS[command][0]).main(rest) or 0)
        parser = build_parser(command)
        args = parser.parse_args(argv)
        handler = getattr(args, "handler", None)
        if handler is None:
            if hasattr(args, "run"):
                return int(args.run(args) or 0)
            parser.print_help()
            return 0
        return int(handler(args) or 0)
    except ModuleNotFoundError as err:
        return _needs_extra(err, command)


if __name__ == "__main__":
    sys.exit(main())
