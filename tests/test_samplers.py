"""Samplers: DDPM and DDIM steps against their formulas, determinism, batch = one-by-one, CFG conventions,
respacing, DDIM inversion, validation."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons import data, samplers, schedules
from ddpm_lessons import forward as fwd

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
    z = torch.ones(5, 2, dtype=torch.float64)
    zero = samplers.ddpm_step(sched, xt, 3, eps_hat, var_type="beta", noise=torch.zeros_like(xt))
    big = samplers.ddpm_step(sched, xt, 3, eps_hat, var_type="beta", noise=z)
    torch.testing.assert_close(big - zero, math.sqrt(float(sched.beta[3])) * z)
    assert torch.equal(samplers.ddpm_step(sched, xt, 1, eps_hat, noise=z),
                       samplers.ddpm_step(sched, xt, 1, eps_hat, noise=torch.zeros_like(xt)))  # no noise at t = 1


def test_ddpm_step_clipped_is_eq7_of_clipped_x0(sched):
    """Errata 20: with clip_x0 the mean is μ̃_t(x_t, clip(x̂_0, -1, 1)) of [DDPM] Eq. 7, written out here from the
    schedule's fields, at steps where the clip binds (x̂_0 far outside [-1, 1]) and where it does not."""
    g = torch.Generator().manual_seed(4)
    xt = 2.0 * torch.randn(6, 3, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(6, 3, generator=g, dtype=torch.float64)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    for tt in (2, sched.T // 2, sched.T):
        ab, abp = float(sched.alpha_bar[tt]), float(sched.alpha_bar_prev[tt])
        a, b, bt = float(sched.alpha[tt]), float(sched.beta[tt]), float(sched.beta_tilde[tt])
        x0_hat = ((xt - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)).clamp(-1, 1)
        assert (x0_hat.abs() == 1).any()  # the clip binds somewhere
        mean = math.sqrt(abp) * b / (1 - ab) * x0_hat + math.sqrt(a) * (1 - abp) / (1 - ab) * xt  # [DDPM] Eq. 7
        got = samplers.ddpm_step(sched, xt, tt, eps_hat, noise=z, clip_x0=True)
        torch.testing.assert_close(got, mean + math.sqrt(bt) * z, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(got, samplers.ddpm_step(sched, xt, tt, eps_hat, noise=z), atol=1e-3)
    # no clipping needed: the clipped and unclipped steps agree
    small = fwd.q_sample(sched, 0.5 * torch.tanh(xt), torch.full((6,), 3), eps_hat)
    torch.testing.assert_close(samplers.ddpm_step(sched, small, 3, eps_hat, noise=z, clip_x0=True),
                               samplers.ddpm_step(sched, small, 3, eps_hat, noise=z), rtol=1e-9, atol=1e-9)


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
    """Errata 20: ``sample`` on a batch equals ``sample`` on each row alone, deterministic and stochastic samplers,
    with one generator per row (a row's noise then does not depend on the batch)."""
    s = schedules.linear(40, 1e-3, 0.2)
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    gens = lambda rows: [torch.Generator().manual_seed(100 + r) for r in rows]  # noqa: E731
    kw = dict(method=method, eta=eta, progress=False)
    full = samplers.sample(dummy_model, s, (3, 2), x_T=x_T, generator=gens(range(3)), **kw)
    for i in range(3):
        one = samplers.sample(dummy_model, s, (1, 2), x_T=x_T[i:i + 1], generator=gens([i]), **kw)
        torch.testing.assert_close(full[i:i + 1], one, rtol=1e-5, atol=1e-6)
    if method == "ddpm" or eta > 0:  # the noise matters: other generators give other samples
        other = samplers.sample(dummy_model, s, (3, 2), x_T=x_T, generator=gens(range(3, 6)), **kw)
        assert not torch.allclose(full, other, atol=1e-3)
    # and the loop is the documented one: the step functions with the per-row noise of those generators
    x, g = x_T.clone(), gens(range(3))
    for i in range(s.T, 0, -1):
        eps = samplers.guided_eps(dummy_model, s, x, i)
        if method == "ddpm":
            x = samplers.ddpm_step(s, x, i, eps, generator=g)
        else:
            x = samplers.ddim_step(s, x, i, i - 1, eps, eta=eta, generator=g)
    torch.testing.assert_close(full, x, rtol=0, atol=0)


def test_sample_keeps_the_dtype_of_x_T():
    """Errata 31: a float64 x_T stays float64, so a float64 DDIM inversion round trip is limited by the
    discretisation, not by a cast to float32."""
    s = schedules.linear(1000)
    model = GaussianOracle(s, 0.2, 0.5)
    x0 = 0.2 + 0.5 * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xT = samplers.ddim_invert(model, s, x0, steps=1000)
    assert xT.dtype == torch.float64
    back = samplers.sample(model, s, x0.shape, method="ddim", x_T=xT, progress=False)
    assert back.dtype == torch.float64
    # with 1000 steps the η = 0 map and its inverse agree to ~1e-5 here; float32 would add ~1e-7 of round-off
    # per step on top; in float64 the same chain run twice agrees bit for bit
    again = samplers.sample(model, s, x0.shape, method="ddim", x_T=xT.clone(), progress=False)
    assert torch.equal(back, again)
    x32 = samplers.sample(model, s, x0.shape, method="ddim", x_T=xT.float(), progress=False)
    assert x32.dtype == torch.float32
    assert float((back - x32.double()).abs().max()) > 1e-9  # the float32 chain really is a different computation


def test_annealed_langevin_on_a_parameterless_model():
    """Errata 30: the exact ε* of a mixture has no parameters; the device defaults to the CPU and the dynamics
    sample the mixture (two modes at ±2, std 0.5: the mean of |x| is ≈ 2)."""
    mix = data.mixture_1d()
    s = schedules.linear(1000)
    model = mix.eps_model(s)
    assert list(model.parameters()) == []
    x = samplers.annealed_langevin(model, s, (2000, 1), n_levels=10, n_steps_each=30, step_lr=5e-5,
                                   generator=torch.Generator().manual_seed(0))
    assert x.shape == (2000, 1) and x.device.type == "cpu" and torch.isfinite(x).all()
    # 2000 samples: the mean of |x| for N(±2, 0.5²) is 2.0 (SE 0.011); allow the sampler's bias
    assert abs(float(x.abs().mean()) - 2.0) < 0.15
    assert 0.35 < float((x > 0).double().mean()) < 0.65  # both modes


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
        (lambda m, s: samplers.sample(m, s, (2, 2), method="rk45", progress=False), "method"),
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


def test_the_formula_modules_import_only_downwards():
    """#17: a sampling step goes samplers -> reverse -> forward -> schedules and a training step losses -> reverse
    -> forward -> schedules, never back up (the old sampler imported its model-output helpers from losses)."""
    import ast
    import pathlib

    import ddpm_lessons

    order = ["schedules", "models", "forward", "reverse", "exact", "losses", "solvers", "samplers"]  # low to high
    root = pathlib.Path(ddpm_lessons.__file__).parent
    for i, name in enumerate(order):
        path = root / (f"{name}/protocol.py" if name == "models" else f"{name}.py")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import ... / from . import x
                imported |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        above = imported & set(order[i + 1:])
        assert not above, f"{name} imports {sorted(above)}, which sit above it"
    assert "losses" not in {a for a in dir(samplers) if not a.startswith("__")}


def test_sample_with_a_step_fn_runs_it_in_the_package_loop(dummy_model):
    """A learner's ancestral step plugged into ``sample``: the package's step reproduces the default samples bit for
    bit; a different step (no noise) gives other samples; other methods refuse it."""
    s = schedules.linear(30, 1e-3, 0.2)
    kw = dict(progress=False, steps=15)
    ref = samplers.sample(dummy_model, s, (5, 2), generator=torch.Generator().manual_seed(2), **kw)
    calls = []

    def mine(chain, x, i, eps_hat, z):
        calls.append(i)
        return samplers.ddpm_step(chain, x, i, eps_hat, noise=z)

    got = samplers.sample(dummy_model, s, (5, 2), generator=torch.Generator().manual_seed(2), step_fn=mine, **kw)
    assert torch.equal(got, ref) and calls == list(range(15, 0, -1))
    quiet = samplers.sample(dummy_model, s, (5, 2), generator=torch.Generator().manual_seed(2),
                            step_fn=lambda c, x, i, e, z: samplers.ddpm_step(c, x, i, e, noise=0 * z), **kw)
    assert not torch.allclose(quiet, ref)
    with pytest.raises(ValueError, match="step_fn"):
        samplers.sample(dummy_model, s, (5, 2), method="ddim", step_fn=mine, **kw)
