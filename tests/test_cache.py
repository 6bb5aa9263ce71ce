"""Model cache: keys and fingerprints, atomic writes, corrupted / mismatched files, and the folder left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ddpm_lessons import cache as cache_mod
from ddpm_lessons import schedules
from ddpm_lessons import train as train_mod
from ddpm_lessons.cache import atomic_torch_save, atomic_write, cache_dir, cache_key, fingerprint, get_or_train
from ddpm_lessons.models import MLPDenoiser
from ddpm_lessons.presets import pretrained
from ddpm_lessons.train import TrainConfig


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder."""
    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


SCHED = schedules.linear(50)
X = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
CFG = TrainConfig(steps=5, batch_size=32, warmup=1, log_every=5)


class Counter:
    """A build/train pair that counts how often training ran."""

    def __init__(self, hidden: int = 16) -> None:
        self.hidden = hidden
        self.trained = 0

    def build(self) -> MLPDenoiser:
        torch.manual_seed(0)
        return MLPDenoiser(dim=2, hidden=self.hidden, num_blocks=1, emb_dim=8)

    def fit(self, model):
        self.trained += 1
        return train_mod.train(model, SCHED, X, cfg=CFG, progress=False)


KEY = {"model": {"hidden": 16}, "schedule": SCHED, "train": CFG, "data": "gaussian"}


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_cache_dir_follows_the_environment(_isolated_cache, monkeypatch):
    assert cache_dir() == _isolated_cache
    monkeypatch.delenv("DDPM_LESSONS_CACHE")
    assert str(cache_dir()).endswith(os.path.join(".cache", "ddpm_lessons", "models"))


def test_second_call_loads_without_training(_isolated_cache):
    c = Counter()
    r1 = get_or_train(KEY, c.build, c.fit, name="toy")
    r2 = get_or_train(KEY, c.build, c.fit, name="toy")
    assert c.trained == 1
    assert r1.meta["from_cache"] is False and r2.meta["from_cache"] is True
    assert [p.name for p in _isolated_cache.iterdir()] == [f"toy-{cache_key(KEY)}.pt"]
    for k, v in r1.ema_model.state_dict().items():
        assert torch.equal(v, r2.ema_model.state_dict()[k])
    assert r2.history == r1.history and r2.config == CFG


def test_key_changes_with_every_part_of_the_configuration():
    base = cache_key(KEY)
    assert cache_key(dict(reversed(list(KEY.items())))) == base  # order does not matter
    assert cache_key({**KEY, "model": {"hidden": (16,)}}) == cache_key({**KEY, "model": {"hidden": [16]}})
    changed = [
        {**KEY, "model": {"hidden": 17}},
        {**KEY, "schedule": schedules.linear(51)},
        {**KEY, "schedule": schedules.cosine(50)},
        {**KEY, "train": TrainConfig(steps=6, batch_size=32, warmup=1, log_every=5)},
        {**KEY, "train": TrainConfig(steps=5, batch_size=32, warmup=1, log_every=5, seed=1)},
        {**KEY, "data": "moons"},
    ]
    keys = {cache_key(k) for k in changed}
    assert base not in keys and len(keys) == len(changed)


def test_key_includes_the_package_version(monkeypatch):
    import ddpm_lessons

    base = cache_key(KEY)
    monkeypatch.setattr(ddpm_lessons, "__version__", ddpm_lessons.__version__ + ".post1")
    assert cache_key(KEY) != base


def test_crash_mid_write_leaves_no_partial_file(_isolated_cache, monkeypatch):
    c = Counter()

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("simulated crash while writing")

    with monkeypatch.context() as mp:
        mp.setattr(train_mod.torch, "save", crashing_save)
        with pytest.raises(KeyboardInterrupt):
            get_or_train(KEY, c.build, c.fit, name="toy")
    assert list(_isolated_cache.iterdir()) == []  # neither the final file nor the temporary one
    get_or_train(KEY, c.build, c.fit, name="toy")  # the next call trains again and writes a good file
    assert c.trained == 2 and len(list(_isolated_cache.iterdir())) == 1


