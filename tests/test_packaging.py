"""environment.yml mirrors pyproject.toml; the console script and the profile switch work."""

from __future__ import annotations

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
