"""Tests for ddpm_lessons.data: exact mixture quantities against autograd, torch.distributions and Monte Carlo;
the 2-D samplers; digits; the MNIST / CIFAR-10 readers on small files written here; minibatches."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from ddpm_lessons import data
from ddpm_lessons.data import GaussianMixture, mixture_2x2, mixture_8


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_mixture(seed: int = 0, K: int = 4, D: int = 3) -> GaussianMixture:
    """A mixture with unequal weights, diagonal (anisotropic) stds and two classes sharing components."""
    g = _gen(seed)
    return GaussianMixture(weights=torch.rand(K, generator=g, dtype=torch.float64) + 0.2,
                           means=2 * torch.randn(K, D, generator=g, dtype=torch.float64),
                           stds=0.3 + torch.rand(K, D, generator=g, dtype=torch.float64),
                           labels=torch.arange(K) % 2)


MIXTURES = {"mixture_8": mixture_8, "random_diag": _random_mixture, "1d": data.mixture_1d}


# ---- densities and exact scores --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_log_prob_matches_torch_distributions(name):
    mix = MIXTURES[name]()
    x = 3 * torch.randn(50, mix.D, generator=_gen(1), dtype=torch.float64)
    for ab in (1.0, 0.6, 0.01):
        oracle = mix.diffused(ab).distribution().log_prob(x)
        torch.testing.assert_close(mix.log_prob_t(x, ab), oracle, rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.log_prob(x), mix.distribution().log_prob(x), rtol=0, atol=1e-12)


def test_log_prob_integrates_to_one():
    # Riemann sum on a 0.02 grid: the densities are smooth on that scale (std 0.35), so the error is << 1e-6
    mix = mixture_8()
    h = 0.02
    c = torch.arange(-8, 8, h, dtype=torch.float64) + h / 2
    grid = torch.cartesian_prod(c, c)
    for label in (None, 3):
        total = float(mix.log_prob(grid, label=label).exp().sum() * h * h)
        assert abs(total - 1) < 1e-6


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_score_equals_autograd_of_log_q_t(name):
    mix = MIXTURES[name]()
    B = 64
    x = 3 * torch.randn(B, mix.D, generator=_gen(2), dtype=torch.float64)
    ab = torch.rand(B, generator=_gen(3), dtype=torch.float64)
    ab[:3] = torch.tensor([0.0, 1.0, 1e-4], dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob_t(xr, ab).sum(), xr)
    torch.testing.assert_close(mix.score(x, ab), grad, rtol=0, atol=1e-10)
    # an independent oracle for one scalar alpha_bar: autograd through torch.distributions
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.diffused(0.37).distribution().log_prob(xr).sum(), xr)
    torch.testing.assert_close(mix.score(x, 0.37), grad, rtol=0, atol=1e-10)


def test_conditional_score_equals_autograd():
    mix = _random_mixture()
    B = 40
    x = 2 * torch.randn(B, mix.D, generator=_gen(4), dtype=torch.float64)
    ab = torch.rand(B, 1, generator=_gen(5), dtype=torch.float64)  # (B, 1) is accepted too
    label = torch.arange(B) % 2
    for lab in (label, 1):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mix.log_prob_t(xr, ab, label=lab).sum(), xr)
        torch.testing.assert_close(mix.score(x, ab, label=lab), grad, rtol=0, atol=1e-10)
    # the class-1 conditional is the sub-mixture of the class-1 components
    sub = mix.conditional(1)
    torch.testing.assert_close(mix.score(x, ab, label=1), sub.score(x, ab), rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.log_prob(x, label=1), sub.distribution().log_prob(x), rtol=0, atol=1e-12)


def test_posterior_mean_is_tweedie_and_eps_opt_consistent():
    mix = _random_mixture(seed=7)
    B = 64
    xt = 2 * torch.randn(B, mix.D, generator=_gen(8), dtype=torch.float64)
    ab = 0.001 + 0.998 * torch.rand(B, generator=_gen(9), dtype=torch.float64)
    for label in (None, torch.arange(B) % 2):
        score = mix.score(xt, ab, label)
        x0_hat = mix.posterior_mean(xt, ab, label)
        a = ab[:, None]
        tweedie = (xt + (1 - a) * score) / a.sqrt()  # Tweedie's formula for xt = sqrt(a) x0 + sqrt(1-a) eps
        torch.testing.assert_close(x0_hat, tweedie, rtol=1e-10, atol=1e-10)
        # E[eps | xt] from xt = sqrt(a) E[x0 | xt] + sqrt(1 - a) E[eps | xt]
        eps_from_x0 = (xt - a.sqrt() * x0_hat) / (1 - a).sqrt()
        torch.testing.assert_close(mix.eps_opt(xt, ab, label), eps_from_x0, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(mix.eps_opt(xt, ab, label), -(1 - a).sqrt() * score, rtol=0, atol=1e-12)


def test_limits_at_alpha_bar_0_and_1():
    mix = _random_mixture(seed=11)
    x = torch.randn(16, mix.D, generator=_gen(12), dtype=torch.float64)
    torch.testing.assert_close(mix.score(x, 0.0), -x, rtol=0, atol=1e-12)  # q_T = N(0, I)
    torch.testing.assert_close(mix.posterior_mean(x, 0.0), mix.mean().expand_as(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.posterior_mean(x, 0.0, label=1), mix.conditional(1).mean().expand_as(x),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(mix.posterior_mean(x, 1.0), x, rtol=0, atol=1e-12)
    assert torch.equal(mix.eps_opt(x, 1.0), torch.zeros_like(x))


def test_posterior_mean_matches_importance_sampling():
    """E[x0 | xt] against a self-normalised importance-sampling estimate with the prior as proposal."""
    mix = mixture_8()
    n = 400_000
    x0, _ = mix.sample(n, _gen(13))
    x0 = x0.double()
    for ab in (0.2, 0.6, 0.95):
        xt, _ = mix.diffused(ab).sample(4, _gen(14))
        xt = xt.double()
        exact = mix.posterior_mean(xt, ab)
        # log-weights log N(xt; sqrt(ab) x0, (1 - ab) I) for each query point, (4, n)
        logw = -((xt[:, None, :] - math.sqrt(ab) * x0[None]) ** 2).sum(-1) / (2 * (1 - ab))
        w = torch.softmax(logw, dim=1)
        est = w @ x0  # (4, D)
        # delta-method standard error of a self-normalised IS estimate: sum_i w_i^2 (x0_i - est)^2
        se = torch.sqrt((w[:, :, None] ** 2 * (x0[None] - est[:, None, :]) ** 2).sum(1))
        ess = 1 / (w**2).sum(1)
        assert bool((ess > 500).all()), ess  # enough effective samples for the normal approximation to hold
        assert bool(((est - exact).abs() <= 5 * se + 1e-12).all()), (ab, est, exact, se)  # ~5 standard errors


@pytest.mark.parametrize("t", [50, 300, 700])
def test_diffused_matches_q_sample_of_mixture_samples(t):
    """q_sample applied to mixture samples has the moments and 1-D marginals of diffused(alpha_bar_t)."""
    from ddpm_lessons import forward, schedules

    sched = schedules.linear(1000)
    ab = float(sched.alpha_bar[t])
    mix = _random_mixture(seed=21, D=2)
    n = 200_000
    x0, _ = mix.sample(n, _gen(22))
    x0 = x0.double()
    noise = torch.randn(x0.shape, generator=_gen(23), dtype=torch.float64)
    xt = forward.q_sample(sched, x0, torch.full((n,), t, dtype=torch.long), noise)
    q = mix.diffused(ab)
    # mean: 5 standard errors of the sample mean
    se_mean = xt.std(0) / math.sqrt(n)
    assert bool(((xt.mean(0) - q.mean()).abs() < 5 * se_mean).all())
    # covariance: entry (i, j) is a mean of products; 5 standard errors of that mean
    c = xt - q.mean()
    prod = c[:, :, None] * c[:, None, :]
    se_cov = prod.std(0) / math.sqrt(n)
    assert bool(((prod.mean(0) - q.covariance()).abs() < 5 * se_cov).all())
    # the whole 1-D marginal along a direction: Kolmogorov-Smirnov against the exact mixture CDF;
    # 1.95 / sqrt(n) is the 0.1% critical value of the KS statistic
    u = torch.tensor([0.6, 0.8], dtype=torch.float64)
    proj = (xt @ u).sort().values
    comp = torch.distributions.Normal(q.means @ u, torch.sqrt((q.stds**2) @ (u**2)))
    cdf = (q.weights * comp.cdf(proj[:, None])).sum(1)
    ecdf_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum(ecdf_hi - cdf, cdf - (ecdf_hi - 1 / n)).max()
    assert float(ks) < 1.95 / math.sqrt(n)


def test_sample_frequencies_and_component_moments():
    mix = mixture_2x2(weights=(0.1, 0.2, 0.3, 0.4))
    n = 100_000
    x, labels = mix.sample(n, _gen(31))
    assert x.dtype == torch.float32 and x.shape == (n, 2) and labels.dtype == torch.long
    freq = torch.bincount(labels, minlength=4).double() / n
    se = torch.sqrt(mix.weights * (1 - mix.weights) / n)
    assert bool(((freq - mix.weights).abs() < 5 * se).all())  # 5 binomial standard errors
    for k in range(4):
        xk = x[labels == k].double()
        se_k = 0.5 / math.sqrt(xk.shape[0])
        assert bool(((xk.mean(0) - mix.means[k]).abs() < 5 * se_k).all())
    x2, l2 = mix.sample(n, _gen(31))
    assert torch.equal(x, x2) and torch.equal(labels, l2)


def test_presets():
    m = mixture_8()
    assert (m.K, m.D, m.num_classes) == (8, 2, 8)
    torch.testing.assert_close(m.means.norm(dim=1), torch.full((8,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(m.weights, torch.full((8,), 1 / 8, dtype=torch.float64))
    assert mixture_8(radius=4.0, std=0.2).means.norm(dim=1).max() == pytest.approx(4.0)
    one = data.mixture_1d()
    assert (one.K, one.D) == (2, 1)


def test_cfg_score_and_tilted_density():
    mix = mixture_2x2()
    x = torch.randn(32, 2, generator=_gen(41), dtype=torch.float64)
    torch.testing.assert_close(mix.cfg_score(x, 0.5, 2, 0.0), mix.score(x, 0.5, label=2), rtol=0, atol=1e-12)
    # at t = 0 the guided score is the score of the tilted density
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.tilted_log_density(xr, 2, 3.0).sum(), xr)
    torch.testing.assert_close(mix.cfg_score(x, 1.0, 2, 3.0), grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(mix.tilted_log_density(x, 2, 0.0), mix.log_prob(x, label=2), rtol=0, atol=1e-12)


def test_grid_sample_tilted():
    n = 50_000
    # w = 0 is the class-conditional: one N((3, 0), 0.35^2 I) component of mixture_8; the grid spacing
    # (~0.026) adds h^2/12 ~ 6e-5 to the variance, far below the sampling error
    m8 = mixture_8()
    s = m8.grid_sample_tilted(0, 0.0, n, _gen(51))
    assert s.shape == (n, 2) and s.dtype == torch.float32
    s = s.double()
    se = 0.35 / math.sqrt(n)
    assert bool(((s.mean(0) - m8.means[0]).abs() < 5 * se).all())
    assert bool(((s.std(0) - 0.35).abs() < 5 * 0.35 / math.sqrt(2 * n)).all())  # se of a std ~ s / sqrt(2n)
    # w = 3 on overlapping modes: the samples' mean equals the tilted density's mean computed by quadrature on an
    # independent, finer grid, and guidance moves it away from the other classes (outward along the diagonal)
    mix = mixture_2x2()
    s = mix.grid_sample_tilted(0, 3.0, n, _gen(52)).double()
    h = 0.01
    c = torch.arange(-5, 5, h, dtype=torch.float64) + h / 2
    grid = torch.cartesian_prod(c, c)
    p = torch.softmax(mix.tilted_log_density(grid, 0, 3.0), 0)
    mean = p @ grid
    sd = torch.sqrt(p @ (grid - mean) ** 2)
    assert bool(((s.mean(0) - mean).abs() < 5 * sd / math.sqrt(n) + 2e-3).all())  # + quadrature error
    assert float(mean.norm()) > float(mix.conditional(0).mean().norm()) + 0.05
    assert torch.equal(mix.grid_sample_tilted(0, 3.0, 10, _gen(1)), mix.grid_sample_tilted(0, 3.0, 10, _gen(1)))


def test_bad_inputs():
    mix = mixture_8()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="alpha_bar"):
        mix.score(x, 1.5)
    with pytest.raises(ValueError, match="alpha_bar"):
        mix.score(x, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="label"):
        mix.score(x, 0.5, label=9)
    with pytest.raises(ValueError, match="shape"):
        mix.score(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([1.0, -1.0], [[0.0], [1.0]], 1.0)
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([1.0, 1.0], [[0.0], [1.0]], [1.0, 0.0])
    with pytest.raises(ValueError, match="D <= 2"):
        _random_mixture(D=3).grid_sample_tilted(0, 1.0, 10)
    with pytest.raises(ValueError, match="one alpha_bar"):
        mix.diffused(torch.tensor([0.1, 0.2]))


def test_score_keeps_dtype_and_device_of_input():
    mix = mixture_8()
    x = torch.randn(5, 2)
    assert mix.score(x, 0.3).dtype == torch.float32
    assert mix.posterior_mean(x.double(), 0.3).dtype == torch.float64


# ---- other 2-D sets ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [data.moons, data.swiss_roll, data.checkerboard])
def test_2d_samplers_shapes_and_determinism(fn):
    a, b, c = fn(500, generator=_gen(1)), fn(500, generator=_gen(1)), fn(500, generator=_gen(2))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool(torch.isfinite(a).all()) and float(a.abs().max()) < 6


def test_checkerboard_only_dark_squares_and_moons_labels():
    x, sq = data.checkerboard(4000, cells=4, half_width=2.0, generator=_gen(3), return_labels=True)
    cell = torch.floor((x + 2.0) / 1.0).long()  # column, row
    assert bool((cell.sum(1) % 2 == 0).all())
    assert set(sq.tolist()) == set(range(8))
    xm, ym = data.moons(1000, generator=_gen(4), return_labels=True)
    assert set(ym.tolist()) == {0, 1} and xm.shape == (1000, 2)


# ---- digits -----------------------------------------------------------------------------------------------------

def test_digits_split():
    x_tr, y_tr = data.digits("train")
    x_te, y_te = data.digits("test")
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.long
    assert float(x_tr.min()) == -1.0 and float(x_tr.max()) == 1.0
    allowed = torch.arange(17, dtype=torch.float32) / 8 - 1  # values 0..16 -> v / 8 - 1
    assert bool(torch.isin(x_te, allowed).all())
    # stratified: every class has 80% +- one image in train
    counts_all = torch.bincount(data.digits("all")[1], minlength=10)
    assert bool(((torch.bincount(y_tr, minlength=10) - 0.8 * counts_all).abs() <= 1).all())
    # train and test together are exactly the full set (as a multiset of images)
    x_all, _ = data.digits("all")
    both = torch.cat([x_tr, x_te]).reshape(1797, -1)
    key = lambda v: sorted(map(tuple, v.tolist()))  # noqa: E731
    assert key(both) == key(x_all.reshape(1797, -1))
    # fixed and seed-dependent
    assert torch.equal(data.digits("train")[0], x_tr)
    assert not torch.equal(data.digits("train", seed=1)[0], x_tr)
    with pytest.raises(ValueError, match="split"):
        data.digits("val")


# ---- readers ----------------------------------------------------------------------------------------------------

def _write_idx(path, arr: np.ndarray, code: int, compress: bool) -> None:
    """An IDX file written from the format description: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    big = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(big).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("compress", [False, True])
