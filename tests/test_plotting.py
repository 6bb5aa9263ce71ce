"""The shared plotting helpers: image tiling by value, the axes they draw into, their input checks."""

from __future__ import annotations

import gc
import weakref

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ddpm_lessons import plotting, schedules  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_image_grid_tiles_in_row_major_order_with_padding():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # (3, 1, 2, 3)
    grid = plotting.image_grid(images, nrow=2, pad=1)
    assert grid.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1)  # 2 rows of 2 tiles, one channel squeezed
    assert grid[1:3, 1:4].tolist() == [[0.0] * 3] * 2  # -1 -> 0
    assert np.allclose(grid[1:3, 5:8], 0.5) and np.allclose(grid[4:6, 1:4], 1.0)  # 0 -> 0.5, 1 -> 1, row-major
    assert grid[0].sum() == 0 and grid[4:6, 5:8].sum() == 0  # padding and the empty fourth tile stay background
    rgb = plotting.image_grid(torch.full((2, 3, 4, 4), 3.0))  # values clipped to [-1, 1] first
    assert rgb.shape[-1] == 3 and rgb.max() == 1.0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        plotting.image_grid(torch.zeros(3, 4, 4))


def test_setup_freezes_what_was_imported_and_keeps_no_garbage():
    class Cycle:
        pass

    gc.unfreeze()
    a = Cycle()
    a.self = a  # cyclic garbage once the name goes: setup collects it before freezing
    ref = weakref.ref(a)
    del a
    try:
        plotting.setup()
        assert ref() is None  # collected, not frozen
        assert gc.get_freeze_count() > 10_000  # torch, matplotlib, numpy ... are in the permanent generation
        assert plt.rcParams["image.cmap"] == "gray_r"
    finally:
        gc.unfreeze()


def test_helpers_draw_into_given_axes_and_return_them():
    plotting.setup()
    fig, axes = plotting.new_axes(3)
    assert len(axes) == 3 and fig.get_size_inches()[0] == pytest.approx(3 * 3.4)
    pts = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    ax = plotting.scatter2d(pts, ax=axes[0], lim=3.0, title="x")
    assert ax is axes[0] and ax.get_xlim() == (-3.0, 3.0) and ax.get_title() == "x"
    assert ax.collections[0].get_offsets().shape == (50, 2)
    assert plotting.quiver2d(pts, -pts, ax=axes[1]) is axes[1]
    assert plotting.show_images(torch.zeros(4, 1, 8, 8), ax=axes[2], title="d") is axes[2]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plotting.quiver2d(pts, torch.zeros(50, 3), ax=axes[1])


def test_schedule_curves_plot_the_schedule_against_t_over_T():
    s = schedules.linear(100)
    ax = plotting.schedule_curves([s, schedules.cosine(50)], "alpha_bar", log=True)
    lines = ax.get_lines()
    assert len(lines) == 2 and [ln.get_label() for ln in lines] == [s.name, "cosine(T=50)"]
    x, y = lines[0].get_data()
    assert x[0] == pytest.approx(0.01) and x[-1] == 1.0 and np.allclose(y, s.alpha_bar[1:].numpy())
    assert ax.get_yscale() == "log"
