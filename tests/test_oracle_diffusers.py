"""Oracle tests against diffusers (dev extra). Index map: diffusers' step k is our t = k + 1, and its
``alphas_cumprod[k]`` is our ``alpha_bar[k + 1]``. diffusers keeps its schedule in float32, hence rel. 1e-6."""

from __future__ import annotations

import pytest
import torch

from ddpm_lessons import forward as fwd
from ddpm_lessons import samplers, schedules

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("ours, theirs", [(lambda: schedules.linear(1000), "linear"),
                                          (lambda: schedules.cosine(1000), "squaredcos_cap_v2")])
def test_alpha_bar_matches_diffusers(ours, theirs):
    s = ours()
    sch = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs)
    torch.testing.assert_close(s.beta[1:], sch.betas.double(), rtol=1e-6, atol=0)
    ref = sch.alphas_cumprod.double()
    torch.testing.assert_close(s.alpha_bar[1:-1], ref[:-1], rtol=1e-6, atol=0)
    # the last cosine step has β capped at 0.999: diffusers' float32 1 - β = 0.001 carries a relative error of up to
    # 2^-24 · 0.999 / 0.001 ≈ 6e-5, which ᾱ_T inherits; linear has no such step
    last_tol = 1e-6 if theirs == "linear" else 2 ** -24 * 0.999 / 0.001
    assert abs(float(s.alpha_bar[-1] / ref[-1]) - 1) < last_tol


def _float64(sch):
    """Promote a diffusers scheduler's tables to float64, so a test compares its formulas and not its rounding:
    in float32, 1 - ᾱ_t at small t cancels to ~3e-4 relative error (e.g. 1 - ᾱ_2 ≈ 2.2e-4 with ᾱ near 1)."""
    sch.betas = sch.betas.double()
    sch.alphas = 1.0 - sch.betas
    sch.alphas_cumprod = torch.cumprod(sch.alphas, dim=0)
    if hasattr(sch, "final_alpha_cumprod"):
        sch.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return sch


@pytest.mark.parametrize("k", [0, 1, 10, 500, 999])
def test_q_posterior_matches_ddpm_scheduler(k):
    """DDPMScheduler.step with prediction_type='sample' computes μ̃ from (x_0, x_t) and adds √β̃ z."""
    s = schedules.linear(1000)
    sch = _float64(diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                           prediction_type="sample", clip_sample=False, variance_type="fixed_small"))
    g = torch.Generator().manual_seed(k)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    xt = torch.randn(4, 3, generator=g, dtype=torch.float64)
    outs = [sch.step(x0, k, xt, generator=torch.Generator().manual_seed(seed)).prev_sample for seed in (1, 2)]
    zs = [torch.randn(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) for seed in (1, 2)]
    mean, var, _ = fwd.q_posterior(s, x0, xt, torch.full((4,), k + 1))
    if k == 0:  # no noise at the last step, in both
        torch.testing.assert_close(outs[0], mean, rtol=1e-6, atol=1e-9)
        assert float(var.max()) == 0.0
        return
    # prev = μ̃ + √β̃ z with diffusers' noise z reproduced from the same seeds
    std = (outs[0] - outs[1]) / (zs[0] - zs[1])
    torch.testing.assert_close(std, var.sqrt().expand_as(std), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(outs[0] - std * zs[0], mean, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_ddim_scheduler(eta):
    """Our ddim_step on the full chain with (t, t_prev) = (k+1, k+1-stride) equals DDIMScheduler.step at k
    ('leading' spacing; 'linspace' steps to a wrong previous timestep upstream, see shared/ANCHORS.md)."""
    s = schedules.linear(1000)
    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                  set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)
    sch.set_timesteps(50)
    stride = 1000 // 50
    g = torch.Generator().manual_seed(0)
    for k in sch.timesteps.tolist():
        xt, eps, z = (torch.randn(4, 3, generator=g) for _ in range(3))
        ref = sch.step(eps, k, xt, eta=eta, variance_noise=z).prev_sample
        ours = samplers.ddim_step(s, xt.double(), k + 1, max(k + 1 - stride, 0), eps.double(), eta=eta,
                                  noise=z.double())
        torch.testing.assert_close(ours.float(), ref, rtol=1e-5, atol=1e-5)


def test_respaced_ddim_sampling_matches_diffusers_loop():
    """A whole DDIM-20 loop with a fixed ε model: our respaced sampler vs DDIMScheduler ('leading')."""
    s = schedules.linear(1000)
    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                  set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)
    sch.set_timesteps(20)

    class Model(torch.nn.Module):
        objective, learn_sigma, num_classes, null_label = "eps", False, 0, None

        def forward(self, xt, t, cond=None):
            return 0.5 * xt + 0.1 * torch.cos(t.float() / 300).unsqueeze(1)

    m = Model()
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    x = x_T.clone()
    for k in sch.timesteps.tolist():
        x = sch.step(m(x, torch.full((8,), k + 1)), k, x).prev_sample
    # diffusers 'leading' with 20 of 1000 steps visits k = 950, 900, ..., 0, i.e. our t = 951, ..., 1
    steps = [k + 1 for k in reversed(sch.timesteps.tolist())]
    chain = schedules.respace(s, steps)
    ours = x_T.clone()
    for i in range(chain.T, 0, -1):
        eps = samplers.guided_eps(m, chain, ours, i)
        ours = samplers.ddim_step(chain, ours, i, i - 1, eps)
    # the last diffusers step goes to ᾱ = 1 (set_alpha_to_one), as our step to index 0 does
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
