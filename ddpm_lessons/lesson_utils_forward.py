"""The true reverse step of the forward process, on a grid, and how far it is from a Gaussian (notebook 02).

A DDPM models each reverse step p_θ(x_{t-1} | x_t) as a Gaussian. The distribution it stands in for,

    q(x_{t-1} | x_t) ∝ q(x_t | x_{t-1}) q_{t-1}(x_{t-1})          (Bayes, with q(x_t | x_{t-1}) of [DDPM] Eq. 2)

is Gaussian only in the limit of small β_t ([SD] §2.2, after [Feller]); for multimodal data and a large step it is
not. For 1-D Gaussian-mixture data, q_{t-1} is an exact mixture (``data.GaussianMixture.log_prob_t``), so the true
reverse kernel can be evaluated on a fine grid: :func:`exact_reverse_1d`. :func:`gaussian_fit_gap` measures its
distance to the moment-matched Gaussian — the Gaussian that minimises D_KL(q || N), i.e. the best any Gaussian reverse
step can do in the bound's KL direction.

Shapes: B values of x_t, G grid points. Everything is float64.

References:
    [DDPM]   Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [SD]     Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli 2015, arXiv:1503.03585
    [Feller] Feller 1949, "On the theory of stochastic processes, with particular reference to applications",
             Proc. First Berkeley Symposium on Mathematical Statistics and Probability
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .data import GaussianMixture

__all__ = ["exact_reverse_1d", "gaussian_fit_gap"]


def _check_grid(grid: Tensor) -> Tensor:
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.dim() != 1 or grid.numel() < 3:
        raise ValueError(f"grid must be a 1-D tensor of at least 3 evenly spaced points, got shape {tuple(grid.shape)}")
    steps = grid[1:] - grid[:-1]
    if not bool((steps > 0).all()) or float((steps - steps[0]).abs().max()) > 1e-9 * float(steps[0]) * grid.numel():
        raise ValueError("grid must be increasing and evenly spaced (e.g. torch.linspace)")
    return grid


def exact_reverse_1d(mixture: GaussianMixture, alpha_bar_prev: float, beta: float, xt: Tensor | float,
                     grid: Tensor) -> Tensor:
    """The true reverse kernel q(x_{t-1} | x_t) of one forward step, as densities on ``grid``.

    Args:
        mixture: 1-D data distribution (``mixture.D == 1``).
        alpha_bar_prev: ᾱ_{t-1} in [0, 1]; q_{t-1} is the data diffused to this level (1 = the data itself).
        beta: β_t in (0, 1), the variance of the forward step x_t = √(1-β) x_{t-1} + √β ε ([DDPM] Eq. 2).
        xt: the conditioning values x_t, a float or shape (B,).
        grid: (G,) evenly spaced values of x_{t-1}; it must cover the density (a few stds beyond the modes).
    Returns:
        (B, G) float64 densities, each normalised so that ``density.sum(1) * dx == 1``.
    """
    if mixture.D != 1:
        raise ValueError(f"mixture must be one-dimensional (D = 1), got D = {mixture.D}")
    if not 0.0 <= float(alpha_bar_prev) <= 1.0:
        raise ValueError(f"alpha_bar_prev must lie in [0, 1], got {alpha_bar_prev}")
    if not 0.0 < float(beta) < 1.0:
        raise ValueError(f"beta must lie in the open interval (0, 1), got {beta}")
    grid = _check_grid(grid)
    xt = torch.as_tensor(xt, dtype=torch.float64).reshape(-1)  # (B,)
    if not bool(torch.isfinite(xt).all()):
        raise ValueError("xt must be finite")
    log_prior = mixture.log_prob_t(grid[:, None], float(alpha_bar_prev))  # log q_{t-1}(grid), (G,)
    mean = math.sqrt(1.0 - float(beta)) * grid  # (G,)
    log_lik = -0.5 * (xt[:, None] - mean[None, :]) ** 2 / float(beta)  # log q(x_t | x_{t-1}) + const, [DDPM] Eq. 2
    dx = float(grid[1] - grid[0])
    return torch.softmax(log_lik + log_prior[None, :], dim=1) / dx  # Bayes, normalised on the grid, (B, G)


def gaussian_fit_gap(grid: Tensor, density: Tensor) -> dict[str, Tensor]:
    """Compare densities on a grid with their moment-matched Gaussians N(mean, var).

    Args:
        grid: (G,) evenly spaced points. density: (B, G) or (G,) densities on the grid (each integrating to 1).
    Returns:
        dict of (B,) float64 tensors: ``mean`` and ``var`` of each density; ``tv``, the total variation distance
        ½∫|p - N| (0 = identical, 1 = disjoint); ``kl``, D_KL(p || N) in nats (the moment-matched Gaussian is the
        minimiser of this KL over all Gaussians, so it is the smallest excess a Gaussian model of p can have).
    """
    grid = _check_grid(grid)
    p = torch.as_tensor(density, dtype=torch.float64)
    if p.dim() == 1:
        p = p[None]
    if p.dim() != 2 or p.shape[1] != grid.numel():
        raise ValueError(f"density must have shape (B, G) with G = {grid.numel()}, got {tuple(p.shape)}")
    if bool((p < 0).any()) or not bool(torch.isfinite(p).all()):
        raise ValueError("density must be finite and non-negative")
    dx = float(grid[1] - grid[0])
    mass = p * dx  # probability of each grid cell, (B, G)
    mean = (mass * grid).sum(1)
    var = (mass * (grid - mean[:, None]) ** 2).sum(1)
    log_gauss = -0.5 * ((grid - mean[:, None]) ** 2 / var[:, None] + torch.log(2 * math.pi * var[:, None]))
    tv = 0.5 * ((p - log_gauss.exp()).abs() * dx).sum(1)
    kl = torch.where(mass > 0, mass * (torch.log(p.clamp_min(1e-300)) - log_gauss), torch.zeros_like(mass)).sum(1)
    return {"mean": mean, "var": var, "tv": tv, "kl": kl}
