"""Tests for ddpm_lessons.metrics: exact cases and brute-force oracles for SW, MMD, k-NN precision/recall and the
Frechet distance; floors; the digits classifier (accuracy, determinism, disk cache) and the digit report."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from ddpm_lessons import metrics
from ddpm_lessons.data import GaussianMixture, digits, mixture_8
from ddpm_lessons.metrics import (
    frechet_distance,
    frechet_distance_from_moments,
    knn_precision_recall,
    metric_floor,
    mmd,
    sliced_wasserstein,
    sw_ratio,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mix_sampler(n, g):
    return mixture_8().sample(n, g)


# ---- sliced Wasserstein ------------------------------------------------------------------------------------------

def test_sw_1d_shift_is_exact():
    # in 1-D every projection is +-1, so SW_p is W_p, and W_p(x, x + c) = |c| for any p
    x = torch.randn(500, 1, generator=_gen(0), dtype=torch.float64)
    for p in (1, 2):
        assert sliced_wasserstein(x, x + 0.7, n_projections=4, p=p) == pytest.approx(0.7, abs=1e-12)


def test_sw_unequal_sizes_against_replication_and_scipy():
    from scipy.stats import wasserstein_distance

    x = torch.randn(4, 1, generator=_gen(1), dtype=torch.float64)
    y = torch.randn(6, 1, generator=_gen(2), dtype=torch.float64) + 0.3
    # W_2 oracle: repeat each point to the common size lcm(4, 6) = 12 and pair the sorted copies
    xs = x.repeat_interleave(3, 0)[:, 0].sort().values
    ys = y.repeat_interleave(2, 0)[:, 0].sort().values
    w2 = float(((xs - ys) ** 2).mean().sqrt())
    assert sliced_wasserstein(x, y, n_projections=3, p=2) == pytest.approx(w2, abs=1e-12)
    w1 = wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, n_projections=3, p=1) == pytest.approx(w1, abs=1e-12)


def test_sw_shift_in_2d_matches_expectation_over_directions():
    # for y = x + c, every projection gives W_2^2 = (theta . c)^2, and E_theta (theta . c)^2 = |c|^2 / D;
    # with P directions the mean has standard error sqrt(Var cos^2) / sqrt(P) = sqrt(1/8 / P) for |c| = 1, D = 2
    x = torch.randn(200, 2, generator=_gen(3), dtype=torch.float64)
    P = 20_000
    sw2 = sliced_wasserstein(x, x + torch.tensor([1.0, 0.0], dtype=torch.float64), n_projections=P) ** 2
    assert abs(sw2 - 0.5) < 5 * math.sqrt(1 / 8 / P)


def test_sw_deterministic_and_validated():
    a, _ = _mix_sampler(300, _gen(4))
    b, _ = _mix_sampler(300, _gen(5))
    assert sliced_wasserstein(a, b) == sliced_wasserstein(a, b)  # default directions are fixed (seed 0)
    assert sliced_wasserstein(a, b, generator=_gen(1)) != sliced_wasserstein(a, b, generator=_gen(2))
    with pytest.raises(ValueError, match="p must be"):
        sliced_wasserstein(a, b, p=3)
    with pytest.raises(ValueError, match="dimension"):
        sliced_wasserstein(a, torch.zeros(5, 3))


def test_sw_floor_same_vs_shifted():
    n = 2000
    floor = metric_floor(sliced_wasserstein, _mix_sampler, n, n_repeats=10, generator=_gen(6))
    assert len(floor.values) == 10 and floor.mean > 0 and floor.std > 0
    assert metric_floor(sliced_wasserstein, _mix_sampler, n, 10, _gen(6)) == floor  # seeded
    fresh = sliced_wasserstein(_mix_sampler(n, _gen(7))[0], _mix_sampler(n, _gen(8))[0])
    assert fresh < floor.mean + 5 * floor.std
    shifted = sliced_wasserstein(_mix_sampler(n, _gen(7))[0] + 0.5, _mix_sampler(n, _gen(8))[0])
    assert shifted > floor.mean + 5 * floor.std and shifted > 2 * floor.mean


def test_sw_ratio_perfect_vs_distorted_sampler():
    n = 2000
    floor = metric_floor(sliced_wasserstein, _mix_sampler, n, n_repeats=10, generator=_gen(9))
    g = _gen(10)
    perfect = [sw_ratio(_mix_sampler(n, g)[0], _mix_sampler, floor, generator=g) for _ in range(10)]
    # one ratio spreads by about floor.std / floor.mean (~0.3); the mean of 10 by a third of that
    rel = floor.std / floor.mean
    assert abs(np.mean(perfect) - 1) < 5 * rel / math.sqrt(10)
    scaled = [sw_ratio(1.2 * _mix_sampler(n, g)[0], _mix_sampler, floor, generator=g) for _ in range(3)]
    assert min(scaled) > 2


# ---- MMD --------------------------------------------------------------------------------------------------------

def test_mmd_matches_brute_force_with_sklearn_kernels():
    from sklearn.metrics.pairwise import rbf_kernel

    x = torch.randn(37, 3, generator=_gen(11), dtype=torch.float64)
    y = torch.randn(23, 3, generator=_gen(12), dtype=torch.float64) + 0.4
    bw = (0.5, 1.0, 2.0)
    xn, yn = x.numpy(), y.numpy()
    kxx = sum(rbf_kernel(xn, xn, gamma=1 / (2 * s**2)) for s in bw)
    kyy = sum(rbf_kernel(yn, yn, gamma=1 / (2 * s**2)) for s in bw)
    kxy = sum(rbf_kernel(xn, yn, gamma=1 / (2 * s**2)) for s in bw)
    n, m = 37, 23
    ref = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
           - 2 * kxy.mean())  # [MMD] Eq. 3, the unbiased U-statistic
    assert mmd(x, y, bandwidths=bw, chunk=7) == pytest.approx(ref, abs=1e-12)
    assert mmd(x, y, bandwidths=bw) == pytest.approx(ref, abs=1e-12)


def test_mmd_unbiased_and_detects_shift():
    n, bw = 300, (0.5, 1.0, 2.0)
    same = [mmd(_mix_sampler(n, _gen(2 * i))[0], _mix_sampler(n, _gen(2 * i + 1))[0], bw) for i in range(20)]
    se = np.std(same, ddof=1) / math.sqrt(len(same))
    assert abs(np.mean(same)) < 5 * se  # unbiased: E[MMD^2_u] = 0 for one distribution
    shifted = mmd(_mix_sampler(n, _gen(100))[0] + 0.5, _mix_sampler(n, _gen(101))[0], bw)
    assert shifted > np.mean(same) + 10 * np.std(same, ddof=1)
    assert math.isfinite(mmd(_mix_sampler(n, _gen(1))[0], _mix_sampler(n, _gen(2))[0]))  # median heuristic
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(torch.zeros(3, 2), torch.ones(3, 2), bandwidths=(0.0,))


def test_mixture_log_likelihood():
    g = GaussianMixture([1.0], [[1.0, -2.0]], [[0.5, 2.0]])
    x = torch.randn(10, 2, generator=_gen(13), dtype=torch.float64)
    z = (x - torch.tensor([1.0, -2.0], dtype=torch.float64)) / torch.tensor([0.5, 2.0], dtype=torch.float64)
    ref = float((-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(1).mean() - math.log(0.5) - math.log(2.0))
    assert metrics.mixture_log_likelihood(x, g) == pytest.approx(ref, abs=1e-12)
    mix = mixture_8()
    x, _ = mix.sample(5000, _gen(14))
    assert metrics.mixture_log_likelihood(x, mix) > metrics.mixture_log_likelihood(x, mixture_8(std=0.6))


# ---- k-NN precision / recall ------------------------------------------------------------------------------------

def test_knn_precision_recall_against_brute_force():
    from sklearn.neighbors import NearestNeighbors

    real = torch.randn(120, 5, generator=_gen(15), dtype=torch.float64)
    fake = 1.3 * torch.randn(90, 5, generator=_gen(16), dtype=torch.float64) + 0.2
    k = 3

    def coverage(points, centres):
        radii = NearestNeighbors(n_neighbors=k + 1).fit(centres).kneighbors(centres)[0][:, -1]  # self is 1st
        d = np.linalg.norm(points[:, None, :] - centres[None], axis=-1)
        return float((d <= radii[None]).any(1).mean())

    p, r = knn_precision_recall(real, fake, k=k)
    assert p == pytest.approx(coverage(fake.numpy(), real.numpy()), abs=1e-12)
    assert r == pytest.approx(coverage(real.numpy(), fake.numpy()), abs=1e-12)


def test_knn_precision_recall_identical_and_mode_dropped():
    mix = mixture_8()
    real, _ = mix.sample(2000, _gen(17))
    assert knn_precision_recall(real, real.clone()) == (1.0, 1.0)
    fake, labels = mix.sample(4000, _gen(18))
    fake = fake[labels < 4][:2000]  # half the modes dropped
    p, r = knn_precision_recall(real, fake)
    assert p > 0.95  # every fake lies on the real manifold
    assert 0.4 < r < 0.6  # about half the real points are covered
    with pytest.raises(ValueError, match="k must be"):
        knn_precision_recall(real[:3], fake[:3], k=3)


# ---- Frechet distance -------------------------------------------------------------------------------------------

def _with_moments(mu, sigma, n, seed):
    """n points whose sample mean and unbiased covariance are exactly mu and sigma."""
    z = torch.randn(n, mu.numel(), generator=_gen(seed), dtype=torch.float64)
    z = z - z.mean(0)
    L = torch.linalg.cholesky(torch.cov(z.T))
    z = torch.linalg.solve_triangular(L, z.T, upper=False).T  # whitened: sample covariance I
    return mu + z @ torch.linalg.cholesky(sigma).T


def test_frechet_closed_form():
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 0.25])
    ref = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    for method in ("eigh", "scipy"):
        assert frechet_distance_from_moments(mu1, torch.diag(s1), mu2, torch.diag(s2), method) == pytest.approx(
            ref, abs=1e-10)
    # general covariances: both square-root methods agree, and sample features reproduce the moments exactly
    A = torch.randn(4, 4, generator=_gen(19), dtype=torch.float64)
    B = torch.randn(4, 4, generator=_gen(20), dtype=torch.float64)
    S1, S2 = A @ A.T + 0.1 * torch.eye(4, dtype=torch.float64), B @ B.T + 0.1 * torch.eye(4, dtype=torch.float64)
    m1, m2 = torch.randn(4, generator=_gen(21), dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    exact = frechet_distance_from_moments(m1, S1, m2, S2, "scipy")
    assert frechet_distance_from_moments(m1, S1, m2, S2, "eigh") == pytest.approx(exact, rel=1e-9)
    f1, f2 = _with_moments(m1, S1, 500, 22), _with_moments(m2, S2, 300, 23)
    assert frechet_distance(f1, f2) == pytest.approx(exact, rel=1e-9)
    assert abs(frechet_distance(f1, f1.clone())) < 1e-8
    # a zero-variance feature (a dead ReLU unit) changes nothing on the eigh path
    pad = lambda f: torch.cat([f, torch.zeros(f.shape[0], 1, dtype=f.dtype)], 1)  # noqa: E731
    assert frechet_distance(pad(f1), pad(f2)) == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="method"):
        frechet_distance(f1, f2, method="svd")


# ---- digits classifier and report ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier of seed 1 (seed 0 is shipped) trained for this module into an empty cache folder."""
    folder = tmp_path_factory.mktemp("cache")
    (folder / "someone_elses_file.txt").write_text("keep me")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DDPM_LESSONS_CACHE", str(folder))
        yield folder, metrics.digit_classifier(seed=1)


