"""The application's side of the export process: `PipeSpanExporter`.

With ``THREADLINE_EXPORT_PROCESS=1`` (or ``configure(export_process=True)``)
the batch processor's exporter is a `PipeSpanExporter`: each batch is
flattened to plain tuples, pickled and written to a child process
(`export_child`), which rebuilds the spans as SDK `ReadableSpan` objects and
runs there the exporters ``OTEL_TRACES_EXPORTER`` names (OTLP encoding,
HTTP, retries). The application's process keeps the cheap part, on the batch
processor's thread; the encoding (tens of µs a span for OTLP) no longer
competes with requests for the interpreter. Each batch is answered with its
result, so a failed export is counted where it happened, as an in-process
one is. What crosses the pipe is `span_wire`'s.

Every wait on the pipes has a deadline (OpenTelemetry's specification: an
export must not block indefinitely): an export waits at most `EXPORT_WAIT`,
a flush its *timeout_millis*; an export process that has not answered by
then (stopped, hung) is ended, its batch counted as failed, and the next
batch starts another. A write to an export process that died never raises
SIGPIPE into the application, whatever its SIGPIPE action.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._core.settings import BOOTSTRAP_ENV, CONFIGURED_ENV
from .._wire.environment import ENV_NAMES
from .exporters import export_to_each, flush_each
from .span_wire import OK, READY, flatten, frame

__all__ = ["CHILD_MODULE", "EXPORT_WAIT", "PipeSpanExporter", "flush_deadline"]

CHILD_MODULE = "threadline._telemetry.export_child"
"""What the export process runs (``python -m``)."""

_logger = logging.getLogger("threadline")
_EXIT_WAIT = 5.0
"""How long a clean shutdown waits for the export process to finish its exports."""
EXPORT_WAIT = 30.0
"""Seconds an export waits at most for the export process's answer (the SDK's export timeout)."""

flush_deadline: ContextVar[float | None] = ContextVar("threadline_flush_deadline", default=None)
"""The `time.monotonic` deadline of the force_flush in progress here: its exports end by then."""


class PipeSpanExporter(SpanExporter):
    """Hands each batch to the export process and returns the result it answers.

    The process starts on the first export, and again after it died or did
    not answer in time; the batch it was given then fails, and the caller
    counts it. When it cannot start at all, *fallback* (the same exporters,
    made in this process) serves instead, and so it does in a forked child:
    a fork exports in-process, as the workers and children threadline
    starts do, never through its parent's export process nor one of its own
    (starting one takes longer than a child's exit may wait).
    *names* are the names `exporters.configured_exporters` gave them, and
    *traces_file* the absolute path ``file`` writes to: all the export
    process needs to make the same ones.
    """

    def __init__(
        self, names: Sequence[str], fallback: Sequence[SpanExporter], traces_file: Path
    ) -> None:
        self._arguments = [str(traces_file), *names]
        self._fallback = list(fallback)
        self._in_process = False  # the export process could not start: the fallback serves
        self._lock = threading.Lock()  # one exchange at a time: export, flush, shutdown
        self._child: _Child | None = None
        self._closing: _Child | None = None
        self._warned = False
        self._warned_late = False
        self._shut = False
        if hasattr(os, "register_at_fork"):
            forget = weakref.WeakMethod(self._forget_after_fork)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(forget))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send *spans* to the export process; SUCCESS when every exporter there took them."""
        if self._shut:
            return SpanExportResult.FAILURE
        if not self._in_process:
            now = time.monotonic()
            deadline = now + EXPORT_WAIT
            flushing = flush_deadline.get()
            # (past it, the flush's caller has stopped waiting: later batches get the usual wait)
            if flushing is not None and now < flushing:
                deadline = min(deadline, flushing)
            if self._exchange(frame("spans", flatten(spans)), deadline):
                return SpanExportResult.SUCCESS
        if self._in_process:
            return export_to_each(self._fallback, spans)
        return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the exporters, in the export process (when it has started) or here."""
        if self._shut:
            return False
        if self._in_process:
            return flush_each(self._fallback, timeout_millis)
        deadline = time.monotonic() + timeout_millis / 1000
        return self._child is None or self._exchange(frame("flush", timeout_millis), deadline)

    def shutdown(self) -> None:
        """End the export process: it shuts its exporters down and exits.

        While an export is in progress (an exit that ran out of time calls
        this to give up), or when called again, the process is ended at once.
        """
        self._shut = True
        child, self._child = self._child, None
        at_once = self._lock.locked() or child is None
        child = child or self._closing
        if child is not None:
            self._closing = child
            if at_once:
                child.kill()
            else:
                child.close(wait=_EXIT_WAIT)
        for exporter in self._fallback:
            with contextlib.suppress(Exception):
                exporter.shutdown()

    def _exchange(self, data: bytes, deadline: float) -> bool:
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False  # another exchange still waits for its answer
        try:
            return self._exchange_locked(data, deadline)
        finally:
            self._lock.release()

    def _exchange_locked(self, data: bytes, deadline: float) -> bool:
        if self._shut:
            return False
        child = self._child
        if child is None:
            # its own bound: a short flush's deadline must not pass for "cannot start"
            child, failure = _Child.start(self._arguments, time.monotonic() + EXPORT_WAIT)
            if child is None:
                _logger.warning(
                    "threadline's export process could not start (%s): exporting spans "
                    "in this process instead",
                    failure,
                )
                self._in_process = True
                return False
            self._child = child
        try:
            answered = child.ask(data, deadline)
        except TimeoutError:  # stopped or hung: ended; the next export starts another
            self._child = None
            child.kill()
            if not self._shut and not self._warned_late:
                self._warned_late = True
                _logger.warning(
                    "threadline's export process did not answer in time; ended it "
                    "(the next batch starts another)"
                )
            return False
        if answered is None:  # it died: the next export starts another
            self._child = None
            child.kill()
            if not self._shut and not self._warned:
                self._warned = True
                _logger.warning("threadline's export process ended unexpectedly; restarting it")
            return False
        return answered == OK

    def _forget_after_fork(self) -> None:
        # The parent's process and pipes are the parent's. A fork exports in-process:
        # one export process per child would cost each child its start (0.25 s and
        # more under load), which overruns the exit bound of a short-lived child.
        self._lock = threading.Lock()
        self._in_process = True
        for child in (self._child, self._closing):
            if child is not None:
                child.abandon()
        self._child = self._closing = None


def _call_if_alive(method: weakref.WeakMethod[Any]) -> None:
    bound = method()
    if bound is not None:
        bound()


class _Child:
    """One export process, and the two pipes to it (raw descriptors: safe to drop at a fork)."""

    def __init__(self, process: subprocess.Popen[bytes], requests: int, answers: int) -> None:
        self.process = process
        self.requests = requests
        self.answers = answers
        self._pending = b""
        self._closing = threading.Lock()

    @classmethod
    def start(cls, arguments: Sequence[str], deadline: float) -> tuple[_Child | None, str]:
        """Start one; return it once it said it is ready (by *deadline*), else None and why not."""
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                [sys.executable, "-m", CHILD_MODULE, str(answers_write), *arguments],
                stdin=requests_read,
                pass_fds=(answers_write,),
                env=_child_environment(),
                start_new_session=True,  # a Ctrl-C to the application's group is not for it
            )
        except OSError as exc:
            os.close(requests_write)
            os.close(answers_read)
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            os.close(requests_read)
            os.close(answers_write)
        os.set_blocking(requests_write, False)  # each write waits in `_wait`, with its deadline
        child = cls(process, requests_write, answers_read)
        try:
            said = child.read_line(deadline)
        except (OSError, TimeoutError) as exc:
            said = f"it did not say it was ready ({type(exc).__name__})".encode()
        if said == READY:
            return child, ""
        child.kill()
        return None, said.decode("utf-8", "replace").strip() or "it exited at once"

    def ask(self, frame: bytes, deadline: float) -> bytes | None:
        """Write *frame*, return the answer line; None when the process is gone.

        Raises TimeoutError when it has not taken the frame or answered by
        *deadline* (`time.monotonic`).
        """
        try:
            view = memoryview(frame)
            with _sigpipe_held():
                while view:  # the writes and the read wait without holding the interpreter
                    self._wait(self.requests, select.POLLOUT, deadline)
                    try:
                        view = view[os.write(self.requests, view) :]
                    except BlockingIOError:
                        continue
            answer = self.read_line(deadline)
        except TimeoutError:
            raise
        except OSError:
            return None
        return answer or None

    def read_line(self, deadline: float) -> bytes:
        """The next answer line (with its newline); empty when the process has gone.

        Raises TimeoutError when no line came by *deadline*.
        """
        while b"\n" not in self._pending:
            self._wait(self.answers, select.POLLIN, deadline)
            chunk = os.read(self.answers, 4096)
            if not chunk:
                return b""
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

    @staticmethod
    def _wait(descriptor: int, event: int, deadline: float) -> None:
        """Wait until *descriptor* is ready for *event* (or closed, or failed), by *deadline*."""
        poller = select.poll()
        poller.register(descriptor, event)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if poller.poll(max(1, round(remaining * 1000))):
                return

    def close(self, wait: float) -> None:
        """Close its requests pipe (it finishes and exits); end it after *wait* seconds."""
        self._close_pipes(answers=False)
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._close_pipes()

    def kill(self) -> None:
        """End it at once."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        self._close_pipes()

    def abandon(self) -> None:
        """Close the descriptors a fork inherited, leaving the parent's process alone."""
        self._closing = threading.Lock()  # a parent's thread may have held it at the fork
        self._close_pipes()
        self.process.returncode = 0  # not this process's child: never waited for here

    def _close_pipes(self, *, answers: bool = True) -> None:
        # Each at most once: a descriptor number closed twice may be another file's by then.
        with self._closing:
            if self.requests >= 0:
                _close(self.requests)
                self.requests = -1
            if answers and self.answers >= 0:
                _close(self.answers)
                self.answers = -1


@contextlib.contextmanager
def _sigpipe_held() -> Iterator[None]:
    """Block SIGPIPE in this thread around a write: a dead reader is EPIPE, never a kill.

    Python ignores SIGPIPE, but an application may restore its default action
    (which ends the process). Blocked, the signal a write to a closed pipe
    raises stays pending for this thread, and is taken here before the mask
    is put back.
    """
    if not hasattr(signal, "pthread_sigmask"):  # no SIGPIPE to hold (Windows)
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        yield
    finally:
        if signal.SIGPIPE not in previous:
            if signal.SIGPIPE in signal.sigpending():  # (macOS has no sigtimedwait)
                signal.sigwait({signal.SIGPIPE})
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _close(descriptor: int) -> None:
    with contextlib.suppress(OSError):
        os.close(descriptor)


def _child_environment() -> dict[str, str]:
    """The application's environment, less what would make the export process trace itself."""
    env = dict(os.environ)
    for name in (BOOTSTRAP_ENV, CONFIGURED_ENV, *ENV_NAMES.values()):
        env.pop(name, None)
    # opentelemetry-instrument works through a sitecustomize on PYTHONPATH
    kept = [
        entry
        for entry in env.get("PYTHONPATH", "").split(os.pathsep)
        if entry and not entry.rstrip(os.sep).endswith("auto_instrumentation")
    ]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env
