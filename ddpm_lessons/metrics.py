"""Sample-quality and guidance metrics, each with a reference so a number can be judged.

2-D data:

* ``sliced_wasserstein`` -- SW-2 (or SW-1): the p-Wasserstein distance of the 1-D projections on random unit
  directions, averaged as E_theta[W_p^p]^(1/p) [SW]. Each 1-D distance is exact for empirical measures of any
  two sizes (quantile functions are step functions). The directions are fixed by ``generator`` (seed 0 when
  None), so two calls compare on the same projections.
* ``mmd`` -- the unbiased estimate of the squared maximum mean discrepancy with a sum of RBF kernels [MMD].
* ``metric_floor`` -- the same metric between two independent samples of the data: what a perfect sampler
  scores with n points. ``sw_ratio`` divides by it (a perfect sampler scores about 1).
* ``mixture_log_likelihood`` -- the exact mean log-likelihood of points under a :class:`GaussianMixture`.

Digits (8x8, in [-1, 1]):

* ``DigitClassifier`` / ``digit_classifier()`` -- a small conv net trained on the digits train split in a few
  seconds on CPU, deterministic under a seed; seed 0 is shipped with the package (safetensors), other seeds are
  cached in the process and on disk (``ddpm_lessons.cache.cache_dir()``); ``classifier.test_accuracy`` is its
  accuracy on the test split.
* ``class_adherence`` (share classified as the requested class), ``within_class_diversity`` (mean pairwise
  L2 distance within each class), ``knn_precision_recall`` [PR], ``frechet_distance`` [FID] in the
  classifier's penultimate-layer features, and ``digit_report`` with all of them beside the real test images'.

References:
    [SW]  Bonneel, Rabin, Peyre, Pfister 2015, "Sliced and Radon Wasserstein barycenters of measures", JMIV 51
    [MMD] Gretton, Borgwardt, Rasch, Schoelkopf, Smola 2012, "A kernel two-sample test", JMLR 13 (Eq. 3, unbiased)
    [PR]  Kynkaanniemi, Karras, Laine, Lehtinen, Aila 2019, arXiv:1904.06991
    [FID] Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter 2017, arXiv:1706.08500
    [DW]  Dowson, Landau 1982, "The Frechet distance between multivariate normal distributions", JMVA 12(3)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ddpm_lessons.data import GaussianMixture, batches, digits

__all__ = [
    "sliced_wasserstein",
    "mmd",
    "Floor",
    "metric_floor",
    "sw_ratio",
    "mixture_log_likelihood",
    "DigitClassifier",
    "digit_classifier",
    "classifier_key_config",
    "cache_dir",
    "class_adherence",
    "within_class_diversity",
    "knn_precision_recall",
    "frechet_distance",
    "frechet_distance_from_moments",
    "digit_report",
]

# A sampler draws n data points: sampler(n, generator) -> x (n, ...) or (x, labels).
Sampler = Callable[[int, torch.Generator | None], "Tensor | tuple[Tensor, Tensor]"]


def _flat64(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


# --------------------------------------------------------------------------------------------------------------
# Distances between point clouds
# --------------------------------------------------------------------------------------------------------------


def _sort_rows(a: Tensor) -> Tensor:
    """Sort each row; on CPU through numpy, whose vectorised sort is ~10x faster than torch's here."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.sort(a.numpy(), axis=1))
    return a.sort(dim=1).values


