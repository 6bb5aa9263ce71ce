"""The true reverse kernel on a grid: closed forms (Gaussian data, the exact posterior mean of a mixture), a Monte
Carlo check of the whole conditional, and the Gaussian-gap measure."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import data
from ddpm_lessons.lesson_utils_forward import exact_reverse_1d, gaussian_fit_gap

GRID = torch.linspace(-8, 8, 4001, dtype=torch.float64)


def test_gaussian_data_reverse_is_exactly_gaussian():
    # x_{t-1} ~ N(m, v) and x_t = sqrt(1-b) x_{t-1} + sqrt(b) eps: the reverse is Gaussian with the textbook
    # conjugate mean and variance (precision = 1/v + (1-b)/b).
    m, s, abp, b = 0.7, 0.6, 0.8, 0.3
    mix = data.GaussianMixture([1.0], [[m]], s)
    v = abp * s ** 2 + 1 - abp  # variance of q_{t-1}
    mp = math.sqrt(abp) * m  # mean of q_{t-1}
    xt = torch.tensor([-1.0, 0.2, 1.5], dtype=torch.float64)
    prec = 1 / v + (1 - b) / b
    want_var = 1 / prec
    want_mean = want_var * (mp / v + math.sqrt(1 - b) * xt / b)
    gap = gaussian_fit_gap(GRID, exact_reverse_1d(mix, abp, b, xt, GRID))
    torch.testing.assert_close(gap["mean"], want_mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(gap["var"], torch.full_like(xt, want_var), rtol=1e-7, atol=0)
    assert float(gap["tv"].max()) < 1e-6 and float(gap["kl"].abs().max()) < 1e-8


def test_mixture_reverse_mean_is_the_exact_posterior_mean():
    # E[x_{t-1} | x_t] for one step with "alpha_bar" = 1 - beta from data q_{t-1}: GaussianMixture.posterior_mean
    mix = data.mixture_1d()
    abp, b = 0.9, 0.5
    xt = torch.linspace(-3, 3, 13, dtype=torch.float64)
    dens = exact_reverse_1d(mix, abp, b, xt, GRID)
    torch.testing.assert_close(dens.sum(1) * float(GRID[1] - GRID[0]), torch.ones(13, dtype=torch.float64))
    want = mix.diffused(abp).posterior_mean(xt[:, None], 1 - b)[:, 0]
    torch.testing.assert_close(gaussian_fit_gap(GRID, dens)["mean"], want, rtol=0, atol=1e-8)


def test_reverse_kernel_against_monte_carlo():
    # Draw (x_{t-1}, x_t) pairs; the probability integral transform F(x_{t-1} | x_t) computed from the grid must be
    # Uniform(0, 1). Mean 1/2 and variance 1/12 with n draws: standard errors sqrt(1/12/n) and ~sqrt(1/180/n);
    # 5 of them is the tolerance.
    mix = data.mixture_1d()
    abp, b, n = 0.9, 0.4, 4000
    g = torch.Generator().manual_seed(0)
    xprev = mix.diffused(abp).sample(n, generator=g)[0].double()[:, 0]
    xt = math.sqrt(1 - b) * xprev + math.sqrt(b) * torch.randn(n, generator=g, dtype=torch.float64)
    dens = exact_reverse_1d(mix, abp, b, xt, GRID)  # (n, G)
    cdf = torch.cumsum(dens, 1) * float(GRID[1] - GRID[0])
    idx = torch.searchsorted(GRID, xprev).clamp(max=len(GRID) - 1)
    pit = cdf.gather(1, idx[:, None])[:, 0]
    assert abs(float(pit.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(float(pit.var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / n)


def test_gap_shrinks_with_beta():
    mix = data.mixture_1d()
    tvs = [float(gaussian_fit_gap(GRID, exact_reverse_1d(mix, 0.9, b, 0.3, GRID))["tv"]) for b in (0.5, 0.1, 0.01)]
    assert tvs[0] > 0.3 and tvs[0] > tvs[1] > tvs[2] and tvs[2] < 0.05


def test_bad_inputs():
    mix = data.mixture_1d()
    with pytest.raises(ValueError, match="beta"):
        exact_reverse_1d(mix, 0.9, 1.0, 0.0, GRID)
    with pytest.raises(ValueError, match="alpha_bar_prev"):
        exact_reverse_1d(mix, 1.5, 0.1, 0.0, GRID)
    with pytest.raises(ValueError, match="one-dimensional"):
        exact_reverse_1d(data.mixture_8(), 0.9, 0.1, 0.0, GRID)
    with pytest.raises(ValueError, match="evenly spaced"):
        exact_reverse_1d(mix, 0.9, 0.1, 0.0, GRID ** 3)
    with pytest.raises(ValueError, match="shape"):
        gaussian_fit_gap(GRID, torch.ones(2, 7))
