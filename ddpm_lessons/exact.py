"""The exact answers the course checks itself against: Gaussian-mixture data, the true reverse kernel, closed-form
bounds. Nothing here is learned, and nothing here uses the losses it checks.

* :class:`GaussianMixture` (and ``mixture_8``, ``mixture_2x2``, ``mixture_1d``). Gaussian mixtures are the one
  data set where everything a lesson talks about has a closed form at every diffusion time: the forward process
  maps N(mu_k, diag(s_k^2)) to N(sqrt(ab) mu_k, diag(ab s_k^2 + 1 - ab)) ([DDPM] Eq. 4, ab = alpha_bar_t), so the
  diffused density q_t is again a mixture with the same weights, and its score, the posterior mean E[x0 | xt]
  (Tweedie's formula, [SDE] / Efron 2011) and the DSM-optimal noise prediction eps* = -sqrt(1 - ab) * score
  ([DSM], [DDPM] Eq. 11) are exact. :meth:`GaussianMixture.eps_model` wraps eps* as a model that samplers and
  metrics call like a trained one. The CFG lesson uses the tilted density p(x|c)^(1+w) p(x)^(-w) ([CFG] Eq. 6
  integrated), sampled on a fine grid.
* :func:`exact_reverse_1d`, :func:`gaussian_fit_gap`: the true reverse step q(x_{t-1} | x_t) of 1-D mixture data on
  a grid, and its distance to the best Gaussian (notebook 02). A DDPM models each reverse step as a Gaussian; the
  distribution it stands in for, q(x_{t-1} | x_t) ∝ q(x_t | x_{t-1}) q_{t-1}(x_{t-1}) (Bayes with [DDPM] Eq. 2),
  is Gaussian only in the limit of small β_t ([SD] §2.2, after [Feller]).
* :func:`closed_form_bound`: every term of the variational bound ([DDPM] Eq. 5) in closed form for Gaussian data
  N(m, diag(s²)) scored by its exact denoiser, written from the schedule's β, ᾱ alone (notebook 03; tests).

Shapes: B batch, D data dimension, K mixture components, G grid points. Everything is float64 unless noted.
Randomness comes from ``generator=`` (a ``torch.Generator``); the same generator gives the same draws.

References:
    [DDPM]   Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [DSM]    Vincent 2011, Neural Computation 23(7)
    [SDE]    Song et al. 2021, arXiv:2011.13456
    [CFG]    Ho, Salimans 2022, arXiv:2207.12598
    [Efron]  Efron 2011, "Tweedie's formula and selection bias", JASA 106(496)
    [SD]     Sohl-Dickstein, Weiss, Maheswaranathan, Ganguli 2015, arXiv:1503.03585
    [Feller] Feller 1949, "On the theory of stochastic processes, with particular reference to applications",
             Proc. First Berkeley Symposium on Mathematical Statistics and Probability
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from . import forward as fwd
from .schedules import Schedule

__all__ = ["GaussianMixture", "mixture_8", "mixture_2x2", "mixture_1d", "exact_reverse_1d", "gaussian_fit_gap",
           "closed_form_bound"]

AlphaBar = float | Tensor

# --------------------------------------------------------------------------------------------------------------
# Gaussian mixtures: exact diffused densities, scores, posterior means and ε*
# --------------------------------------------------------------------------------------------------------------


def _as_alpha_bar(alpha_bar: AlphaBar, batch: int, device: torch.device) -> Tensor:
    """alpha_bar as a float64 (B, 1) tensor on ``device``; accepts a float, a 0-d / (1,) / (B,) / (B, 1) tensor."""
    if isinstance(alpha_bar, int | float):  # the samplers' common case: no tensor round trip for the range check
        if not 0.0 <= alpha_bar <= 1.0:
            raise ValueError("alpha_bar must lie in [0, 1]")
        return torch.full((batch, 1), float(alpha_bar), dtype=torch.float64, device=device)
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

    def sample_xt(self, sched: Schedule, t: int | Tensor, n: int, generator: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw (x_0, ε, t, x_t) with x_0 from the mixture and x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε ([DDPM] Eq. 4).

        x_0 comes from :meth:`sample` (then float64), ε ~ N(0, I) float64 is drawn after it from the same
        generator. ``t``: one int step in 1..T or a (n,) LongTensor. Returns x0, eps, xt (n, D) float64 and t (n,).
        """
        x0 = self.sample(n, generator=generator)[0].double()
        eps = torch.randn(int(n), self.D, dtype=torch.float64, generator=generator)
        t = torch.full((int(n),), int(t), dtype=torch.long) if isinstance(t, int) else torch.as_tensor(t).long()
        return x0, eps, t, fwd.q_sample(sched, x0, t, eps)

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
        grid, prob = _tilted_grid(self, int(label), float(w), int(resolution), lo, hi)
        cell = torch.multinomial(prob, int(n), replacement=True, generator=generator)
        jitter = (torch.rand(int(n), self.D, dtype=torch.float64, generator=generator) - 0.5) * h
        return (grid[cell] + jitter).float()