def _same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


_LOAD = """
import sys, warnings, torch
from ddpm_lessons import metrics
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    clf = metrics.digit_classifier(seed=1)
torch.save(clf.state_dict(), sys.argv[1])
print("WARN" if any("unusable" in str(x.message) for x in w) else "OK", clf.test_accuracy)
"""


def _load_in_a_fresh_process(folder, out):
    import subprocess
    import sys

    env = {**os.environ, "DDPM_LESSONS_CACHE": str(folder), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_classifier_accuracy_determinism_and_disk_cache(trained, tmp_path, monkeypatch):
    folder, clf = trained
    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(folder))
    print(f"digit classifier (seed 1) test accuracy: {clf.test_accuracy:.4f}")
    assert clf.test_accuracy >= 0.95
    x_te, y_te = digits("test")
    assert metrics.class_adherence(x_te, y_te, clf) == pytest.approx(clf.test_accuracy)
    assert metrics.digit_classifier(seed=1) is clf  # once per process
    # deterministic: a second training from scratch gives the same weights
    assert _same_weights(metrics.digit_classifier(seed=1, cache=False), clf)
    # one new model file in the folder (beside data/, the digits split cached on first read), nothing else changed
    files = sorted(os.listdir(folder))
    data_files = sorted(os.listdir(folder / "data")) if "data" in files else []
    assert all(f.startswith("digits-sklearn-") and f.endswith(".npz") for f in data_files), data_files
    files = [f for f in files if f != "data"]
    assert len(files) == 2 and "someone_elses_file.txt" in files
    (cached,) = [folder / f for f in files if f != "someone_elses_file.txt"]
    assert (folder / "someone_elses_file.txt").read_text() == "keep me"
    # a fresh process loads the file (same weights, file untouched)
    stamp = cached.stat().st_mtime_ns
    status, acc = _load_in_a_fresh_process(folder, tmp_path / "w1.pt")
    assert status == "OK" and float(acc) == clf.test_accuracy and cached.stat().st_mtime_ns == stamp
    state = torch.load(tmp_path / "w1.pt", weights_only=True)
    assert all(torch.equal(v, clf.state_dict()[k]) for k, v in state.items())
    # a truncated file is reported and rebuilt whole
    with open(cached, "r+b") as f:
        f.truncate(100)
    status, acc = _load_in_a_fresh_process(folder, tmp_path / "w2.pt")
    assert status == "WARN" and float(acc) == clf.test_accuracy
    assert cached.stat().st_size > 100 and not [f for f in os.listdir(folder) if f.endswith(".tmp")]
    status, _ = _load_in_a_fresh_process(folder, tmp_path / "w3.pt")
    assert status == "OK"


