"""Data: 2-D point-cloud samplers, scikit-learn's digits, readers for MNIST / CIFAR-10 files, and minibatches.

The Gaussian mixtures with exact diffused scores live in :mod:`ddpm_lessons.exact` (the course's ground truth);
``data.GaussianMixture``, ``data.mixture_8``, ``data.mixture_2x2`` and ``data.mixture_1d`` are the same objects.

Shapes: N data-set size, D data dimension; images are (N, C, H, W).
Randomness comes from ``generator=`` (a ``torch.Generator``); the same generator gives the same data.

Data sets:

* ``mixture_8()`` -- 8 isotropic components on a circle of radius 3, std 0.35, equal weights, labels 0..7;
  ``mixture_2x2()`` -- 4 components on the corners of a square, labels 0..3; ``mixture_1d()`` -- two 1-D modes
  (from :mod:`ddpm_lessons.exact`).
* ``moons``, ``swiss_roll``, ``checkerboard`` -- 2-D samplers (float32, scale of a few units).
* ``digits(split)`` -- scikit-learn's bundled 8x8 digits (1,797 images, values 0..16) mapped to [-1, 1], with a
  fixed stratified split: 1,437 train / 360 test images (80/20, ``random_state=seed``).
* ``load_mnist`` / ``load_cifar10`` -- read the standard files from a local folder; nothing is downloaded unless
  ``download=True`` and torchvision is installed.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from .exact import GaussianMixture, mixture_1d, mixture_2x2, mixture_8

__all__ = [
    "GaussianMixture",
    "mixture_8",
    "mixture_2x2",
    "mixture_1d",
    "moons",
    "swiss_roll",
    "checkerboard",
    "digits",
    "read_mnist_idx",
    "load_mnist",
    "load_cifar10",
    "batches",
]


# --------------------------------------------------------------------------------------------------------------
# Other 2-D samplers
# --------------------------------------------------------------------------------------------------------------


def _seed_from(generator: torch.Generator | None) -> int:
    """An int seed for numpy / scikit-learn drawn from a torch generator (the global one when None)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None,
          return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """scikit-learn's two moons, centred and scaled by 2: x (n, 2) float32 in about [-3, 3] x [-1.5, 1.5].

    ``noise`` is sklearn's Gaussian noise std before scaling. With ``return_labels`` also the moon (0/1), (n,) long.
    """
    from sklearn.datasets import make_moons

    if int(n) < 2 or noise < 0:
        raise ValueError(f"n must be >= 2 and noise >= 0, got n={n}, noise={noise}")
    x, y = make_moons(int(n), noise=noise, random_state=_seed_from(generator))
    x = torch.from_numpy(2.0 * (x - np.array([0.5, 0.25]))).float()
    return (x, torch.from_numpy(y).long()) if return_labels else x


