"""Losses: Gaussian KL and the discretized decoder against exact oracles; the bound of an oracle denoiser against
its closed form; the per-t weight; training losses."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ddpm_lessons import exact, losses, schedules
from ddpm_lessons import forward as fwd

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
        sigma2 = (s.beta_tilde if var_type == "beta_tilde" else s.beta)[t].unsqueeze(1)  # σ_t², t >= 2
        kl = losses.vlb_term(s, x0, xt, t, mean_hat, sigma2.log())
        w_mse = losses.vlb_weight(s, t, var_type) * ((eps - eps_hat) ** 2).sum(1)
        if var_type == "beta_tilde":
            torch.testing.assert_close(kl, w_mse, rtol=1e-8, atol=1e-10)
        else:  # σ² = β ≠ β̃ adds the t-dependent constant D·KL(N(0,β̃)||N(0,β)) to each term
            const = 6 * losses.gaussian_kl(torch.zeros(()), s.beta_tilde[t].log(), torch.zeros(()), s.beta[t].log())
            torch.testing.assert_close(kl, w_mse + const, rtol=1e-8, atol=1e-10)
    assert torch.isfinite(losses.vlb_weight(s, torch.tensor([1]))).all()


def test_bits_per_dim_of_oracle_matches_closed_form():
    """The Monte Carlo bound of the exact denoiser of Gaussian data against ``exact.closed_form_bound`` (written
    from the schedule alone, none of this module's helpers), term by term and in total."""
    sched = schedules.linear(100, 1e-3, 0.1)
    m, sd, D, N = 0.1, 0.2, 4, 4000
    g = torch.Generator().manual_seed(7)
    x0 = (m + sd * torch.randn(N, D, generator=g, dtype=torch.float64)).clamp(-1, 1)
    model = GaussianOracle(sched, m, sd)
    for var_type in ("beta_tilde", "beta"):
        out = losses.bits_per_dim(model, sched, x0, generator=g, var_type=var_type)  # continuous decoder (default)
        prior, terms = exact.closed_form_bound(sched, m, sd, var_type)
        # 5 standard errors of the mean over N examples (the closed forms ignore the clamp, which moves fewer
        # than 1e-6 of the values)
        for got, want in ((out["prior"], prior), (out["terms"][:, 1:].sum(1), terms[1:].sum()),
                          (out["decoder"], terms[0]), (out["total"], prior + terms.sum())):
            assert abs(float(got.mean()) - float(want)) < 5 * float(got.std()) / math.sqrt(N) + 1e-9, var_type
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


class FixedSigmaNet(torch.nn.Module):
    """A fixed learn_sigma ε-model in float64 for (B, 2) data: ε̂ = A x_t + sin(t/T), variance logits tanh(C x_t)."""

    objective, learn_sigma, num_classes, null_label = "eps", True, 0, None

    def __init__(self, T: int):
        super().__init__()
        self.T = T
        self.A = torch.nn.Parameter(torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64))
        self.C = torch.tensor([[0.5, 0.2], [-0.3, 0.7]], dtype=torch.float64)

    def forward(self, xt, t, cond=None):
        eps_hat = xt @ self.A.T + torch.sin(t.double() / self.T).unsqueeze(1)
        return torch.cat([eps_hat, torch.tanh(xt @ self.C.T)], dim=1)


