"""Old home of ``ddpm-lessons train`` and ``ddpm-lessons sample``; both now live in :mod:`ddpm_lessons.cli`.

Kept so that ``python -m ddpm_lessons.cli_train train ...`` (and ``torchrun ... -m ddpm_lessons.cli_train``) and
``from ddpm_lessons.cli_train import main`` keep working; new code uses ``ddpm_lessons.cli``.
"""

from __future__ import annotations

import sys

from ddpm_lessons.cli import add_subparser, cmd_sample, cmd_train, main
from ddpm_lessons.presets import ARCHITECTURES as MODEL_PRESETS
from ddpm_lessons.presets import DATASETS

add_subparsers = add_subparser

__all__ = ["add_subparsers", "cmd_train", "cmd_sample", "main", "DATASETS", "MODEL_PRESETS"]

if __name__ == "__main__":
    sys.exit(main())
