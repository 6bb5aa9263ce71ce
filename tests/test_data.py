"""Tests for ddpm_lessons.data: the 2-D samplers; digits; the MNIST / CIFAR-10 readers on small files written here;
minibatches. (The Gaussian mixtures' exact quantities are tested in test_exact.py, their new home.)"""

from __future__ import annotations

import gzip
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from ddpm_lessons import data


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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


def test_digits_cache_equals_sklearn_and_survives_bad_files(tmp_path, monkeypatch):
    """The cached split is sklearn's own split, byte for byte; a broken file is rebuilt; no cache folder still works."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path))
    data._digits_arrays.cache_clear()
    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(d.images, d.target, test_size=0.2, stratify=d.target, random_state=3)
    got_tr, got_te = data.digits("train", seed=3), data.digits("test", seed=3)
    assert torch.equal(got_tr[0], torch.from_numpy(x_tr.astype(np.float32) / 8 - 1)[:, None])
    assert torch.equal(got_te[1], torch.from_numpy(y_te).long()) and torch.equal(got_tr[1], torch.from_numpy(y_tr))
    assert torch.equal(got_te[0], torch.from_numpy(x_te.astype(np.float32) / 8 - 1)[:, None])
    files = sorted((tmp_path / "data").glob("digits-*.npz"))
    assert [f.name.rsplit("-", 1)[1] for f in files] == ["seed3.npz"]
    # a second process reads the file: simulate by clearing the in-memory cache; same tensors, sklearn not needed
    data._digits_arrays.cache_clear()
    monkeypatch.setattr(data, "_digits_from_sklearn", lambda seed: pytest.fail("rebuilt a valid cache file"))
    assert torch.equal(data.digits("train", seed=3)[0], got_tr[0])
    monkeypatch.undo()
    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path))
    for broken in (b"", b"PK\x03\x04 not a zip", None):
        data._digits_arrays.cache_clear()
        if broken is None:  # a valid npz with the wrong arrays
            np.savez(files[0], a0=np.zeros((3, 8, 8)), a1=np.zeros(3), a2=np.zeros((1, 8, 8)), a3=np.zeros(1))
        else:
            files[0].write_bytes(broken)
        assert torch.equal(data.digits("test", seed=3)[0], got_te[0])
    data._digits_arrays.cache_clear()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(blocked))  # the cache folder cannot be created
    assert torch.equal(data.digits("all")[1], torch.from_numpy(d.target).long())
    data._digits_arrays.cache_clear()


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
