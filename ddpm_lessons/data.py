"""Data: 2-D toys with exact diffused scores, scikit-learn's digits, and readers for MNIST / CIFAR-10 files.

Gaussian mixtures are the one data set where everything a lesson talks about has a closed form at every
diffusion time: the forward process maps N(mu_k, diag(s_k^2)) to N(sqrt(ab) mu_k, diag(ab s_k^2 + 1 - ab))
([DDPM] Eq. 4, ab = alpha_bar_t), so the diffused density q_t is again a mixture with the same weights, and its
score, the posterior mean E[x0 | xt] (Tweedie's formula, [SDE] / Efron 2011) and the DSM-optimal noise
prediction eps_opt = -sqrt(1 - ab) * score ([DSM], [DDPM] Eq. 11) are exact. :class:`GaussianMixture` provides
them for a batch of points, each with its own alpha_bar, optionally conditioned on a class label. The CFG lesson
uses the tilted density p(x|c)^(1+w) p(x)^(-w) ([CFG] Eq. 6 integrated), sampled on a fine grid.

Shapes: B batch, D data dimension, K mixture components, N data-set size; images are (N, C, H, W).
Randomness comes from ``generator=`` (a ``torch.Generator``); the same generator gives the same data.

Data sets:

* ``mixture_8()`` -- 8 isotropic components on a circle of radius 3, std 0.35, equal weights, labels 0..7;
  ``mixture_2x2()`` -- 4 components on the corners of a square, labels 0..3; ``mixture_1d()`` -- two 1-D modes.
* ``moons``, ``swiss_roll``, ``checkerboard`` -- 2-D samplers (float32, scale of a few units).
* ``digits(split)`` -- scikit-learn's bundled 8x8 digits (1,797 images, values 0..16) mapped to [-1, 1], with a
  fixed stratified split: 1,437 train / 360 test images (80/20, ``random_state=seed``).
* ``load_mnist`` / ``load_cifar10`` -- read the standard files from a local folder; nothing is downloaded unless
  ``download=True`` and torchvision is installed.

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [DSM]   Vincent 2011, Neural Computation 23(7)
    [SDE]   Song et al. 2021, arXiv:2011.13456
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [Efron] Efron 2011, "Tweedie's formula and selection bias", JASA 106(496)
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

__all__ = [
    "GaussianMixture",
    "mixture_8",
    "mixture_2x2",
    "mixture_1d",
    "moons",
    "swiss_roll",
    "checkerboard",
    "digits",
    "read_mnist_idx",
    "load_mnist",
    "load_cifar10",
    "batches",
]

AlphaBar = float | Tensor

# --------------------------------------------------------------------------------------------------------------
# Gaussian mixtures with exact diffused quantities
# --------------------------------------------------------------------------------------------------------------


def _as_alpha_bar(alpha_bar: AlphaBar, batch: int, device: torch.device) -> Tensor:
    """alpha_bar as a float64 (B, 1) tensor on ``device``; accepts a float, a 0-d / (1,) / (B,) / (B, 1) tensor."""
    ab = torch.as_tensor(alpha_bar, dtype=torch.float64).to(device)
    if ab.dim() == 2 and ab.shape[1] == 1:
        ab = ab[:, 0]
    if ab.dim() > 1 or (ab.dim() == 1 and ab.numel() not in (1, batch)):
        raise ValueError(f"alpha_bar must be a float or a tensor of shape (), (B,) or (B, 1) with B={batch}, "
                         f"got shape {tuple(ab.shape)}")
    if not bool(((ab >= 0) & (ab <= 1)).all()):
        raise ValueError("alpha_bar must lie in [0, 1]")
    return ab.reshape(-1, 1).expand(batch, 1)  # (B, 1)


@dataclass(frozen=True, eq=False)  # tensors: compare fields explicitly
class GaussianMixture:
    """A mixture of K Gaussians with diagonal covariances in D dimensions, each component carrying a class label.

    Attributes (float64 CPU tensors after construction):
        weights: (K,) mixture weights, positive, normalised to sum to 1.
        means:   (K, D) component means.
        stds:    (K, D) per-dimension standard deviations (an isotropic (K,) or scalar input is broadcast).
        labels:  (K,) long class label of each component (several components may share a label).

    Methods that take a diffusion time take ``alpha_bar`` = alpha_bar_t as a float or a (B,) / (B, 1) tensor
    (one value per row of ``xt``); they compute in float64 and return the dtype of ``xt``.
    """

    weights: Tensor
    means: Tensor
    stds: Tensor
    labels: Tensor

    def __init__(self, weights, means, stds, labels=None):
        means = torch.as_tensor(means, dtype=torch.float64).detach().cpu()
        if means.dim() == 1:
            means = means[:, None]  # K 1-D components
        if means.dim() != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        K, D = means.shape
        weights = torch.as_tensor(weights, dtype=torch.float64).detach().cpu().reshape(-1)
        if weights.shape != (K,) or not bool((weights > 0).all()) or not bool(torch.isfinite(weights).all()):
            raise ValueError(f"weights must be {K} positive finite numbers, got {weights.tolist()}")
        stds = torch.as_tensor(stds, dtype=torch.float64).detach().cpu()
        if stds.dim() == 0:
            stds = stds.expand(K)
        if stds.dim() == 1:
            if stds.shape[0] != K:
                raise ValueError(f"stds must be a scalar, (K,)=({K},) or (K, D)=({K}, {D}), got {tuple(stds.shape)}")
            stds = stds[:, None].expand(K, D)
        if stds.shape != (K, D) or not bool((stds > 0).all()):
            raise ValueError(f"stds must be positive with shape (K, D)=({K}, {D}), got {tuple(stds.shape)}")
        if labels is None:
            labels = torch.arange(K)
        labels = torch.as_tensor(labels, dtype=torch.long).detach().cpu().reshape(-1)
        if labels.shape != (K,) or bool((labels < 0).any()):
            raise ValueError(f"labels must be {K} non-negative integers, got {labels.tolist()}")
        object.__setattr__(self, "weights", weights / weights.sum())
        object.__setattr__(self, "means", means.clone())
        object.__setattr__(self, "stds", stds.clone())
        object.__setattr__(self, "labels", labels.clone())

    # ---- basic properties ------------------------------------------------------------------------------------
    @property
    def K(self) -> int:
        """Number of components."""
        return self.means.shape[0]

    @property
    def D(self) -> int:
        """Data dimension."""
        return self.means.shape[1]

    @property
    def num_classes(self) -> int:
        """Number of class labels (largest label + 1)."""
        return int(self.labels.max()) + 1

    def mean(self) -> Tensor:
        """Mixture mean, (D,) float64: sum_k w_k mu_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance, (D, D) float64: sum_k w_k (diag(s_k^2) + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second + torch.diag(self.weights @ self.stds**2) - torch.outer(m, m)

    def conditional(self, label: int) -> GaussianMixture:
        """The mixture p(x | c = label): the components with that label, weights renormalised."""
        keep = self.labels == int(label)
        if not bool(keep.any()):
            raise ValueError(f"label must be one of {sorted(set(self.labels.tolist()))}, got {label}")
        return GaussianMixture(self.weights[keep], self.means[keep], self.stds[keep], self.labels[keep])

    def distribution(self) -> MixtureSameFamily:
        """The mixture as a float64 ``torch.distributions.MixtureSameFamily`` (an oracle for ``log_prob``)."""
        return MixtureSameFamily(Categorical(probs=self.weights), Independent(Normal(self.means, self.stds), 1))

    def diffused(self, alpha_bar: AlphaBar) -> GaussianMixture:
        """q_t, the law of xt = sqrt(ab) x0 + sqrt(1 - ab) eps with x0 from this mixture, for one scalar ab.

        Component k becomes N(sqrt(ab) mu_k, diag(ab s_k^2 + 1 - ab)) with the same weight ([DDPM] Eq. 4).
        For a different alpha_bar per row use ``log_prob_t`` / ``score`` / ``posterior_mean`` directly.
        """
        ab_t = torch.as_tensor(alpha_bar, dtype=torch.float64)
        if ab_t.numel() != 1:
            raise ValueError("diffused() takes one alpha_bar; use log_prob_t/score/posterior_mean for a batch")
        ab = float(ab_t)
        if not 0.0 <= ab <= 1.0:
            raise ValueError(f"alpha_bar must lie in [0, 1], got {ab}")
        return GaussianMixture(self.weights, math.sqrt(ab) * self.means,
                               torch.sqrt(ab * self.stds**2 + (1.0 - ab)), self.labels)

    # ---- sampling and densities ------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Draw n points: x (n, D) float32 and the label of the component each came from, (n,) long."""
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        k = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)  # (n,)
        z = torch.randn(int(n), self.D, dtype=torch.float64, generator=generator)
        x = self.means[k] + self.stds[k] * z  # (n, D)
        return x.float().to(device), self.labels[k].to(device)

    def _component_log_probs(self, x: Tensor, ab: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log N(x; sqrt(ab) mu_k, var_k) (B, K) and the diffused means / variances (B, K, D)."""
        mu = ab.sqrt()[:, :, None] * self.means.to(x.device)[None]  # (B, K, D)
        var = ab[:, :, None] * self.stds.to(x.device)[None] ** 2 + (1.0 - ab)[:, :, None]  # (B, K, D)
        logp = -0.5 * (((x[:, None, :] - mu) ** 2) / var + var.log() + math.log(2 * math.pi)).sum(-1)  # (B, K)
        return logp, mu, var

    def _log_weights(self, label, batch: int, device: torch.device) -> Tensor:
        """log w_k, (B, K); with ``label``, log p(k | c): other classes -inf, the rest renormalised."""
        logw = self.weights.log().to(device)[None].expand(batch, self.K)
        if label is None:
            return logw
        label = torch.as_tensor(label, dtype=torch.long).to(device).reshape(-1)
        if label.numel() not in (1, batch):
            raise ValueError(f"label must be an int or a (B,) tensor with B={batch}, got shape {tuple(label.shape)}")
        known = self.labels.to(device)
        if not bool(torch.isin(label, known).all()):
            raise ValueError(f"label must be one of {sorted(set(self.labels.tolist()))}, got {label.tolist()}")
        match = known[None, :] == label.reshape(-1, 1)  # (B or 1, K)
        logw = logw.masked_fill(~match, -math.inf)
        return logw - torch.logsumexp(logw, dim=1, keepdim=True)  # renormalised: p(k | c) = w_k / sum_{j in c} w_j

    def _prepare(self, x: Tensor, alpha_bar: AlphaBar, label) -> tuple[Tensor, Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.D:
            raise ValueError(f"x must have shape (B, D) with D={self.D}, got {tuple(x.shape)}")
        x64 = x.to(torch.float64)
        ab = _as_alpha_bar(alpha_bar, x.shape[0], x.device)
        return x64, ab, self._log_weights(label, x.shape[0], x.device)

    def log_prob_t(self, xt: Tensor, alpha_bar: AlphaBar, label=None) -> Tensor:
        """log q_t(xt) (or log q_t(xt | c) with ``label``), (B,) float64; alpha_bar float or (B,) tensor."""
        x, ab, logw = self._prepare(xt, alpha_bar, label)
        logp, _, _ = self._component_log_probs(x, ab)
        return torch.logsumexp(logw + logp, dim=1)

    def log_prob(self, x: Tensor, label=None) -> Tensor:
        """log p(x) (or log p(x | c) with ``label``) of the undiffused mixture, (B,) float64, in nats."""
        return self.log_prob_t(x, 1.0, label)

    def _responsibilities(self, x: Tensor, ab: Tensor, logw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logp, mu, var = self._component_log_probs(x, ab)
        r = torch.softmax(logw + logp, dim=1)  # (B, K) posterior p(k | xt)
        return r, mu, var

    def score(self, xt: Tensor, alpha_bar: AlphaBar, label=None) -> Tensor:
        """Exact score grad_x log q_t(xt) (or of q_t(xt | c)), shape of ``xt``.

        grad log q_t = sum_k p(k | xt) (sqrt(ab) mu_k - xt) / var_k with var_k = ab s_k^2 + 1 - ab.
        """
        x, ab, logw = self._prepare(xt, alpha_bar, label)
        r, mu, var = self._responsibilities(x, ab, logw)
        return (r[:, :, None] * (mu - x[:, None, :]) / var).sum(1).to(xt.dtype)

    def posterior_mean(self, xt: Tensor, alpha_bar: AlphaBar, label=None) -> Tensor:
        """Exact E[x0 | xt] (optionally given the class), shape of ``xt``.

        Per component, x0 | xt, k is Gaussian with mean (s_k^2 sqrt(ab) xt + (1 - ab) mu_k) / var_k; the mixture
        posterior mean weights these by p(k | xt). This equals Tweedie's formula
        (xt + (1 - ab) score) / sqrt(ab) ([Efron], [DDPM] Eq. 4 + 11) and stays finite at ab = 0.
        """
        x, ab, logw = self._prepare(xt, alpha_bar, label)
        r, _, var = self._responsibilities(x, ab, logw)
        s2 = self.stds.to(x.device)[None] ** 2  # (1, K, D)
        m_k = (s2 * ab.sqrt()[:, :, None] * x[:, None, :] + (1 - ab)[:, :, None] * self.means.to(x.device)) / var
        return (r[:, :, None] * m_k).sum(1).to(xt.dtype)

    def eps_opt(self, xt: Tensor, alpha_bar: AlphaBar, label=None) -> Tensor:
        """The DSM optimum E[eps | xt] = -sqrt(1 - ab) * score ([DSM]; [DDPM] Eq. 11), shape of ``xt``."""
        x, ab, _ = self._prepare(xt, alpha_bar, label)
        return (-(1 - ab).sqrt() * self.score(x, ab[:, 0], label)).to(xt.dtype)

    def eps_model(self, sched) -> torch.nn.Module:
        """The exact ε-predictor ε*(x_t, t) = E[ε | x_t] of this mixture, callable like a trained model.

        ``model(xt, t, cond=None)`` with t (B,) in 1..T of ``sched`` and cond None or class ids (the class-conditional
        optimum; ``null_label`` = K means unconditional). Lets samplers and metrics separate a sampler's own error
        from a network's ([DSM]; the DSM optimum of [DDPM] Eq. 12's loss).
        """
        return _ExactEps(self, sched)

    def cfg_score(self, xt: Tensor, alpha_bar: AlphaBar, label, w: float) -> Tensor:
        """Guided score (1 + w) grad log q_t(xt | c) - w grad log q_t(xt) ([CFG] Eq. 6 in score form)."""
        return (1 + w) * self.score(xt, alpha_bar, label) - w * self.score(xt, alpha_bar)

    # ---- the tilted density of classifier-free guidance ------------------------------------------------------
    def tilted_log_density(self, x: Tensor, label: int, w: float) -> Tensor:
        """Unnormalised log of p(x | c)^(1 + w) p(x)^(-w), (B,) float64.

        This is the density whose score is the guided score at t = 0 ([CFG] Eq. 6). It is normalisable when the
        components share their stds (the quadratic terms leave -1/(2 s^2)); ``grid_sample_tilted`` truncates
        to a box in any case.
        """
        return (1 + w) * self.log_prob(x, label) - w * self.log_prob(x)

    def grid_sample_tilted(self, label: int, w: float, n: int, generator: torch.Generator | None = None,
                           resolution: int = 400, bounds: tuple[float, float] | None = None) -> Tensor:
        """Approximate samples (n, D) float32 of the tilted density p(x|c)^(1+w) p(x)^(-w), for D <= 2.

        The density is evaluated at the centres of a ``resolution``^D grid over ``bounds`` (default: the
        components' means +- 6 stds, the same box on every axis), a cell is drawn with probability proportional
        to density x cell volume, and the point is placed uniformly inside it. The error is the grid spacing.
        """
        if self.D > 2:
            raise ValueError(f"grid_sample_tilted supports D <= 2, the mixture has D={self.D}")
        if resolution < 2 or int(n) < 1:
            raise ValueError(f"resolution must be >= 2 and n >= 1, got resolution={resolution}, n={n}")
        if bounds is None:
            lo = float((self.means - 6 * self.stds).min())
            hi = float((self.means + 6 * self.stds).max())
        else:
            lo, hi = map(float, bounds)
            if not hi > lo:
                raise ValueError(f"bounds must be (low, high) with high > low, got {bounds}")
        h = (hi - lo) / resolution
        centres = lo + h * (torch.arange(resolution, dtype=torch.float64) + 0.5)
        grid = torch.cartesian_prod(*([centres] * self.D)).reshape(-1, self.D)  # (resolution^D, D)
        logd = self.tilted_log_density(grid, label, w)
        cell = torch.multinomial(torch.softmax(logd, 0), int(n), replacement=True, generator=generator)
        jitter = (torch.rand(int(n), self.D, dtype=torch.float64, generator=generator) - 0.5) * h
        return (grid[cell] + jitter).float()


def mixture_8(radius: float = 3.0, std: float = 0.35) -> GaussianMixture:
    """Eight equal-weight isotropic Gaussians at angles 2 pi k / 8 on a circle, labels k = 0..7.

    With the defaults, neighbouring means are 2.30 apart (6.6 stds): the modes are clearly separate while the
    data keep a scale of a few units (per-axis std 2.15).
    """
    if radius <= 0 or std <= 0:
        raise ValueError(f"radius and std must be > 0, got radius={radius}, std={std}")
    angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)  # (8, 2)
    return GaussianMixture(torch.ones(8), means, std, torch.arange(8))


def mixture_2x2(spacing: float = 2.0, std: float = 0.5, weights=(1.0, 1.0, 1.0, 1.0)) -> GaussianMixture:
    """Four isotropic Gaussians on the corners (+-spacing/2, +-spacing/2), labels 0..3 (counter-clockwise from
    the upper right). Neighbouring modes overlap a little at the defaults, which shows guidance pushing apart."""
    if spacing <= 0 or std <= 0:
        raise ValueError(f"spacing and std must be > 0, got spacing={spacing}, std={std}")
    a = spacing / 2
    means = torch.tensor([[a, a], [-a, a], [-a, -a], [a, -a]], dtype=torch.float64)
    return GaussianMixture(torch.as_tensor(weights, dtype=torch.float64), means, std, torch.arange(4))


def mixture_1d(means=(-2.0, 2.0), stds=(0.5, 0.5), weights=(0.5, 0.5)) -> GaussianMixture:
    """A 1-D mixture (D = 1), by default two equal modes at -2 and 2 with std 0.5; labels 0..K-1."""
    return GaussianMixture(weights, torch.as_tensor(means, dtype=torch.float64)[:, None], stds)


# --------------------------------------------------------------------------------------------------------------
# Other 2-D samplers
# --------------------------------------------------------------------------------------------------------------


def _seed_from(generator: torch.Generator | None) -> int:
    """An int seed for numpy / scikit-learn drawn from a torch generator (the global one when None)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None,
          return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """scikit-learn's two moons, centred and scaled by 2: x (n, 2) float32 in about [-3, 3] x [-1.5, 1.5].

    ``noise`` is sklearn's Gaussian noise std before scaling. With ``return_labels`` also the moon (0/1), (n,) long.
    """
    from sklearn.datasets import make_moons

    if int(n) < 2 or noise < 0:
        raise ValueError(f"n must be >= 2 and noise >= 0, got n={n}, noise={noise}")
    x, y = make_moons(int(n), noise=noise, random_state=_seed_from(generator))
    x = torch.from_numpy(2.0 * (x - np.array([0.5, 0.25]))).float()
    return (x, torch.from_numpy(y).long()) if return_labels else x


def swiss_roll(n: int, noise: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """scikit-learn's swiss roll projected on its (x, z) plane and divided by 5: (n, 2) float32 in about
    [-2.8, 2.8]^2. ``noise`` is sklearn's noise std before the division."""
    from sklearn.datasets import make_swiss_roll

    if int(n) < 1 or noise < 0:
        raise ValueError(f"n must be >= 1 and noise >= 0, got n={n}, noise={noise}")
    x, _ = make_swiss_roll(int(n), noise=noise, random_state=_seed_from(generator))
    return torch.from_numpy(x[:, [0, 2]] / 5.0).float()


def checkerboard(n: int, cells: int = 4, half_width: float = 2.0, generator: torch.Generator | None = None,
                 return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Uniform points on the dark squares of a ``cells`` x ``cells`` board covering [-half_width, half_width]^2.

    Square (i, j) (column i, row j from the lower left) is dark when i + j is even; there are ceil(cells^2 / 2)
    of them, all equally likely. With ``return_labels`` also the dark square's index (n,) long.
    """
    if int(n) < 1 or cells < 1 or half_width <= 0:
        raise ValueError(f"n and cells must be >= 1 and half_width > 0, got n={n}, cells={cells}, "
                         f"half_width={half_width}")
    dark = torch.tensor([(i, j) for j in range(cells) for i in range(cells) if (i + j) % 2 == 0],
                        dtype=torch.float64)  # (M, 2) column, row
    sq = torch.randint(0, dark.shape[0], (int(n),), generator=generator)
    u = torch.rand(int(n), 2, dtype=torch.float64, generator=generator)
    side = 2 * half_width / cells
    x = (-half_width + side * (dark[sq] + u)).float()
    return (x, sq) if return_labels else x


# --------------------------------------------------------------------------------------------------------------
# Images: scikit-learn digits (bundled), MNIST / Fashion-MNIST IDX files, CIFAR-10 python batches
# --------------------------------------------------------------------------------------------------------------

DIGITS_TEST_FRACTION = 0.2  # stratified: 1,437 train and 360 test images


@lru_cache(maxsize=8)
def _digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    return tuple(train_test_split(d.images, d.target, test_size=DIGITS_TEST_FRACTION, stratify=d.target,
                                  random_state=seed))


def digits(split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8x8 digits: x (N, 1, 8, 8) float32 in [-1, 1] (value v in 0..16 -> v / 8 - 1), y (N,) long.

    The split is stratified by class and fixed by ``seed``: ``"train"`` has 1,437 images, ``"test"`` 360
    (``"all"`` returns all 1,797 in scikit-learn's order). The same seed always gives the same split.
    """
    if split == "all":
        from sklearn.datasets import load_digits

        d = load_digits()
        images, target = d.images, d.target
    elif split in ("train", "test"):
        x_tr, x_te, y_tr, y_te = _digits_split(int(seed))
        images, target = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    x = torch.from_numpy(images.astype(np.float32) / 8.0 - 1.0)[:, None]  # (N, 1, 8, 8)
    return x, torch.from_numpy(np.asarray(target)).long()


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open_maybe_gz(path: str):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_mnist_idx(path: str | os.PathLike) -> Tensor:
    """Read one IDX file (the MNIST / Fashion-MNIST format; gzip-compressed or not) into a tensor.

    The header is two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then each dimension as a big-endian uint32. Returns the array with
    its stored shape, e.g. (N, 28, 28) uint8 for images and (N,) uint8 for labels.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    with _open_maybe_gz(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but {len(raw) - offset} bytes follow")
    arr = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_MNIST_SUBDIRS = {"mnist": ("MNIST/raw", "mnist", "MNIST"), "fashion_mnist": ("FashionMNIST/raw", "fashion_mnist",
                                                                                "FashionMNIST", "fashion-mnist")}


def _find_file(folders: list[str], name: str) -> str | None:
    for folder in folders:
        for candidate in (name, name + ".gz"):
            p = os.path.join(folder, candidate)
            if os.path.isfile(p):
                return p
    return None


def _scale_uint8(x: Tensor) -> Tensor:
    return x.float() / 127.5 - 1.0  # 0..255 -> [-1, 1]


def load_mnist(root: str | os.PathLike, split: str = "train", kind: str = "mnist",
               download: bool = False) -> tuple[Tensor, Tensor]:
    """MNIST or Fashion-MNIST from the standard IDX files in a local folder.

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (split ``"train"``) or
    ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (``"test"``), each optionally ``.gz``, in ``root``
    and in torchvision's layout (``root/MNIST/raw``, ``root/FashionMNIST/raw``). Returns x (N, 1, 28, 28)
    float32 in [-1, 1] and y (N,) long. ``download=True`` fetches the files with torchvision (must be installed).
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if kind not in _MNIST_SUBDIRS:
        raise ValueError(f"kind must be 'mnist' or 'fashion_mnist', got {kind!r}")
    root = os.fspath(root)
    if download:
        tv = _torchvision("load_mnist", "the four IDX files from the MNIST / Fashion-MNIST distribution")
        cls = tv.datasets.MNIST if kind == "mnist" else tv.datasets.FashionMNIST
        cls(root, train=(split == "train"), download=True)
    folders = [root] + [os.path.join(root, s) for s in _MNIST_SUBDIRS[kind]]
    names = _MNIST_FILES[split]
    paths = [_find_file(folders, name) for name in names]
    if None in paths:
        missing = [n for n, p in zip(names, paths, strict=True) if p is None]
        raise FileNotFoundError(
            f"{kind} {split} split: could not find {', '.join(m + '[.gz]' for m in missing)} in any of "
            f"{folders}. Put the standard IDX files there, or call load_mnist(..., download=True) with torchvision "
            f"installed.")
    images, labels = (read_mnist_idx(p) for p in paths)
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{paths}: expected images (N, H, W) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    return _scale_uint8(images)[:, None], labels.long()  # (N, 1, H, W)


_CIFAR_DIR = "cifar-10-batches-py"


def load_cifar10(root: str | os.PathLike, split: str = "train", download: bool = False) -> tuple[Tensor, Tensor]:
    """CIFAR-10 from its python pickle batches: ``cifar-10-batches-py/data_batch_1..5`` (train) or ``test_batch``.

    ``root`` may be the folder holding ``cifar-10-batches-py`` or that folder itself. Returns x (N, 3, 32, 32)
    float32 in [-1, 1] and y (N,) long (50,000 / 10,000 images for the real files). The batches are pickles:
    only read files you trust. ``download=True`` fetches them with torchvision (must be installed).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = os.fspath(root)
    if download:
        tv = _torchvision("load_cifar10", f"the python version of CIFAR-10 ({_CIFAR_DIR}, from cifar-10-python.tar.gz)")
        tv.datasets.CIFAR10(root, train=(split == "train"), download=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = os.path.join(root, _CIFAR_DIR)
    if not os.path.isdir(folder) and os.path.isfile(os.path.join(root, names[0])):
        folder = root
    paths = [os.path.join(folder, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} split: missing {missing}. Extract cifar-10-python.tar.gz so that {folder} holds "
            f"{', '.join(names)}, or call load_cifar10(..., download=True) with torchvision installed.")
    xs, ys = [], []
    for p in paths:
        with open(p, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if data is None or labels is None:
            raise ValueError(f"{p}: not a CIFAR-10 batch (no 'data' / 'labels' entries)")
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
            raise ValueError(f"{p}: expected data (N, 3072) and N labels, got {data.shape} and {len(labels)}")
        xs.append(data.reshape(-1, 3, 32, 32))  # rows hold the R, G, B planes, each 32x32 row-major
        ys.append(np.asarray(labels, dtype=np.int64))
    return _scale_uint8(torch.from_numpy(np.concatenate(xs))), torch.from_numpy(np.concatenate(ys))


def _torchvision(caller: str, what: str):
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(f"{caller}(download=True) needs torchvision, which is not installed. Install it "
                          f"(pip install torchvision, matching your torch) or download {what} yourself and pass "
                          f"the folder as root with download=False.") from e
    return torchvision


# --------------------------------------------------------------------------------------------------------------
# Minibatches
# --------------------------------------------------------------------------------------------------------------


def batches(x: Tensor, y: Tensor | None = None, batch_size: int = 256,
            generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Endless shuffled minibatches ``(xb, yb)`` of ``x`` (N, ...) and ``y`` (N,) (``yb`` is None without y).

    Each epoch is a fresh permutation from ``generator``; the last N mod batch_size items of an epoch are left
    out (every batch has the same size, and reshuffling covers them in later epochs). Indexing happens on the
    data's device.
    """
    n = x.shape[0]
    if y is not None and y.shape[0] != n:
        raise ValueError(f"y must have {n} rows like x, got {y.shape[0]}")
    if not 1 <= int(batch_size) <= n:
        raise ValueError(f"batch_size must be in 1..{n} (the data-set size), got {batch_size}")
    batch_size = int(batch_size)
    while True:
        perm = torch.randperm(n, generator=generator).to(x.device)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i: i + batch_size]
            yield x[idx], (None if y is None else y[idx.to(y.device)])



class _ExactEps(torch.nn.Module):
    """Model-protocol wrapper of :meth:`GaussianMixture.eps_opt` (see :meth:`GaussianMixture.eps_model`)."""

    objective, learn_sigma = "eps", False

    def __init__(self, mixture: GaussianMixture, sched) -> None:
        super().__init__()
        self.mixture, self.sched = mixture, sched
        self.num_classes = mixture.num_classes
        self.null_label = mixture.num_classes if mixture.num_classes else None

    def forward(self, xt: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        ab = self.sched.alpha_bar[t.cpu().long()].to(xt.device)
        if cond is None or self.null_label is None:
            return self.mixture.eps_opt(xt, ab)
        out = self.mixture.eps_opt(xt, ab)
        for c in torch.unique(cond).tolist():
            if c != self.null_label:
                rows = cond == c
                out[rows] = self.mixture.eps_opt(xt[rows], ab[rows], label=int(c))
        return out
