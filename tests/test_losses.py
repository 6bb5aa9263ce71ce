"""Losses: Gaussian KL and the discretized decoder against exact oracles; the bound of an oracle denoiser against
its closed form; the per-t weight; training losses."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ddpm_lessons import forward as fwd
from ddpm_lessons import losses, schedules

from .conftest import GaussianOracle


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(1000, generator=g, dtype=torch.float64), torch.randn(1000, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(1000, generator=g, dtype=torch.float64), torch.randn(1000, generator=g, dtype=torch.float64)
    ours = losses.gaussian_kl(m1, lv1, m2, lv2)
    ref = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert (ours >= 0).all() and float(losses.gaussian_kl(m1, lv1, m1, lv1).abs().max()) == 0.0
    with pytest.raises(ValueError, match="broadcast"):
        losses.gaussian_kl(torch.zeros(3), torch.zeros(4), torch.zeros(3), torch.zeros(3))


def _bin_log_prob(lo: float, hi: float) -> float:
    """log(Φ(hi) - Φ(lo)) at 50 digits (mpmath), floored at log 1e-12, so the reference does not cancel in tails."""
    with mpmath.workdps(50):
        return float(mpmath.log(max(mpmath.ncdf(hi) - mpmath.ncdf(lo), mpmath.mpf(1e-12))))


@pytest.mark.parametrize("bins", [256, 17])
def test_discretized_loglik_matches_exact_cdf(bins):
    grid = torch.linspace(-1, 1, bins, dtype=torch.float64)
    for mean, log_scale in ((0.1, math.log(0.05)), (-0.9, math.log(0.3)), (1.0, math.log(0.01))):
        ours = losses.discretized_gaussian_log_likelihood(grid, torch.tensor(mean, dtype=torch.float64),
                                                          torch.tensor(log_scale, dtype=torch.float64), bins=bins)
        sd, d = math.exp(log_scale), 1 / (bins - 1)
        probs = []
        for k, x in enumerate(grid.tolist()):
            lo = -math.inf if k == 0 else (x - d - mean) / sd  # open-ended edge bins
            hi = math.inf if k == bins - 1 else (x + d - mean) / sd
            probs.append(_bin_log_prob(lo, hi))
        exact = torch.tensor(probs, dtype=torch.float64)
        torch.testing.assert_close(ours, exact, rtol=1e-8, atol=1e-8)
        assert float(ours.exp().sum()) == pytest.approx(1.0, abs=1e-6)  # the bins cover the line


def test_discretized_loglik_floor_and_range():
    far = losses.discretized_gaussian_log_likelihood(torch.tensor([0.0]), torch.tensor([0.9]), torch.tensor([-8.0]))
    assert torch.isfinite(far).all() and float(far) == pytest.approx(math.log(1e-12))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        losses.discretized_gaussian_log_likelihood(torch.tensor([1.5]), torch.tensor([0.0]), torch.tensor([0.0]))


def test_vlb_weight_turns_eps_mse_into_kl():
    """L_{t-1} for the ε-form mean with σ² fixed equals λ_t‖ε - ε̂‖² ([DDPM] Eq. 12)."""
    s = schedules.linear(1000)
    g = torch.Generator().manual_seed(3)
    for var_type in ("beta_tilde", "beta"):
        t = torch.tensor([2, 10, 500, 1000])
        x0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
        eps = torch.randn(4, 6, generator=g, dtype=torch.float64)
        eps_hat = eps + 0.1 * torch.randn(4, 6, generator=g, dtype=torch.float64)
        xt = fwd.q_sample(s, x0, t, eps)
        a, b, ab = s.alpha[t].unsqueeze(1), s.beta[t].unsqueeze(1), s.alpha_bar[t].unsqueeze(1)
        mean_hat = (xt - b / (1 - ab).sqrt() * eps_hat) / a.sqrt()  # [DDPM] Eq. 11
        sigma2 = losses._sigma2(s, var_type)[t].unsqueeze(1)
        kl = losses.vlb_term(s, x0, xt, t, mean_hat, sigma2.log())
        w_mse = losses.vlb_weight(s, t, var_type) * ((eps - eps_hat) ** 2).sum(1)
        if var_type == "beta_tilde":
            torch.testing.assert_close(kl, w_mse, rtol=1e-8, atol=1e-10)
        else:  # σ² = β ≠ β̃ adds the t-dependent constant D·KL(N(0,β̃)||N(0,β)) to each term
            const = 6 * losses.gaussian_kl(torch.zeros(()), s.beta_tilde[t].log(), torch.zeros(()), s.beta[t].log())
            torch.testing.assert_close(kl, w_mse + const, rtol=1e-8, atol=1e-10)
    assert torch.isfinite(losses.vlb_weight(s, torch.tensor([1]))).all()


def test_bits_per_dim_of_oracle_matches_closed_form():
    sched = schedules.linear(100, 1e-3, 0.1)
    m, sd, D, N = 0.1, 0.2, 4, 4000
    g = torch.Generator().manual_seed(7)
    x0 = (m + sd * torch.randn(N, D, generator=g, dtype=torch.float64)).clamp(-1, 1)
    model = GaussianOracle(sched, m, sd)
    out = losses.bits_per_dim(model, sched, x0, generator=g)
    to_bits = 1 / math.log(2)
    # closed forms, per dimension in bits: E L_T and E L_{t-1} = λ_t Var(ε | x_t) for t ≥ 2
    ab_T = float(sched.alpha_bar[-1])
    prior = 0.5 * (-math.log(1 - ab_T) + (1 - ab_T) + ab_T * (m ** 2 + sd ** 2) - 1) * to_bits
    t = torch.arange(2, sched.T + 1)
    ab = sched.alpha_bar[t]
    kl_terms = losses.vlb_weight(sched, t) * ab * sd ** 2 / (ab * sd ** 2 + 1 - ab) * to_bits
    # 5 standard errors of the mean over N examples (the closed form for the prior ignores the clamp, which moves
    # fewer than 1e-6 of the values)
    mc_prior = out["prior"]
    assert abs(float(mc_prior.mean()) - prior) < 5 * float(mc_prior.std()) / math.sqrt(N) + 1e-9
    kl_sum = out["terms"][:, 1:].sum(1)
    se = float(kl_sum.std()) / math.sqrt(N)
    assert abs(float(kl_sum.mean()) - float(kl_terms.sum())) < 5 * se
    torch.testing.assert_close(out["total"], out["prior"] + out["terms"].sum(1))
    assert torch.equal(out["decoder"], out["terms"][:, 0])


def test_bits_per_dim_stratified_estimate_is_close():
    sched = schedules.linear(100, 1e-3, 0.1)
    g = torch.Generator().manual_seed(1)
    x0 = (0.2 * torch.randn(2000, 4, generator=g, dtype=torch.float64)).clamp(-1, 1)
    model = GaussianOracle(sched, 0.0, 0.2)
    full = losses.bits_per_dim(model, sched, x0, generator=g)["total"].mean()
    quick = losses.bits_per_dim(model, sched, x0, generator=g, n_t=25)
    K = quick["terms"].shape[1]
    assert quick["terms"].shape[0] == 2000 and 15 <= K <= 25 and int(quick["t"][0]) == 1
    assert int(quick["t"][-1]) == 100
    assert float(quick["total"].mean()) == pytest.approx(float(full), rel=0.05)


class TinyEps(torch.nn.Module):
    def __init__(self, objective="eps", learn_sigma=False):
        super().__init__()
        self.objective, self.learn_sigma, self.num_classes, self.null_label = objective, learn_sigma, 0, None
        self.lin = torch.nn.Linear(3, 2 * 2 if learn_sigma else 2)

    def forward(self, xt, t, cond=None):
        return self.lin(torch.cat([xt, t.float().unsqueeze(1) / 100], 1))


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("loss_type", ["simple", "vlb"])
def test_training_losses_shapes_and_gradients(objective, loss_type):
    sched = schedules.linear(100)
    model = TinyEps(objective)
    x0 = torch.randn(32, 2)
    loss = losses.training_losses(model, sched, x0, loss_type=loss_type, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (32,) and torch.isfinite(loss).all() and (loss >= 0).all()
    loss.mean().backward()
    assert model.lin.weight.grad.abs().sum() > 0


def test_training_losses_targets_and_hybrid():
    sched = schedules.linear(100)
    x0, noise, t = torch.randn(8, 2), torch.randn(8, 2), torch.randint(1, 101, (8,))
    model = TinyEps("v")
    xt = fwd.q_sample(sched, x0, t, noise)
    v_target = fwd.v_from_eps(sched, xt, t, noise)
    expected = ((model(xt, t) - v_target) ** 2).mean(1)
    torch.testing.assert_close(losses.training_losses(model, sched, x0, t=t, noise=noise), expected)
    hybrid_model = TinyEps("eps", learn_sigma=True)
    h = losses.training_losses(hybrid_model, sched, x0, t=t, noise=noise, loss_type="hybrid")
    assert h.shape == (8,) and torch.isfinite(h).all()
    with pytest.raises(ValueError, match="learn_sigma"):
        losses.training_losses(model, sched, x0, loss_type="hybrid")
    with pytest.raises(ValueError, match="loss_type"):
        losses.training_losses(model, sched, x0, loss_type="l2")
    with pytest.raises(ValueError, match=r"1\.\.100"):
        losses.training_losses(model, sched, x0, t=torch.zeros(8, dtype=torch.long))


def test_l_simple():
    a, b = torch.ones(4, 3), torch.zeros(4, 3)
    assert float(losses.l_simple(a, b)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        losses.l_simple(a, torch.zeros(4, 2))