def _wasserstein_1d_pp(a: Tensor, b: Tensor, p: int) -> Tensor:
    """W_p^p between the empirical measures of the rows of a (P, n) and b (P, m), exact; returns (P,).

    W_p^p = int_0^1 |F_a^-1(u) - F_b^-1(u)|^p du; both quantile functions are constant between the merged
    breakpoints {i/n} U {j/m}, so the integral is a finite sum.
    """
    n, m = a.shape[1], b.shape[1]
    a, b = _sort_rows(a), _sort_rows(b)
    if n == m:
        return (a - b).abs().pow(p).mean(1)
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = u.sort().values.to(a.device)
    width = torch.diff(u, prepend=u.new_zeros(1))  # (n + m,) lengths of the pieces
    mid = u - width / 2
    ia = (mid * n).long().clamp_max(n - 1)  # quantile index of a on each piece
    ib = (mid * m).long().clamp_max(m - 1)
    return ((a[:, ia] - b[:, ib]).abs().pow(p) * width).sum(1)


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, generator: torch.Generator | None = None,
                       p: int = 2) -> float:
    """Sliced p-Wasserstein distance SW_p(x, y) = (E_theta W_p^p(theta.x, theta.y))^(1/p) [SW], p in {1, 2}.

    x (n, ...) and y (m, ...) are flattened to (n, D), (m, D); n and m may differ. ``n_projections`` unit
    directions theta are drawn from ``generator`` (a fixed seed-0 generator when None, so repeated calls use the
    same directions). Units: those of x. For D = 1 this is the exact W_p. Computed in float64.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    x, y = _flat64(x, "x"), _flat64(y, "y").to(x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    theta = torch.randn(x.shape[1], n_projections, dtype=torch.float64, generator=generator)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)  # (D, P) unit directions
    return float(_wasserstein_1d_pp(theta.T @ x.T, theta.T @ y.T, p).mean() ** (1.0 / p))  # (P, n), (P, m)


def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None, chunk: int = 1024) -> float:
    """Unbiased estimate of MMD^2(x, y) with the kernel k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)) [MMD] Eq. 3.

    x (n, ...) and y (m, ...), n, m >= 2, flattened. ``bandwidths`` (the s, in data units) default to the median
    pairwise distance of y (first 1,000 points) times (1/4, 1/2, 1, 2, 4); pass them explicitly when comparing
    numbers across calls. The estimate can be slightly negative when x and y share a distribution. Computed in
    float64, ``chunk`` rows at a time so 5,000 x 5,000 points need no 200 MB matrix.
    """
    x, y = _flat64(x, "x"), _flat64(y, "y").to(x.device)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"x and y need >= 2 points each, got {n} and {m}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if bandwidths is None:
        ref = y[:1000]
        d = torch.cdist(ref, ref)
        med = float(d[torch.triu_indices(len(ref), len(ref), 1, device=d.device).unbind()].median())
        bandwidths = [med * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    s = torch.as_tensor(list(bandwidths), dtype=torch.float64, device=x.device)
    if s.numel() < 1 or not bool((s > 0).all()):
        raise ValueError(f"bandwidths must be positive numbers, got {list(bandwidths)}")
    gamma = 1.0 / (2 * s**2)

    def kernel_sum(a: Tensor, b: Tensor, same: bool) -> Tensor:
        total = a.new_zeros(())
        for i in range(0, a.shape[0], chunk):
            d2 = torch.cdist(a[i: i + chunk], b).pow(2)  # (c, len(b))
            for g in gamma:
                total = total + torch.exp(-g * d2).sum()
        if same:  # drop the diagonal k(a_i, a_i) = len(s) for the U-statistic
            total = total - a.shape[0] * s.numel()
        return total

    kxx = kernel_sum(x, x, True) / (n * (n - 1))
    kyy = kernel_sum(y, y, True) / (m * (m - 1))
    kxy = kernel_sum(x, y, False) / (n * m)
    return float(kxx + kyy - 2 * kxy)


class Floor(NamedTuple):
    """A metric between two independent data samples of n points: mean and std over repeats, and the values."""

    mean: float
    std: float
    values: list[float]


def _draw(sampler: Sampler, n: int, generator: torch.Generator | None) -> Tensor:
    out = sampler(n, generator)
    return out[0] if isinstance(out, tuple) else out


def metric_floor(metric: Callable[[Tensor, Tensor], float], sampler: Sampler, n: int, n_repeats: int = 10,
                 generator: torch.Generator | None = None) -> Floor:
    """The finite-sample floor of ``metric``: metric(a, b) for two independent draws a, b of n points each.

    ``sampler(n, generator)`` returns data (or ``(data, labels)``). Repeated ``n_repeats`` times (>= 2) with
    fresh draws from ``generator``; returns mean, sample std and the values. A sampler matching the data
    exactly scores about ``mean +- std`` with n points against a held-out sample of n points.
    """
    if n_repeats < 2 or n < 2:
        raise ValueError(f"n_repeats and n must be >= 2, got n_repeats={n_repeats}, n={n}")
    values = [float(metric(_draw(sampler, n, generator), _draw(sampler, n, generator))) for _ in range(n_repeats)]
    t = torch.tensor(values, dtype=torch.float64)
    return Floor(float(t.mean()), float(t.std()), values)


def sw_ratio(x: Tensor, sampler: Sampler, floor: Floor | float | None = None, n_projections: int = 256,
             n_repeats: int = 10, generator: torch.Generator | None = None) -> float:
    """SW-2 of samples x (n, D) against a fresh held-out draw of n data points, divided by the floor.

    The floor (``metric_floor`` of SW-2 with n points) is computed with ``n_repeats`` repeats unless given.
    Both use the same projections (seed 0), so a sampler that matches the data scores about 1 (with the
    floor's relative spread, ``floor.std / floor.mean``).
    """
    n = x.shape[0]

    def sw(a: Tensor, b: Tensor) -> float:
        return sliced_wasserstein(a, b, n_projections=n_projections)

    if floor is None:
        floor = metric_floor(sw, sampler, n, n_repeats, generator)
    floor_mean = floor.mean if isinstance(floor, Floor) else float(floor)
    if not floor_mean > 0:
        raise ValueError(f"floor must be > 0, got {floor_mean}")
    return sw(x, _draw(sampler, n, generator)) / floor_mean


def mixture_log_likelihood(x: Tensor, mixture: GaussianMixture) -> float:
    """Mean exact log-likelihood (nats per point) of x (n, D) under ``mixture``."""
    return float(mixture.log_prob(x).mean())


# --------------------------------------------------------------------------------------------------------------
# The digits classifier
# --------------------------------------------------------------------------------------------------------------

_CLASSIFIER_VERSION = 1  # bump when the architecture or training recipe changes: old cache files are retrained
_TRAIN = dict(epochs=20, batch_size=64, lr=3e-3, weight_decay=1e-4)  # ~99% test accuracy in ~3 s


def cache_dir() -> str:
    """The package's one cache folder (:func:`ddpm_lessons.cache.cache_dir`)."""
    from .cache import cache_dir as _cache_dir

    return str(_cache_dir())


class DigitClassifier(nn.Module):
    """A small conv net for 8x8 digits in [-1, 1]: two 3x3 conv blocks, a 2x2 max-pool, a 128-d feature layer.

    ``forward(x)`` gives logits (N, 10); ``features(x)`` the 128-d penultimate activations (N, 128) used for
    k-NN precision/recall and the Frechet distance; ``predict(x)`` the classes (N,). Inputs (N, 1, 8, 8) on any
    device are moved to the classifier's; outputs come back on the input's device. ``test_accuracy`` is set
    when trained (or loaded) by ``digit_classifier``.
    """

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 64, 4, 4)
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)
        self.test_accuracy: float = float("nan")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def _run(self, fn_name: str, x: Tensor, batch: int = 4096) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"x must have shape (N, 1, 8, 8), got {tuple(x.shape)}")
        was_training = self.training
        self.eval()
        dev = next(self.parameters()).device
        fn = self.body if fn_name == "features" else self
        out = torch.cat([fn(x[i: i + batch].to(dev, torch.float32)) for i in range(0, x.shape[0], batch)])
        self.train(was_training)
        return out.to(x.device)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features, (N, 128) float32, no gradient."""
        return self._run("features", x)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits, (N, 10) float32, no gradient."""
        return self._run("logits", x)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class, (N,) long."""
        return self.logits(x).argmax(1)


@contextlib.contextmanager
def _one_thread():
    """Run small CPU work on one thread: 8x8 convolutions and 128x128 eigendecompositions gain nothing from
    threads, an oversubscribed machine makes them 10-100x slower, and one thread makes training results
    independent of the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train_classifier(seed: int) -> DigitClassifier:
    with _one_thread():
        return _train_classifier_1thread(seed)


