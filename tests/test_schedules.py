"""Schedules: exact values at the identity index, the closed forms, respacing, validation."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import schedules


def test_identity_index_and_dtypes(sched):
    assert sched.beta.dtype == torch.float64 and sched.alpha_bar.dtype == torch.float64
    for name in ("beta", "alpha", "alpha_bar", "alpha_bar_prev", "beta_tilde", "timesteps"):
        assert getattr(sched, name).shape == (sched.T + 1,), name
    assert sched.beta[0] == 0 and sched.alpha[0] == 1 and sched.alpha_bar[0] == 1
    assert sched.beta_tilde[1] == 0  # β̃_1 = (1 - ᾱ_0)/(1 - ᾱ_1) β_1 = 0 exactly
    assert sched.alpha_bar_prev[1] == 1
    assert torch.equal(sched.alpha_bar_prev[1:], sched.alpha_bar[:-1])


def test_relations(sched):
    t = torch.arange(1, sched.T + 1)
    torch.testing.assert_close(sched.alpha_bar[t], torch.cumprod(1 - sched.beta[1:], 0), rtol=1e-12, atol=0)
    expected_bt = (1 - sched.alpha_bar_prev[t]) / (1 - sched.alpha_bar[t]) * sched.beta[t]
    torch.testing.assert_close(sched.beta_tilde[t], expected_bt, rtol=1e-12, atol=0)
    assert (sched.beta_tilde[t] <= sched.beta[t]).all()  # β̃_t ≤ β_t since ᾱ_{t-1} ≥ ᾱ_t
    assert torch.isinf(sched.snr[0]) and (sched.snr[1:].diff() < 0).all()


def test_linear_values():
    s = schedules.linear(1000)
    assert float(s.beta[1]) == pytest.approx(1e-4, rel=1e-12)
    assert float(s.beta[1000]) == pytest.approx(0.02, rel=1e-12)
    # ᾱ_T for the DDPM linear schedule: Π(1 - β_t), computed independently in Python floats
    prod = 1.0
    for k in range(1000):
        prod *= 1 - (1e-4 + k * (0.02 - 1e-4) / 999)
    assert float(s.alpha_bar[1000]) == pytest.approx(prod, rel=1e-10)


def test_cosine_closed_form():
    s = schedules.cosine(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731  [IDDPM] Eq. 17
    for t in (1, 10, 500, 900):
        assert float(s.alpha_bar[t]) == pytest.approx(f(t) / f(0), rel=1e-9)
    assert float(s.beta.max()) == pytest.approx(0.999)  # the cap binds at t = T


def test_respace_identity_and_strided(sched):
    same = schedules.respace(sched, sched.T)
    for name in ("beta", "alpha_bar", "beta_tilde", "timesteps"):
        assert torch.equal(getattr(same, name), getattr(sched, name))
    K = 10
    r = schedules.respace(sched, K)
    assert r.T == K and int(r.timesteps[-1]) == sched.T and r.timesteps[0] == 0
    tau = r.timesteps
    torch.testing.assert_close(r.alpha_bar, sched.alpha_bar[tau], rtol=0, atol=0)
    # β'_i = 1 - ᾱ_{τ_i}/ᾱ_{τ_{i-1}}  ([IDDPM] Eq. 19)
    torch.testing.assert_close(r.beta[1:], 1 - sched.alpha_bar[tau[1:]] / sched.alpha_bar[tau[:-1]], rtol=1e-12, atol=0)
    rr = schedules.respace(r, 5)  # respacing twice still maps to the first chain's t
    assert set(rr.timesteps[1:].tolist()) <= set(tau[1:].tolist())
    explicit = schedules.respace(sched, [1, sched.T // 2, sched.T])
    assert explicit.timesteps.tolist() == [0, 1, sched.T // 2, sched.T]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: schedules.linear(0), "T must be a positive integer"),
        (lambda: schedules.linear(10, 0.5, 0.1), "beta_end"),
        (lambda: schedules.linear(10, 0.0, 0.1), r"\(0, 1\)"),
        (lambda: schedules.from_beta(torch.tensor([0.1, 1.2])), r"open interval \(0, 1\)"),
        (lambda: schedules.from_beta(torch.tensor([0.1, float("nan")])), r"\(0, 1\)"),
        (lambda: schedules.cosine(10, max_beta=1.0), "max_beta"),
        (lambda: schedules.respace(schedules.linear(10), 11), r"1\.\.10"),
        (lambda: schedules.respace(schedules.linear(10), 0), r"1\.\.10"),
        (lambda: schedules.respace(schedules.linear(10), [3, 2]), "increasing"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_check_t():
    s = schedules.linear(10)
    with pytest.raises(ValueError, match=r"1\.\.10"):
        s.check_t(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"1\.\.10"):
        s.check_t(torch.tensor([11]))
    with pytest.raises(ValueError, match="integer"):
        s.check_t(torch.tensor([1.5]))


def test_spec_round_trip_is_exact(sched):
    """``Schedule.spec`` / ``from_spec``: a plain dict (name, T, β_1..β_T) that rebuilds the schedule bit for bit;
    a respaced chain also records its ᾱ, timesteps and parent T."""
    spec = sched.spec()
    assert set(spec) == {"name", "T", "beta"} and spec["beta"].dtype == torch.float64
    back = schedules.Schedule.from_spec(spec)
    for name in ("beta", "alpha_bar", "beta_tilde", "timesteps", "posterior_log_var", "sqrt_alpha_bar"):
        assert torch.equal(getattr(back, name), getattr(sched, name)), name
    assert (back.T, back.name, back.parent_T) == (sched.T, sched.name, sched.parent_T)
    r = schedules.respace(sched, 7)
    rb = schedules.Schedule.from_spec(r.spec())
    assert torch.equal(rb.alpha_bar, r.alpha_bar) and torch.equal(rb.timesteps, r.timesteps)
    assert rb.parent_T == sched.T and rb.T == 7
    import pickle

    assert torch.equal(pickle.loads(pickle.dumps(spec))["beta"], spec["beta"])


def test_from_alpha_bar_and_the_var_types():
    s = schedules.from_alpha_bar(torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64), "three")
    assert s.T == 3 and s.name == "three"
    torch.testing.assert_close(s.beta[1:], torch.tensor([0.1, 1 - 0.5 / 0.9, 0.8], dtype=torch.float64))
    # the fixed reverse variances, [DDPM] §3.2, with σ_1² := β̃_2 for both (β̃_1 = 0)
    assert float(s.sigma2("beta")[1]) == float(s.beta_tilde[2])
    assert float(s.sigma2("beta_tilde")[1]) == pytest.approx(float(s.beta_tilde[2]), rel=1e-15)  # exp(log β̃_2)
    assert torch.equal(s.sigma2("beta")[2:], s.beta[2:])
    torch.testing.assert_close(s.sigma2("beta_tilde")[2:], s.beta_tilde[2:], rtol=1e-15, atol=0)
    assert schedules.VAR_TYPES == ("beta_tilde", "beta")
    with pytest.raises(ValueError, match="decreasing"):
        schedules.from_alpha_bar(torch.tensor([0.5, 0.6], dtype=torch.float64))
