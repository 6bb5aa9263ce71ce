"""Real-browser test of the guidance explorer: JupyterLab on 127.0.0.1, headless Debian Chromium through Playwright.

A copy of notebooks/07_classifier_free_guidance.ipynb is opened in a JupyterLab server that runs in temporary
HOME/Jupyter folders (ci profile, the shared model cache), every cell is run from the Run menu, and once every input
prompt shows a number and the kernel is idle, the w slider is moved with the keyboard. The test asserts that the
adherence line and the picture of the explorer change, and saves a screenshot to test-artifacts/browser_guidance.png.
Every request that is not for 127.0.0.1 is blocked; the server is shut down (and killed if need be) even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "07_classifier_free_guidance.ipynb"
ARTIFACT = ROOT / "test-artifacts" / "browser_guidance.png"
# Debian's Chromium here and in CI; $CHROMIUM_PATH or a system Chrome elsewhere (e.g. GitHub's Ubuntu runners)
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM_PATH", ""), "/usr/bin/chromium", "/usr/bin/google-chrome",
                             "/usr/bin/chromium-browser") if p and os.path.exists(p)), "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
RUN_ALL_TIMEOUT_S = 240  # the notebook takes ~20-45 s in the ci profile on 2 busy cores; the cache is warmed first
# JupyterLab user settings: no news/update requests or toasts, and every cell attached to the DOM (the default
# windowing leaves off-screen cells out, so their prompts could not be read)
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


# Polled in the page after "Run All": "done" when every code cell has an execution count and the kernel is idle;
# "failed" when the kernel is idle, some cells were not run and a cell shows an error; "not started" when the kernel
# stays idle with no cell run or running for 15 s after the click; otherwise false (keep polling).
RUN_ALL_STATE = """n => {
    const ERROR = /Traceback|SyntaxError|Cell In\\[/;
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
    const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']") !== null;
    const counted = prompts.filter(t => /\\[\\d+\\]/.test(t)).length;
    if (prompts.length === n && counted === n && idle) return "done";
    const stderr = [...document.querySelectorAll(".jp-OutputArea-output[data-mime-type$='stderr']")];
    if (idle && counted < n && stderr.some(e => ERROR.test(e.textContent))) return "failed";
    window.__runAllStart = window.__runAllStart || Date.now();
    if (idle && counted === 0 && !prompts.some(t => t.includes('*')) && Date.now() - window.__runAllStart > 15000) {
        window.__runAllStart = 0;
        return "not started";
    }
    return false;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 -- a 127.0.0.1 URL built here
        return json.loads(r.read())


@contextlib.contextmanager
def _jupyterlab(workdir: Path, base: Path, env_extra: dict[str, str]):
    """Start ``jupyter lab`` on 127.0.0.1 with its files under ``base``; yield (url root, token); always stop it."""
    home, config = base / "home", base / "jupyter-config"
    for rel, content in USER_SETTINGS.items():
        path = config / "lab" / "user-settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_DATA_DIR": str(base / "jupyter-data"), "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"),
           "IPYTHONDIR": str(base / "ipython"), "MPLCONFIGDIR": str(base / "matplotlib"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), **env_extra}
    home.mkdir(parents=True, exist_ok=True)
    # trust the notebooks (signatures live in this JUPYTER_DATA_DIR), as a user does with their own: output of an
    # untrusted notebook is shown as plain text, widgets included
    for nb in workdir.glob("*.ipynb"):
        subprocess.run([sys.executable, "-m", "jupyter", "trust", str(nb)], env=env, check=True, capture_output=True)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(base / "jupyterlab.log", "w")  # noqa: SIM115 -- closed in the finally block
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={workdir}", "--LabApp.extension_manager=readonly", "--LabApp.news_url=None"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log_text = (base / "jupyterlab.log").read_text()
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log_text}")
            with contextlib.suppress(OSError, ValueError):
                _get_json(f"{root}/api/status?token={token}")
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer within 60 s:\n{(base / 'jupyterlab.log').read_text()}")
            time.sleep(0.25)
        yield root, token
    finally:
        if proc.poll() is None:  # shut down through the API first: the server then stops its kernels
            with contextlib.suppress(OSError):
                req = urllib.request.Request(f"{root}/api/shutdown?token={token}", method="POST")
                urllib.request.urlopen(req, timeout=5).close()  # noqa: S310
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        log.close()


def _warm_cache(cache: str) -> float:
    """Train (or load) the notebook's model and classifier in this process, so the browser run does not train."""
    old = {k: os.environ.get(k) for k in ("DDPM_LESSONS_PROFILE", "DDPM_LESSONS_CACHE")}
    os.environ.update(DDPM_LESSONS_PROFILE="ci", DDPM_LESSONS_CACHE=cache)
    try:
        from ddpm_lessons import metrics, train

        start = time.perf_counter()
        train.pretrained("digits_cfg", progress=False)
        metrics.digit_classifier()
        return time.perf_counter() - start
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _accept_kernel_dialog(page, seconds: float = 30.0, quiet: float = 2.0) -> None:
    """Keep the default kernel when JupyterLab asks which one to start (it sometimes does when it opens a notebook
    without outputs); return once the kernel is idle and no dialog has shown for ``quiet`` seconds."""
    deadline = time.monotonic() + seconds
    calm_since = None
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():
            dialog.locator(".jp-mod-accept").click()
            calm_since = None
        elif page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count():
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= quiet:
                return
        page.wait_for_timeout(200)
    raise AssertionError("the notebook's kernel did not become idle within the time allowed")


