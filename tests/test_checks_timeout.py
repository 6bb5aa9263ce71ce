"""The hard time limit: a pathological expression is stopped by killing the worker, and the next check works.

``exp(exp(exp(exp(5/2))))`` parses (it is plain arithmetic) but evaluating it means reducing a number near
2^281000 modulo log 2 to ~281000 bits in pure-Python mpmath, which took more than 4 minutes here; no in-process
alarm could interrupt it. The checks below bound it to about a second.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from ddpm_lessons.checks import check, warm_up, worker

PATHOLOGICAL = "exp(exp(exp(exp(5/2))))*alpha_t"
SLACK = 5.0  # seconds for the kill and pipe traffic on a loaded CI machine (measured: ~0.02 s)


def test_timeout_is_hard_and_the_next_check_works() -> None:
    assert warm_up(wait=True)
    pid = worker.client().pid
    t0 = time.perf_counter()
    r = check("forward_var", PATHOLOGICAL, timeout=1.0)
    elapsed = time.perf_counter() - t0
    assert r.status == "timeout" and "stopped after 1 s" in r.feedback and r.evidence == "time limit 1 s"
    assert 1.0 <= elapsed < 1.0 + SLACK
    assert worker.client().pid != pid  # killed and replaced
    r = check("forward_var", "1 - alpha_bar_t")
    assert r.ok


def test_memory_bomb_is_stopped_too() -> None:
    # one more exp: the integer to reduce has ~10^5 digits *as an exponent*; the worker's address-space limit
    # turns that into a MemoryError (or the time limit catches it first), never a hang or a crash of the caller
    r = check("posterior_mean_x0", "exp(exp(exp(exp(x_t^2 + 3))))", timeout=10.0)
    assert r.status == "timeout"
    assert check("forward_var", "1 - alpha_bar_t").ok


def test_slow_symbolic_confirmation_keeps_the_numeric_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    assert warm_up(wait=True)
    monkeypatch.setattr(worker, "SYMBOLIC_BUDGET", 0.0)  # as if the symbolic step were too slow
    r = check("posterior_var", "1/(alpha_t/beta_t + 1/(1 - alpha_bar_prev))")
    assert r.ok and "not confirmed within time" in r.evidence
    monkeypatch.undo()
    pid = worker.client().pid
    r = check("posterior_var", "(1 - alpha_bar_prev)/(1 - alpha_bar_t)*beta_t")  # drains the late confirmation
    assert r.ok and "symbolic" in r.evidence and worker.client().pid == pid


def test_typical_check_is_fast() -> None:
    assert warm_up(wait=True)
    check("posterior_mean_x0", "x_0")  # prepare the question's mistakes once
    times = []
    for answer in ("sqrt(alpha_bar_prev)*beta_t/(1 - alpha_bar_t)*x_0 + sqrt(alpha_t)*(1 - alpha_bar_prev)"
                   "/(1 - alpha_bar_t)*x_t", "alpha_bar_prev*beta_t/(1 - alpha_bar_t)*x_0", "abar"):
        t0 = time.perf_counter()
        check("posterior_mean_x0", answer)
        times.append(time.perf_counter() - t0)
    # ~5-20 ms each unloaded; 0.5 s only fails if something is badly wrong (e.g. a process per check)
    assert max(times) < 0.5, times


def test_in_process_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDPM_LESSONS_CHECK_WORKER", "0")
    monkeypatch.setattr(worker, "_CLIENT", worker.Client())
    r = check("forward_var", "1 - alpha_bar_t")
    assert r.ok and r.evidence.endswith("(in-process: no hard time limit)")
    assert worker.client().pid is None


def test_a_worker_stopped_from_outside_is_reaped_and_replaced() -> None:
    """Jupyter stops a kernel by signalling its children until none is left: a dead worker must not stay a zombie
    (that kept every notebook's shutdown waiting ~2.3 s, then the kernel was killed without its exit handlers)."""
    assert check("cfg_s", "s*eps_c + (1 - s)*eps_u").ok
    pid = worker.client().pid
    os.kill(pid, signal.SIGTERM)  # what ipykernel sends at shutdown
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)  # succeeds for a live process and for an unreaped zombie
        except ProcessLookupError:
            break
        time.sleep(0.01)
    else:
        pytest.fail(f"worker {pid} was not reaped within 10 s of SIGTERM")
    assert check("cfg_s", "s*eps_c + (1 - s)*eps_u").ok and worker.client().pid != pid  # a fresh worker
