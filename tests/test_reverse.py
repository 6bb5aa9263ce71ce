"""The reverse model p_θ: the learned-variance interpolation at its ends, μ_θ against [DDPM] Eq. 11, and
``predict``'s one batched call with guidance and a learned variance."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import forward as fwd
from ddpm_lessons import reverse, schedules


def test_learned_log_variance_interpolates_log_beta_and_log_beta_tilde():
    """[IDDPM] Eq. 15: logits +1 give log β_t, -1 give log β̃_t (clipped at t = 1), 0 the geometric mean."""
    s = schedules.cosine(100)
    t = torch.tensor([1, 2, 50, 100])
    like = torch.zeros(4, 3)
    lb, lbt = torch.log(s.beta[t]).unsqueeze(1), s.posterior_log_var[t].unsqueeze(1)
    ones = torch.ones(4, 3, dtype=torch.float64)
    torch.testing.assert_close(reverse.log_variance(s, t, like.double(), ones), lb.expand(4, 3))
    torch.testing.assert_close(reverse.log_variance(s, t, like.double(), -ones), lbt.expand(4, 3))
    torch.testing.assert_close(reverse.log_variance(s, t, like.double(), 0 * ones), ((lb + lbt) / 2).expand(4, 3))
    assert float(lbt[0]) == pytest.approx(math.log(float(s.beta_tilde[2])))  # β̃_1 = 0: clipped to β̃_2
    fixed = reverse.log_variance(s, t, like, None, "beta")
    assert fixed.shape == (4, 1) and fixed.dtype == torch.float32


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_p_mean_is_eq11_for_every_objective(objective):
    """μ̃_t(x_t, x̂_0) with x̂_0 from any parameterisation equals (x_t - β_t/√(1-ᾱ_t) ε̂)/√α_t ([DDPM] Eq. 11)."""
    s = schedules.linear(1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(5, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([2, 10, 300, 900, 1000])
    xt = fwd.q_sample(s, x0, t, eps)
    pred = {"eps": eps, "x0": x0, "v": fwd.velocity(s, x0, t, eps)}[objective]
    mean, log_var = reverse.p_mean_variance(s, xt, t, pred, None, objective)
    a, b, ab = (v[t].unsqueeze(1) for v in (s.alpha, s.beta, s.alpha_bar))
    torch.testing.assert_close(mean, (xt - b / (1 - ab).sqrt() * eps) / a.sqrt(), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(log_var, s.posterior_log_var[t].unsqueeze(1))


class _Recorder(torch.nn.Module):
    """A conditional learn_sigma v-model that records its calls: v̂ = 0.1 x_t + class offset, logits 0.5 - cond/10."""

    objective, learn_sigma, num_classes, null_label = "v", True, 3, 3

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, xt, t, cond=None):
        self.calls.append((xt.shape[0], t.tolist(), None if cond is None else cond.tolist()))
        c = torch.full((xt.shape[0],), 3) if cond is None else cond
        return torch.cat([0.1 * xt + 0.05 * c.unsqueeze(1), (0.5 - c / 10).unsqueeze(1).expand_as(xt)], dim=1)


def test_predict_batches_guidance_into_one_call_and_takes_the_conditional_variance():
    s = schedules.respace(schedules.linear(100), 10)  # index 4 of the strided chain is the original t = 40
    model = _Recorder()
    xt = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))
    cond = torch.tensor([0, 2])
    eps, log_var = reverse.predict(model, s, xt, 4, cond, w=1.5)
    assert model.calls == [(4, [40] * 4, [0, 2, 3, 3])]  # one call: conditional rows, then the null label
    t_i = torch.full((2,), 4)
    e_c = fwd.eps_from_v(s, xt, t_i, model(xt, torch.full((2,), 40), cond)[:, :2])
    e_u = fwd.eps_from_v(s, xt, t_i, model(xt, torch.full((2,), 40), None)[:, :2])
    torch.testing.assert_close(eps, reverse.cfg_eps(e_c, e_u, 1.5))
    logits = (0.5 - cond / 10).unsqueeze(1).expand(2, 2)
    torch.testing.assert_close(log_var, reverse.log_variance(s, t_i, xt, logits))
    eps_plain, _ = reverse.predict(model, s, xt, 4, cond, w=0.0)  # w = 0: one conditional pass of B rows
    assert model.calls[-1] == (2, [40, 40], [0, 2])
    torch.testing.assert_close(eps_plain, e_c)
