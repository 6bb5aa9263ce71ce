"""Training loop: determinism, the NaN guard, a falling loss, save/load, label dropout, the lr schedule, EMA, the
loss hook (loss_fn) and the decoder / variance the config hands to the loss (errata 3); the train / sample CLI."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace as dataclasses_replace

import pytest
import torch

from ddpm_lessons import forward, losses, schedules
from ddpm_lessons.cache import load
from ddpm_lessons.models import MLPDenoiser, UNet, mixture_mlp
from ddpm_lessons.train import EMA, TrainConfig, min_snr_weight, train

SCHED = schedules.linear(100)


def _ring_data(n: int = 2048, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four well-separated 2-D clusters with labels 0..3."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    angle = y.float() * (math.pi / 2)
    x = 2.0 * torch.stack([angle.cos(), angle.sin()], 1) + 0.2 * torch.randn(n, 2, generator=g)
    return x, y


def _small_mlp(**kw) -> MLPDenoiser:
    return MLPDenoiser(dim=2, hidden=32, num_blocks=1, emb_dim=16, **kw)


CFG = TrainConfig(steps=40, batch_size=64, lr=2e-3, warmup=5, log_every=10)


def test_same_seed_gives_identical_weights_and_history():
    x, _ = _ring_data()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        results.append(train(_small_mlp(), SCHED, x, cfg=CFG, progress=False))
    a, b = results
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    for k, v in a.ema_model.state_dict().items():
        assert torch.equal(v, b.ema_model.state_dict()[k]), k
    assert a.history["loss"] == b.history["loss"]
    torch.manual_seed(0)
    c = train(_small_mlp(), SCHED, x, cfg=CFG, progress=False, seed=1)
    assert c.history["loss"] != a.history["loss"]  # the seed matters


def test_training_leaves_the_callers_random_state_alone():
    x, _ = _ring_data()
    m = _small_mlp()
    state = torch.get_rng_state()
    train(m, SCHED, x, cfg=CFG, steps=3, progress=False)
    assert torch.equal(torch.get_rng_state(), state)


class _NaNAtCall(MLPDenoiser):
    """Returns NaN from the ``bad_call``-th forward pass on (one call per training step)."""

    def __init__(self, bad_call: int, value: float = float("nan")) -> None:
        super().__init__(dim=2, hidden=16, num_blocks=1, emb_dim=8)
        self.calls, self.bad_call, self.value = 0, bad_call, value

    def forward(self, xt, t, cond=None):
        self.calls += 1
        out = super().forward(xt, t, cond)
        return out * self.value if self.calls >= self.bad_call else out


@pytest.mark.parametrize("value,word", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_nan_guard_names_the_step(value, word):
    x, _ = _ring_data()
    with pytest.raises(FloatingPointError, match=rf"loss became {word} at step 7\b"):
        train(_NaNAtCall(7, value), SCHED, x, cfg=CFG, progress=False)


def test_short_run_loss_falls():
    x, _ = _ring_data()
    torch.manual_seed(0)
    r = train(_small_mlp(), SCHED, x, cfg=CFG, steps=300, log_every=50, progress=False)
    losses = r.history["loss"]
    assert r.history["step"] == [50, 100, 150, 200, 250, 300]
    # start near E|eps|^2 / D = 1 (zero-initialised output); 300 steps take a 4-cluster denoiser clearly below it
    # (measured: 0.93 -> 0.63), and the logged loss falls at every logging step
    assert losses[0] > 0.4 and losses[-1] < 0.75 * losses[0], losses
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    assert len(r.history["lr"]) == len(losses) == len(r.history["time"])


def test_short_unet_run_on_images():
    g = torch.Generator().manual_seed(0)
    x = torch.tanh(torch.randn(64, 1, 8, 8, generator=g))
    y = torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    m = UNet(in_channels=1, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=8,
             num_classes=3, num_groups=4, dropout=0.1)
    r = train(m, SCHED, x, y, TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup=2, p_uncond=0.2, log_every=10),
              progress=False)
    assert all(math.isfinite(v) for v in r.history["loss"])
    assert r.history["loss"][-1] < r.history["loss"][0]
    assert not r.model.training and not r.ema_model.training


def test_save_load_round_trip(tmp_path):
    x, y = _ring_data()
    torch.manual_seed(0)
    r = train(_small_mlp(num_classes=4, objective="v"), SCHED, x, y, CFG, progress=False, meta={"data": "ring"})
    path = r.save(tmp_path / "ckpt.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    r2 = load(path)
    assert r2.config == r.config
    assert r2.history == r.history
    assert r2.meta["data"] == "ring"
    assert torch.equal(r2.sched.alpha_bar, SCHED.alpha_bar)
    assert r2.model.objective == "v" and r2.model.num_classes == 4
    for mine, theirs in [(r.model, r2.model), (r.ema_model, r2.ema_model)]:
        for k, v in mine.state_dict().items():
            assert torch.equal(v, theirs.state_dict()[k]), k
    xt, t, c = torch.randn(5, 2), torch.tensor([1, 20, 40, 60, 100]), torch.tensor([0, 1, 2, 3, 4])
    with torch.no_grad():
        assert torch.equal(r.ema_model(xt, t, c), r2.ema_model(xt, t, c))


class _Recorder(MLPDenoiser):
    """Records the class ids the training loop passes."""

    def __init__(self) -> None:
        super().__init__(dim=2, hidden=16, num_blocks=1, emb_dim=8, num_classes=4)
        self.seen: list[torch.Tensor] = []

    def forward(self, xt, t, cond=None):
        self.seen.append(cond.clone())
        return super().forward(xt, t, cond)


@pytest.mark.parametrize("p_uncond", [0.0, 0.3])
def test_label_dropout_rate(p_uncond):
    x, y = _ring_data()
    m = _Recorder()
    train(m, SCHED, x, y, CFG, steps=60, progress=False, p_uncond=p_uncond)
    seen = torch.cat(m.seen)
    assert seen.numel() == 60 * 64
    share_null = float((seen == m.null_label).double().mean())
    # Bernoulli(p) over n = 3840 labels: standard error sqrt(p(1-p)/n) <= 0.0074, so 0.04 is > 5 SE
    assert abs(share_null - p_uncond) < 0.04, share_null
    kept = seen[seen != m.null_label]
    assert int(kept.min()) >= 0 and int(kept.max()) <= 3
    # the kept labels keep the data's class balance (each class ~1/4)
    shares = torch.bincount(kept, minlength=4).double() / kept.numel()
    assert float((shares - 0.25).abs().max()) < 0.05


def test_lr_schedule_warmup_and_cosine():
    cfg = TrainConfig(steps=110, lr=1e-3, warmup=10, lr_decay="cosine", min_lr_ratio=0.1)
    assert cfg.lr_at(1) == pytest.approx(1e-4)
    assert cfg.lr_at(10) == pytest.approx(1e-3)
    assert cfg.lr_at(60) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way through the cosine
    assert cfg.lr_at(110) == pytest.approx(1e-4)
    const = TrainConfig(steps=110, lr=1e-3, warmup=0, lr_decay="none")
    assert const.lr_at(1) == const.lr_at(110) == 1e-3


@pytest.mark.parametrize("field,value", [("steps", 0), ("lr", -1.0), ("ema_decay", 1.0), ("p_uncond", 1.5),
                                         ("loss_type", "l1"), ("lr_decay", "step"), ("grad_clip", 0.0),
                                         ("objective", "score"), ("snr_gamma", 0.0), ("snr_gamma", float("nan"))])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_bad_inputs_raise_value_errors():
    x, y = _ring_data()
    with pytest.raises(ValueError, match="data_y"):
        train(_small_mlp(), SCHED, x, y, CFG, progress=False)  # labels for an unconditional model
    with pytest.raises(ValueError, match="p_uncond"):
        train(_small_mlp(num_classes=4), SCHED, x, None, CFG, progress=False, p_uncond=0.1)
    with pytest.raises(ValueError, match="objective"):
        train(_small_mlp(), SCHED, x, None, CFG, progress=False, objective="x0")
    with pytest.raises(ValueError, match="respaced"):
        train(_small_mlp(), schedules.respace(SCHED, 10), x, None, CFG, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train(_small_mlp(), SCHED, x[:10], None, CFG, progress=False)


def test_ema_update_rule():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.9, warmup=False)
    start = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    ema.update(m)
    for k, v in ema.module.state_dict().items():
        assert torch.allclose(v, start[k] + 0.1)  # 0.9 * old + 0.1 * (old + 1)
    warm = EMA(m, decay=0.999, warmup=True)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    warm.update(m)  # first update uses min(0.999, 2/11)
    for k, v in warm.module.state_dict().items():
        assert torch.allclose(v, m.state_dict()[k] - 1.0 + 9 / 11)


def test_zero_ema_decay_copies_the_model():
    x, _ = _ring_data()
    r = train(_small_mlp(), SCHED, x, cfg=CFG, progress=False, ema_decay=0.0, steps=5)
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, r.ema_model.state_dict()[k])


def test_hybrid_loss_with_learned_variance_trains():
    x, _ = _ring_data()
    torch.manual_seed(0)
    r = train(mixture_mlp(learn_sigma=True), SCHED, x, cfg=CFG, progress=False, loss_type="hybrid", steps=20)
    assert all(math.isfinite(v) for v in r.history["loss"])


# ---- the train / sample command-line handlers ----------------------------------------------------------------


def test_cli_train_then_sample_scatter(tmp_path, capsys):
    from ddpm_lessons.cli import main

    ckpt, png = tmp_path / "m.pt", tmp_path / "m.png"
    assert main(["train", "--dataset", "mixture_8", "--n-train", "2000", "--steps", "20", "--batch-size", "64",
                 "--device", "cpu", "--no-progress", "--out", str(ckpt)]) == 0
    assert "20 steps" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(ckpt), "--sampler", "ddim", "--steps", "10", "--n", "300",
                 "--no-progress", "--out", str(png), "--save-tensor", str(tmp_path / "x.pt")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert torch.load(tmp_path / "x.pt").shape == (300, 2)


def test_cli_conditional_digits_image_grid(tmp_path):
    from ddpm_lessons.cli import main

    ckpt, png = tmp_path / "d.pt", tmp_path / "d.png"
    assert main(["train", "--dataset", "digits", "--conditional", "--steps", "3", "--batch-size", "16",
                 "--device", "cpu", "--no-progress", "--out", str(ckpt)]) == 0
    r = load(ckpt)
    assert r.model.num_classes == 10 and r.config.p_uncond == 0.1 and r.meta["dataset"] == "digits"
    assert main(["sample", "--checkpoint", str(ckpt), "--sampler", "ddpm", "--steps", "5", "--w", "1", "--n", "20",
                 "--no-progress", "--out", str(png), "--save-tensor", str(tmp_path / "x.pt")]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert torch.load(tmp_path / "x.pt").shape == (20, 1, 8, 8)


def test_cli_bad_arguments_return_2(tmp_path, capsys):
    from ddpm_lessons.cli import main

    assert main(["sample", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["train", "--dataset", "mnist", "--steps", "1", "--out", str(tmp_path / "m.pt")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits", "--preset", "mixture_mlp", "--out", str(tmp_path / "m.pt")]) == 2
    ckpt = tmp_path / "m.pt"
    assert main(["train", "--dataset", "mixture_8", "--n-train", "500", "--steps", "2", "--batch-size", "32",
                 "--device", "cpu", "--no-progress", "--out", str(ckpt)]) == 0
    assert main(["sample", "--checkpoint", str(ckpt), "--w", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert "conditional" in capsys.readouterr().err


def test_max_seconds_stops_early_and_records_the_tail():
    x, _ = _ring_data()
    r = train(_small_mlp(), SCHED, x, cfg=CFG, progress=False, steps=100_000, max_seconds=0.3)
    done = r.meta["steps_done"]
    assert 1 <= done < 100_000
    assert r.history["step"][-1] == done and math.isfinite(r.history["loss"][-1])


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(objective):
    # [MinSNR]: whatever the network predicts, the weighted loss must equal min(SNR_t, gamma) * ||x0 - x0_hat||^2.
    # Checked through the package's exact conversions between eps, x0 and v, independently of the weight formula.
    sched, gamma = schedules.cosine(200), 5.0
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([1, 3, 20, 60, 120, 199, 200])
    x0, noise, x0_hat = (torch.randn(7, 4, generator=g, dtype=torch.float64) for _ in range(3))
    xt = forward.q_sample(sched, x0, t, noise)
    eps_hat = forward.eps_from_x0(sched, xt, t, x0_hat)
    v, v_hat = forward.v_from_eps(sched, xt, t, noise), forward.v_from_eps(sched, xt, t, eps_hat)
    target, pred = {"eps": (noise, eps_hat), "x0": (x0, x0_hat), "v": (v, v_hat)}[objective]
    weighted = min_snr_weight(sched, gamma, objective)[t] * ((target - pred) ** 2).sum(1)
    snr = sched.alpha_bar[t] / (1 - sched.alpha_bar[t])
    expected = snr.clamp(max=gamma) * ((x0 - x0_hat) ** 2).sum(1)
    torch.testing.assert_close(weighted, expected, rtol=1e-9, atol=0)


def test_snr_gamma_needs_the_simple_loss():
    with pytest.raises(ValueError, match="snr_gamma"):
        TrainConfig(snr_gamma=5.0, loss_type="hybrid")
    with pytest.raises(ValueError, match="objective"):
        min_snr_weight(SCHED, 5.0, "score")


def test_snr_gamma_reweights_training():
    # The weighted run must differ from the plain one and still learn (loss falls).
    x, _ = _ring_data()
    cfg = TrainConfig(steps=60, batch_size=64, lr=2e-3, warmup=5, log_every=10, snr_gamma=1.0)
    torch.manual_seed(0)
    plain = train(_small_mlp(), SCHED, x, None, dataclasses_replace(cfg, snr_gamma=None), progress=False)
    torch.manual_seed(0)  # the same initial weights: only the weighting differs
    weighted = train(_small_mlp(), SCHED, x, None, cfg, progress=False)
    assert weighted.history["loss"] != plain.history["loss"]
    assert weighted.history["loss"][-1] < weighted.history["loss"][0]


def test_cli_train_keeps_its_old_module_path(tmp_path):
    from ddpm_lessons import cli_train

    assert cli_train.main is __import__("ddpm_lessons.cli", fromlist=["main"]).main
    assert cli_train.MODEL_PRESETS == ("mixture_mlp", "digits_unet", "mnist_unet", "ddpm_cifar10")


# ---- the loss hook and what the config hands to the loss -------------------------------------------------------


def test_loss_fn_equal_to_l_simple_reproduces_the_default_run():
    x, _ = _ring_data()

    def my_l_simple(model, sched, x0, t, noise, cond):
        xt = forward.q_sample(sched, x0, t, noise)  # [DDPM] Eq. 4
        return ((noise - model(xt, t, cond)) ** 2).mean(1)  # [DDPM] Eq. 14, per example

    runs = []
    for fn in (None, my_l_simple):
        torch.manual_seed(0)
        runs.append(train(_small_mlp(), SCHED, x, cfg=CFG, progress=False, loss_fn=fn))
    a, b = runs
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    assert b.history["loss"] == pytest.approx(a.history["loss"], rel=1e-5)


def test_loss_fn_receives_the_batch_the_loop_draws():
    x, y = _ring_data()
    seen = []

    def spy(model, sched, x0, t, noise, cond):
        seen.append((x0.shape, t.clone(), noise.shape, cond.clone()))
        assert model.objective == "eps" and model.num_classes == 4 and model.null_label == 4
        return model(forward.q_sample(sched, x0, t, noise), t, cond).pow(2).mean()  # a 0-d loss is accepted

    r = train(_small_mlp(num_classes=4), SCHED, x, y, CFG, steps=6, progress=False, loss_fn=spy, p_uncond=0.5)
    assert len(seen) == 6 and all(s[0] == (64, 2) and s[2] == (64, 2) for s in seen)
    t_all = torch.cat([s[1] for s in seen])
    assert int(t_all.min()) >= 1 and int(t_all.max()) <= SCHED.T
    assert (torch.cat([s[3] for s in seen]) == 4).any()  # label dropout happened before the hook
    assert all(math.isfinite(v) for v in r.history["loss"])
    with pytest.raises(ValueError, match="snr_gamma"):
        train(_small_mlp(), SCHED, x, None, CFG, steps=2, progress=False, snr_gamma=5.0,
              loss_fn=lambda m, s, x0, t, n, c: m(forward.q_sample(s, x0, t, n), t).pow(2).mean())


@pytest.mark.parametrize("bins,var_type", [(17, "beta"), (None, "beta_tilde")])
def test_config_hands_bins_and_var_type_to_the_loss(monkeypatch, bins, var_type):
    # errata 3: a vlb / hybrid run must train the decoder L_0 that bits_per_dim scores
    calls = []
    real = losses.training_losses

    def spy(*args, **kwargs):
        calls.append({k: kwargs.get(k) for k in ("bins", "var_type", "loss_type", "lambda_vlb")})
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "training_losses", spy)
    x = torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0)).mul(16).round().div(8).sub(1)
    m = UNet(in_channels=1, ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), image_size=8, num_groups=4,
             learn_sigma=True)
    train(m, SCHED, x, cfg=TrainConfig(steps=2, batch_size=16, warmup=1, loss_type="vlb", bins=bins,
                                       var_type=var_type, lambda_vlb=0.01), progress=False)
    assert calls == [{"bins": bins, "var_type": var_type, "loss_type": "vlb", "lambda_vlb": 0.01}] * 2


def test_vlb_training_loss_uses_the_discrete_decoder_when_told():
    # the t = 1 term differs between the 17-level decoder and the continuous density: the choice reaches the loss
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)).mul(16).round().div(8).sub(1)
    m = UNet(in_channels=1, ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), image_size=8, num_groups=4,
             learn_sigma=True)
    t, noise = torch.ones(32, dtype=torch.long), torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = losses.training_losses(m, SCHED, x, t=t, noise=noise, loss_type="vlb", bins=17)
        b = losses.training_losses(m, SCHED, x, t=t, noise=noise, loss_type="vlb", bins=None)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("field,value", [("bins", 1), ("bins", 2.5), ("var_type", "fixed_large")])
def test_bad_decoder_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})