def test_read_mnist_idx_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    p = tmp_path / ("imgs.gz" if compress else "imgs")
    _write_idx(p, imgs, 0x08, compress)
    out = data.read_mnist_idx(p)
    assert out.dtype == torch.uint8 and np.array_equal(out.numpy(), imgs)
    shorts = rng.integers(-3000, 3000, size=(4, 3), dtype=np.int16)  # multi-byte: checks the byte order
    _write_idx(tmp_path / "s", shorts, 0x0B, compress)
    assert np.array_equal(data.read_mnist_idx(tmp_path / "s").numpy(), shorts)


def test_read_mnist_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_mnist_idx(tmp_path / "bad")
    arr = np.zeros((3, 4), np.uint8)
    raw = bytes([0, 0, 8, 2]) + struct.pack(">2I", 3, 4) + arr.tobytes()[:-1]
    (tmp_path / "short").write_bytes(raw)
    with pytest.raises(ValueError, match="bytes"):
        data.read_mnist_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError):
        data.read_mnist_idx(tmp_path / "nope")


def test_load_mnist_layouts_and_scaling(tmp_path):
    rng = np.random.default_rng(1)
    tr_x = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    tr_y = rng.integers(0, 10, size=6).astype(np.uint8)
    te_x = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    te_y = rng.integers(0, 10, size=3).astype(np.uint8)
    # train files plain in root; test files gzipped in torchvision's layout
    _write_idx(tmp_path / "train-images-idx3-ubyte", tr_x, 0x08, False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", tr_y, 0x08, False)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", te_x, 0x08, True)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", te_y, 0x08, True)
    x, y = data.load_mnist(tmp_path, "train")
    assert x.shape == (6, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    torch.testing.assert_close(x[:, 0], torch.from_numpy(tr_x).float() / 127.5 - 1)
    assert torch.equal(y, torch.from_numpy(tr_y).long())
    x, y = data.load_mnist(str(tmp_path), "test")
    assert x.shape == (3, 1, 28, 28) and float(x.min()) >= -1 and float(x.max()) <= 1
    torch.testing.assert_close(x[:, 0], torch.from_numpy(te_x).float() / 127.5 - 1)
    # Fashion-MNIST looks in its own folders
    fm = tmp_path / "fm" / "FashionMNIST" / "raw"
    fm.mkdir(parents=True)
    _write_idx(fm / "t10k-images-idx3-ubyte", te_x, 0x08, False)
    _write_idx(fm / "t10k-labels-idx1-ubyte.gz", te_y, 0x08, True)
    assert data.load_mnist(tmp_path / "fm", "test", kind="fashion_mnist")[0].shape == (3, 1, 28, 28)


def test_load_mnist_missing_files_and_download_without_torchvision(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte") as err:
        data.load_mnist(tmp_path, "test")
    assert str(tmp_path) in str(err.value) and "download=True" in str(err.value)
    with pytest.raises(ValueError, match="kind"):
        data.load_mnist(tmp_path, "test", kind="emnist")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match="torchvision"):
        data.load_mnist(tmp_path, "train", download=True)
    with pytest.raises(ImportError, match="torchvision"):
        data.load_cifar10(tmp_path, "train", download=True)


def _write_cifar(folder, n_per_batch=2, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    written = {}
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, size=n).tolist(), b"filenames": [b"x.png"] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = batch
    return written


def test_load_cifar10(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    x, y = data.load_cifar10(tmp_path, "train")
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (10,)
    d1 = written["data_batch_1"][b"data"]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    for i, c, r, col in [(0, 0, 0, 0), (1, 1, 5, 7), (1, 2, 31, 31)]:
        assert float(x[i, c, r, col]) == pytest.approx(d1[i, c * 1024 + r * 32 + col] / 127.5 - 1)
    labels = sum((written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert y.tolist() == labels
    x, y = data.load_cifar10(tmp_path / "cifar-10-batches-py", "test")  # the batches folder itself
    assert x.shape == (3, 3, 32, 32) and y.tolist() == written["test_batch"][b"labels"]
    assert float(x.min()) >= -1 and float(x.max()) <= 1


def test_load_cifar10_missing(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.load_cifar10(tmp_path, "train")
    _write_cifar(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        data.load_cifar10(tmp_path, "test")


# ---- minibatches ------------------------------------------------------------------------------------------------

def test_batches_cover_each_epoch_and_are_deterministic():
    x = torch.arange(10.0)[:, None].expand(10, 3).contiguous()
    y = torch.arange(10)
    it = data.batches(x, y, batch_size=3, generator=_gen(0))
    epoch = [next(it) for _ in range(3)]  # 3 batches of 3, one item left out per epoch
    seen = torch.cat([yb for _, yb in epoch])
    assert len(set(seen.tolist())) == 9
    for xb, yb in epoch:
        assert xb.shape == (3, 3) and torch.equal(xb[:, 0].long(), yb)
    it2 = data.batches(x, y, batch_size=3, generator=_gen(0))
    assert all(torch.equal(next(it2)[1], yb) for _, yb in epoch)
    # it never ends, and without y it yields None labels
    it3 = data.batches(x, None, batch_size=10, generator=_gen(1))
    for _ in range(5):
        xb, yb = next(it3)
        assert yb is None and sorted(xb[:, 0].tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(x, y, batch_size=11))


def test_eps_model_is_the_exact_optimum_in_model_form():
    """eps_model follows the model protocol and equals eps_opt = -sqrt(1 - ab) * score, per class when cond is given."""
    from ddpm_lessons import schedules

    mix = data.mixture_8()
    sched = schedules.linear(1000)
    model = mix.eps_model(sched)
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(6, 2, generator=g, dtype=torch.float64) * 2
    t = torch.tensor([1, 10, 100, 400, 800, 1000])
    ab = sched.alpha_bar[t]
    torch.testing.assert_close(model(xt, t), -(1 - ab).sqrt().unsqueeze(1) * mix.score(xt, ab))
    cond = torch.tensor([0, 3, 8, 3, 7, 8])  # 8 = null label
    out = model(xt, t, cond)
    for i, c in enumerate(cond.tolist()):
        label = None if c == 8 else c
        torch.testing.assert_close(out[i:i + 1], mix.eps_opt(xt[i:i + 1], ab[i:i + 1], label=label))
    assert model.null_label == 8 and model.num_classes == 8 and model.objective == "eps"