def test_shipped_classifier_loads_without_training_or_writing(tmp_path, monkeypatch):
    from ddpm_lessons import lesson_models

    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(metrics, "_CLASSIFIERS", {})
    clf = metrics.digit_classifier()
    x_te, y_te = digits("test")
    card = lesson_models.card(lesson_models.CLASSIFIER)
    assert clf.test_accuracy == card["metrics"]["test_accuracy"] >= 0.97
    assert metrics.class_adherence(x_te, y_te, clf) == pytest.approx(clf.test_accuracy, abs=1e-12)
    assert not (tmp_path / "cache").exists()


def test_within_class_diversity_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # class 2 has one point: skipped
    ref = (5.0 + (1 + 1 + math.sqrt(2)) / 3) / 2
    assert metrics.within_class_diversity(x, labels) == pytest.approx(ref, abs=1e-12)


def test_digit_report_on_real_and_noise(trained):
    clf = trained[1]
    x_te, y_te = digits("test")
    rep = metrics.digit_report(x_te, y_te, clf)
    assert rep["adherence"] == pytest.approx(clf.test_accuracy)
    assert rep["diversity_ratio"] == pytest.approx(1.0)
    assert (rep["precision"], rep["recall"]) == (1.0, 1.0)
    # identical sets: zero up to the square root's round-off, ~sqrt(machine eps) x the feature variance
    real_f = clf.features(x_te).double()
    assert abs(rep["frechet"]) < 1e-6 * float(torch.cov(real_f.T).trace())
    assert rep["classifier_test_accuracy"] == clf.test_accuracy
    noise = torch.rand(360, 1, 8, 8, generator=_gen(24)) * 2 - 1
    bad = metrics.digit_report(noise, y_te, clf)
    assert bad["adherence"] < 0.3 and bad["precision"] < 0.5 and bad["recall"] < 0.5
    assert bad["frechet"] > 10 * rep["frechet_real"]
    # the real train images are the reference a good sampler is judged by
    assert rep["precision_real"] > 0.8 and rep["recall_real"] > 0.8


