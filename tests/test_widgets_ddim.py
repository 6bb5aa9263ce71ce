"""ddim_explorer, driven without a browser: build it, move the sliders programmatically, check the picture and the
samples follow. The models are untrained (the widget's job is plumbing, not quality) and the chains short."""

from __future__ import annotations

import ipywidgets as widgets
import pytest
import torch

from ddpm_lessons import samplers, schedules
from ddpm_lessons.models import digits_unet, mixture_mlp
from ddpm_lessons.widgets import DDIMExplorer, ddim_explorer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sched():
    return schedules.linear(100, 1e-3, 0.1)


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    model = mixture_mlp()
    with torch.no_grad():  # the output layer starts at zero; give it weights so samples depend on the network
        model.out.weight.normal_(0, 0.2)
    return model.eval()


def test_builds_a_widget_with_a_png(mlp, sched):
    ex = ddim_explorer(mlp, sched, n=64, steps=10, steps_options=(5, 10, 20))
    assert isinstance(ex, DDIMExplorer) and isinstance(ex, widgets.VBox)
    assert bytes(ex.image.value).startswith(PNG_MAGIC)
    assert ex.n_draws == 1
    assert ex.samples.shape == (64, 2) and torch.isfinite(ex.samples).all()
    assert "η = 0.0" in ex.status.value and "10 steps" in ex.status.value


def test_sliders_redraw_and_match_the_sampler(mlp, sched):
    ex = ddim_explorer(mlp, sched, n=64, eta=0.0, steps=10, steps_options=(5, 10, 20), seed=3)
    first_png, first = ex.image.value, ex.samples.clone()

    ex.steps_slider.value = 20
    assert ex.n_draws == 2
    assert ex.image.value != first_png
    assert not torch.equal(ex.samples, first)
    assert "20 steps" in ex.status.value
    # the picture shows exactly what samplers.sample returns for these settings and the seeded generator
    expected = samplers.sample(mlp, sched, (64, 2), method="ddim", steps=20, eta=0.0,
                               generator=torch.Generator().manual_seed(3), progress=False)
    torch.testing.assert_close(ex.samples, expected, rtol=0, atol=0)

    png_eta0 = ex.image.value
    ex.eta_slider.value = 1.0
    assert ex.n_draws == 3
    assert ex.image.value != png_eta0
    expected = samplers.sample(mlp, sched, (64, 2), method="ddim", steps=20, eta=1.0,
                               generator=torch.Generator().manual_seed(3), progress=False)
    torch.testing.assert_close(ex.samples, expected, rtol=0, atol=0)


def test_same_settings_give_the_same_samples(mlp, sched):
    """x_T is re-drawn from the same seed at every redraw: going back to a setting reproduces it exactly."""
    ex = ddim_explorer(mlp, sched, n=32, eta=0.5, steps=5, steps_options=(5, 10))
    before = ex.samples.clone()
    ex.steps_slider.value = 10
    ex.steps_slider.value = 5
    assert ex.n_draws == 3
    assert torch.equal(ex.samples, before)


def test_reference_adds_the_sliced_wasserstein_label(mlp, sched):
    ref = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    ex = ddim_explorer(mlp, sched, n=100, steps=5, steps_options=(5,), reference=ref, floor=0.05, lim=4.0)
    assert "sliced Wasserstein" in ex.status.value and "× the floor" in ex.status.value


def test_image_model_with_classes():
    sched = schedules.linear(20, 1e-3, 0.2)
    torch.manual_seed(0)
    model = digits_unet(num_classes=10, ch=8, ch_mult=(1, 2), attn_resolutions=(), num_groups=4).eval()
    ex = ddim_explorer(model, sched, n=20, steps=4, steps_options=(2, 4))
    assert ex.samples.shape == (20, 1, 8, 8)
    assert torch.equal(ex.cond.cpu(), torch.arange(20) % 10)
    png = ex.image.value
    ex.steps_slider.value = 2
    assert bytes(ex.image.value).startswith(PNG_MAGIC) and ex.image.value != png


@pytest.mark.parametrize("kwargs, match", [
    (dict(eta=1.5), "eta"),
    (dict(steps=7), "steps"),
    (dict(steps_options=(5, 500)), "steps_options"),
    (dict(steps_options=(10, 5), steps=5), "steps_options"),
    (dict(n=0), "n"),
])
def test_bad_arguments(mlp, sched, kwargs, match):
    args = dict(n=8, steps=5, steps_options=(5, 10))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ddim_explorer(mlp, sched, **args)


def test_bad_schedule_and_model(mlp):
    with pytest.raises(ValueError, match="sched"):
        ddim_explorer(mlp, "linear", n=8)
    with pytest.raises(ValueError, match="shape"):
        ddim_explorer(torch.nn.Linear(2, 2), schedules.linear(10), n=8, steps=5, steps_options=(5,))


# ---- plotting.quiver2d (appended to plotting.py for notebook 05, tested here beside the explorer's drawing) -------


def test_quiver2d_draws_the_given_vectors():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddpm_lessons import plotting

    pts = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 3.0]])
    vec = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    fig, (ax,) = plotting.new_axes(1)
    plotting.quiver2d(pts, vec, ax=ax, scale=1.0, lim=4.0, title="field")
    (q,) = ax.collections
    assert q.N == 3
    torch.testing.assert_close(torch.as_tensor(q.U).double(), vec[:, 0].double())
    torch.testing.assert_close(torch.as_tensor(q.V).double(), vec[:, 1].double())
    torch.testing.assert_close(torch.as_tensor(q.get_offsets()).double(), pts.double())
    assert ax.get_xlim() == (-4.0, 4.0) and ax.get_title() == "field"
    with pytest.raises(ValueError, match="shape"):
        plotting.quiver2d(pts, vec[:2], ax=ax)
    plt.close(fig)