def _hybrid_by_hand(model, sched, x0, t, noise, lam=1e-3):
    """[IDDPM] Eq. 16 in the reference code's units, from the schedule's fields and torch.distributions only:
    mean over dims of ‖ε - ε̂‖² + λ·T·(the sampled step's bound term in bits/dim), L_T left out."""
    ab, abp = sched.alpha_bar[t].unsqueeze(1), sched.alpha_bar_prev[t].unsqueeze(1)
    beta, alpha = sched.beta[t].unsqueeze(1), sched.alpha[t].unsqueeze(1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise  # [DDPM] Eq. 4
    out = model(xt, t)
    eps_hat, v = out[:, :2], out[:, 2:]
    mse = ((noise - eps_hat) ** 2).mean(1)
    x0_hat = (xt - (1 - ab).sqrt() * eps_hat) / ab.sqrt()
    post_mean = lambda a: abp.sqrt() * beta / (1 - ab) * a + alpha.sqrt() * (1 - abp) / (1 - ab) * xt  # noqa: E731
    beta_tilde = (1 - abp) / (1 - ab) * beta
    bt2 = float((1 - sched.alpha_bar[1]) / (1 - sched.alpha_bar[2]) * sched.beta[2])  # β̃_2: log β̃_1 = -inf
    log_bt = torch.where(t.unsqueeze(1) == 1, torch.full_like(beta, math.log(bt2)), beta_tilde.clamp_min(1e-300).log())
    frac = (v + 1) / 2
    log_var = frac * beta.log() + (1 - frac) * log_bt  # [IDDPM] Eq. 15
    p = Normal(post_mean(x0_hat), (0.5 * log_var).exp())
    kl = kl_divergence(Normal(post_mean(x0), (0.5 * log_bt).exp()), p).sum(1)
    nll = -p.log_prob(x0).sum(1)  # continuous decoder at t = 1
    term_bits = torch.where(t == 1, nll, kl) / (2 * math.log(2))
    return mse + lam * sched.T * term_bits, mse, term_bits


@pytest.mark.parametrize("T", [1000, 50])
def test_hybrid_loss_value_is_iddpm_eq16(T):
    """Errata 1: L_hybrid = L_simple + λ·T·L_{t-1}/(D ln 2) (the reference's mse + (T/1000)·vb), not λ·L_{t-1}."""
    sched = schedules.linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)
    g = torch.Generator().manual_seed(5)
    model = FixedSigmaNet(T)
    x0 = torch.randn(6, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 3, T // 2, T - 1, T])
    ours = losses.training_losses(model, sched, x0, t=t, noise=noise, loss_type="hybrid")
    want, mse, term = _hybrid_by_hand(model, sched, x0, t, noise)
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-12)
    # the old scale, mse + λ·term (T times too weak), is far outside the tolerance
    assert not torch.allclose(ours.detach(), mse + 1e-3 * term, rtol=1e-3, atol=0)
    torch.testing.assert_close(losses.training_losses(model, sched, x0, t=t, noise=noise, loss_type="vlb"), term,
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses.training_losses(model, sched, x0, t=t, noise=noise, loss_type="hybrid",
                                                      lambda_vlb=0.01),
                               _hybrid_by_hand(model, sched, x0, t, noise, lam=0.01)[0], rtol=1e-10, atol=1e-12)
    # the stop-gradient: the mean's parameters get the mse's gradient only
    ours.sum().backward()
    g_hybrid = model.A.grad.clone()
    model.A.grad = None
    mse.sum().backward()
    torch.testing.assert_close(g_hybrid, model.A.grad, rtol=1e-12, atol=1e-14)


def test_training_and_evaluation_share_the_decoder():
    """Errata 3: with their defaults, training_losses' 'vlb' at t = 1 and bits_per_dim's decoder term are the same L_0,
    and both follow var_type."""
    import inspect

    train_default, eval_default = (inspect.signature(f).parameters["bins"].default
                                   for f in (losses.training_losses, losses.bits_per_dim))
    assert train_default == eval_default  # was None vs 256
    assert eval_default == losses.DEFAULT_BINS
    sched = schedules.linear(20, 1e-3, 0.2)
    model = TinyEps("eps").double()
    x0 = (torch.randint(0, 17, (5, 2), generator=torch.Generator().manual_seed(0)).double() / 8 - 1)
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for var_type in ("beta_tilde", "beta"):
        for bins in ({}, {"bins": 17}):  # the shared default, and the digits' 17 levels passed to both
            train_l0 = losses.training_losses(model, sched, x0, t=torch.ones(5, dtype=torch.long), noise=noise,
                                              loss_type="vlb", var_type=var_type, **bins)
            # bits_per_dim evaluates t = 1 first, with the first noise its generator draws
            eval_l0 = losses.bits_per_dim(model, sched, x0, generator=torch.Generator().manual_seed(1),
                                          var_type=var_type, n_t=2, **bins)["decoder"]
            torch.testing.assert_close(train_l0, eval_l0.to(train_l0.dtype), rtol=1e-12, atol=1e-12)
