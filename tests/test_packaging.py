"""environment.yml mirrors pyproject.toml; the console script and the profile switch work; the command runs without
the dev extra (errata 27); the wheel carries the shipped lesson models; `make lab` as root / headless (errata 32)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _reqs(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        r = Requirement(line)
        out[r.name.lower()] = str(r.specifier)
    return out


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = _reqs(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "ddpm-lessons"
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    got = _reqs(pip_section)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(n for n in set(expected) & set(got) if expected[n] != got[n])
    assert not (missing or extra or differ), f"missing {missing}, extra {extra}, different specifiers {differ}"


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "ddpm_lessons.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "check" in out.stdout


def test_profile_switch(monkeypatch):
    from ddpm_lessons import config

    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "ci")
    assert config.profile() == "ci" and config.sizes().name == "ci"
    monkeypatch.delenv("DDPM_LESSONS_PROFILE")
    monkeypatch.setenv("CI", "true")
    assert config.profile() == "ci"
    monkeypatch.setenv("DDPM_LESSONS_PROFILE", "fast")
    with pytest.raises(ValueError, match="DDPM_LESSONS_PROFILE"):
        config.profile()


# ---- errata 27: the command works on a plain install (no dev extra); --help imports neither torch nor nbformat ----

_BLOCK = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from ddpm_lessons.cli import main
code = main(sys.argv[2:])
assert not BLOCKED & {m.split(".")[0] for m in sys.modules}, "a blocked module was imported"
sys.exit(code)
"""


def _cli_without(blocked: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCK, blocked, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_help_works_without_the_dev_extra_and_without_torch():
    out = _cli_without("nbformat,nbclient,jupyterlab,torch", "--help")
    assert out.returncode == 0, out.stderr
    for command in ("check", "drill", "train", "sample", "lesson-models", "export-student", "exercise", "profile"):
        assert command in out.stdout


def test_check_help_needs_neither_torch_nor_nbformat():
    out = _cli_without("nbformat,torch", "check", "--help")
    assert out.returncode == 0, out.stderr
    assert "answer" in out.stdout


def test_a_command_that_needs_the_dev_extra_says_so():
    out = _cli_without("nbformat", "export-student", "out_dir")
    assert out.returncode == 2
    assert "nbformat" in out.stderr and "ddpm-lessons[dev]" in out.stderr


# ---- the shipped lesson models are package data: a built wheel and an installed copy contain them --------------


def test_wheel_and_installed_package_contain_the_lesson_models(tmp_path):
    import zipfile

    shipped = sorted(p.name for p in (ROOT / "ddpm_lessons" / "pretrained").iterdir()
                     if p.suffix in (".json", ".safetensors"))
    assert shipped, "no shipped lesson models in ddpm_lessons/pretrained/"
    src = tmp_path / "src"  # build from a copy: the shared working tree gets no build/ or egg-info folders
    shutil.copytree(ROOT / "ddpm_lessons", src / "ddpm_lessons", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("ddpm_lessons-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = sorted(n.split("/")[-1] for n in names if n.startswith("ddpm_lessons/pretrained/"))
    assert in_wheel == shipped
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import ddpm_lessons, sys; from ddpm_lessons import lesson_models as lm; "
             "assert ddpm_lessons.__file__.startswith(sys.argv[1]), ddpm_lessons.__file__; "
             "r = lm.load('mixture_8_simple'); print(lm.pretrained_dir(), r.card['fingerprint'])")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe, str(site)], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(site) in out.stdout


# ---- errata 32: `make lab` as root and without a display -------------------------------------------------------


def _make_lab(**variables: str) -> str:
    args = [f"{k}={v}" for k, v in variables.items()]
    out = subprocess.run(["make", "-n", "-s", "lab", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    (line,) = [ln for ln in out.stdout.splitlines() if "jupyter lab" in ln]
    return line


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_command_line():
    root_headless = _make_lab(LAB_UID="0", DISPLAY="", WAYLAND_DISPLAY="")
    assert "--allow-root" in root_headless.split() and "--no-browser" in root_headless.split()
    user_desktop = _make_lab(LAB_UID="1000", DISPLAY=":0")
    assert "--allow-root" not in user_desktop and "--no-browser" not in user_desktop
    user_wayland = _make_lab(LAB_UID="1000", DISPLAY="", WAYLAND_DISPLAY="wayland-0")
    assert "--no-browser" not in user_wayland
    assert _make_lab(LAB_UID="0", DISPLAY=":1").split().count("--allow-root") == 1
    here = _make_lab()  # this machine, as it is
    assert ("--allow-root" in here) == (os.geteuid() == 0)


def test_exercise_command_forwards_its_arguments(capsys):
    from ddpm_lessons.cli import main

    assert main(["exercise", "list"]) == 0
    assert "training_loss" in capsys.readouterr().out
