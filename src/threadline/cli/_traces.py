"""What `threadline view` and `threadline doctor` read: spans grouped into traces, log lines.

Everything here comes from files written by other programs: it is read
leniently (a log line that is not a JSON object is skipped) and never trusted
(the renderers escape it).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._telemetry.file_exporter import ExportedSpan, read_spans

PLACEHOLDER = "-"  # threadline.logging.PLACEHOLDER, without loading the logging set-up
REQUEST_ATTRIBUTE = "request.id"  # threadline.tracing.REQUEST_ATTRIBUTES["request_id"]
ERROR = 2  # OTLP's STATUS_CODE_ERROR


@dataclass
class Trace:
    """One trace: its spans as a tree (a span whose parent is missing is a root) and its logs."""

    trace_id: str
    spans: list[ExportedSpan]
    children: dict[str | None, list[ExportedSpan]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def start_ns(self) -> int:
        return min(span.start_ns for span in self.spans)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans)

    @property
    def roots(self) -> list[ExportedSpan]:
        return self.children.get(None, [])

    def orphans(self) -> list[ExportedSpan]:
        """The spans that name a parent this trace does not hold: it never arrived."""
        return [span for span in self.roots if span.parent_id]

    def request_ids(self) -> list[str]:
        """The request ids the spans carry (``request.id``), in order of first appearance."""
        found = (span.attributes.get(REQUEST_ATTRIBUTE) for span in self.by_start())
        return list(dict.fromkeys(str(value) for value in found if value is not None))

    def by_start(self) -> list[ExportedSpan]:
        return sorted(self.spans, key=lambda span: span.start_ns)

    def walk(self) -> Iterable[tuple[int, ExportedSpan]]:
        """Every span with its depth, each parent before its children, siblings by start."""
        stack = [(0, span) for span in reversed(_by_start(self.roots))]
        while stack:
            depth, span = stack.pop()
            yield depth, span
            kids = _by_start(self.children.get(span.span_id, []))
            stack.extend((depth + 1, kid) for kid in reversed(kids))


def _by_start(spans: list[ExportedSpan]) -> list[ExportedSpan]:
    return sorted(spans, key=lambda span: span.start_ns)


def read_span_files(paths: Sequence[str | os.PathLike[str]]) -> list[ExportedSpan]:
    """Every span of every file, duplicates (the same span id twice) once."""
    seen: dict[tuple[str, str], ExportedSpan] = {}
    for path in paths:
        for span in read_spans(path):
            seen.setdefault((span.trace_id, span.span_id), span)
    return list(seen.values())


def read_logs(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """The JSON objects of JSON-lines files; any other line (a traceback, text) is skipped."""
    logs = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    logs.append(record)
    return logs


def group(spans: Iterable[ExportedSpan], logs: Sequence[dict[str, Any]] = ()) -> list[Trace]:
    """The traces of *spans*, earliest first, each with the log lines of its trace id."""
    by_trace: dict[str, list[ExportedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    traces = []
    for trace_id, members in by_trace.items():
        ids = {span.span_id for span in members}
        children: dict[str | None, list[ExportedSpan]] = defaultdict(list)
        for span in members:
            children[span.parent_id if span.parent_id in ids else None].append(span)
        traces.append(Trace(trace_id, members, dict(children)))
    traces.sort(key=lambda trace: trace.start_ns)
    by_id = {trace.trace_id: trace for trace in traces}
    for log in in_time_order(logs):
        trace = by_id.get(str(log.get("trace_id")))
        if trace is not None:
            trace.logs.append(log)
    return traces


def in_time_order(logs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """*logs* sorted by their ``time``; a line without one stays after the line before it."""
    keyed = []
    last = 0
    for index, log in enumerate(logs):
        last = log_time_ns(log) or last
        keyed.append((last, index, log))
    return [log for _, _, log in sorted(keyed, key=lambda item: item[:2])]


def log_time_ns(log: dict[str, Any]) -> int | None:
    """A log line's ``time`` (ISO 8601, as `threadline.logging.JSONFormatter` writes it) in ns."""
    text = log.get("time")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # local time of an unknown zone: not comparable with span times
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def error_text(span: ExportedSpan) -> str:
    """What a failed span says about its error: the status message, else ``error.type``."""
    return span.status_message or str(span.attributes.get("error.type") or "")


def has_context(log: dict[str, Any], name: str) -> bool:
    """Whether the log line's field *name* holds a value (not missing, empty or the placeholder)."""
    value = log.get(name)
    return value is not None and str(value) not in ("", PLACEHOLDER)
