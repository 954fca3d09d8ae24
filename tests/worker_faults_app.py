"""An application that meets the process faults of tests/test_processes.py, one per command.

``python worker_faults_app.py death METHOD WORKDIR``: a traced request runs
jobs on two executor workers (each does at least one), then one worker is
killed with SIGKILL in the middle of a job. ``death-while-busy``: the same
while the other worker is in the middle of a job too.

``python worker_faults_app.py fork KIND WORKDIR``: a thread exports (holding
the exporter's locks) while the app forks a child, as a fork-method
``Process`` (KIND ``process``) or the workers of a fork-method executor
(KIND ``executor``); the child records a span and exits.

``python worker_faults_app.py bound METHOD WORKDIR``: a ``Process`` child
records a span while the OTLP endpoint never answers, and exits.

Tracing is set up with `threadline.tracing.configure` from the ``OTEL_*``
settings the test gives. Each command prints one JSON line of what happened;
a child that does not exit within `HANG_GUARD` seconds is reported as hung
and killed, so the app itself never hangs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from opentelemetry import trace

import threadline as tl
from threadline.processes import get_context
from threadline.tracing import configure

HANG_GUARD = 30.0


def traced_work(name: str) -> int:
    """A job: one span named *name* in the worker; returns the worker's pid."""
    with trace.get_tracer("worker").start_as_current_span(name):
        return os.getpid()


def meet_then_work(name: str, rendezvous: str) -> int:
    """`traced_work`, once two workers have each taken a job (so both have work to lose)."""
    Path(rendezvous, str(os.getpid())).touch()
    wait_until(lambda: len(os.listdir(rendezvous)) >= 2)
    return traced_work(name)


def block(pid_file: str) -> None:
    """A job that says where it runs and then waits to be killed."""
    Path(pid_file + ".tmp").write_text(str(os.getpid()))
    Path(pid_file + ".tmp").rename(pid_file)
    time.sleep(HANG_GUARD * 4)


def busy(pid_file: str) -> None:
    """`block` inside a span of its own, "busy"."""
    with trace.get_tracer("worker").start_as_current_span("busy"):
        block(pid_file)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def death(method: str, workdir: Path) -> dict[str, Any]:
    """Finish four jobs on two workers, then SIGKILL the worker running a fifth."""
    rendezvous, pid_file = workdir / "rendezvous", workdir / "pid"
    rendezvous.mkdir()
    context = multiprocessing.get_context(method)
    with (
        tl.ProcessPoolExecutor(2, mp_context=context) as pool,
        trace.get_tracer("app").start_as_current_span("request"),
    ):
        futures = [pool.submit(meet_then_work, f"work {i}", str(rendezvous)) for i in range(4)]
        pids = [future.result(timeout=HANG_GUARD) for future in futures]
        blocked = pool.submit(block, str(pid_file))
        wait_until(pid_file.exists)
        killed = int(pid_file.read_text())
        os.kill(killed, signal.SIGKILL)
        try:
            blocked.result(timeout=HANG_GUARD)
            outcome = "no error"
        except BrokenProcessPool:
            outcome = "BrokenProcessPool"
    return {"pids": pids, "killed": killed, "outcome": outcome}


def death_while_busy(method: str, workdir: Path) -> dict[str, Any]:
    """SIGKILL one worker while the other is in the middle of a job too."""
    busy_pid, blocked_pid = workdir / "busy", workdir / "blocked"
    context = multiprocessing.get_context(method)
    with (
        tl.ProcessPoolExecutor(2, mp_context=context) as pool,
        trace.get_tracer("app").start_as_current_span("request"),
    ):
        cut = pool.submit(busy, str(busy_pid))
        blocked = pool.submit(block, str(blocked_pid))
        wait_until(lambda: busy_pid.exists() and blocked_pid.exists())
        os.kill(int(blocked_pid.read_text()), signal.SIGKILL)
        errors = [future.exception(timeout=HANG_GUARD) for future in (cut, blocked)]
    return {"outcomes": [type(error).__name__ for error in errors]}


def fork(kind: str, _workdir: Path) -> dict[str, Any]:
    """Fork while another thread is inside the file exporter's export, holding its locks."""
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("exported before fork"):
        pass
    held, release = threading.Event(), threading.Event()
    real_open = os.open
    parent = os.getpid()

    def open_slowly(path: Any, *args: Any, **kwargs: Any) -> int:
        # export opens the file with its lock held: the exporting thread waits there
        # (the provider's flush exports in a thread of its own, bounded by its timeout)
        exporting = threading.current_thread().name in {"exporting", "threadline-force-flush"}
        if exporting and os.getpid() == parent:
            held.set()
            release.wait(HANG_GUARD * 4)
        return real_open(path, *args, **kwargs)

    os.open = open_slowly  # type: ignore[assignment]
    provider = trace.get_tracer_provider()
    exporting = threading.Thread(target=provider.force_flush, name="exporting")  # type: ignore[attr-defined]
    exporting.start()
    held.wait(HANG_GUARD)
    with tracer.start_as_current_span("queued at fork"):
        pass
    with tl.request.scope(request_id="r-fork"):
        hung = (fork_process if kind == "process" else fork_executor)()
    release.set()
    exporting.join()
    return {"hung": hung}


def fork_process() -> bool:
    child = get_context("fork").Process(target=traced_work, args=("in child",))
    child.start()
    child.join(HANG_GUARD)
    if child.is_alive():
        child.kill()
        return True
    return False


def fork_executor() -> bool:
    pool = tl.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(traced_work, "in child").result(timeout=HANG_GUARD)
    closing = threading.Thread(target=pool.shutdown, daemon=True)
    closing.start()
    closing.join(HANG_GUARD)
    if closing.is_alive():
        for worker in list(pool._processes.values()):  # the hang's clean-up only
            worker.kill()
        print(json.dumps({"hung": True}), flush=True)
        os._exit(0)  # reported; the executor's exit hook would wait for the manager again
    return False


def bound(method: str, _workdir: Path) -> dict[str, Any]:
    """A Process child's exit while its spans cannot be delivered."""
    with tl.request.scope(request_id="r-bound"):
        child = get_context(method).Process(target=traced_work, args=("in child",))
        child.start()
        child.join(HANG_GUARD)
    hung = child.is_alive()
    if hung:
        child.kill()
    return {"hung": hung, "exitcode": child.exitcode}


COMMANDS = {"death": death, "death-while-busy": death_while_busy, "fork": fork, "bound": bound}

if __name__ == "__main__":
    command, variant, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    configure(service_name="worker-faults")
    print(json.dumps(COMMANDS[command](variant, workdir)), flush=True)