def _train_classifier_1thread(seed: int) -> DigitClassifier:
    x, y = digits("train")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initial weights
        model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=_TRAIN["lr"], weight_decay=_TRAIN["weight_decay"])
    steps = _TRAIN["epochs"] * (x.shape[0] // _TRAIN["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=_TRAIN["lr"], total_steps=steps)
    it = batches(x, y, _TRAIN["batch_size"], generator=g)
    model.train()
    for _ in range(steps):
        xb, yb = next(it)
        # a one-pixel random shift makes the net tolerate the small misalignments of generated digits
        shift = torch.randint(-1, 2, (2,), generator=g).tolist()
        xb = torch.roll(xb, shifts=shift, dims=(2, 3))
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    x_te, y_te = digits("test")
    model.test_accuracy = float((model.predict(x_te) == y_te).double().mean())
    return model


_CLASSIFIERS: dict[int, DigitClassifier] = {}


def classifier_key_config(seed: int) -> dict:
    """What decides the classifier's weights (its fingerprint and cache key): architecture, recipe, seed, data."""
    return {"model": "DigitClassifier", "layers": str(DigitClassifier()), "version": _CLASSIFIER_VERSION,
            "train": dict(_TRAIN), "seed": seed, "augment": "one-pixel random roll",
            "data": {"name": "digits", "split": "train", "split_seed": 0}}


def _cache_path(seed: int) -> str:
    return os.path.join(cache_dir(), f"digit_classifier_v{_CLASSIFIER_VERSION}_seed{seed}.pt")


def _load_shipped(seed: int) -> DigitClassifier | None:
    """The classifier shipped with the package (seed 0, safetensors), if its fingerprint fits this code."""
    from . import lesson_models
    from .cache import fingerprint

    if seed != 0:
        return None
    try:
        card = lesson_models.card(lesson_models.CLASSIFIER)
        if card["fingerprint"] != fingerprint(classifier_key_config(seed)):
            return None
        state, card = lesson_models.load_state(lesson_models.CLASSIFIER)
    except (FileNotFoundError, ValueError) as e:
        if not isinstance(e, FileNotFoundError):
            warnings.warn(f"shipped digit classifier unusable ({e}); training one", stacklevel=3)
        return None
    model = DigitClassifier()
    model.load_state_dict(state)
    model.test_accuracy = float(card["metrics"]["test_accuracy"])
    return model.eval()


def _load_cached(path: str, seed: int) -> DigitClassifier | None:
    if not os.path.exists(path):
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("version") != _CLASSIFIER_VERSION or blob.get("seed") != seed or blob.get("train") != _TRAIN:
            raise ValueError("configuration mismatch")
        model = DigitClassifier()
        model.load_state_dict(blob["state_dict"])
        model.test_accuracy = float(blob["test_accuracy"])
        return model.eval()
    except Exception as e:  # a truncated, corrupted or stale file is rebuilt, never trusted
        warnings.warn(f"digit classifier cache {path} is unusable ({e!r}); retraining", stacklevel=3)
        return None


def digit_classifier(seed: int = 0, cache: bool = True) -> DigitClassifier:
    """The digits classifier for ``seed``, trained on the digits train split (about 2-3 s on one CPU core).

    Seed 0 is shipped with the package (``ddpm_lessons/pretrained/digit_classifier.safetensors``, loaded in
    milliseconds). Other seeds, and ``cache=False``, train; with ``cache`` a trained one is kept in the process and
    at ``cache_dir()/digit_classifier_v*_seed*.pt`` (written atomically; a corrupted or mismatched file is
    reported with a warning and retrained). Training is deterministic: the same seed gives the same weights. The
    returned module is in eval mode on CPU; treat it as read-only (it is shared within the process).
    """
    from .cache import atomic_torch_save

    if not cache:
        return _train_classifier(seed)
    if seed in _CLASSIFIERS:
        return _CLASSIFIERS[seed]
    model = _load_shipped(seed)
    if model is None:
        path = _cache_path(seed)
        model = _load_cached(path, seed)
        if model is None:
            model = _train_classifier(seed)
            blob = dict(version=_CLASSIFIER_VERSION, seed=seed, train=_TRAIN, test_accuracy=model.test_accuracy,
                        state_dict=model.state_dict())
            try:
                atomic_torch_save(blob, path)
            except OSError as e:  # a read-only home still gets a working classifier
                warnings.warn(f"could not write the digit classifier cache {path}: {e}", stacklevel=2)
    _CLASSIFIERS[seed] = model
    return model


# --------------------------------------------------------------------------------------------------------------
# Digit metrics
# --------------------------------------------------------------------------------------------------------------


def class_adherence(x: Tensor, labels: Tensor, classifier: DigitClassifier | None = None) -> float:
    """Share of images x (N, 1, 8, 8) that ``classifier`` (default ``digit_classifier()``) assigns to ``labels``."""
    classifier = classifier or digit_classifier()
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have {x.shape[0]} entries like x, got {labels.shape[0]}")
    return float((classifier.predict(x).cpu() == labels.cpu()).double().mean())


def within_class_diversity(x: Tensor, labels: Tensor) -> float:
    """Mean pairwise L2 distance between images of the same class, averaged over classes (unweighted).

    x (N, ...) flattened to (N, D), in x's units; classes with fewer than 2 images are skipped. For digits in
    [-1, 1] the real test images score ``within_class_diversity(*digits("test"))``.
    """
    x = _flat64(x, "x")
    labels = torch.as_tensor(labels).reshape(-1).to(x.device)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have {x.shape[0]} entries like x, got {labels.shape[0]}")
    per_class = []
    for c in labels.unique():
        xc = x[labels == c]
        if xc.shape[0] < 2:
            continue
        d = torch.pdist(xc)  # (nc (nc - 1) / 2,) distances i < j
        per_class.append(d.mean())
    if not per_class:
        raise ValueError("within_class_diversity needs a class with at least 2 images")
    return float(torch.stack(per_class).mean())


def _kth_nn_radius(feats: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance from each row to its k-th nearest other row, (N,)."""
    out = []
    for i in range(0, feats.shape[0], chunk):
        d = torch.cdist(feats[i: i + chunk], feats)  # (c, N), includes the distance 0 to itself
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _coverage(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 2048) -> Tensor:
    """Share of ``points`` inside at least one ball B(centres_j, radii_j)."""
    inside = []
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i: i + chunk], centres)  # (c, M)
        inside.append((d <= radii[None, :]).any(1))
    return torch.cat(inside).double().mean()


def knn_precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall [PR] Eq. 1-2 of fake vs real feature sets, (N, F) and (M, F).

    The real manifold is the union of balls around each real feature with radius the distance to its k-th
    nearest real neighbour; precision is the share of fakes inside it. Recall swaps the roles (balls around
    fakes, share of reals inside). Both are in [0, 1]; identical sets give (1, 1).
    """
    real, fake = _flat64(real_feats, "real_feats"), _flat64(fake_feats, "fake_feats")
    fake = fake.to(real.device)
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must be in 1..{min(real.shape[0], fake.shape[0]) - 1}, got {k}")
    precision = _coverage(fake, real, _kth_nn_radius(real, k))
    recall = _coverage(real, fake, _kth_nn_radius(fake, k))
    return float(precision), float(recall)


def frechet_distance_from_moments(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor,
                                  method: str = "eigh") -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2) [DW]:

    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    ``method="eigh"`` (default) uses tr (sigma1 sigma2)^(1/2) = sum sqrt(eig(A sigma2 A)) with A = sigma1^(1/2):
    only symmetric eigendecompositions of PSD matrices, so it stays exact when a covariance is singular (dead
    ReLU units give zero-variance features). ``method="scipy"`` takes ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` as
    in the [FID] reference code and drops the round-off imaginary part; it agrees to ~1e-8 on well-conditioned
    inputs but warns and loses accuracy on singular ones. Computed in float64.
    """
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64).detach().cpu().reshape(-1) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64).detach().cpu() for s in (sigma1, sigma2))
    if s1.shape != (mu1.numel(), mu1.numel()) or s2.shape != s1.shape or mu2.shape != mu1.shape:
        raise ValueError(f"need mu (F,) and sigma (F, F) of one size, got {tuple(mu1.shape)}, {tuple(s1.shape)}, "
                         f"{tuple(mu2.shape)}, {tuple(s2.shape)}")
    if method == "scipy":
        import scipy.linalg

        tr_covmean = float(np.trace(np.real(scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()))))
    elif method == "eigh":
        e1, v1 = torch.linalg.eigh(s1)
        a = v1 @ torch.diag(e1.clamp_min(0).sqrt()) @ v1.T  # sigma1^(1/2)
        tr_covmean = float(torch.linalg.eigvalsh(a @ s2 @ a).clamp_min(0).sqrt().sum())
    else:
        raise ValueError(f"method must be 'eigh' or 'scipy', got {method!r}")
    diff = mu1 - mu2
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean)


def frechet_distance(real_feats: Tensor, fake_feats: Tensor, method: str = "eigh") -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, F), (M, F) [FID] (sample means and
    unbiased covariances). It is biased upward for finite N, M: compare against the real-vs-real value."""
    real, fake = _flat64(real_feats, "real_feats"), _flat64(fake_feats, "fake_feats")
    if real.shape[0] < 2 or fake.shape[0] < 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need >= 2 rows of one feature size, got {tuple(real.shape)} and {tuple(fake.shape)}")
    return frechet_distance_from_moments(real.mean(0), torch.cov(real.T).reshape(real.shape[1], -1),
                                         fake.mean(0), torch.cov(fake.T).reshape(fake.shape[1], -1), method)


def digit_report(samples: Tensor, labels: Tensor | None = None, classifier: DigitClassifier | None = None,
                 k: int = 3) -> dict[str, float]:
    """All digit metrics of generated ``samples`` (N, 1, 8, 8) in [-1, 1] requested as classes ``labels`` (N,).

    ``labels=None`` is the unconditional mode (samples of an unconditional model): no class was requested, so there
    is no ``adherence`` key, and ``diversity`` groups the samples -- and ``diversity_real`` the test images -- by
    the classifier's *predicted* class instead of a requested (or true) one. Every other key is the same.

    Keys:
      ``adherence`` -- share classified as the requested class (only with ``labels``);
      ``diversity`` -- within-class mean pairwise distance, grouped by requested class; ``diversity_real`` the
      same on the 360 real test images, ``diversity_ratio`` their ratio;
      ``precision``, ``recall`` (k-NN, [PR]) and ``frechet`` ([FID] recipe) in the classifier's features against
      the real test images, and ``*_real``: the same three for min(N, 1437) real train images (a fixed subset)
      against the test images -- what a sampler that reproduces the data scores at this sample size;
      ``classifier_test_accuracy`` to read all of them by; ``n``.
    """
    classifier = classifier or digit_classifier()
    with _one_thread():
        return _digit_report(samples, labels, classifier, k)


def _digit_report(samples: Tensor, labels: Tensor | None, classifier: DigitClassifier, k: int
                  ) -> dict[str, float]:
    x_test, y_test = digits("test")
    x_train, _ = digits("train")
    n = samples.shape[0]
    subset = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(0))[: min(n, x_train.shape[0])]
    test_f, fake_f, train_f = (classifier.features(v).cpu() for v in (x_test, samples, x_train[subset]))
    if labels is None:  # unconditional: group both sets by the class the classifier sees
        group, group_real = classifier.predict(samples).cpu(), classifier.predict(x_test).cpu()
        report: dict[str, float] = {}
    else:
        group, group_real = torch.as_tensor(labels).reshape(-1), y_test
        report = dict(adherence=class_adherence(samples, group, classifier))
    diversity, diversity_real = within_class_diversity(samples, group), within_class_diversity(x_test, group_real)
    precision, recall = knn_precision_recall(test_f, fake_f, k=k)
    precision_real, recall_real = knn_precision_recall(test_f, train_f, k=k)
    return dict(report, diversity=diversity,
                diversity_real=diversity_real, diversity_ratio=diversity / diversity_real,
                precision=precision, recall=recall, frechet=frechet_distance(test_f, fake_f),
                precision_real=precision_real, recall_real=recall_real,
                frechet_real=frechet_distance(test_f, train_f),
                classifier_test_accuracy=classifier.test_accuracy, n=float(n))
