"""The discretized Gaussian decoder ([DDPM] Eq. 13) has a finite value *and gradient* for every finite mean and log
scale, on every bin; where the log-likelihood is above its 1e-12 floor both agree with an exact reference.

The failure this guards against: a mean many scales from x0 makes Φ(upper) - Φ(lower) underflow; a ``torch.where``
branch that is computed but not selected (or a value under the floor) then holds -inf, and its backward sends
0 · inf = NaN into every parameter's gradient although the loss itself is finite. References: [DDPM] 2006.11239,
[IDDPM] 2102.09672 (the hybrid loss and learned variance that carry the decoder's gradient to the variance).
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from ddpm_lessons import forward as fwd
from ddpm_lessons import losses, schedules

FLOOR = math.log(1e-12)


def _grid(bins: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.linspace(-1, 1, bins, dtype=dtype)


def _loglik_and_grads(x, mean, log_scale, bins):
    """The public function's value and d/d mean, d/d log_scale (elementwise: every element depends on its own inputs
    only, so the gradient of the sum is the elementwise derivative)."""
    mean = mean.clone().requires_grad_()
    log_scale = log_scale.clone().requires_grad_()
    out = losses.discretized_gaussian_log_likelihood(x, mean, log_scale, bins=bins)
    g_mean, g_ls = torch.autograd.grad(out.sum(), (mean, log_scale))
    return out.detach(), g_mean, g_ls


# log σ from far below to far above anything a model emits; float32 stops where 1/σ would overflow (σ ~ 1e-38)
LOG_SCALES = {torch.float64: [-700.0, -200.0, -60.0, -20.0, math.log(1e-3), math.log(0.01), 0.0, 20.0, 60.0, 200.0,
                              700.0],
              torch.float32: [-87.0, -60.0, -20.0, math.log(1e-3), math.log(0.01), 0.0, 20.0, 60.0, 87.0]}
OFFSETS = [0.0, 0.5, -0.5, 3.0, -3.0, 8.0, -8.0, 50.0, -50.0, 1e4, -1e4]  # (mean - x) in units of σ


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bins", [17, 256])
def test_decoder_value_and_gradient_finite_on_extreme_grid(bins, dtype):
    """Every bin (the open-ended edge bins at ±1 included), means 0..10^4 scales away on both sides (up to 1e30
    away in float32) and absolute means up to ±1e30, σ from e^-700 (e^-87 in float32) to e^700 (e^87): value and
    both gradients finite, and exactly 0 gradients on the 1e-12 floor."""
    x = _grid(bins, dtype)
    for log_scale in LOG_SCALES[dtype]:
        sd = math.exp(log_scale)
        for k in OFFSETS:
            if abs(k * sd) > (1e30 if dtype == torch.float32 else 1e300):
                # float32's backward forms (x - mean)·∂/∂u before the 1/σ factor: |mean - x| ~ 1e38 would overflow
                continue
            mean = x + k * sd
            _check_finite(x, mean, torch.full_like(x, log_scale), bins, (log_scale, k))
        for absolute in (2.0, -2.0, 1e6, -1e6, 1e30, -1e30):  # means far outside [-1, 1] whatever σ is
            _check_finite(x, torch.full_like(x, absolute), torch.full_like(x, log_scale), bins, (log_scale, absolute))


def _check_finite(x, mean, log_scale, bins, where):
    out, g_mean, g_ls = _loglik_and_grads(x, mean, log_scale, bins)
    assert torch.isfinite(out).all() and (out >= FLOOR - 1e-9).all() and (out <= 1e-12).all(), where
    assert torch.isfinite(g_mean).all(), (where, g_mean)
    assert torch.isfinite(g_ls).all(), (where, g_ls)
    floored = out <= FLOOR + 1e-9  # on the floor the value is constant, so the gradient is exactly 0
    assert (g_mean[floored] == 0).all() and (g_ls[floored] == 0).all(), where


def test_decoder_gradient_finite_on_random_inputs():
    """A seeded sweep over means and scales spread over many orders of magnitude (float32 and float64)."""
    g = torch.Generator().manual_seed(0)
    n = 20000
    for dtype, max_log in ((torch.float64, 700.0), (torch.float32, 85.0)):
        x = _grid(17, torch.float64)[torch.randint(0, 17, (n,), generator=g)]
        log_scale = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * max_log
        sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
        dist = 10.0 ** (torch.rand(n, generator=g, dtype=torch.float64) * 60 - 30)  # |mean - x| in 1e-30..1e30
        mean = x + sign * dist
        out, g_mean, g_ls = _loglik_and_grads(x.to(dtype), mean.to(dtype), log_scale.to(dtype), 17)
        assert torch.isfinite(out).all() and torch.isfinite(g_mean).all() and torch.isfinite(g_ls).all(), dtype


def _reference(x: float, mean: float, log_scale: float, bins: int) -> tuple[float, float, float]:
    """log P, d log P/d mean, d log P/d log σ at 50 digits (mpmath), P = Φ(hi) - Φ(lo) with open edge bins.

    With hi = (x - mean + δ)/σ, lo = (x - mean - δ)/σ: d hi/d mean = -1/σ and d hi/d log σ = -hi, so
    d log P/d mean = (φ(lo) - φ(hi)) / (σ P) and d log P/d log σ = (lo φ(lo) - hi φ(hi)) / P (φ(±∞) terms are 0).
    """
    with mpmath.workdps(50):
        sd, d = mpmath.exp(log_scale), mpmath.mpf(1) / (bins - 1)
        x, mean = mpmath.mpf(x), mpmath.mpf(mean)
        lo = -mpmath.inf if x < -1 + d / 2 else (x - mean - d) / sd
        hi = mpmath.inf if x > 1 - d / 2 else (x - mean + d) / sd
        p = mpmath.ncdf(hi) - mpmath.ncdf(lo)
        pdf_lo = 0 if mpmath.isinf(lo) else mpmath.npdf(lo)
        pdf_hi = 0 if mpmath.isinf(hi) else mpmath.npdf(hi)
        lo_pdf_lo = 0 if mpmath.isinf(lo) else lo * pdf_lo
        hi_pdf_hi = 0 if mpmath.isinf(hi) else hi * pdf_hi
        return float(mpmath.log(p)), float((pdf_lo - pdf_hi) / (sd * p)), float((lo_pdf_lo - hi_pdf_hi) / p)


@pytest.mark.parametrize("bins", [17, 256])
def test_decoder_value_and_gradient_match_exact_reference(bins):
    """float64, every bin, means up to 7 scales away, σ from 1e-3 to 100: where P > 1e-11 (clear of the floor's
    kink) the value matches mpmath to 1e-10 and both gradients to a relative 1e-8; where P < 1e-13 the value is the
    floor and the gradients are 0. (Measured: values within 6e-12, gradients within a relative 1e-11.)"""
    x = _grid(bins, torch.float64)
    n_checked = 0
    for log_scale in (math.log(1e-3), math.log(0.02), math.log(0.3), 0.0, math.log(100.0)):
        sd = math.exp(log_scale)
        for k in (-7.0, -5.5, -3.0, -0.7, 0.0, 0.4, 2.5, 6.5):
            mean = x + k * sd
            out, g_mean, g_ls = _loglik_and_grads(x, mean, torch.full_like(x, log_scale), bins)
            for i in range(bins):
                ref_v, ref_gm, ref_gls = _reference(float(x[i]), float(mean[i]), log_scale, bins)
                if ref_v > math.log(1e-11):
                    assert float(out[i]) == pytest.approx(ref_v, rel=1e-10, abs=1e-10), (log_scale, k, i)
                    assert float(g_mean[i]) == pytest.approx(ref_gm, rel=1e-8, abs=1e-10), (log_scale, k, i)
                    assert float(g_ls[i]) == pytest.approx(ref_gls, rel=1e-8, abs=1e-10), (log_scale, k, i)
                    n_checked += 1
                elif ref_v < math.log(1e-13):
                    assert float(out[i]) == FLOOR and float(g_mean[i]) == 0.0 and float(g_ls[i]) == 0.0
    assert n_checked > 10 * bins  # the grid really exercises the unfloored regime


def test_decoder_gradcheck_float64():
    """Finite differences (torch.autograd.gradcheck, float64) at points clear of the floor, the bin-side switch at
    lower = 0 and the edge cut, including the edge bins and a mean several scales out."""
    bins = 17
    x = torch.tensor([-1.0, -1.0, -0.875, 0.0, 0.5, 0.9375, 1.0, 1.0], dtype=torch.float64)
    mean = torch.tensor([-1.02, -0.9, -0.84, 0.031, 0.41, 1.3, 1.05, 0.93], dtype=torch.float64, requires_grad=True)
    log_scale = torch.tensor([-3.0, -2.5, -4.2, -2.0, -3.3, 0.5, -3.5, -2.8], dtype=torch.float64,
                             requires_grad=True)
    out = losses.discretized_gaussian_log_likelihood(x, mean.detach(), log_scale.detach(), bins=bins)
    assert (out > math.log(1e-10)).all()  # all of them above the floor: the check covers the formula itself
    assert torch.autograd.gradcheck(lambda m, s: losses.discretized_gaussian_log_likelihood(x, m, s, bins=bins),
                                    (mean, log_scale), eps=1e-6, atol=1e-7, rtol=1e-5)


class FarOff(torch.nn.Module):
    """A model whose prediction is a large constant plus a learnable offset: ``offset + a``, and, with learn_sigma,
    variance logits ``var_logit + b`` (so b only gets a gradient through the VLB term)."""

    num_classes, null_label = 0, None

    def __init__(self, objective: str, learn_sigma: bool, offset: float, var_logit: float = 0.0):
        super().__init__()
        self.objective, self.learn_sigma = objective, learn_sigma
        self.offset, self.var_logit = offset, var_logit
        self.a = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(()))

    def forward(self, xt, t, cond=None):
        pred = torch.full_like(xt, self.offset) + self.a
        if not self.learn_sigma:
            return pred
        return torch.cat([pred, torch.full_like(xt, self.var_logit) + self.b], dim=1)


@pytest.mark.parametrize("objective", ["x0", "eps"])
@pytest.mark.parametrize("loss_type,learn_sigma", [("vlb", False), ("vlb", True), ("hybrid", True)])
def test_training_losses_decoder_gradient_finite_for_far_off_model(objective, loss_type, learn_sigma):
    """training_losses at t = 1 (the decoder term) with bins=17: for outputs 1e-3..1e6 off (means from well inside a
    bin to ~1e8 decoder scales away) and variance logits that push σ to e^-77..e^67, the loss and every parameter
    gradient are finite."""
    sched = schedules.linear(100)
    g = torch.Generator().manual_seed(1)
    x0 = -1 + 2 * torch.randint(0, 17, (6, 1, 2, 2), generator=g).float() / 16
    x0[0], x0[1] = -1.0, 1.0  # the open-ended edge bins
    t = torch.ones(6, dtype=torch.long)
    noise = torch.randn(x0.shape, generator=g)
    var_logits = (0.0, -1e3, 1e3, 30.0) if learn_sigma else (0.0,)
    for offset in (1e-3, 1.0, -3.0, 50.0, -1e3, 1e6):
        for var_logit in var_logits:
            model = FarOff(objective, learn_sigma, offset, var_logit)
            loss = losses.training_losses(model, sched, x0, t=t, noise=noise, loss_type=loss_type, bins=17)
            assert torch.isfinite(loss).all(), (offset, var_logit)
            loss.mean().backward()
            assert torch.isfinite(model.a.grad), (offset, var_logit, model.a.grad)
            if learn_sigma:  # b only exists in the output of a learn_sigma model
                assert torch.isfinite(model.b.grad), (offset, var_logit, model.b.grad)


@pytest.mark.parametrize("objective", ["x0", "eps"])
def test_vlb_term_gradient_finite_for_far_off_means(objective):
    """``vlb_term`` evaluates the decoder for every example and picks it with torch.where (the form that needs no
    host sync on an accelerator): with far-off means its value and gradients are finite, and the t = 1 rows equal
    the decoder alone, the other rows the KL alone."""
    sched = schedules.linear(100)
    g = torch.Generator().manual_seed(2)
    x0 = -1 + 2 * torch.randint(0, 17, (8, 3), generator=g).double() / 16
    x0[:, 0], x0[:, 1] = -1.0, 1.0
    t = torch.tensor([1, 1, 1, 1, 2, 5, 1, 50])
    first = t == 1
    xt = fwd.q_sample(sched, x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    for offset in (0.02, 1.0, 50.0, -1e4):
        pred = (torch.full_like(x0, offset) + torch.randn(x0.shape, generator=g, dtype=torch.float64)
                ).requires_grad_()
        log_var = (fwd.extract(sched.posterior_log_var, t, x0) + torch.zeros_like(x0)).requires_grad_()
        mean_hat = fwd.q_posterior(sched, fwd.pred_to_x0(sched, xt, t, pred, objective), xt, t)[0]
        term = losses.vlb_term(sched, x0, xt, t, mean_hat, log_var, bins=17)
        decoder = losses.decoder_nll(x0[first], mean_hat[first], log_var[first], bins=17)
        true_mean, _, true_lv = fwd.q_posterior(sched, x0, xt, t)
        kl = losses.gaussian_kl(true_mean, true_lv, mean_hat, log_var).sum(1)[~first]
        torch.testing.assert_close(term[first], decoder, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(term[~first], kl, rtol=1e-12, atol=1e-12)
        g_pred, g_var = torch.autograd.grad(term.sum(), (pred, log_var))
        assert torch.isfinite(term).all() and torch.isfinite(g_pred).all() and torch.isfinite(g_var).all(), offset