@lru_cache(maxsize=16)
def _tilted_grid(mix: GaussianMixture, label: int, w: float, resolution: int, lo: float, hi: float
                 ) -> tuple[Tensor, Tensor]:
    """The cell centres (resolution^D, D) and normalised cell probabilities of ``grid_sample_tilted``, kept for
    repeated draws (a metric's floor draws the same density 20 times, each time resolution^D log-densities).
    Keyed by the mixture's identity: the dataclass is frozen and its tensors are not modified in place."""
    h = (hi - lo) / resolution
    centres = lo + h * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(*([centres] * mix.D)).reshape(-1, mix.D)  # (resolution^D, D)
    return grid, torch.softmax(mix.tilted_log_density(grid, label, w), 0)


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


class _ExactEps(torch.nn.Module):
    """Model-protocol wrapper of :meth:`GaussianMixture.eps_opt` (see :meth:`GaussianMixture.eps_model`)."""

    objective, learn_sigma = "eps", False

    def __init__(self, mixture: GaussianMixture, sched: Schedule) -> None:
        super().__init__()
        self.mixture, self.sched = mixture, sched
        self.num_classes = mixture.num_classes
        self.null_label = mixture.num_classes if mixture.num_classes else None

    def forward(self, xt: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        ab = self.sched.host.alpha_bar[t.cpu().long()].to(xt.device)  # an oracle: computed on the host
        if cond is None or self.null_label is None:
            return self.mixture.eps_opt(xt, ab)
        out = self.mixture.eps_opt(xt, ab)
        for c in torch.unique(cond).tolist():
            if c != self.null_label:
                rows = cond == c
                out[rows] = self.mixture.eps_opt(xt[rows], ab[rows], label=int(c))
        return out


# --------------------------------------------------------------------------------------------------------------
# The true reverse kernel of 1-D mixture data, on a grid
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# The variational bound of Gaussian data in closed form
# --------------------------------------------------------------------------------------------------------------


def closed_form_bound(sched: Schedule, m: Tensor | float, s: Tensor | float, var_type: str = "beta_tilde"
                      ) -> tuple[Tensor, Tensor]:
    """E_q of every bound term ([DDPM] Eq. 5) for data x_0 ~ N(m, diag(s²)) and its exact denoiser, in bits/dim.

    With ε_θ = E[ε | x_t], the model's mean is μ̃_t(x_t, E[x_0 | x_t]) and differs from μ̃_t(x_t, x_0) only through
    c_t (x_0 - E[x_0 | x_t]), c_t = √ᾱ_{t-1} β_t/(1-ᾱ_t) ([DDPM] Eq. 7); per dimension
    Var(x_0 | x_t) = v_t = s² (1-ᾱ_t)/(ᾱ_t s² + 1 - ᾱ_t), so with σ_t² fixed (σ_1² = β̃_2 for both variance
    choices, β̃_1 being 0):
        L_{t-1} = ½ (log(σ_t²/β̃_t) + β̃_t/σ_t² - 1) + c_t² v_t / (2 σ_t²)     t >= 2 (KL of two Gaussians)
        L_0     = ½ log(2π σ_1²) + v_1 / (2 σ_1²)                              continuous Gaussian decoder
        L_T     = ½ (ᾱ_T (m² + s² - 1) - log(1 - ᾱ_T))                          KL(q(x_T | x_0) || N(0, 1))
    Written from ``sched``'s β, ᾱ, β̃ alone: an independent check of ``losses.bits_per_dim``.

    Args:
        m, s: (D,) tensors or floats, the data mean and standard deviation per dimension.
        var_type: σ_t² = β̃_t ('beta_tilde') or β_t ('beta').
    Returns:
        ``(prior, terms)``: L_T (a 0-d tensor) and L_0, L_1, ..., L_{T-1} ((T,), index t - 1), each averaged over
        the D dimensions, in bits.
    """
    if var_type not in ("beta_tilde", "beta"):
        raise ValueError(f"var_type must be 'beta_tilde' or 'beta', got {var_type!r}")
    h = sched.host
    m = torch.as_tensor(m, dtype=torch.float64).reshape(-1)
    s = torch.as_tensor(s, dtype=torch.float64).reshape(-1)
    t = torch.arange(1, h.T + 1)
    ab, abp, beta, beta_tilde = h.alpha_bar[t], h.alpha_bar_prev[t], h.beta[t], h.beta_tilde[t]
    sigma2 = (beta_tilde if var_type == "beta_tilde" else beta).clone()
    sigma2[0] = h.beta_tilde[2] if h.T >= 2 else h.beta[1]  # σ_1² (β̃_1 = 0)
    c = abp.sqrt() * beta / (1 - ab)  # coefficient of x_0 in μ̃_t, [DDPM] Eq. 7
    v = s ** 2 * (1 - ab[:, None]) / (ab[:, None] * s ** 2 + 1 - ab[:, None])  # Var(x_0 | x_t), (T, D)
    const = 0.5 * (torch.log(sigma2 / beta_tilde.clamp_min(1e-300)) + beta_tilde / sigma2 - 1)
    terms = const[:, None] + c[:, None] ** 2 * v / (2 * sigma2[:, None])  # L_{t-1}, (T, D)
    terms[0] = 0.5 * torch.log(2 * math.pi * sigma2[0]) + v[0] / (2 * sigma2[0])  # L_0
    prior = 0.5 * (ab[-1] * (m ** 2 + s ** 2 - 1) - torch.log(1 - ab[-1]))  # L_T, (D,)
    return prior.mean() / math.log(2), terms.mean(1) / math.log(2)
