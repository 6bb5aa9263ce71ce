"""The true reverse step of the forward process on a grid (notebook 02): now in :mod:`ddpm_lessons.exact`.

Kept so that ``from ddpm_lessons.lesson_utils_forward import exact_reverse_1d, gaussian_fit_gap`` keeps working.
"""

from __future__ import annotations

from .exact import exact_reverse_1d, gaussian_fit_gap

__all__ = ["exact_reverse_1d", "gaussian_fit_gap"]
