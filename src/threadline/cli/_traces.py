"""What `threadline view` and `threadline doctor` draw: spans grouped into traces, log lines.

The spans and log lines come from `._read`, which read them strictly; here
they are only arranged. A trace's rows hold every span exactly once, whatever
the parent ids say: a span whose parent is missing is a root, and spans whose
parents form a cycle (a span that is its own parent, or its own ancestor) are
drawn under one span of the cycle, marked, as if it were a root. Every walk is a
loop, not a recursion, and every step is linear or n log n in the spans.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from .._telemetry.span_file import ExportedSpan, cut
from ._logs import LogRecord

PLACEHOLDER = "-"  # threadline.logging.PLACEHOLDER, without loading the logging set-up
REQUEST_ATTRIBUTE = "request.id"  # threadline.tracing.REQUEST_ATTRIBUTES["request_id"]
ERROR = 2  # OTLP's STATUS_CODE_ERROR

ORPHAN = "orphan"  # a root whose parent never arrived
CYCLE = "cycle"  # the first span drawn of a cycle of parents
SELF_PARENT = "self"  # a span that names itself as its parent


class Row(NamedTuple):
    """One span as drawn: its depth under its root and its mark (`ORPHAN`, `CYCLE`, ...)."""

    depth: int
    span: ExportedSpan
    mark: str = ""


@dataclass
class Trace:
    """One trace: every span once, as a tree (`rows`), with its log lines."""

    trace_id: str
    spans: list[ExportedSpan]
    rows: list[Row]
    start_ns: int
    end_ns: int
    request_ids: list[str]  # the spans' ``request.id`` values, by first appearance in time
    logs: list[LogRecord] = field(default_factory=list)

    def orphans(self) -> list[ExportedSpan]:
        """The spans that name a parent this trace does not hold: it never arrived."""
        return [row.span for row in self.rows if row.mark == ORPHAN]

    def cycles(self) -> list[Row]:
        """The first row of each cycle of parents (`CYCLE` or `SELF_PARENT`)."""
        return [row for row in self.rows if row.mark in (CYCLE, SELF_PARENT)]

    def first(self) -> ExportedSpan:
        """The span that started first."""
        return min(self.spans, key=_start)


def _start(span: ExportedSpan) -> int:
    return span.start_ns


def _rows(members: list[ExportedSpan]) -> list[Row]:
    """Every span of *members* once, each parent before its children, siblings by start."""
    by_id = {span.span_id: span for span in members}
    children: dict[str, list[ExportedSpan]] = defaultdict(list)
    roots = []
    for span in members:
        if span.parent_id is not None and span.parent_id in by_id:
            children[span.parent_id].append(span)
        else:
            roots.append(span)
    rows: list[Row] = []
    seen: set[str] = set()

    def walk(entry: ExportedSpan, mark: str) -> None:
        stack = [Row(0, entry, mark)]
        while stack:
            row = stack.pop()
            if row.span.span_id in seen:
                continue
            seen.add(row.span.span_id)
            rows.append(row)
            kids = sorted(children.get(row.span.span_id, ()), key=_start)
            stack.extend(Row(row.depth + 1, kid) for kid in kids[::-1] if kid.span_id not in seen)

    for root in sorted(roots, key=_start):
        walk(root, ORPHAN if root.parent_id else "")
    if len(seen) < len(members):  # the rest hang from cycles: every one has its parent here
        for left in sorted(members, key=_start):
            if left.span_id in seen:
                continue
            on_path: set[str] = set()
            span = left
            while span.span_id not in on_path:  # up the parents until one comes again
                on_path.add(span.span_id)
                span = by_id[str(span.parent_id)]
            walk(span, SELF_PARENT if span.parent_id == span.span_id else CYCLE)
    return rows


def group(spans: Iterable[ExportedSpan], logs: Sequence[LogRecord] = ()) -> list[Trace]:
    """The traces of *spans*, earliest first, each with the log lines of its trace id."""
    by_trace: dict[str, list[ExportedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    traces = []
    for trace_id, members in by_trace.items():
        in_time = sorted(members, key=_start)
        found = (span.attributes.get(REQUEST_ATTRIBUTE) for span in in_time)
        request_ids = list(dict.fromkeys(cut(str(v)) for v in found if v is not None))
        traces.append(
            Trace(
                trace_id,
                members,
                _rows(members),
                start_ns=in_time[0].start_ns,
                end_ns=max(span.end_ns for span in members),
                request_ids=request_ids,
            )
        )
    traces.sort(key=lambda trace: trace.start_ns)
    by_id = {trace.trace_id: trace for trace in traces}
    for log in in_time_order(logs):
        trace = by_id.get(str(log.get("trace_id")))
        if trace is not None:
            trace.logs.append(log)
    return traces


def in_time_order(logs: Sequence[LogRecord]) -> list[LogRecord]:
    """*logs* sorted by their ``time``; a line without one stays after the line before it."""
    keyed = []
    last = 0
    for index, log in enumerate(logs):
        last = log_time_ns(log) or last
        keyed.append((last, index, log))
    return [log for _, _, log in sorted(keyed, key=lambda item: item[:2])]


def log_time_ns(log: LogRecord) -> int | None:
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
    try:
        return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    except (OverflowError, ValueError):  # out of the platform's range (year 1, 9999 + offset)
        return None


def error_text(span: ExportedSpan) -> str:
    """What a failed span says about its error: the status message, else ``error.type``."""
    return span.status_message or cut(str(span.attributes.get("error.type") or ""))


def has_context(log: LogRecord, name: str) -> bool:
    """Whether the log line's field *name* holds a value (not missing, empty or the placeholder)."""
    value = log.get(name)
    return value is not None and str(value) not in ("", PLACEHOLDER)