def swiss_roll(n: int, noise: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """scikit-learn's swiss roll projected on its (x, z) plane and divided by 5: (n, 2) float32 in about
    [-2.8, 2.8]^2. ``noise`` is sklearn's noise std before the division."""
    from sklearn.datasets import make_swiss_roll

    if int(n) < 1 or noise < 0:
        raise ValueError(f"n must be >= 1 and noise >= 0, got n={n}, noise={noise}")
    x, _ = make_swiss_roll(int(n), noise=noise, random_state=_seed_from(generator))
    return torch.from_numpy(x[:, [0, 2]] / 5.0).float()


def checkerboard(n: int, cells: int = 4, half_width: float = 2.0, generator: torch.Generator | None = None,
                 return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Uniform points on the dark squares of a ``cells`` x ``cells`` board covering [-half_width, half_width]^2.

    Square (i, j) (column i, row j from the lower left) is dark when i + j is even; there are ceil(cells^2 / 2)
    of them, all equally likely. With ``return_labels`` also the dark square's index (n,) long.
    """
    if int(n) < 1 or cells < 1 or half_width <= 0:
        raise ValueError(f"n and cells must be >= 1 and half_width > 0, got n={n}, cells={cells}, "
                         f"half_width={half_width}")
    dark = torch.tensor([(i, j) for j in range(cells) for i in range(cells) if (i + j) % 2 == 0],
                        dtype=torch.float64)  # (M, 2) column, row
    sq = torch.randint(0, dark.shape[0], (int(n),), generator=generator)
    u = torch.rand(int(n), 2, dtype=torch.float64, generator=generator)
    side = 2 * half_width / cells
    x = (-half_width + side * (dark[sq] + u)).float()
    return (x, sq) if return_labels else x


# --------------------------------------------------------------------------------------------------------------
# Images: scikit-learn digits (bundled), MNIST / Fashion-MNIST IDX files, CIFAR-10 python batches
# --------------------------------------------------------------------------------------------------------------

DIGITS_TEST_FRACTION = 0.2  # stratified: 1,437 train and 360 test images
DIGITS_N = 1797


def _sklearn_version() -> str:
    from importlib.metadata import version

    return version("scikit-learn")


def _digits_from_sklearn(seed: int | None) -> tuple[np.ndarray, ...]:
    """(images, target) of ``load_digits`` for ``seed=None``, else its ``train_test_split`` (x_tr, x_te, y_tr, y_te)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    if seed is None:
        return d.images, d.target
    return tuple(train_test_split(d.images, d.target, test_size=DIGITS_TEST_FRACTION, stratify=d.target,
                                  random_state=seed))


@lru_cache(maxsize=8)
def _digits_arrays(seed: int | None) -> tuple[np.ndarray, ...]:
    """:func:`_digits_from_sklearn`, kept as an ``.npz`` in the package's cache folder after the first call.

    Importing scikit-learn costs 2-4 s (SciPy's stats module), more than the rest of a notebook's imports, and the
    arrays never change for a given scikit-learn version and seed: the file name carries both. A file that cannot be
    read (truncated, edited) is rebuilt from scikit-learn and replaced; nothing else in the folder is touched.
    """
    from ddpm_lessons.cache import atomic_write, cache_dir

    path = cache_dir() / "data" / f"digits-sklearn-{_sklearn_version()}-{'all' if seed is None else f'seed{seed}'}.npz"
    n = 2 if seed is None else 4
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = tuple(f[f"a{i}"] for i in range(n))
        images, targets = arrays[: n // 2], arrays[n // 2:]
        if (all(x.shape[1:] == (8, 8) and len(x) == len(y) for x, y in zip(images, targets, strict=True))
                and sum(map(len, images)) == DIGITS_N):
            return arrays
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    arrays = _digits_from_sklearn(seed)
    try:
        atomic_write(path, lambda f: np.savez(f, **{f"a{i}": a for i, a in enumerate(arrays)}))
    except OSError:  # a read-only cache folder: keep working without the file
        pass
    return arrays


def digits(split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8x8 digits: x (N, 1, 8, 8) float32 in [-1, 1] (value v in 0..16 -> v / 8 - 1), y (N,) long.

    The split is stratified by class and fixed by ``seed``: ``"train"`` has 1,437 images, ``"test"`` 360
    (``"all"`` returns all 1,797 in scikit-learn's order). The same seed always gives the same split.
    """
    if split == "all":
        images, target = _digits_arrays(None)
    elif split in ("train", "test"):
        x_tr, x_te, y_tr, y_te = _digits_arrays(int(seed))
        images, target = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    else:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    x = torch.from_numpy(images.astype(np.float32) / 8.0 - 1.0)[:, None]  # (N, 1, 8, 8)
    return x, torch.from_numpy(np.asarray(target)).long()


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open_maybe_gz(path: str):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_mnist_idx(path: str | os.PathLike) -> Tensor:
    """Read one IDX file (the MNIST / Fashion-MNIST format; gzip-compressed or not) into a tensor.

    The header is two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then each dimension as a big-endian uint32. Returns the array with
    its stored shape, e.g. (N, 28, 28) uint8 for images and (N,) uint8 for labels.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    with _open_maybe_gz(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but {len(raw) - offset} bytes follow")
    arr = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_MNIST_SUBDIRS = {"mnist": ("MNIST/raw", "mnist", "MNIST"), "fashion_mnist": ("FashionMNIST/raw", "fashion_mnist",
                                                                                "FashionMNIST", "fashion-mnist")}


def _find_file(folders: list[str], name: str) -> str | None:
    for folder in folders:
        for candidate in (name, name + ".gz"):
            p = os.path.join(folder, candidate)
            if os.path.isfile(p):
                return p
    return None


def _scale_uint8(x: Tensor) -> Tensor:
    return x.float() / 127.5 - 1.0  # 0..255 -> [-1, 1]


def load_mnist(root: str | os.PathLike, split: str = "train", kind: str = "mnist",
               download: bool = False) -> tuple[Tensor, Tensor]:
    """MNIST or Fashion-MNIST from the standard IDX files in a local folder.

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (split ``"train"``) or
    ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` (``"test"``), each optionally ``.gz``, in ``root``
    and in torchvision's layout (``root/MNIST/raw``, ``root/FashionMNIST/raw``). Returns x (N, 1, 28, 28)
    float32 in [-1, 1] and y (N,) long. ``download=True`` fetches the files with torchvision (must be installed).
    """
    if split not in _MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if kind not in _MNIST_SUBDIRS:
        raise ValueError(f"kind must be 'mnist' or 'fashion_mnist', got {kind!r}")
    root = os.fspath(root)
    if download:
        tv = _torchvision("load_mnist", "the four IDX files from the MNIST / Fashion-MNIST distribution")
        cls = tv.datasets.MNIST if kind == "mnist" else tv.datasets.FashionMNIST
        cls(root, train=(split == "train"), download=True)
    folders = [root] + [os.path.join(root, s) for s in _MNIST_SUBDIRS[kind]]
    names = _MNIST_FILES[split]
    paths = [_find_file(folders, name) for name in names]
    if None in paths:
        missing = [n for n, p in zip(names, paths, strict=True) if p is None]
        raise FileNotFoundError(
            f"{kind} {split} split: could not find {', '.join(m + '[.gz]' for m in missing)} in any of "
            f"{folders}. Put the standard IDX files there, or call load_mnist(..., download=True) with torchvision "
            f"installed.")
    images, labels = (read_mnist_idx(p) for p in paths)
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{paths}: expected images (N, H, W) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    return _scale_uint8(images)[:, None], labels.long()  # (N, 1, H, W)


_CIFAR_DIR = "cifar-10-batches-py"


def load_cifar10(root: str | os.PathLike, split: str = "train", download: bool = False) -> tuple[Tensor, Tensor]:
    """CIFAR-10 from its python pickle batches: ``cifar-10-batches-py/data_batch_1..5`` (train) or ``test_batch``.

    ``root`` may be the folder holding ``cifar-10-batches-py`` or that folder itself. Returns x (N, 3, 32, 32)
    float32 in [-1, 1] and y (N,) long (50,000 / 10,000 images for the real files). The batches are pickles:
    only read files you trust. ``download=True`` fetches them with torchvision (must be installed).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = os.fspath(root)
    if download:
        tv = _torchvision("load_cifar10", f"the python version of CIFAR-10 ({_CIFAR_DIR}, from cifar-10-python.tar.gz)")
        tv.datasets.CIFAR10(root, train=(split == "train"), download=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = os.path.join(root, _CIFAR_DIR)
    if not os.path.isdir(folder) and os.path.isfile(os.path.join(root, names[0])):
        folder = root
    paths = [os.path.join(folder, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} split: missing {missing}. Extract cifar-10-python.tar.gz so that {folder} holds "
            f"{', '.join(names)}, or call load_cifar10(..., download=True) with torchvision installed.")
    xs, ys = [], []
    for p in paths:
        with open(p, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if data is None or labels is None:
            raise ValueError(f"{p}: not a CIFAR-10 batch (no 'data' / 'labels' entries)")
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
            raise ValueError(f"{p}: expected data (N, 3072) and N labels, got {data.shape} and {len(labels)}")
        xs.append(data.reshape(-1, 3, 32, 32))  # rows hold the R, G, B planes, each 32x32 row-major
        ys.append(np.asarray(labels, dtype=np.int64))
    return _scale_uint8(torch.from_numpy(np.concatenate(xs))), torch.from_numpy(np.concatenate(ys))


def _torchvision(caller: str, what: str):
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(f"{caller}(download=True) needs torchvision, which is not installed. Install it "
                          f"(pip install torchvision, matching your torch) or download {what} yourself and pass "
                          f"the folder as root with download=False.") from e
    return torchvision


# --------------------------------------------------------------------------------------------------------------
# Minibatches
# --------------------------------------------------------------------------------------------------------------


def batches(x: Tensor, y: Tensor | None = None, batch_size: int = 256,
            generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Endless shuffled minibatches ``(xb, yb)`` of ``x`` (N, ...) and ``y`` (N,) (``yb`` is None without y).

    Each epoch is a fresh permutation from ``generator``; the last N mod batch_size items of an epoch are left
    out (every batch has the same size, and reshuffling covers them in later epochs). Indexing happens on the
    data's device.
    """
    n = x.shape[0]
    if y is not None and y.shape[0] != n:
        raise ValueError(f"y must have {n} rows like x, got {y.shape[0]}")
    if not 1 <= int(batch_size) <= n:
        raise ValueError(f"batch_size must be in 1..{n} (the data-set size), got {batch_size}")
    batch_size = int(batch_size)
    while True:
        perm = torch.randperm(n, generator=generator).to(x.device)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i: i + batch_size]
            yield x[idx], (None if y is None else y[idx.to(y.device)])
