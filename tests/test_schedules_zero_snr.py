"""schedules.rescale_zero_terminal_snr against diffusers' function (Lin et al. 2023, arXiv:2305.08891, Alg. 1).

Index map: diffusers' alphas_cumprod[k] is our alpha_bar[k + 1]. The comparison runs in float64 on both sides
(diffusers' function computes in the dtype of the betas it is given), so t < T agree to ~1e-15; at t = T diffusers
returns ᾱ_T = 0 (β_T = 1) and we keep a positive clamp (see the function's docstring), checked separately.
"""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import forward, schedules


def _scaled_linear(T: int = 1000) -> schedules.Schedule:
    """Stable Diffusion's "scaled_linear" β: linspace(√0.00085, √0.012, T)²."""
    return schedules.from_beta(torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2, "sd")


@pytest.mark.parametrize("make", [lambda: schedules.linear(1000), lambda: schedules.cosine(1000), _scaled_linear])
def test_matches_diffusers_and_keeps_the_invariants(make):
    pytest.importorskip("diffusers")
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr as theirs

    s = make()
    z = schedules.rescale_zero_terminal_snr(s)
    ref = torch.cumprod(1 - theirs(s.beta[1:].clone()), 0)  # (T,) float64, ref[-1] == 0
    assert float(ref[-1]) == pytest.approx(0.0, abs=1e-30)
    torch.testing.assert_close(z.alpha_bar[1:-1], ref[:-1], rtol=1e-12, atol=0)
    assert float(z.alpha_bar[1]) == pytest.approx(float(s.alpha_bar[1]), rel=1e-12)  # √ᾱ_1 kept
    abT = float(z.alpha_bar[-1])
    assert 0 < abT <= schedules.ZERO_SNR_ALPHA_BAR_T and abT < float(z.alpha_bar[-2])
    assert bool((z.alpha_bar[1:] < z.alpha_bar[:-1]).all())


def test_terminal_clamp_values():
    sd = schedules.rescale_zero_terminal_snr(_scaled_linear())
    assert float(sd.alpha_bar[-1]) == schedules.ZERO_SNR_ALPHA_BAR_T  # diffusers' Euler clamp, 2^-24
    lin = schedules.rescale_zero_terminal_snr(schedules.linear(1000))
    assert float(lin.alpha_bar[-1]) == pytest.approx(0.5 * float(lin.alpha_bar[-2]))  # ᾱ'_{T-1} ≈ 4e-9 < 2^-24
    assert math.sqrt(float(_scaled_linear().alpha_bar[-1])) == pytest.approx(0.0683, abs=5e-4)  # Lin et al. §3.1
    with pytest.raises(ValueError, match="full schedule"):
        schedules.rescale_zero_terminal_snr(schedules.respace(schedules.linear(1000), 10))


def test_eps_is_ill_posed_at_T_but_v_is_not():
    """At the clamped ᾱ_T an ε error of 1e-3 becomes an x_0 error of 1e-3·√((1-ᾱ)/ᾱ) ≈ 4 (SD); a v error stays 1e-3."""
    z = schedules.rescale_zero_terminal_snr(_scaled_linear())
    t = torch.tensor([z.T])
    x0 = torch.full((1, 4), 0.7, dtype=torch.float64)
    eps = torch.randn(1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    xt = forward.q_sample(z, x0, t, eps)
    err_eps = (forward.x0_from_eps(z, xt, t, eps + 1e-3) - x0).abs().max()
    v = forward.v_from_eps(z, xt, t, eps)
    ab = float(z.alpha_bar[-1])
    x0_from_v = math.sqrt(ab) * xt - math.sqrt(1 - ab) * (v + 1e-3)  # [V] §4
    assert float(err_eps) == pytest.approx(1e-3 * math.sqrt((1 - ab) / ab), rel=1e-6)
    assert float((x0_from_v - x0).abs().max()) < 2e-3
