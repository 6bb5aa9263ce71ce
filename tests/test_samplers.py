"""Samplers: DDPM and DDIM steps against their formulas, determinism, batch = one-by-one, CFG conventions,
respacing, DDIM inversion, validation."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import forward as fwd
from ddpm_lessons import samplers, schedules

from .conftest import GaussianOracle


class CondAffine(torch.nn.Module):
    """A fixed class-conditional ε model: ε̂ = 0.3 x + 0.05·(class embedding), null label = num_classes."""

    objective, learn_sigma, num_classes, null_label = "eps", False, 3, 3

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [0.0, 0.0]]))

    def forward(self, xt, t, cond=None):
        if cond is None:
            cond = torch.full((xt.shape[0],), self.null_label, dtype=torch.long, device=xt.device)
        return 0.3 * xt + 0.05 * self.emb[cond] + 0.01 * (t.float() / 1000).unsqueeze(1)


def test_ddim_eta0_deterministic_and_eta1_is_ancestral_beta_tilde(sched):
    g = torch.Generator().manual_seed(0)
    xt, eps_hat, z = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    t, t_prev = sched.T, sched.T // 2
    a = samplers.ddim_step(sched, xt, t, t_prev, eps_hat, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = samplers.ddim_step(sched, xt, t, t_prev, eps_hat, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    # η = 1 on adjacent steps is the ancestral step with σ² = β̃ ([DDIM] §4.1)
    for tt in (2, sched.T // 2 + 1, sched.T):
        d = samplers.ddim_step(sched, xt, tt, tt - 1, eps_hat, eta=1.0, noise=z)
        p = samplers.ddpm_step(sched, xt, tt, eps_hat, var_type="beta_tilde", noise=z)
        torch.testing.assert_close(d, p, rtol=1e-9, atol=1e-9)


def test_ddpm_step_matches_posterior_of_predicted_x0(sched):
    """μ_θ of [DDPM] Eq. 11 equals μ̃_t(x_t, x̂_0) with x̂_0 from ε̂ (Eq. 15 into Eq. 7)."""
    g = torch.Generator().manual_seed(3)
    xt = torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(5, 2, generator=g, dtype=torch.float64)
    for tt in (1, 2, sched.T):
        t = torch.full((5,), tt)
        mean = fwd.q_posterior(sched, fwd.x0_from_eps(sched, xt, t, eps_hat), xt, t)[0]
        torch.testing.assert_close(samplers.ddpm_step(sched, xt, tt, eps_hat, noise=torch.zeros_like(xt)), mean,
                                   rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(samplers.ddpm_step(sched, xt, tt, eps_hat, noise=torch.zeros_like(xt),
                                                      clip_x0=False), mean, rtol=1e-9, atol=1e-9)
    z = torch.ones(5, 2, dtype=torch.float64)
    zero = samplers.ddpm_step(sched, xt, 3, eps_hat, var_type="beta", noise=torch.zeros_like(xt))
    big = samplers.ddpm_step(sched, xt, 3, eps_hat, var_type="beta", noise=z)
    torch.testing.assert_close(big - zero, math.sqrt(float(sched.beta[3])) * z)
    assert torch.equal(samplers.ddpm_step(sched, xt, 1, eps_hat, noise=z),
                       samplers.ddpm_step(sched, xt, 1, eps_hat, noise=torch.zeros_like(xt)))  # no noise at t = 1


def test_ddim_deterministic_map_is_exact_for_true_eps(sched):
    """With the true ε of a point, η = 0 lands exactly on q's deterministic path √ᾱ' x_0 + √(1-ᾱ') ε."""
    x0, eps = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    t, t_prev = sched.T, 1
    xt = fwd.q_sample(sched, x0, torch.full((4,), t), eps)
    out = samplers.ddim_step(sched, xt, t, t_prev, eps)
    torch.testing.assert_close(out, fwd.q_sample(sched, x0, torch.full((4,), t_prev), eps))
    torch.testing.assert_close(samplers.ddim_step(sched, xt, t, 0, eps), x0)


@pytest.mark.parametrize("method, eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_sample_batch_equals_one_by_one(dummy_model, method, eta):
    """Same x_T and noise → each row of a batch equals the row sampled alone (CPU generators per row)."""
    s = schedules.linear(40, 1e-3, 0.2)
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    full = samplers.sample(dummy_model, s, (3, 2), method=method, eta=eta, x_T=x_T, progress=False,
                           generator=torch.Generator().manual_seed(9)) if eta == 0 and method == "ddim" else None
    if full is not None:
        for i in range(3):
            one = samplers.sample(dummy_model, s, (1, 2), method=method, eta=eta, x_T=x_T[i:i + 1], progress=False)
            torch.testing.assert_close(full[i:i + 1], one, rtol=1e-5, atol=1e-6)
    else:  # stochastic samplers: fix the per-step noise with the noise= path of the step functions
        torch.manual_seed(0)
        noises = torch.randn(s.T, 3, 2)
        outs = []
        for rows in (slice(0, 3), slice(0, 1), slice(1, 2), slice(2, 3)):
            x = x_T[rows].clone()
            for k, i in enumerate(range(s.T, 0, -1)):
                eps = samplers.guided_eps(dummy_model, s, x, i)
                if method == "ddpm":
                    x = samplers.ddpm_step(s, x, i, eps, noise=noises[k, rows])
                else:
                    x = samplers.ddim_step(s, x, i, i - 1, eps, eta=eta, noise=noises[k, rows])
            outs.append(x)
        torch.testing.assert_close(outs[0], torch.cat(outs[1:]), rtol=1e-5, atol=1e-6)


def test_sample_is_reproducible_with_generator(dummy_model):
    s = schedules.linear(30, 1e-3, 0.2)
    a = samplers.sample(dummy_model, s, (4, 2), generator=torch.Generator().manual_seed(1), progress=False)
    b = samplers.sample(dummy_model, s, (4, 2), generator=torch.Generator().manual_seed(1), progress=False)
    c = samplers.sample(dummy_model, s, (4, 2), generator=torch.Generator().manual_seed(2), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cfg_conventions_and_w0():
    g = torch.Generator().manual_seed(0)
    ec, eu = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    assert torch.equal(samplers.cfg_eps(ec, eu, 0.0), ec)
    for w in (0.5, 1.0, 3.0, 7.5):
        torch.testing.assert_close(samplers.cfg_eps(ec, eu, w), samplers.cfg_eps(ec, eu, guidance_scale=1 + w))
        torch.testing.assert_close(samplers.cfg_eps(ec, eu, guidance_scale=1 + w), eu + (1 + w) * (ec - eu))
    with pytest.raises(ValueError, match="exactly one"):
        samplers.cfg_eps(ec, eu)
    with pytest.raises(ValueError, match="exactly one"):
        samplers.cfg_eps(ec, eu, 1.0, guidance_scale=2.0)


def test_guided_sampling_w0_equals_conditional_and_null_label():
    model = CondAffine()
    s = schedules.linear(20, 1e-3, 0.2)
    x = torch.randn(4, 2)
    cond = torch.tensor([0, 1, 2, 0])
    direct = model(x, torch.full((4,), 20), cond)
    torch.testing.assert_close(samplers.guided_eps(model, s, x, 20, cond, w=0.0), direct)
    ec, eu = model(x, torch.full((4,), 20), cond), model(x, torch.full((4,), 20), None)
    torch.testing.assert_close(samplers.guided_eps(model, s, x, 20, cond, w=2.0), samplers.cfg_eps(ec, eu, 2.0))
    a = samplers.sample(model, s, (4, 2), method="ddim", cond=1, w=0.0, x_T=x, progress=False)
    b = samplers.sample(model, s, (4, 2), method="ddim", cond=torch.ones(4, dtype=torch.long), x_T=x, progress=False)
    assert torch.equal(a, b)


def test_respaced_sampling_calls_model_at_original_steps():
    seen = []

    class Spy(torch.nn.Module):
        objective, learn_sigma, num_classes, null_label = "eps", False, 0, None

        def forward(self, xt, t, cond=None):
            seen.append(int(t[0]))
            return torch.zeros_like(xt)

    s = schedules.linear(100)
    samplers.sample(Spy(), s, (2, 2), method="ddim", steps=10, progress=False)
    assert seen == list(range(100, 0, -10))
    seen.clear()
    samplers.sample(Spy(), s, (2, 2), method="ddpm", steps=4, progress=False)
    assert seen == [100, 75, 50, 25]


def test_ddim_inversion_round_trip_shrinks_with_steps():
    s = schedules.linear(1000)
    model = GaussianOracle(s, 0.2, 0.5)  # smooth ODE: the round trip error is the discretisation error
    x0 = 0.2 + 0.5 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = []
    for steps in (10, 50, 200):
        xT = samplers.ddim_invert(model, s, x0, steps=steps)
        back = samplers.sample(model, s, x0.shape, method="ddim", steps=steps, x_T=xT, progress=False)
        errs.append(float((back.double() - x0).abs().max()))
    # first-order in the step size: 20x more steps shrink the error more than 5x
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.05 and errs[0] / errs[2] > 5, errs


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, s: samplers.ddim_step(s, torch.zeros(2, 2), 5, 5, torch.zeros(2, 2)), "smaller"),
        (lambda m, s: samplers.ddim_step(s, torch.zeros(2, 2), 5, 1, torch.zeros(2, 2), eta=-0.1), "eta"),
        (lambda m, s: samplers.ddim_step(s, torch.zeros(2, 2), 11, 1, torch.zeros(2, 2)), r"1\.\.10"),
        (lambda m, s: samplers.ddpm_step(s, torch.zeros(2, 2), 0, torch.zeros(2, 2)), r"1\.\.10"),
        (lambda m, s: samplers.ddpm_step(s, torch.zeros(2, 2), 3, torch.zeros(2, 3)), "same shape"),
        (lambda m, s: samplers.sample(m, s, (2, 2), steps=11, progress=False), r"1\.\.10"),
        (lambda m, s: samplers.sample(m, s, (2, 2), method="euler", progress=False), "method"),
        (lambda m, s: samplers.sample(m, s, (2, 2), method="ddim", eta=-1, progress=False), "eta"),
        (lambda m, s: samplers.sample(m, s, (2, 2), cond=1, progress=False), "unconditional"),
        (lambda m, s: samplers.sample(m, s, (2, 2), x_T=torch.full((2, 2), float("nan")), progress=False), "NaN"),
    ],
)
def test_bad_input(dummy_model, call, match):
    with pytest.raises(ValueError, match=match):
        call(dummy_model, schedules.linear(10))


def test_cond_range_checked():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        samplers.sample(CondAffine(), schedules.linear(10), (2, 2), cond=7, progress=False)
