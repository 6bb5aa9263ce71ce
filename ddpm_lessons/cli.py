"""The ``ddpm-lessons`` command: derivation checks, the interview drill, training and sampling, student exports.

    ddpm-lessons check                       run every question's self-test and print a table
    ddpm-lessons check QUESTION "answer"     check one typed answer (exit 1 unless correct)
    ddpm-lessons drill [--level senior]      interview drill in the terminal
    ddpm-lessons train / sample ...          train a model / draw samples to a PNG
    ddpm-lessons export-student OUT/         notebooks with solutions removed
    ddpm-lessons profile                     show the active profile, device and sizes
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules: each exposes add_subparser(subparsers) (or add_subparsers) and sets a handler default
_MODULES = ("ddpm_lessons.checks.cli", "ddpm_lessons.cli_train", "ddpm_lessons.drill", "ddpm_lessons.student")


def _profile(args: argparse.Namespace) -> int:
    from . import config

    print(f"profile: {config.profile()}  device: {config.device()}")
    for k, v in vars(config.sizes()).items():
        print(f"  {k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm-lessons", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("profile", help="show the active profile, device and sizes")
    p.set_defaults(handler=_profile)
    for name in _MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        register = getattr(mod, "add_subparser", None) or mod.add_subparsers
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        if hasattr(args, "run"):
            return int(args.run(args) or 0)
        parser.print_help()
        return 0
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
