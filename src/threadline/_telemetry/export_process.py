"""The export process: finished spans are encoded and sent from a process of their own.

With ``THREADLINE_EXPORT_PROCESS=1`` (or ``configure(export_process=True)``)
the batch processor's exporter is a `PipeSpanExporter`: each batch is
flattened to plain tuples, pickled and written to a child process, which
rebuilds the spans as SDK `ReadableSpan` objects and runs there the exporters
``OTEL_TRACES_EXPORTER`` names (OTLP encoding, HTTP, retries). The
application's process keeps the cheap part, on the batch processor's thread;
the encoding (tens of µs a span for OTLP) no longer competes with requests for
the interpreter. Each batch is answered with its result, so a failed export
is counted where it happened, as an in-process one is.

Both ends live here: the parent's exporter and the child's loop
(``python -m threadline._export_process NAME ...``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .._core.settings import BOOTSTRAP_ENV, CONFIGURED_ENV
from .._wire.carrier import ParsedTraceState
from .exporters import make_exporter

__all__ = ["PipeSpanExporter", "flatten", "main", "rebuild"]

_logger = logging.getLogger("threadline")
_HEADER = struct.Struct("!Q")
_OK = b"ok\n"
_READY = b"ready\n"
_EXIT_WAIT = 5.0
"""How long a clean shutdown waits for the export process to finish its exports."""


class PipeSpanExporter(SpanExporter):
    """Hands each batch to the export process and returns the result it answers.

    The process starts on the first export (so a forked child starts its own,
    never writing into its parent's) and again after it died; the batch it
    was given then fails, and the caller counts it. When it cannot start at
    all, *fallback* (the same exporters, made in this process) serves instead.
    """

    def __init__(self, names: Sequence[str], fallback: Sequence[SpanExporter]) -> None:
        self._names = list(names)
        self._fallback = list(fallback)
        self._in_process = False  # the export process could not start: the fallback serves
        self._lock = threading.Lock()  # one exchange at a time: export, flush, shutdown
        self._child: _Child | None = None
        self._closing: _Child | None = None
        self._warned = False
        self._shut = False
        if hasattr(os, "register_at_fork"):
            forget = weakref.WeakMethod(self._forget_after_fork)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(forget))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send *spans* to the export process; SUCCESS when every exporter there took them."""
        if self._shut:
            return SpanExportResult.FAILURE
        if not self._in_process and self._exchange(("spans", flatten(spans))):
            return SpanExportResult.SUCCESS
        if self._in_process:
            return _export(self._fallback, spans)
        return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the exporters, in the export process (when it has started) or here."""
        if self._shut:
            return False
        if self._in_process:
            return _flush(self._fallback, timeout_millis)
        return self._child is None or self._exchange(("flush", timeout_millis))

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

    def _exchange(self, message: tuple[str, Any]) -> bool:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._shut:
                return False
            child = self._child
            if child is None:
                child, failure = _Child.start(self._names)
                if child is None:
                    _logger.warning(
                        "threadline's export process could not start (%s): exporting spans "
                        "in this process instead",
                        failure,
                    )
                    self._in_process = True
                    return False
                self._child = child
            answered = child.ask(_HEADER.pack(len(data)) + data)
            if answered is None:  # it died: the next export starts another
                self._child = None
                child.kill()
                if not self._shut and not self._warned:
                    self._warned = True
                    _logger.warning("threadline's export process ended unexpectedly; restarting it")
                return False
            return answered == _OK

    def _forget_after_fork(self) -> None:
        # The parent's process and pipes are the parent's: this child starts its own.
        self._lock = threading.Lock()
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
    def start(cls, names: Sequence[str]) -> tuple[_Child | None, str]:
        """Start one; return it once it said it is ready, else None and why not."""
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                [sys.executable, "-m", __name__, str(answers_write), *names],
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
        child = cls(process, requests_write, answers_read)
        said = child.read_line()
        if said == _READY:
            return child, ""
        child.kill()
        return None, said.decode("utf-8", "replace").strip() or "it exited at once"

    def ask(self, frame: bytes) -> bytes | None:
        """Write *frame*, return the answer line; None when the process is gone."""
        try:
            view = memoryview(frame)
            while view:  # the writes and the read wait without holding the interpreter
                view = view[os.write(self.requests, view) :]
            answer = self.read_line()
        except OSError:
            return None
        return answer or None

    def read_line(self) -> bytes:
        """The next answer line (with its newline); empty when the process has gone."""
        while b"\n" not in self._pending:
            chunk = os.read(self.answers, 4096)
            if not chunk:
                return b""
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

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


def _close(descriptor: int) -> None:
    with contextlib.suppress(OSError):
        os.close(descriptor)


def _child_environment() -> dict[str, str]:
    """The application's environment, less what would make the export process trace itself."""
    env = dict(os.environ)
    for name in (BOOTSTRAP_ENV, CONFIGURED_ENV, "TRACEPARENT", "TRACESTATE", "BAGGAGE"):
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


# --------------------------------------------------------------------------- the wire


def flatten(spans: Sequence[ReadableSpan]) -> tuple[list[Any], list[Any], list[tuple[Any, ...]]]:
    """Return *spans* as plain tuples: ``(resources, scopes, records)``, what `rebuild` takes."""
    resources: dict[int, int] = {}
    scopes: dict[int, int] = {}
    resource_list: list[Any] = []
    scope_list: list[Any] = []
    records = []
    for span in spans:
        resource = span.resource
        where = resources.get(id(resource))
        if where is None:
            where = resources[id(resource)] = len(resource_list)
            resource_list.append((dict(resource.attributes), resource.schema_url))
        scope = span.instrumentation_scope
        which = scopes.get(id(scope))
        if which is None:
            which = scopes[id(scope)] = len(scope_list)
            scope_list.append(_scope_tuple(scope))
        context, parent, status = span.context, span.parent, span.status
        records.append(
            (
                span.name,
                _context_tuple(context),
                _context_tuple(parent) if parent is not None else None,
                span.kind.value,
                span.start_time,
                span.end_time,
                dict(span.attributes) if span.attributes else None,
                span.dropped_attributes,
                tuple(
                    (e.name, e.timestamp, _plain(e.attributes), _dropped(e)) for e in span.events
                ),
                span.dropped_events,
                tuple(
                    (_context_tuple(k.context), _plain(k.attributes), _dropped(k))
                    for k in span.links
                ),
                span.dropped_links,
                status.status_code.value,
                status.description,
                where,
                which,
            )
        )
    return resource_list, scope_list, records


def _context_tuple(context: SpanContext | None) -> tuple[Any, ...] | None:
    if context is None:
        return None
    members = tuple(context.trace_state.items()) if context.trace_state else ()
    return context.trace_id, context.span_id, context.is_remote, int(context.trace_flags), members


def _scope_tuple(scope: InstrumentationScope | None) -> tuple[Any, ...] | None:
    if scope is None:
        return None
    attributes = getattr(scope, "attributes", None)
    return scope.name, scope.version, scope.schema_url, _plain(attributes)


def _plain(attributes: Any) -> dict[str, Any] | None:
    return dict(attributes) if attributes else None


def _dropped(event_or_link: Any) -> int:
    return int(getattr(event_or_link, "dropped_attributes", 0) or 0)


def rebuild(flat: tuple[list[Any], list[Any], list[tuple[Any, ...]]]) -> list[ReadableSpan]:
    """Return the SDK spans `flatten` flattened (what an exporter reads of them, all of it)."""
    resource_list, scope_list, records = flat
    resources = [Resource(attributes, schema_url) for attributes, schema_url in resource_list]
    scopes = [_scope(item) for item in scope_list]
    spans = []
    for (
        name,
        context,
        parent,
        kind,
        start_time,
        end_time,
        attributes,
        dropped_attributes,
        events,
        dropped_events,
        links,
        dropped_links,
        status_code,
        description,
        where,
        which,
    ) in records:
        span = ReadableSpan(
            name,
            context=_span_context(context),
            parent=_span_context(parent),
            resource=resources[where],
            attributes=attributes,
            events=_counted(
                [
                    Event(event, _with_dropped(attrs, dropped), timestamp)
                    for event, timestamp, attrs, dropped in events
                ],
                dropped_events,
            ),
            links=_counted(
                [
                    Link(_span_context(link), _with_dropped(attrs, dropped))
                    for link, attrs, dropped in links
                ],
                dropped_links,
            ),
            kind=SpanKind(kind),
            status=Status(StatusCode(status_code), description),
            start_time=start_time,
            end_time=end_time,
            instrumentation_scope=scopes[which],
        )
        if dropped_attributes:
            span._attributes = _with_dropped(attributes, dropped_attributes)  # what it reads
        spans.append(span)
    return spans


def _span_context(flat: tuple[Any, ...] | None) -> Any:
    if flat is None:
        return None
    trace_id, span_id, is_remote, flags, members = flat
    return SpanContext(
        trace_id,
        span_id,
        is_remote,
        TraceFlags(flags),
        ParsedTraceState(members) if members else None,
    )


def _scope(flat: tuple[Any, ...] | None) -> InstrumentationScope | None:
    if flat is None:
        return None
    name, version, schema_url, attributes = flat
    try:
        return InstrumentationScope(name, version, schema_url, attributes)
    except TypeError:  # an SDK from before scope attributes
        return InstrumentationScope(name, version, schema_url)


def _counted(items: list[Any], dropped: int) -> Any:
    if not dropped:
        return items
    bounded = BoundedList.from_seq(len(items), items)
    bounded.dropped = dropped
    return bounded


def _with_dropped(attributes: dict[str, Any] | None, dropped: int) -> Any:
    """*attributes*, as the SDK keeps them when *dropped* others did not fit."""
    if not dropped:
        return attributes
    from opentelemetry.attributes import BoundedAttributes  # noqa: PLC0415 - rarely needed

    bounded = BoundedAttributes(attributes=attributes, immutable=True)
    bounded.dropped = dropped
    return bounded


# --------------------------------------------------------------------------- the child


def main(argv: Sequence[str]) -> int:
    """Serve one application process: export each batch it sends, answer each with the result."""
    # It ends when its application closes the pipe, after the last batch: a
    # Ctrl-C or a SIGTERM sent to a whole group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(int(argv[0]), "wb")
    try:
        made = [make_exporter(name) for name in argv[1:]]
    except Exception as exc:  # noqa: BLE001 - said to the application, which exports itself
        answers.write(f"{type(exc).__name__}: {exc}".encode(errors="replace").replace(b"\n", b" "))
        answers.write(b"\n")
        answers.flush()
        return 1
    exporters = [exporter for exporter in made if exporter is not None]
    attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # the exporters' own calls trace nothing
    requests = sys.stdin.buffer
    try:
        answers.write(_READY)
        answers.flush()
        while True:
            header = requests.read(_HEADER.size)
            if len(header) < _HEADER.size:
                break  # the application closed the pipe (or exited)
            payload = requests.read(_HEADER.unpack(header)[0])
            kind, body = pickle.loads(payload)  # noqa: S301 - our own parent, over a private pipe
            if kind == "spans":
                ok = _export(exporters, rebuild(body)) is SpanExportResult.SUCCESS
            else:
                ok = _flush(exporters, body)
            answers.write(_OK if ok else b"failed\n")
            answers.flush()
    except OSError:  # the application is gone: nothing to answer
        pass
    finally:
        for exporter in exporters:
            with contextlib.suppress(Exception):
                exporter.shutdown()
    return 0


def _export(exporters: Sequence[SpanExporter], spans: Sequence[ReadableSpan]) -> SpanExportResult:
    results = [_exported(exporter, spans) for exporter in exporters]
    return SpanExportResult.SUCCESS if all(results) else SpanExportResult.FAILURE


def _exported(exporter: SpanExporter, spans: Sequence[ReadableSpan]) -> bool:
    try:
        return exporter.export(spans) is SpanExportResult.SUCCESS
    except Exception:  # reported as a failed export, as in-process
        _logger.exception("exporting spans with %s failed", type(exporter).__name__)
        return False


def _flush(exporters: Sequence[SpanExporter], timeout_millis: int) -> bool:
    results = [_flushed(exporter, timeout_millis) for exporter in exporters]
    return all(results)


def _flushed(exporter: SpanExporter, timeout_millis: int) -> bool:
    try:
        return bool(exporter.force_flush(timeout_millis))
    except Exception:
        _logger.exception("flushing %s failed", type(exporter).__name__)
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
