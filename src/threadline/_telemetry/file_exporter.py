"""The embedded default exporter: OTLP JSON lines in a local file (`threadline.export`).

Its reader is `.span_file`.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._core.drops import record_drop

__all__ = ["OTLPJsonFileSpanExporter"]

_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


class OTLPJsonFileSpanExporter(SpanExporter):
    """Append spans to *path* as OTLP JSON lines, the Collector file exporter's format.

    Each batch is one line written with one ``write`` to a file opened for
    appending, so the worker processes of one service can share the file. A
    process forked while another thread exports gets an exporter that works.
    A batch that cannot be written is counted as ``export.failed`` and
    warned (rate-limited) with the file's path and the operating system's
    error, and `export` returns FAILURE.
    """

    reports_failures = True
    """It counts and reports its own failures, with their cause (`export` says FAILURE too)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # POSIX
            # A child forked while another thread held the lock would wait for
            # it for ever; the weak reference lets the exporter be collected.
            reset = weakref.WeakMethod(self._reset_lock)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(reset))

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The file the spans go to."""
        return self._path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write *spans* as one line; FAILURE if the file cannot be written."""
        message = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
        line = (json.dumps(_hex_ids(message), separators=(",", ":")) + "\n").encode()
        try:
            with self._lock:
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as exc:
            spans_text = "1 span" if len(spans) == 1 else f"{len(spans)} spans"
            why = exc.strerror or str(exc)
            name = f"{type(exc).__name__} {exc.errno}" if exc.errno else type(exc).__name__
            record_drop(
                "export.failed",
                f"{spans_text} not written to {self._path}: {why} ({name})",
                len(spans),
            )
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the file is opened for each batch."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Return True: every batch is on disk when `export` returns."""
        return True


def _call_if_alive(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


def _hex_ids(value: Any) -> Any:
    # Protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids in hex.
    if isinstance(value, dict):
        return {
            key: base64.b64decode(item).hex() if key in _ID_FIELDS else _hex_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value