def test_hard_kill_mid_write_never_exposes_the_final_file(tmp_path):
    """A process killed (os._exit) in the middle of torch.save leaves at most a hidden temporary file."""
    target = tmp_path / "model.pt"
    script = textwrap.dedent(f"""
        import os, torch
        from ddpm_lessons.cache import atomic_torch_save

        class Bomb:
            def __reduce__(self):
                os._exit(9)  # dies after part of the archive has been written

        atomic_torch_save({{"weights": torch.zeros(100_000), "bomb": Bomb()}}, {str(target)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".model.pt.") and p.name.endswith(".tmp") for p in leftovers), leftovers


def test_atomic_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "x.pt"
    atomic_torch_save({"a": 1}, path)
    atomic_torch_save({"a": 2}, path)
    assert torch.load(path, weights_only=True) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def _neighbours(folder) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("not ours")
    (folder / "other-0123456789abcdef0123.pt").write_bytes(b"garbage that belongs to someone else")
    (folder / ".toy-hidden.tmp").write_bytes(b"an old temporary file")
    return _snapshot(folder)


def test_corrupted_file_is_reported_and_rebuilt(_isolated_cache):
    c = Counter()
    before = _neighbours(_isolated_cache)
    path = _isolated_cache / f"toy-{cache_key(KEY)}.pt"
    path.write_bytes(b"\x80\x04 this is not a checkpoint")
    with pytest.warns(UserWarning, match=rf"{path.name}.*retraining"):
        r = get_or_train(KEY, c.build, c.fit, name="toy")
    assert c.trained == 1 and r.meta["from_cache"] is False
    assert torch.load(path, weights_only=True)["cache_key"] == cache_key(KEY)  # a good file now
    after = _snapshot(_isolated_cache)
    assert {k: v for k, v in after.items() if k != path.name} == before  # nothing else touched


def test_file_with_another_key_is_rebuilt(_isolated_cache):
    c = Counter()
    other = {**KEY, "data": "moons"}
    get_or_train(other, c.build, c.fit, name="toy")
    src = _isolated_cache / f"toy-{cache_key(other)}.pt"
    dst = _isolated_cache / f"toy-{cache_key(KEY)}.pt"
    dst.write_bytes(src.read_bytes())  # right name, wrong contents
    with pytest.warns(UserWarning, match=dst.name):
        get_or_train(KEY, c.build, c.fit, name="toy")
    assert c.trained == 2
    assert torch.load(dst, weights_only=True)["cache_key"] == cache_key(KEY)
    assert torch.load(src, weights_only=True)["cache_key"] == cache_key(other)  # untouched


def test_weights_of_the_wrong_shape_are_rebuilt(_isolated_cache):
    get_or_train(KEY, Counter(16).build, Counter(16).fit, name="toy")
    wider = Counter(32)  # same key (a careless key_config), different architecture
    with pytest.warns(UserWarning, match="toy-"):
        r = get_or_train(KEY, wider.build, wider.fit, name="toy")
    assert wider.trained == 1 and r.model.config["hidden"] == 32


def test_cache_false_touches_nothing(_isolated_cache):
    c = Counter()
    get_or_train(KEY, c.build, c.fit, name="toy", cache=False)
    get_or_train(KEY, c.build, c.fit, name="toy", cache=False)
    assert c.trained == 2 and not _isolated_cache.exists()


def test_bad_name_is_rejected():
    with pytest.raises(ValueError, match="name"):
        get_or_train(KEY, Counter().build, Counter().fit, name="../escape")


def test_pretrained_trains_once_then_loads(_isolated_cache):
    r1 = pretrained("mixture_8", steps=10, profile="ci", progress=False, device="cpu")
    r2 = pretrained("mixture_8", steps=10, profile="ci", progress=False, device="cpu")
    assert r1.meta["from_cache"] is False and r2.meta["from_cache"] is True
    assert r2.sched.T == 1000 and r2.model.objective == "eps"
    r3 = pretrained("mixture_8", steps=10, profile="ci", progress=False, device="cpu", objective="v")
    assert r3.meta["from_cache"] is False and r3.model.objective == "v"  # another configuration, another file
    assert len(list(_isolated_cache.iterdir())) == 2
    with pytest.raises(ValueError, match="name"):
        pretrained("imagenet")


def test_cache_key_of_a_schedule_ignores_its_memo_of_derived_tables():
    # a schedule used by a training loop memoises derived tables; the key (and the stored key_config) must not see it
    from ddpm_lessons import forward, schedules

    sched = schedules.cosine(50)
    before = cache_key({"schedule": sched})
    forward.q_sample(sched, torch.zeros(2, 3), torch.tensor([1, 50]), torch.ones(2, 3))
    assert cache_key({"schedule": sched}) == before
    assert cache_key({"schedule": schedules.cosine(50)}) == before
    assert cache_key({"schedule": schedules.linear(50)}) != before


def test_old_names_still_import_from_train():
    # notebooks and outside code call train.pretrained / train.get_or_train / train.cache_dir ...
    for name in ("pretrained", "PRESETS", "get_or_train", "cache_dir", "cache_key", "atomic_torch_save", "load",
                 "save_checkpoint", "schedule_spec", "schedule_from_spec"):
        assert getattr(train_mod, name) is not None, name
    assert train_mod.get_or_train is get_or_train and train_mod.cache_dir is cache_dir
    from ddpm_lessons.train import pretrained as old

    assert old is pretrained
    with pytest.raises(AttributeError):
        train_mod.no_such_name  # noqa: B018


def test_one_cache_folder_for_models_and_classifiers(_isolated_cache):
    from ddpm_lessons import metrics

    assert metrics.cache_dir() == str(cache_dir()) == str(_isolated_cache)


def test_key_and_fingerprint_include_the_training_semantics_version(monkeypatch):
    key, fp = cache_key(KEY), fingerprint(KEY)
    monkeypatch.setattr(cache_mod, "TRAINING_SEMANTICS_VERSION", train_mod.TRAINING_SEMANTICS_VERSION + 1)
    assert cache_key(KEY) != key and fingerprint(KEY) != fp


def test_fingerprint_ignores_the_package_version(monkeypatch):
    import ddpm_lessons

    fp = fingerprint(KEY)
    monkeypatch.setattr(ddpm_lessons, "__version__", ddpm_lessons.__version__ + ".post1")
    assert fingerprint(KEY) == fp and fingerprint({**KEY, "data": "moons"}) != fp


def test_atomic_write_leaves_a_readable_file_or_nothing(tmp_path):
    path = tmp_path / "card.json"
    atomic_write(path, lambda f: f.write(b"{}"))
    assert path.read_bytes() == b"{}" and (path.stat().st_mode & 0o777) == 0o644

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"{}" and [p.name for p in tmp_path.iterdir()] == ["card.json"]
