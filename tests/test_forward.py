"""Forward process: round trips between parameterisations, the posterior, Monte Carlo of the chain, validation."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import forward as fwd
from ddpm_lessons import schedules

FRACTIONS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]  # of T; 0.0 is t = 1, 1.0 is t = T (the cosine cap binds)


def _t_of(sched, frac: float) -> int:
    return max(1, round(frac * sched.T))


def _t(sched, frac, B):
    return torch.full((B,), _t_of(sched, frac), dtype=torch.long)


def _alpha_bars_by_hand(sched) -> list[float]:
    """ᾱ_0..ᾱ_T in Python floats from the schedules' published definitions (not from the package's tables):
    linear β_t evenly spaced ([DDPM] §4), cosine f(t)/f(0) with β_t capped at 0.999 ([IDDPM] Eq. 17)."""
    T = sched.T
    if sched.name.startswith("cosine"):
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)]
    else:  # linear(T, b0, b1) with the conftest's endpoints
        b0, b1 = (1e-4, 0.02) if T == 1000 else (1e-3, 0.2)
        betas = [b0 + (b1 - b0) * k / (T - 1) for k in range(T)]
    out = [1.0]
    for b in betas:
        out.append(out[-1] * (1 - b))
    return out


@pytest.mark.parametrize("frac", FRACTIONS)
def test_values_at_fractions_of_T(sched, frac):
    """q_sample, q_mean_variance, q_posterior and the conversions against ᾱ computed by hand, at t = 1 .. T
    (errata 21: the small-ᾱ end, where the cosine cap binds, is checked by value)."""
    t_val = _t_of(sched, frac)
    ab_all = _alpha_bars_by_hand(sched)
    ab, abp = ab_all[t_val], ab_all[t_val - 1]
    a = ab / abp
    x0 = torch.tensor([[0.7, -1.3, 0.2]], dtype=torch.float64)
    eps = torch.tensor([[-0.4, 0.9, 1.6]], dtype=torch.float64)
    t = torch.tensor([t_val])
    xt_want = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps  # [DDPM] Eq. 4
    rtol = 1e-9
    xt = fwd.q_sample(sched, x0, t, eps)
    torch.testing.assert_close(xt, xt_want, rtol=rtol, atol=1e-12)
    mean, var = fwd.q_mean_variance(sched, x0, t)
    torch.testing.assert_close(mean, math.sqrt(ab) * x0, rtol=rtol, atol=1e-15)
    assert float(var) == pytest.approx(1 - ab, rel=rtol)
    # posterior: the Gaussian conditional of (x_{t-1}, x_t) given x_0 ([DDPM] Eq. 6-7 by Bayes)
    var_prev, cov, var_t = 1 - abp, math.sqrt(a) * (1 - abp), a * (1 - abp) + (1 - a)
    p_mean, p_var, _ = fwd.q_posterior(sched, x0, xt_want, t)
    torch.testing.assert_close(p_mean, math.sqrt(abp) * x0 + cov / var_t * (xt_want - math.sqrt(ab) * x0),
                               rtol=rtol, atol=1e-12)
    assert float(p_var) == pytest.approx(var_prev - cov ** 2 / var_t, rel=1e-8, abs=1e-15)
    # the conversions: values of the definitions, not round trips
    v_want = math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0  # [V] §4
    torch.testing.assert_close(fwd.v_from_eps(sched, xt_want, t, eps), v_want, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fwd.velocity(sched, x0, t, eps), v_want, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(fwd.eps_from_x0(sched, xt_want, t, x0), eps, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fwd.score_from_eps(sched, t, eps), -eps / math.sqrt(1 - ab), rtol=rtol, atol=0)
    # x_0 from ε divides by √ᾱ_t (≈ 5e-5 for the cosine schedule at t = T): the round-off of x_t is amplified
    torch.testing.assert_close(fwd.x0_from_eps(sched, xt_want, t, eps), x0, rtol=0, atol=1e-15 / math.sqrt(ab) + 1e-12)


@pytest.mark.parametrize("frac", FRACTIONS)
def test_round_trips(sched, frac):
    g = torch.Generator().manual_seed(_t_of(sched, frac))
    x0 = torch.randn(16, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 3, generator=g, dtype=torch.float64)
    t = _t(sched, frac, 16)
    xt = fwd.q_sample(sched, x0, t, eps)
    torch.testing.assert_close(fwd.x0_from_eps(sched, xt, t, eps), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fwd.eps_from_x0(sched, xt, t, x0), eps, rtol=1e-9, atol=1e-9)
    v = fwd.v_from_eps(sched, xt, t, eps)
    ab = sched.alpha_bar[t].unsqueeze(1)
    torch.testing.assert_close(v, ab.sqrt() * eps - (1 - ab).sqrt() * x0, rtol=1e-9, atol=1e-9)  # [V] definition
    torch.testing.assert_close(fwd.v_from_x0(sched, xt, t, x0), v, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fwd.eps_from_v(sched, xt, t, v), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fwd.x0_from_v(sched, xt, t, v), x0, rtol=1e-9, atol=1e-9)
    score = fwd.score_from_eps(sched, t, eps)
    torch.testing.assert_close(fwd.eps_from_score(sched, t, score), eps, rtol=1e-12, atol=1e-12)
    for obj, pred in (("eps", eps), ("x0", x0), ("v", v)):
        torch.testing.assert_close(fwd.pred_to_eps(sched, xt, t, pred, obj), eps, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(fwd.pred_to_x0(sched, xt, t, pred, obj), x0, rtol=1e-9, atol=1e-9)


def test_score_is_gradient_of_log_q():
    """score_from_eps(ε) is ∇ log N(x_t; √ᾱ x_0, (1-ᾱ)I) for the ε that produced x_t (torch.distributions oracle)."""
    s = schedules.linear(1000)
    t = torch.tensor([1, 300, 1000])
    x0 = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xt = fwd.q_sample(s, x0, t, eps).requires_grad_(True)
    ab = s.alpha_bar[t].unsqueeze(1)
    logp = torch.distributions.Normal(ab.sqrt() * x0, (1 - ab).sqrt()).log_prob(xt).sum()
    (grad,) = torch.autograd.grad(logp, xt)
    torch.testing.assert_close(fwd.score_from_eps(s, t, eps), grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("frac", FRACTIONS)
def test_posterior_matches_bayes(sched, frac):
    """μ̃, β̃ equal the Gaussian conditional of (x_{t-1}, x_t) given x_0, computed from the joint covariance."""
    t_val = _t_of(sched, frac)
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    xt = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    t = torch.tensor([t_val])
    mean, var, log_var = fwd.q_posterior(sched, x0, xt, t)
    ab_prev, a = float(sched.alpha_bar_prev[t_val]), float(sched.alpha[t_val])
    # joint of x_{t-1} = √ᾱ_{t-1} x0 + √(1-ᾱ_{t-1}) z1 and x_t = √α_t x_{t-1} + √β_t z2 (per coordinate)
    var_prev, cov, var_t = 1 - ab_prev, math.sqrt(a) * (1 - ab_prev), a * (1 - ab_prev) + (1 - a)
    m_prev, m_t = math.sqrt(ab_prev) * x0, math.sqrt(ab_prev * a) * x0
    torch.testing.assert_close(mean, m_prev + cov / var_t * (xt - m_t), rtol=1e-10, atol=1e-12)
    assert float(var) == pytest.approx(var_prev - cov ** 2 / var_t, rel=1e-9, abs=1e-15)
    if t_val == 1:
        assert float(var) == 0.0 and float(log_var) == pytest.approx(math.log(float(sched.beta_tilde[2])))
    else:
        assert float(log_var) == pytest.approx(math.log(float(var)), rel=1e-12)


def test_iterated_chain_matches_q_sample_moments():
    """Run x_t = √(1-β_t) x_{t-1} + √β_t z step by step ([DDPM] Eq. 2) and compare with [DDPM] Eq. 4."""
    s = schedules.linear(200, 1e-3, 0.05)
    N, t_check = 200_000, (1, 50, 200)
    g = torch.Generator().manual_seed(1234)
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64).expand(N, 2)
    x = x0.clone()
    for t in range(1, s.T + 1):
        x = (1 - s.beta[t]).sqrt() * x + s.beta[t].sqrt() * torch.randn(N, 2, generator=g, dtype=torch.float64)
        if t in t_check:
            eps = torch.randn(N, 2, generator=g, dtype=torch.float64)
            closed = fwd.q_sample(s, x0, torch.full((N,), t), eps)
            mean_true, var_true = s.alpha_bar[t].sqrt() * x0[0], 1 - s.alpha_bar[t]
            # 5 standard errors: SE(mean) = √(var/N); SE(var) ≈ var·√(2/N) for Gaussian samples
            for sample in (x, closed):
                assert (sample.mean(0) - mean_true).abs().max() < 5 * math.sqrt(var_true / N)
                assert (sample.var(0) - var_true).abs().max() < 5 * var_true * math.sqrt(2 / N)


def test_batch_equals_one_by_one(sched):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    t = torch.tensor([1, 3, sched.T, 2, sched.T // 2])
    batch = fwd.q_posterior(sched, x0, fwd.q_sample(sched, x0, t, eps), t)[0]
    for i in range(5):
        one = fwd.q_posterior(sched, x0[i:i + 1], fwd.q_sample(sched, x0[i:i + 1], t[i:i + 1], eps[i:i + 1]),
                              t[i:i + 1])[0]
        torch.testing.assert_close(batch[i:i + 1], one)


def test_dtype_and_image_shapes():
    s = schedules.linear(100)
    x0 = torch.zeros(2, 1, 8, 8)
    out = fwd.q_sample(s, x0, torch.tensor([5, 100]), torch.ones(2, 1, 8, 8))
    assert out.dtype == torch.float32 and out.shape == (2, 1, 8, 8)
    assert float(out[1, 0, 0, 0]) == pytest.approx(math.sqrt(1 - float(s.alpha_bar[100])), rel=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: fwd.q_sample(s, torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3)), r"1\.\.10"),
        (lambda s: fwd.q_sample(s, torch.zeros(2, 3), torch.tensor([1, 11]), torch.zeros(2, 3)), r"1\.\.10"),
        (lambda s: fwd.q_sample(s, torch.zeros(2, 3), torch.tensor([1, 2]), torch.zeros(2, 4)), "shape"),
        (lambda s: fwd.q_sample(s, torch.zeros(2, 3), torch.tensor([1, 2, 3]), torch.zeros(2, 3)), "batch"),
        (lambda s: fwd.q_posterior(s, torch.zeros(2, 3), torch.zeros(3, 3), torch.tensor([1, 2])), "shape"),
        (lambda s: fwd.pred_to_eps(s, torch.zeros(2, 3), torch.tensor([1, 2]), torch.zeros(2, 3), "score"),
         "objective"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(schedules.linear(10))
