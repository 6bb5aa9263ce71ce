"""A killable worker process that runs the checks under a hard time limit.

An in-process alarm cannot stop SymPy or mpmath inside a C-level big-integer multiplication (a SIGALRM-based limit
let a pathological ``simplify`` run past 8 s here), so every check runs in a separate process that can be killed.
The process is started lazily on the first check (``python -c "...worker import serve; serve()"``; ~0.5 s, nearly
all of it importing SymPy), kept for the whole session (a typical check then costs a few ms plus ~0.2 ms of pipe
traffic) and replaced after a kill.

Protocol: one JSON object per line. The parent writes ``{"id", "qid", "answer", "source", "steps"}`` to the worker's
stdin (``steps``: a list for a derivation chain, else null);
the worker answers ``{"id", "phase": "partial"|"final", "result"}`` on its original stdout (stray prints from
libraries go to stderr). A correct answer's numeric verdict arrives as ``partial`` before the optional symbolic
confirmation, so the parent can still report it when the confirmation runs out of time.

If no worker can be started (no ``subprocess`` support, e.g. in Pyodide) the checks run in-process, without the hard
limit, and the evidence says so. ``DDPM_LESSONS_CHECK_WORKER=0`` forces that mode.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Client", "client", "serve", "DEFAULT_TIMEOUT", "SYMBOLIC_BUDGET", "MEMORY_LIMIT"]

DEFAULT_TIMEOUT = 5.0  # seconds: hard limit of one check (parse + numeric verdict)
SYMBOLIC_BUDGET = 2.0  # seconds the parent waits for the symbolic confirmation after the numeric verdict
STARTUP_TIMEOUT = 60.0  # seconds to wait for a fresh worker to import SymPy (generous: CI machines are busy)
DRAIN_GRACE = 1.0  # seconds a late confirmation may still take before the worker is replaced
MEMORY_LIMIT = 2 << 30  # bytes of address space for the worker: a runaway mpmath integer fails fast instead


def _timeout_result(qid: str, answer: str, timeout: float) -> dict[str, Any]:
    return {"question": qid, "status": "timeout", "answer": answer, "mistake": None, "details": {},
            "feedback": f"The check was stopped after {timeout:g} s (hard time limit). Is there a tower of "
                        "exponentials or powers? Simplify the expression and try again.",
            "evidence": f"time limit {timeout:g} s"}


# -- worker side ----------------------------------------------------------------------------------------------------
def serve() -> None:
    """Worker main loop: read requests from stdin, write results to the original stdout."""
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # nothing but protocol lines may reach the parent's pipe

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    except (ImportError, ValueError, OSError):
        pass

    # The heavy imports (SymPy, mpmath) happen here, in the worker only, with the cyclic GC paused: importing SymPy
    # allocates ~150k long-lived objects, and collecting while they are created costs ~10% of the import. They are
    # then frozen (never scanned again), as is each question's preparation: a full collection of that heap would
    # otherwise pause a check for ~100 ms now and then.
    gc.disable()
    from . import engine

    try:
        engine.warm()
    except Exception:  # noqa: BLE001 - a warm-up is optional: the first check would do the same work
        pass
    gc.freeze()
    gc.enable()
    send({"ready": True, "pid": os.getpid()})
    n_prepared = len(engine._PREPARED)
    for line in sys.stdin:
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError):
            continue
        cpu0 = time.process_time()
        try:
            if req.get("steps") is not None:
                res = engine.check_chain(req["qid"], [str(x) for x in req["steps"]], source=req.get("source", "text"))
            else:
                res = engine.check_answer(req["qid"], req["answer"], source=req.get("source", "text"),
                                          on_partial=lambda r, rid=rid: send({"id": rid, "phase": "partial",
                                                                              "result": r}))
        except MemoryError:
            send({"id": rid, "phase": "final", "restart": True, "result": dict(
                _timeout_result(req.get("qid", ""), req.get("answer", ""), 0),
                feedback="The check ran out of memory and was stopped: the expression creates astronomically "
                         "large numbers. Simplify it and try again.", evidence="memory limit")})
            sys.exit(3)  # a MemoryError can leave the interpreter in a poor state: let the parent start a new one
        except Exception as err:  # a bug in the checker must not look like a wrong answer
            res = {"question": req.get("qid"), "status": "invalid", "answer": req.get("answer"), "mistake": None,
                   "details": {}, "evidence": "internal error",
                   "feedback": f"The checker could not evaluate this answer (internal error: {type(err).__name__}: "
                               f"{err}). Please report it."}
        if isinstance(res.get("details"), dict):
            res["details"]["cpu_ms"] = round(1e3 * (time.process_time() - cpu0), 3)  # the worker's own CPU time
        send({"id": rid, "phase": "final", "result": res})
        if len(engine._PREPARED) != n_prepared:  # a question prepared for the first time: it stays, freeze it too
            n_prepared = len(engine._PREPARED)
            gc.freeze()


# -- parent side ----------------------------------------------------------------------------------------------------
# not ``-m ddpm_lessons.checks.worker``: that runs this module twice (imported by the package, then as __main__)
_WORKER_MAIN = "from ddpm_lessons.checks.worker import serve; serve()"


class Client:
    """Owns one worker process; thread-safe; restarts the worker after a kill or a crash."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue | None = None
        self._ready = False
        self._next_id = 0
        self._pending: int | None = None  # id whose symbolic confirmation is still running
        self.disabled = os.environ.get("DDPM_LESSONS_CHECK_WORKER", "1").strip() in ("0", "false", "no")
        self.restarts = 0

    # lifecycle
    def _spawn(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("SYMPY_CACHE_SIZE", "10000")  # SymPy's default 1000 entries: a few checks' worth of sub-terms
        try:
            proc = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                                    encoding="utf-8", bufsize=1)
        except (OSError, ValueError):
            self.disabled = True
            return
        q: queue.Queue = queue.Queue()

        def pump(stream: Any = proc.stdout, q: queue.Queue = q, proc: subprocess.Popen = proc) -> None:
            for line in stream:
                try:
                    q.put(json.loads(line))
                except ValueError:
                    continue
            q.put(None)  # EOF: the worker exited
            # Reap it at once, whoever stopped it. A dead but unreaped worker stays a zombie child, and Jupyter's
            # kernel shuts down by signalling its children until none is left (ipykernel's
            # _progressively_terminate_all_children): a zombie kept every notebook that ran a check waiting ~2.3 s
            # for that loop, until the kernel manager killed the kernel without running its exit handlers.
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.wait(timeout=30)

        threading.Thread(target=pump, daemon=True, name="ddpm-lessons-check-reader").start()
        self._proc, self._queue, self._ready, self._pending = proc, q, False, None

    def _kill(self) -> None:
        proc, self._proc, self._ready = self._proc, None, False
        if proc is not None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except (OSError, ValueError, AttributeError):
                    pass

    def start(self, wait: bool = True) -> bool:
        """Start the worker if needed; with ``wait``, block until it is ready. Returns True when ready."""
        with self._lock:
            return self._ensure(wait)

    def _ensure(self, wait: bool) -> bool:
        if self.disabled:
            return False
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._spawn()
            if self.disabled:
                return False
        if self._ready or not wait:
            return self._ready
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                msg = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._proc.poll() is not None:
                    break
                continue
            if msg is None:
                break
            if msg.get("ready"):
                self._ready = True
                return True
        self._kill()
        self.disabled = True  # cannot start one here: fall back to in-process checks for this session
        return False

    def close(self) -> None:
        """Stop the worker (a later check starts a new one)."""
        with self._lock:
            self._kill()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # requests
    def _drain(self) -> None:
        """Wait briefly for a late symbolic confirmation of an earlier request; replace the worker if it hangs."""
        deadline = time.monotonic() + DRAIN_GRACE
        while self._pending is not None:
            try:
                msg = self._queue.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                msg = None
            if msg is not None and msg.get("id") == self._pending and msg.get("phase") == "final":
                self._pending = None
            elif msg is None or time.monotonic() >= deadline:
                self._kill()
                self._pending = None
                self.restarts += 1

    def request(self, qid: str, answer: str, source: str, timeout: float,
                steps: list[str] | None = None) -> dict[str, Any] | None:
        """Run one check (or, with ``steps``, one derivation chain) in the worker. None when no worker is available
        (the caller falls back)."""
        with self._lock:
            if self._pending is not None and self._proc is not None:
                self._drain()
            if not self._ensure(wait=True):
                return None
            self._next_id += 1
            rid = self._next_id
            try:
                self._proc.stdin.write(json.dumps({"id": rid, "qid": qid, "answer": answer, "source": source,
                                                "steps": steps}) + "\n")
                self._proc.stdin.flush()
            except (OSError, ValueError):
                self._kill()
                if not self._ensure(wait=True):
                    return None
                self._proc.stdin.write(json.dumps({"id": rid, "qid": qid, "answer": answer, "source": source,
                                                "steps": steps}) + "\n")
                self._proc.stdin.flush()
            deadline = time.monotonic() + timeout
            partial: dict[str, Any] | None = None
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    msg = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if msg is None:  # the worker died (e.g. out of memory without a reply)
                    self._kill()
                    break
                if msg.get("id") != rid:
                    continue  # a stale message from an earlier request
                if msg.get("phase") == "final":
                    if msg.get("restart"):  # it exits after a MemoryError: start a fresh one now
                        self._kill()
                        self.restarts += 1
                        self._spawn()
                    return msg["result"]
                partial = msg["result"]
                deadline = min(deadline + SYMBOLIC_BUDGET, time.monotonic() + SYMBOLIC_BUDGET)
            if partial is not None:  # numeric verdict known; the symbolic confirmation is slow
                if self._proc is not None:
                    self._pending = rid
                return dict(partial, evidence=partial["evidence"] + "; symbolic: not confirmed within time")
            self._kill()
            self.restarts += 1
            self._spawn()  # start the replacement now so the next check finds it (nearly) ready
            return _timeout_result(qid, answer, timeout)


_CLIENT: Client | None = None
_CLIENT_LOCK = threading.Lock()


def client() -> Client:
    """The process-wide :class:`Client` (created on first use; its worker is stopped at interpreter exit)."""
    global _CLIENT
    with _CLIENT_LOCK:
        if _CLIENT is None:
            _CLIENT = Client()
            atexit.register(_CLIENT.close)
        return _CLIENT


if __name__ == "__main__":
    serve()