def test_digit_report_unconditional_mode(trained):
    """labels=None: no adherence; diversity grouped by the predicted class; every label-free key as with labels."""
    clf = trained[1]
    x_te, y_te = digits("test")
    with_labels = metrics.digit_report(x_te, y_te, clf)
    rep = metrics.digit_report(x_te, None, clf)
    assert "adherence" not in rep and set(rep) == set(with_labels) - {"adherence"}
    for key in ("precision", "recall", "frechet", "precision_real", "recall_real", "frechet_real",
                "classifier_test_accuracy", "n"):
        assert rep[key] == with_labels[key], key
    # real images against themselves, grouped the same way on both sides: the ratio is exactly 1
    pred = clf.predict(x_te).cpu()
    assert rep["diversity"] == pytest.approx(metrics.within_class_diversity(x_te, pred), abs=1e-12)
    assert rep["diversity_real"] == rep["diversity"] and rep["diversity_ratio"] == 1.0
    # a sampler that drops half the classes: recall falls, precision stays (k-NN [PR]); the report must show it
    half = x_te[y_te < 5]
    dropped = metrics.digit_report(half, None, clf)
    assert dropped["precision"] > 0.9 and dropped["recall"] < 0.75
    assert dropped["frechet"] > 10 * max(rep["frechet"], 1e-3)
    # one image repeated: the grouped diversity collapses to 0
    assert metrics.digit_report(x_te[:1].repeat(40, 1, 1, 1), None, clf)["diversity"] == 0.0
