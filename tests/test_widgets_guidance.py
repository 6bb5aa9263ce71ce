"""guidance_explorer, driven without a browser: build it, set the controls from code, check that the picture, the
adherence/diversity line and the samples follow, that repeated settings come from the cache, and that bad values
never raise inside a callback.

The model is a closed-form stand-in whose conditional noise prediction carries a class pattern and whose null-label
prediction does not, and the "classifier" matches those patterns: guidance then raises adherence for a reason the
test can state (ε̃ = (1 + w) ε_c - w ε_u scales the pattern by 1 + w, [CFG] Eq. 6). One test runs a real (untrained)
U-Net through the same path.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import ipywidgets as widgets
import pytest
import torch
from torch import nn

from ddpm_lessons import samplers, schedules
from ddpm_lessons.models import digits_unet, mixture_mlp
from ddpm_lessons.widgets import GuidanceExplorer, guidance_explorer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUM_CLASSES = 10


def _patterns() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.sign(torch.randn(NUM_CLASSES, 1, 8, 8, generator=g))  # (10, 1, 8, 8), entries ±1


class PatternEps(nn.Module):
    """ε(x_t, c) = 0.3 x_t - b P_c; the null label (or cond=None) drops the pattern: ε(x_t, ∅) = 0.3 x_t."""

    objective, learn_sigma, num_classes, null_label = "eps", False, NUM_CLASSES, NUM_CLASSES
    in_channels, image_size = 1, 8

    def __init__(self, strength: float = 0.05) -> None:
        super().__init__()
        self.register_buffer("patterns", _patterns())
        self.strength = strength

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        eps = 0.3 * xt
        if cond is None:
            return eps
        keep = (cond != self.null_label).to(xt.dtype)[:, None, None, None]  # (B, 1, 1, 1)
        return eps - self.strength * keep * self.patterns[cond.clamp_max(NUM_CLASSES - 1)]


class PatternClassifier(nn.Module):
    """Logits = template match <x, P_c> for each class; ``test_accuracy`` like metrics.DigitClassifier."""

    test_accuracy = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("patterns", _patterns())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.patterns.flatten(1).T  # (N, 10)


@pytest.fixture(scope="module")
def sched():
    return schedules.linear(50, 1e-3, 0.2)


@pytest.fixture(scope="module")
def model():
    return PatternEps().eval()


@pytest.fixture(scope="module")
def clf():
    return PatternClassifier()


def _adherence_text(ex: GuidanceExplorer) -> str:
    m = re.search(r"class='ddpm-adherence'>([\d.]+)%<", ex.metrics_html.value)
    assert m, ex.metrics_html.value
    return m.group(1)


def _expected(model, sched, ex: GuidanceExplorer, w: float, steps: int, seed: int, labels: torch.Tensor):
    x_T = torch.randn((ex.n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
    return samplers.sample(model, sched, (ex.n, 1, 8, 8), method="ddim", steps=steps, cond=labels, w=w, x_T=x_T,
                           progress=False, clip_x0=True).clamp(-1, 1)


def test_builds_a_widget_with_a_picture_and_numbers(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=30, steps=5, steps_options=(5, 10))
    assert isinstance(ex, GuidanceExplorer) and isinstance(ex, widgets.VBox)
    assert bytes(ex.image.value).startswith(PNG_MAGIC)
    assert ex.n_draws == 1 and ex.n_sampled == 1
    assert ex.samples.shape == (30, 1, 8, 8) and torch.isfinite(ex.samples).all()
    assert torch.equal(ex.labels, torch.arange(30) % 10)
    assert (ex.w_slider.min, ex.w_slider.max) == (0.0, 10.0)
    assert "w = 0.0" in ex.metrics_html.value and "s = 1 + w = 1.0" in ex.metrics_html.value
    assert "class='ddpm-diversity'" in ex.metrics_html.value and ex.message.value == ""
    # the displayed adherence is the share of samples the classifier assigns to the requested class
    share = float((clf.logits(ex.samples).argmax(1) == ex.labels).double().mean())
    assert _adherence_text(ex) == f"{100 * share:.1f}"
    assert ex.report["adherence"] == pytest.approx(share)


def test_moving_w_changes_picture_and_adherence_and_matches_the_sampler(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=30, steps=5, steps_options=(5, 10), seed=2)
    png0, text0, adh0 = ex.image.value, ex.metrics_html.value, ex.report["adherence"]
    torch.testing.assert_close(ex.samples, _expected(model, sched, ex, 0.0, 5, 2, ex.labels), rtol=0, atol=0)

    ex.w_slider.value = 8.0
    assert ex.n_draws == 2
    assert ex.image.value != png0 and ex.metrics_html.value != text0
    assert "w = 8.0" in ex.metrics_html.value and "s = 1 + w = 9.0" in ex.metrics_html.value
    # guidance multiplies the class pattern in ε by 1 + w = 9: the template classifier then reads every sample
    # as its requested class, while at w = 0 the pattern is too faint to beat the starting noise everywhere
    assert adh0 < 1.0
    assert ex.report["adherence"] == 1.0 and _adherence_text(ex) == "100.0"
    torch.testing.assert_close(ex.samples, _expected(model, sched, ex, 8.0, 5, 2, ex.labels), rtol=0, atol=0)


def test_class_steps_and_seed_controls(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=20, w=2.0, steps=5, steps_options=(5, 10))
    png = ex.image.value
    ex.class_picker.value = 3
    assert torch.equal(ex.labels, torch.full((20,), 3)) and "digit 3" in ex.metrics_html.value
    assert ex.image.value != png
    torch.testing.assert_close(ex.samples, _expected(model, sched, ex, 2.0, 5, 0, ex.labels), rtol=0, atol=0)
    before = ex.samples.clone()
    ex.steps_slider.value = 10
    assert "10 DDIM steps" in ex.metrics_html.value and not torch.equal(ex.samples, before)
    ex.seed_box.value = 7
    assert "seed 7" in ex.metrics_html.value
    torch.testing.assert_close(ex.samples, _expected(model, sched, ex, 2.0, 10, 7, ex.labels), rtol=0, atol=0)
    assert ex.n_draws == 4


def test_set_redraws_once_and_settings_come_back_from_the_cache(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=20, steps=5, steps_options=(5, 10))
    first, png = ex.samples.clone(), ex.image.value
    ex.set(w=4.0, digit=5, steps=10)
    assert ex.n_draws == 2 and ex.n_sampled == 2
    assert ex.report["w"] == 4.0 and ex.report["digit"] == 5 and ex.report["steps"] == 10
    ex.set(w=0.0, digit="all", steps=5)  # the first setting again: no sampling, the same samples and picture
    assert ex.n_draws == 3 and ex.n_sampled == 2
    assert torch.equal(ex.samples, first) and ex.image.value == png


def test_extreme_and_bad_values_never_raise(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=20, steps=5, steps_options=(5,), cache_size=2)
    ex.w_slider.value = 1e6  # the slider clamps to its range
    assert ex.w_slider.value == 10.0 and ex.report["w"] == 10.0 and torch.isfinite(ex.samples).all()
    ex.w_slider.value = 1.5
    ex.w_slider.value = float("nan")  # kept at the last good value, with a message, and the slider repaired
    assert "not a number" in ex.message.value
    assert ex.report["w"] == 1.5 and ex.w_slider.value == 1.5
    ex.w_slider.value = 2.5
    assert ex.message.value == "" and ex.report["w"] == 2.5
    assert len(ex._results) <= 2  # the cache is bounded


def test_a_sampler_error_is_shown_not_raised(sched, clf):
    class Broken(PatternEps):
        def forward(self, xt, t, cond=None):
            if cond is not None and (cond == 3).any():
                raise RuntimeError("boom")
            return super().forward(xt, t, cond)

    ex = guidance_explorer(Broken().eval(), sched, classifier=clf, n=20, steps=5, steps_options=(5,))
    png, report = ex.image.value, dict(ex.report)
    ex.class_picker.value = 3  # must not raise out of the observer
    assert "could not draw" in ex.message.value and "boom" in ex.message.value
    assert ex.image.value == png and ex.report == report


def test_a_real_unet_and_a_train_result(sched, clf):
    torch.manual_seed(0)
    unet = digits_unet(num_classes=10, ch=8, ch_mult=(1, 2), attn_resolutions=(), num_groups=4).eval()
    result = SimpleNamespace(ema_model=unet, sched=sched)  # what train.pretrained returns, as far as used here
    ex = guidance_explorer(result, classifier=clf, n=20, w=1.0, steps=2, steps_options=(2, 4))
    assert ex.model is unet and ex.sched is sched
    png = ex.image.value
    ex.w_slider.value = 5.0
    assert bytes(ex.image.value).startswith(PNG_MAGIC) and ex.image.value != png


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=19), "n"),
    (dict(n=500), "n"),
    (dict(w=11.0), "w"),
    (dict(w=float("nan")), "w"),
    (dict(digit=10), "digit"),
    (dict(steps=7), "steps"),
    (dict(steps_options=(5, 500)), "steps_options"),
    (dict(seed=-1), "seed"),
    (dict(cache_size=0), "cache_size"),
])
def test_bad_arguments(model, sched, clf, kwargs, match):
    args = dict(classifier=clf, n=20, steps=5, steps_options=(5, 10))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        guidance_explorer(model, sched, **args)


def test_bad_model_schedule_and_classifier(model, sched, clf):
    with pytest.raises(ValueError, match="class-conditional"):
        guidance_explorer(mixture_mlp(), sched, classifier=clf)
    with pytest.raises(ValueError, match="sched"):
        guidance_explorer(model, "linear", classifier=clf)
    with pytest.raises(ValueError, match="classifier"):
        guidance_explorer(model, sched, classifier=object())


# ---- errata 29: the schedule is never guessed ----------------------------------------------------------------------
def test_bare_model_without_schedule_is_refused(model, clf):
    with pytest.raises(ValueError, match="schedule the model was trained with"):
        guidance_explorer(model, classifier=clf, n=20, steps=5, steps_options=(5,))


def test_schedule_comes_from_the_result_or_the_model(clf):
    """digits_cfg trains on cosine: a result (or a model carrying .sched) must sample on that, not on linear."""
    cos = schedules.cosine(50)
    result = SimpleNamespace(ema_model=PatternEps().eval(), sched=cos)
    ex = guidance_explorer(result, classifier=clf, n=20, steps=5, steps_options=(5,), curve_ws=())
    assert ex.sched is cos
    torch.testing.assert_close(ex.samples, _expected(ex.model, cos, ex, 0.0, 5, 0, ex.labels), rtol=0, atol=0)
    # and the samples differ from what the old default (a linear chain) drew
    lin = schedules.linear(50)
    assert not torch.allclose(ex.samples, _expected(ex.model, lin, ex, 0.0, 5, 0, ex.labels))
    m = PatternEps().eval()
    m.sched = cos
    assert guidance_explorer(m, classifier=clf, n=20, steps=5, steps_options=(5,), curve_ws=()).sched is cos


# ---- the adherence / diversity trade-off curve ---------------------------------------------------------------------
def test_trade_off_curve_marks_the_current_w_and_matches_the_draws(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=30, w=1.5, steps=5, steps_options=(5, 10), seed=2,
                           curve_ws=(0.0, 1.0, 8.0))
    curve = ex.report["curve"]
    assert [p["w"] for p in curve] == [0.0, 1.0, 1.5, 8.0]  # the grid and the current w, sorted
    assert ex.n_sampled == 1 and ex.n_curve_sampled == 3
    assert bytes(ex.curve_image.value).startswith(PNG_MAGIC)
    cur = next(p for p in curve if p["w"] == 1.5)
    assert cur["adherence"] == ex.report["adherence"] and cur["diversity_ratio"] == ex.report["diversity_ratio"]
    # each curve point is the sampler's own result at that w (same x_T): w = 8 reads as the pattern everywhere
    by_w = {p["w"]: p for p in curve}
    x8 = _expected(model, sched, ex, 8.0, 5, 2, ex.labels)
    assert by_w[8.0]["adherence"] == float((clf.logits(x8).argmax(1) == ex.labels).double().mean()) == 1.0
    assert by_w[0.0]["adherence"] < 1.0
    png = ex.curve_image.value
    ex.w_slider.value = 8.0  # a grid point: no new curve sampling, the marker moves
    assert ex.n_curve_sampled == 3 and ex.curve_image.value != png
    assert [p["w"] for p in ex.report["curve"]] == [0.0, 1.0, 1.5, 8.0]
    ex.class_picker.value = 4  # a new class: a new curve (w = 8 is the current draw, 0 and 1 are sampled)
    assert ex.n_curve_sampled == 5 and [p["w"] for p in ex.report["curve"]] == [0.0, 1.0, 8.0]


def test_no_curve_when_disabled(model, sched, clf):
    ex = guidance_explorer(model, sched, classifier=clf, n=20, steps=5, steps_options=(5,), curve_ws=None)
    assert ex.curve_image is None and ex.report["curve"] == [] and ex.n_curve_sampled == 0
    with pytest.raises(ValueError, match="curve_ws"):
        guidance_explorer(model, sched, classifier=clf, n=20, steps=5, steps_options=(5,), curve_ws=(0.0, 20.0))


def test_precomputed_curve_costs_no_sampling(model, sched, clf):
    pre = {0.0: dict(adherence=0.1, diversity_ratio=1.0), 2.0: dict(adherence=0.5, diversity_ratio=0.8),
           8.0: dict(adherence=1.0, diversity_ratio=0.4)}
    ex = guidance_explorer(model, sched, classifier=clf, n=20, w=2.0, steps=5, steps_options=(5, 10), curve=pre)
    assert ex.n_sampled == 1 and ex.n_curve_sampled == 0
    by_w = {p["w"]: p for p in ex.report["curve"]}
    assert sorted(by_w) == [0.0, 2.0, 8.0] and by_w[8.0]["adherence"] == 1.0
    assert by_w[2.0]["adherence"] == ex.report["adherence"]  # the current point is the explorer's own draw
    ex.steps_slider.value = 10  # another setting: sampled lazily at the precomputed w values
    assert ex.n_curve_sampled == 2
    with pytest.raises(ValueError, match="curve must be"):
        guidance_explorer(model, sched, classifier=clf, n=20, steps=5, steps_options=(5,), curve={1.0: 0.5})
