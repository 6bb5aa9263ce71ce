"""Tests for ddpm_lessons.exact, the course's ground truth: the mixture's exact quantities against autograd,
torch.distributions and Monte Carlo; the exact ε* as a model; the true reverse kernel on a grid (closed forms,
Monte Carlo, the Gaussian gap); the closed-form bound of Gaussian data against an independent formula."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import data, exact, forward, schedules
from ddpm_lessons.exact import GaussianMixture, exact_reverse_1d, gaussian_fit_gap, mixture_2x2, mixture_8


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_mixture(seed: int = 0, K: int = 4, D: int = 3) -> GaussianMixture:
    """A mixture with unequal weights, diagonal (anisotropic) stds and two classes sharing components."""
    g = _gen(seed)
    return GaussianMixture(weights=torch.rand(K, generator=g, dtype=torch.float64) + 0.2,
                           means=2 * torch.randn(K, D, generator=g, dtype=torch.float64),
                           stds=0.3 + torch.rand(K, D, generator=g, dtype=torch.float64),
                           labels=torch.arange(K) % 2)


MIXTURES = {"mixture_8": mixture_8, "random_diag": _random_mixture, "1d": exact.mixture_1d}


# ---- densities and exact scores --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_log_prob_matches_torch_distributions(name):
    mix = MIXTURES[name]()
    x = 3 * torch.randn(50, mix.D, generator=_gen(1), dtype=torch.float64)
    for ab in (1.0, 0.6, 0.01):
        oracle = mix.diffused(ab).distribution().log_prob(x)
        torch.testing.assert_close(mix.log_prob_t(x, ab), oracle, rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.log_prob(x), mix.distribution().log_prob(x), rtol=0, atol=1e-12)


def test_log_prob_integrates_to_one():
    # Riemann sum on a 0.02 grid: the densities are smooth on that scale (std 0.35), so the error is << 1e-6
    mix = mixture_8()
    h = 0.02
    c = torch.arange(-8, 8, h, dtype=torch.float64) + h / 2
    grid = torch.cartesian_prod(c, c)
    for label in (None, 3):
        total = float(mix.log_prob(grid, label=label).exp().sum() * h * h)
        assert abs(total - 1) < 1e-6


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_score_equals_autograd_of_log_q_t(name):
    mix = MIXTURES[name]()
    B = 64
    x = 3 * torch.randn(B, mix.D, generator=_gen(2), dtype=torch.float64)
    ab = torch.rand(B, generator=_gen(3), dtype=torch.float64)
    ab[:3] = torch.tensor([0.0, 1.0, 1e-4], dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob_t(xr, ab).sum(), xr)
    torch.testing.assert_close(mix.score(x, ab), grad, rtol=0, atol=1e-10)
    # an independent oracle for one scalar alpha_bar: autograd through torch.distributions
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.diffused(0.37).distribution().log_prob(xr).sum(), xr)
    torch.testing.assert_close(mix.score(x, 0.37), grad, rtol=0, atol=1e-10)


def test_conditional_score_equals_autograd():
    mix = _random_mixture()
    B = 40
    x = 2 * torch.randn(B, mix.D, generator=_gen(4), dtype=torch.float64)
    ab = torch.rand(B, 1, generator=_gen(5), dtype=torch.float64)  # (B, 1) is accepted too
    label = torch.arange(B) % 2
    for lab in (label, 1):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mix.log_prob_t(xr, ab, label=lab).sum(), xr)
        torch.testing.assert_close(mix.score(x, ab, label=lab), grad, rtol=0, atol=1e-10)
    # the class-1 conditional is the sub-mixture of the class-1 components
    sub = mix.conditional(1)
    torch.testing.assert_close(mix.score(x, ab, label=1), sub.score(x, ab), rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.log_prob(x, label=1), sub.distribution().log_prob(x), rtol=0, atol=1e-12)


def test_posterior_mean_is_tweedie_and_eps_opt_consistent():
    mix = _random_mixture(seed=7)
    B = 64
    xt = 2 * torch.randn(B, mix.D, generator=_gen(8), dtype=torch.float64)
    ab = 0.001 + 0.998 * torch.rand(B, generator=_gen(9), dtype=torch.float64)
    for label in (None, torch.arange(B) % 2):
        score = mix.score(xt, ab, label)
        x0_hat = mix.posterior_mean(xt, ab, label)
        a = ab[:, None]
        tweedie = (xt + (1 - a) * score) / a.sqrt()  # Tweedie's formula for xt = sqrt(a) x0 + sqrt(1-a) eps
        torch.testing.assert_close(x0_hat, tweedie, rtol=1e-10, atol=1e-10)
        # E[eps | xt] from xt = sqrt(a) E[x0 | xt] + sqrt(1 - a) E[eps | xt]
        eps_from_x0 = (xt - a.sqrt() * x0_hat) / (1 - a).sqrt()
        torch.testing.assert_close(mix.eps_opt(xt, ab, label), eps_from_x0, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(mix.eps_opt(xt, ab, label), -(1 - a).sqrt() * score, rtol=0, atol=1e-12)


def test_limits_at_alpha_bar_0_and_1():
    mix = _random_mixture(seed=11)
    x = torch.randn(16, mix.D, generator=_gen(12), dtype=torch.float64)
    torch.testing.assert_close(mix.score(x, 0.0), -x, rtol=0, atol=1e-12)  # q_T = N(0, I)
    torch.testing.assert_close(mix.posterior_mean(x, 0.0), mix.mean().expand_as(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.posterior_mean(x, 0.0, label=1), mix.conditional(1).mean().expand_as(x),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.posterior_mean(x, 1.0), x, rtol=0, atol=1e-12)
    assert torch.equal(mix.eps_opt(x, 1.0), torch.zeros_like(x))


def test_posterior_mean_matches_importance_sampling():
    """E[x0 | xt] against a self-normalised importance-sampling estimate with the prior as proposal."""
    mix = mixture_8()
    n = 400_000
    x0, _ = mix.sample(n, _gen(13))
    x0 = x0.double()
    for ab in (0.2, 0.6, 0.95):
        xt, _ = mix.diffused(ab).sample(4, _gen(14))
        xt = xt.double()
        exact = mix.posterior_mean(xt, ab)
        # log-weights log N(xt; sqrt(ab) x0, (1 - ab) I) for each query point, (4, n)
        logw = -((xt[:, None, :] - math.sqrt(ab) * x0[None]) ** 2).sum(-1) / (2 * (1 - ab))
        w = torch.softmax(logw, dim=1)
        est = w @ x0  # (4, D)
        # delta-method standard error of a self-normalised IS estimate: sum_i w_i^2 (x0_i - est)^2
        se = torch.sqrt((w[:, :, None] ** 2 * (x0[None] - est[:, None, :]) ** 2).sum(1))
        ess = 1 / (w**2).sum(1)
        assert bool((ess > 500).all()), ess  # enough effective samples for the normal approximation to hold
        assert bool(((est - exact).abs() <= 5 * se + 1e-12).all()), (ab, est, exact, se)  # ~5 standard errors


@pytest.mark.parametrize("t", [50, 300, 700])
def test_diffused_matches_q_sample_of_mixture_samples(t):
    """q_sample applied to mixture samples has the moments and 1-D marginals of diffused(alpha_bar_t)."""
    from ddpm_lessons import forward, schedules

    sched = schedules.linear(1000)
    ab = float(sched.alpha_bar[t])
    mix = _random_mixture(seed=21, D=2)
    n = 200_000
    x0, _ = mix.sample(n, _gen(22))
    x0 = x0.double()
    noise = torch.randn(x0.shape, generator=_gen(23), dtype=torch.float64)
    xt = forward.q_sample(sched, x0, torch.full((n,), t, dtype=torch.long), noise)
    q = mix.diffused(ab)
    # mean: 5 standard errors of the sample mean
    se_mean = xt.std(0) / math.sqrt(n)
    assert bool(((xt.mean(0) - q.mean()).abs() < 5 * se_mean).all())
    # covariance: entry (i, j) is a mean of products; 5 standard errors of that mean
    c = xt - q.mean()
    prod = c[:, :, None] * c[:, None, :]
    se_cov = prod.std(0) / math.sqrt(n)
    assert bool(((prod.mean(0) - q.covariance()).abs() < 5 * se_cov).all())
    # the whole 1-D marginal along a direction: Kolmogorov-Smirnov against the exact mixture CDF;
    # 1.95 / sqrt(n) is the 0.1% critical value of the KS statistic
    u = torch.tensor([0.6, 0.8], dtype=torch.float64)
    proj = (xt @ u).sort().values
    comp = torch.distributions.Normal(q.means @ u, torch.sqrt((q.stds**2) @ (u**2)))
    cdf = (q.weights * comp.cdf(proj[:, None])).sum(1)
    ecdf_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum(ecdf_hi - cdf, cdf - (ecdf_hi - 1 / n)).max()
    assert float(ks) < 1.95 / math.sqrt(n)


def test_sample_frequencies_and_component_moments():
    mix = mixture_2x2(weights=(0.1, 0.2, 0.3, 0.4))
    n = 100_000
    x, labels = mix.sample(n, _gen(31))
    assert x.dtype == torch.float32 and x.shape == (n, 2) and labels.dtype == torch.long
    freq = torch.bincount(labels, minlength=4).double() / n
    se = torch.sqrt(mix.weights * (1 - mix.weights) / n)
    assert bool(((freq - mix.weights).abs() < 5 * se).all())  # 5 binomial standard errors
    for k in range(4):
        xk = x[labels == k].double()
        se_k = 0.5 / math.sqrt(xk.shape[0])
        assert bool(((xk.mean(0) - mix.means[k]).abs() < 5 * se_k).all())
    x2, l2 = mix.sample(n, _gen(31))
    assert torch.equal(x, x2) and torch.equal(labels, l2)


def test_presets():
    m = mixture_8()
    assert (m.K, m.D, m.num_classes) == (8, 2, 8)
    torch.testing.assert_close(m.means.norm(dim=1), torch.full((8,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(m.weights, torch.full((8,), 1 / 8, dtype=torch.float64))
    assert mixture_8(radius=4.0, std=0.2).means.norm(dim=1).max() == pytest.approx(4.0)
    one = data.mixture_1d()
    assert (one.K, one.D) == (2, 1)


def test_cfg_score_and_tilted_density():
    mix = mixture_2x2()
    x = torch.randn(32, 2, generator=_gen(41), dtype=torch.float64)
    torch.testing.assert_close(mix.cfg_score(x, 0.5, 2, 0.0), mix.score(x, 0.5, label=2), rtol=0, atol=1e-12)
    # at t = 0 the guided score is the score of the tilted density
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.tilted_log_density(xr, 2, 3.0).sum(), xr)
    torch.testing.assert_close(mix.cfg_score(x, 1.0, 2, 3.0), grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(mix.tilted_log_density(x, 2, 0.0), mix.log_prob(x, label=2), rtol=0, atol=1e-12)


def test_grid_sample_tilted():
    n = 50_000
    # w = 0 is the class-conditional: one N((3, 0), 0.35^2 I) component of mixture_8; the grid spacing
    # (~0.026) adds h^2/12 ~ 6e-5 to the variance, far below the sampling error
    m8 = mixture_8()
    s = m8.grid_sample_tilted(0, 0.0, n, _gen(51))
    assert s.shape == (n, 2) and s.dtype == torch.float32
    s = s.double()
    se = 0.35 / math.sqrt(n)
    assert bool(((s.mean(0) - m8.means[0]).abs() < 5 * se).all())
    assert bool(((s.std(0) - 0.35).abs() < 5 * 0.35 / math.sqrt(2 * n)).all())  # se of a std ~ s / sqrt(2n)
    # w = 3 on overlapping modes: the samples' mean equals the tilted density's mean computed by quadrature on an
    # independent, finer grid, and guidance moves it away from the other classes (outward along the diagonal)
    mix = mixture_2x2()
    s = mix.grid_sample_tilted(0, 3.0, n, _gen(52)).double()
    h = 0.01
    c = torch.arange(-5, 5, h, dtype=torch.float64) + h / 2
    grid = torch.cartesian_prod(c, c)
    p = torch.softmax(mix.tilted_log_density(grid, 0, 3.0), 0)
    mean = p @ grid
    sd = torch.sqrt(p @ (grid - mean) ** 2)
    assert bool(((s.mean(0) - mean).abs() < 5 * sd / math.sqrt(n) + 2e-3).all())  # + quadrature error
    assert float(mean.norm()) > float(mix.conditional(0).mean().norm()) + 0.05
    assert torch.equal(mix.grid_sample_tilted(0, 3.0, 10, _gen(1)), mix.grid_sample_tilted(0, 3.0, 10, _gen(1)))
    # the grid's probabilities are kept per mixture, label, w and box: a second mixture with the same label and w
    # (equal-looking but shifted) must not get the first one's grid
    shifted = mixture_2x2(spacing=3.0)
    far = shifted.grid_sample_tilted(0, 3.0, n, _gen(52)).double()
    assert float((far.mean(0) - s.mean(0)).norm()) > 0.3
    assert not torch.equal(mix.grid_sample_tilted(1, 3.0, 10, _gen(1)), mix.grid_sample_tilted(0, 3.0, 10, _gen(1)))


def test_bad_inputs():
    mix = mixture_8()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="alpha_bar"):
        mix.score(x, 1.5)
    with pytest.raises(ValueError, match="alpha_bar"):
        mix.score(x, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="label"):
        mix.score(x, 0.5, label=9)
    with pytest.raises(ValueError, match="shape"):
        mix.score(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([1.0, -1.0], [[0.0], [1.0]], 1.0)
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([1.0, 1.0], [[0.0], [1.0]], [1.0, 0.0])
    with pytest.raises(ValueError, match="D <= 2"):
        _random_mixture(D=3).grid_sample_tilted(0, 1.0, 10)
    with pytest.raises(ValueError, match="one alpha_bar"):
        mix.diffused(torch.tensor([0.1, 0.2]))


def test_score_keeps_dtype_and_device_of_input():
    mix = mixture_8()
    x = torch.randn(5, 2)
    assert mix.score(x, 0.3).dtype == torch.float32
    assert mix.posterior_mean(x.double(), 0.3).dtype == torch.float64


def test_eps_model_is_the_exact_optimum_in_model_form():
    """eps_model follows the model protocol and equals eps_opt = -sqrt(1 - ab) * score, per class when cond is given."""
    mix = exact.mixture_8()
    sched = schedules.linear(1000)
    model = mix.eps_model(sched)
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(6, 2, generator=g, dtype=torch.float64) * 2
    t = torch.tensor([1, 10, 100, 400, 800, 1000])
    ab = sched.alpha_bar[t]
    torch.testing.assert_close(model(xt, t), -(1 - ab).sqrt().unsqueeze(1) * mix.score(xt, ab))
    cond = torch.tensor([0, 3, 8, 3, 7, 8])  # 8 = null label
    out = model(xt, t, cond)
    for i, c in enumerate(cond.tolist()):
        label = None if c == 8 else c
        torch.testing.assert_close(out[i:i + 1], mix.eps_opt(xt[i:i + 1], ab[i:i + 1], label=label))
    assert model.null_label == 8 and model.num_classes == 8 and model.objective == "eps"


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


def test_reverse_kernel_bad_inputs():
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


def test_old_import_paths_are_the_same_objects():
    from ddpm_lessons import lesson_utils_forward

    assert data.GaussianMixture is GaussianMixture and data.mixture_8 is mixture_8
    assert data.mixture_2x2 is mixture_2x2 and data.mixture_1d is exact.mixture_1d
    assert lesson_utils_forward.exact_reverse_1d is exact_reverse_1d
    assert lesson_utils_forward.gaussian_fit_gap is gaussian_fit_gap


def test_sample_xt_is_eq4_with_the_draw_order_of_sample_then_eps():
    mix, sched = mixture_8(), schedules.linear(1000)
    x0, eps, t, xt = mix.sample_xt(sched, 300, 50, generator=_gen(4))
    g = _gen(4)
    x0_ref = mix.sample(50, generator=g)[0].double()
    eps_ref = torch.randn(50, 2, dtype=torch.float64, generator=g)
    assert torch.equal(x0, x0_ref) and torch.equal(eps, eps_ref) and t.tolist() == [300] * 50
    ab = float(sched.alpha_bar[300])
    torch.testing.assert_close(xt, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps, rtol=1e-12, atol=1e-12)
    assert xt.dtype == torch.float64 and torch.equal(xt, forward.q_sample(sched, x0, t, eps))


@pytest.mark.parametrize("var_type", ["beta_tilde", "beta"])
def test_closed_form_bound_against_the_eps_weight_form(var_type):
    """For t >= 2, E L_{t-1} = λ_t E‖ε - ε*‖² + D·KL(N(0, β̃)||N(0, σ²)) with E‖ε - ε*‖² per dimension
    = ᾱ s²/(ᾱ s² + 1 - ᾱ) for Gaussian data ([DDPM] Eq. 12; MMSE of a Gaussian); L_T and L_0 by hand."""
    sched = schedules.linear(100, 1e-3, 0.1)
    m, s = torch.tensor([0.5, -0.3], dtype=torch.float64), torch.tensor([0.6, 0.8], dtype=torch.float64)
    prior, terms = exact.closed_form_bound(sched, m, s, var_type)
    assert terms.shape == (100,) and prior.dim() == 0
    t = torch.arange(2, 101)
    ab, a, b, bt = sched.alpha_bar[t], sched.alpha[t], sched.beta[t], sched.beta_tilde[t]
    sigma2 = bt if var_type == "beta_tilde" else b
    lam = b ** 2 / (2 * sigma2 * a * (1 - ab))  # [DDPM] Eq. 12
    mmse = (ab[:, None] * s ** 2 / (ab[:, None] * s ** 2 + 1 - ab[:, None])).mean(1)
    const = 0.5 * (torch.log(sigma2 / bt) + bt / sigma2 - 1)
    torch.testing.assert_close(terms[1:], (lam * mmse + const) / math.log(2), rtol=1e-10, atol=1e-13)
    ab_T = float(sched.alpha_bar[100])
    prior_ref = sum(0.5 * (ab_T * (float(mi) ** 2 + float(si) ** 2) + (1 - ab_T) - math.log(1 - ab_T) - 1)
                    for mi, si in zip(m, s, strict=True)) / 2 / math.log(2)  # KL(N(√ᾱ m, ᾱ s² + 1 - ᾱ)||N(0, 1))
    assert float(prior) == pytest.approx(prior_ref, rel=1e-12)
    s1 = float(sched.beta_tilde[2])  # σ_1² = β̃_2 for both choices
    v1 = s ** 2 * (1 - sched.alpha_bar[1]) / (sched.alpha_bar[1] * s ** 2 + 1 - sched.alpha_bar[1])
    assert float(terms[0]) == pytest.approx(float((0.5 * math.log(2 * math.pi * s1) + v1 / (2 * s1)).mean())
                                            / math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="var_type"):
        exact.closed_form_bound(sched, m, s, "learned")