def _text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_guidance_explorer_in_jupyterlab(tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Debian Chromium not found at {CHROMIUM}: install it with `apt-get install -y "
                    f"--no-install-recommends chromium` (`make test` does so when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")
    import nbformat

    from ddpm_lessons import config

    timings: dict[str, float] = {}
    cache = os.environ.get("DDPM_LESSONS_CACHE") or str(config.cache_dir())
    timings["warm cache"] = _warm_cache(cache)

    workdir = tmp_path / "work"
    workdir.mkdir()
    # a copy without outputs: the committed notebook is never opened (so never modified), and every prompt starts
    # empty, so a number in each one means this run executed it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    copy = workdir / NOTEBOOK.name
    nbformat.write(nb, copy)
    n_code = sum(c.cell_type == "code" for c in nb.cells)

    start = time.perf_counter()
    env_extra = {"DDPM_LESSONS_PROFILE": "ci", "DDPM_LESSONS_CACHE": cache,
                 "OMP_NUM_THREADS": "1"}  # one thread per kernel: no spin-waiting on shared, busy cores
    with _jupyterlab(workdir, tmp_path, env_extra) as (root, token), sync_api.sync_playwright() as pw:
        timings["server start"] = time.perf_counter() - start
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"), executable_path=CHROMIUM,
                                                    headless=True, args=CHROMIUM_ARGS,
                                                    viewport={"width": 1400, "height": 1000})
        blocked: list[str] = []

        def only_localhost(route):
            url = route.request.url
            if urlparse(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        ctx.route("**/*", only_localhost)
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.goto(f"{root}/lab/tree/{copy.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
            _accept_kernel_dialog(page)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            timings["page + kernel ready"] = time.perf_counter() - start

            t0 = time.perf_counter()
            state = "idle"
            for _attempt in range(3):  # a menu click that lands before the notebook is ready is retried
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
                # finished: every code cell's prompt shows a number (not "[*]" or "[ ]") and the kernel is idle;
                # failed: the kernel is idle, a cell shows a traceback and the rest were not run
                state = page.wait_for_function(RUN_ALL_STATE, arg=n_code, timeout=RUN_ALL_TIMEOUT_S * 1000,
                                               polling=500).json_value()
                if state != "not started":
                    break
            timings["run all"] = time.perf_counter() - t0
            errors = page.locator(".jp-OutputArea-output[data-mime-type$='stderr']",
                                  has_text=re.compile(r"Traceback|SyntaxError|Cell In\["))
            assert state == "done" and errors.count() == 0, \
                f"Run All ended as {state!r}: " + (errors.first.inner_text()[-3000:] if errors.count() else "")

            # the explorer: its w slider, adherence line and picture
            w_slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile(r"^w$")))
            w_slider.first.scroll_into_view_if_needed()
            picture = page.locator(".widget-image").first
            page.wait_for_selector(".ddpm-adherence", timeout=30_000)
            before = (_text(page, ".ddpm-adherence"), _text(page, ".ddpm-confidence"))
            png_before = picture.screenshot()
            assert re.fullmatch(r"\d+(\.\d)?%", before[0]), before
            metrics_line = page.locator(".widget-html", has=page.locator(".ddpm-adherence")).first
            assert "w = 0.0" in metrics_line.inner_text()

            t0 = time.perf_counter()
            handle = w_slider.first.locator(".noUi-handle")
            handle.focus()
            handle.press("End")  # noUiSlider's keyboard support: End moves to the maximum, w = 10
            page.wait_for_function(
                """before => {
                    const a = document.querySelector('.ddpm-adherence'), c = document.querySelector('.ddpm-confidence');
                    return a && c && (a.textContent.trim() !== before[0] || c.textContent.trim() !== before[1]);
                }""", arg=list(before), timeout=30_000, polling=200)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=30_000)
            page.wait_for_timeout(300)  # let the new PNG blob paint
            timings["slider -> redraw"] = time.perf_counter() - t0
            after = (_text(page, ".ddpm-adherence"), _text(page, ".ddpm-confidence"))
            assert "w = 10.0" in metrics_line.inner_text(), metrics_line.inner_text()
            assert after != before
            # at w = 10 the classifier is at least as sure of the requested class as at w = 0 ([CFG] Eq. 6 sharpens)
            assert float(after[1]) >= float(before[1]), (before, after)
            assert picture.screenshot() != png_before

            metrics_line.scroll_into_view_if_needed()  # the controls, the picture and the numbers in one view
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT))
        except BaseException:
            with contextlib.suppress(Exception):  # what the page showed when it failed, for the CI artefacts
                ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACT.with_name("browser_guidance_failure.png")))
            raise
        finally:
            ctx.close()
    timings["total (browser part)"] = time.perf_counter() - start
    print("browser test timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"adherence before/after: {before} -> {after}; requests blocked: {len(blocked)}")
