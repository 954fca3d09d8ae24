"""``threadline doctor``: where a request's context was lost, why, and what fixes it.

It reads span files (OTLP JSON lines) and JSON log lines and reports:

- spans whose parent never arrived (a broken trace);
- spans whose parents form a cycle (a trace that may have no root);
- a request split into several traces, seen in the spans' ``request.id``
  attribute or in the log lines' ``request_id``;
- one request's context bled into the next: a SERVER span whose parent is a
  span of a request that had already ended, and log lines of one request id
  under another request's trace;
- log lines without a request id or a trace id, grouped by logger and code
  location (the ``pathname``/``filename``/``module`` and ``lineno`` fields, or
  OpenTelemetry's ``code.filepath``/``code.lineno``, when the lines have them).

Each finding names its likely cause and the fix. Every value taken from a
file (ids, names, services, loggers, paths) is escaped before it is put in a
finding, so no file can add a line to the report; long lists are cut, so the
report stays bounded by what was read.
"""

from __future__ import annotations

import argparse
import functools
import json
import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .._core.text import escape_controls
from .._telemetry.span_file import BadFileError, ExportedSpan, cut, read_span_files
from ._logs import LogRecord, read_logs
from ._output import count, note, write
from ._traces import ORPHAN, SELF_PARENT, Trace, group, has_context

SHOWN = 10
"""The most spans or traces one finding names; the others are counted ("and 3 more")."""

_SERVER = 2
_SERVERS = "threadline.aiohttp.setup(app), threadline.asgi.setup(app), threadline.django"
_CLIENTS = (
    "threadline.aiohttp.trace_config(), threadline.httpx.instrument(client), "
    "threadline.requests.instrument(session)"
)
# threadline's own reports of what it dropped from a request's input, made before the
# request's scope exists: not a line that lost its context
_OWN_LOGGER = "threadline"
_HANDOFF_FIX = (
    "hand the work over with threadline's carriers: tl.ThreadPoolExecutor, tl.Thread, "
    "tl.run_in_executor, tl.ProcessPoolExecutor, threadline.processes, threadline.subprocess; "
    "wrap a callback that another thread calls in tl.bind(fn)"
)


@dataclass(frozen=True)
class Finding:
    """One thing doctor found: what, where, the likely cause and the fix."""

    # missing-parent, parent-cycle, bleed, bleed-logs, split-request, split-request-logs or
    # log-without-context
    kind: str
    summary: str
    cause: str
    fix: str
    details: list[str] = field(default_factory=list)


def doctor_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`threadline doctor [FILE...] [--logs LOGFILE] [--json]`: 0 when clean, 1 with findings.

    A file that cannot be read, or is not what it should be, is a usage error (exit 2).
    """
    if not args.files and not args.logs:
        parser.error("doctor: give span files, log files (--logs), or both")
    try:
        span_files = read_span_files(args.files)
        log_files = read_logs(args.logs or [])
    except BadFileError as exc:
        parser.error(f"doctor: {escape_controls(str(exc))}")
    for found in span_files:
        note("doctor", found.note())
    note("doctor", log_files.note())
    spans = [span for found in span_files for span in found.spans]
    logs = log_files.records
    traces = group(spans, logs)
    findings = diagnose(traces, logs)
    if args.json:
        report = {
            "spans": len(spans),
            "traces": len(traces),
            "logs": len(logs),
            "findings": [asdict(finding) for finding in findings],
        }
        write(json.dumps(report, indent=2) + "\n")
    else:
        write(render_report(findings, spans=len(spans), traces=len(traces), logs=len(logs)) + "\n")
    return 1 if findings else 0


def diagnose(traces: Sequence[Trace], logs: Sequence[LogRecord]) -> list[Finding]:
    """Every finding: broken traces, split requests (spans, then logs), logs without context."""
    reported: set[str] = set()
    return [
        *_missing_parents(traces),
        *_cycles(traces),
        *_bled_spans(traces),
        *_bled_logs(traces, logs, reported),
        *_split_requests(traces, reported),
        *_split_in_logs(logs, reported),
        *_logs_without_context(logs),
    ]


def render_report(findings: Sequence[Finding], *, spans: int, traces: int, logs: int) -> str:
    """The findings as text, numbered, each with its cause and fix."""
    read = f"{count(spans, 'span')} ({count(traces, 'trace')}) and {count(logs, 'log line')}"
    if not findings:
        return f"threadline doctor: no lost context in {read}"
    lines = [f"threadline doctor: {count(len(findings), 'finding')} in {read}"]
    for number, finding in enumerate(findings, 1):
        lines.append(f"\n{number}. {finding.summary}")
        lines.extend(f"     {detail}" for detail in finding.details)
        lines.extend(_wrapped("cause: ", finding.cause))
        lines.extend(_wrapped("fix:   ", finding.fix))
    return "\n".join(lines)


@functools.lru_cache(maxsize=64)  # a cause or a fix is one of a few texts: wrapped once
def _wrapped(label: str, text: str) -> tuple[str, ...]:
    return tuple(
        textwrap.wrap(
            text, width=96, initial_indent="   " + label, subsequent_indent=" " * (3 + len(label))
        )
    )


def _t(value: object, width: int = 200) -> str:
    """A value from a file, fit for a line of the report: escaped, cut to *width*."""
    return cut(escape_controls(str(value)), width)


def _describe(span: ExportedSpan) -> str:
    return f"{_t(repr(span.name))} ({_t(span.service, 64)})"


def _and_more(items: Sequence[str], noun: str) -> list[str]:
    """The first `SHOWN` of *items*, then how many more there are."""
    more = [f"and {count(len(items) - SHOWN, noun)} more"] if len(items) > SHOWN else []
    return [*items[:SHOWN], *more]


def _missing_parents(traces: Sequence[Trace]) -> list[Finding]:
    findings = []
    for trace in traces:
        by_parent: dict[str, list[ExportedSpan]] = defaultdict(list)
        for span in trace.orphans():
            by_parent[str(span.parent_id)].append(span)
        for parent_id, orphans in by_parent.items():
            names = ", ".join(_and_more([_describe(span) for span in orphans], "span"))
            findings.append(
                Finding(
                    kind="missing-parent",
                    summary=f"broken trace {trace.trace_id}: span {names} has parent "
                    f"{parent_id}, which never arrived",
                    cause=_missing_parent_cause(orphans[0]),
                    fix="call threadline.tracing.configure() (or set up an SDK exporter) in "
                    "every process of the request, end spans before the process exits and "
                    "flush at exit (the tracer provider's shutdown()); give doctor every "
                    "service's span file",
                )
            )
    return findings


def _cycles(traces: Sequence[Trace]) -> list[Finding]:
    findings = []
    for trace in traces:
        cycles = trace.cycles()
        if not cycles:
            continue
        rootless = not any(row.depth == 0 and row.mark in ("", ORPHAN) for row in trace.rows)
        details = [
            f"span {_describe(row.span)} "
            + (
                "is its own parent"
                if row.mark == SELF_PARENT
                else f"is its own ancestor (its parent {row.span.parent_id} descends from it)"
            )
            for row in cycles
        ]
        findings.append(
            Finding(
                kind="parent-cycle",
                summary=f"broken trace {trace.trace_id}: its spans' parents form "
                f"{count(len(cycles), 'cycle')}" + ("; it has no root" if rootless else ""),
                cause="span ids repeat or parent ids were rewritten: an SDK gives every span a "
                "new random id, so a cycle comes from a custom id generator that repeats ids, "
                "an exporter or a pipeline that rewrites spans, or files of different systems "
                "whose ids collide",
                fix="keep the SDK's random id generator (a custom IdGenerator must return "
                "unique random ids), export spans unchanged, and give doctor the files of one "
                "system",
                details=_and_more(details, "cycle"),
            )
        )
    return findings


def _missing_parent_cause(orphan: ExportedSpan) -> str:
    if orphan.kind == _SERVER or orphan.attributes.get("threadline.boundary") == "http.server":
        return (
            "the caller's CLIENT span is missing: the calling service exports no spans (tracing "
            "not set up there), exited before it flushed them, or sends them to a place not "
            "given here. If the caller is outside your system (a browser, a proxy that starts "
            "its own traceparent), this is expected"
        )
    return (
        "the span that handed this work over was never exported: the process that made it "
        "exports no spans, exited without flushing them (killed, os._exit, a crash), or "
        "sends them to a place not given here"
    )


_BLEED_CAUSE = (
    "one request's context bled into the next: code attached a context and never detached "
    "it, or one contextvars.Context was reused for several requests (under uvicorn, asyncio's "
    "CPython issue 140947: run it with --reset-contextvars), so the later request began with "
    "the earlier one's span and request id already current"
)
_BLEED_FIX = (
    "detach every context you attach (a with block: tl.snapshot(), store.scope()); never cache "
    "a contextvars.Context across requests; run uvicorn with --reset-contextvars; "
    "threadline.lost.enable() reports each place this happens, live (cause 'bleed')"
)


def _request_span(span: ExportedSpan, by_id: dict[str, ExportedSpan]) -> ExportedSpan | None:
    """The SERVER span that began the request *span* belongs to (itself, or an ancestor)."""
    seen: set[str] = set()
    current: ExportedSpan | None = span
    while current is not None and current.span_id not in seen:
        if current.kind == _SERVER:
            return current
        seen.add(current.span_id)
        current = by_id.get(str(current.parent_id)) if current.parent_id else None
    return None


def _bled_spans(traces: Sequence[Trace]) -> list[Finding]:
    """A SERVER span whose parent belongs to a request whose SERVER span had ended already."""
    findings = []
    for trace in traces:
        by_id = {span.span_id: span for span in trace.spans}
        for span in trace.spans:
            parent = by_id.get(str(span.parent_id)) if span.parent_id else None
            if span.kind != _SERVER or parent is None or parent.end_ns > span.start_ns:
                continue
            earlier = _request_span(parent, by_id)
            if earlier is None or earlier.end_ns > span.start_ns:
                continue
            gap_ms = (span.start_ns - earlier.end_ns) / 1e6
            request = earlier.attributes.get("request.id")
            of = f" of request {_t(request)}" if request is not None else ""
            findings.append(
                Finding(
                    kind="bleed",
                    summary=f"request span {_describe(span)} in trace {trace.trace_id} began "
                    f"under {_describe(parent)}{of}, a request that had ended "
                    f"{gap_ms:.1f} ms before",
                    cause=_BLEED_CAUSE,
                    fix=_BLEED_FIX,
                    details=[
                        f"the earlier request: {_describe(earlier)}, span {earlier.span_id}",
                        f"the later one: {_describe(span)}, span {span.span_id}"
                        + (
                            f", request {_t(span.attributes['request.id'])}"
                            if "request.id" in span.attributes
                            else ""
                        ),
                    ],
                )
            )
    return findings


def _bled_logs(
    traces: Sequence[Trace], logs: Sequence[LogRecord], reported: set[str]
) -> list[Finding]:
    """Log lines of one request id under the trace of another request (by its spans or lines)."""
    owners: dict[str, list[str]] = {trace.trace_id: list(trace.request_ids) for trace in traces}
    lines: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for log in logs:
        if has_context(log, "request_id") and has_context(log, "trace_id"):
            trace_id, request_id = str(log["trace_id"]), cut(str(log["request_id"]))
            lines[trace_id][request_id] += 1
            owners.setdefault(trace_id, []).append(request_id)
    findings = []
    for trace_id, counts in lines.items():
        owner = next(iter(dict.fromkeys(owners[trace_id])), None)
        strangers = [request_id for request_id in counts if request_id != owner]
        if owner is None or not strangers:
            continue
        reported.update(strangers)
        findings.append(
            Finding(
                kind="bleed-logs",
                summary=f"trace {_t(trace_id, 64)} of request {_t(owner)} holds log lines of "
                + ", ".join(_and_more([f"request {_t(other)}" for other in strangers], "request")),
                cause=_BLEED_CAUSE,
                fix=_BLEED_FIX,
                details=[
                    f"request {_t(other)}: {count(counts[other], 'log line')}"
                    for other in strangers[:SHOWN]
                ],
            )
        )
    return findings


def _split_requests(traces: Sequence[Trace], reported: set[str]) -> list[Finding]:
    """A finding per request id on spans of several traces; each such id goes in *reported*."""
    by_request: dict[str, list[Trace]] = defaultdict(list)
    for trace in traces:
        for request_id in trace.request_ids:
            by_request[request_id].append(trace)
    findings = []
    for request_id, split in by_request.items():
        if len(split) < 2:
            continue
        reported.add(request_id)
        details = [
            f"trace {trace.trace_id} starts at {_describe(trace.first())}" for trace in split
        ]
        over_http = any(trace.first().kind == _SERVER for trace in split[1:])
        findings.append(
            Finding(
                kind="split-request",
                summary=f"request {_t(request_id)} is split over {len(split)} traces",
                cause=(
                    "a hop started a new trace instead of continuing the request's: the "
                    "traceparent did not arrive (a client that sends only X-Request-ID or "
                    "baggage, a proxy that drops it), or the server did not trust it "
                    "(trust_incoming=False in threadline's server middleware, right only at a "
                    "public edge)"
                    if over_http
                    else "work of the request was handed to another process or thread "
                    "without threadline's carrier, so it started a trace of its own"
                ),
                fix=(
                    "send the context on every outgoing call (" + _CLIENTS + ","
                    " or tl.inject(headers) for another client) and keep trust_incoming=True "
                    "between your own services"
                    if over_http
                    else _HANDOFF_FIX
                ),
                details=_and_more(details, "trace"),
            )
        )
    return findings


def _split_in_logs(logs: Sequence[LogRecord], reported: set[str]) -> list[Finding]:
    traces_of: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for log in logs:
        if has_context(log, "request_id") and has_context(log, "trace_id"):
            loggers = traces_of[str(log["request_id"])][str(log["trace_id"])]
            loggers.add(str(log.get("logger", "?")))
    findings = []
    for request_id, by_trace in traces_of.items():
        if len(by_trace) < 2 or request_id in reported:
            continue
        findings.append(
            Finding(
                kind="split-request-logs",
                summary=f"request {_t(request_id)} logs under {len(by_trace)} traces",
                cause="part of the request ran under another trace: a hop or a hand-off "
                "started a new trace but kept the request id (it came in X-Request-ID or "
                "baggage without a traceparent), or a thread or task kept a context from "
                "another request",
                fix="carry the whole context, not the id alone: "
                + _HANDOFF_FIX
                + "; "
                + _CLIENTS
                + " on HTTP clients",
                details=_and_more(
                    [
                        f"trace {_t(trace_id, 64)}: logger "
                        + ", ".join(_and_more([_t(name, 64) for name in sorted(loggers)], "logger"))
                        for trace_id, loggers in by_trace.items()
                    ],
                    "trace",
                ),
            )
        )
    return findings


def _location(log: LogRecord) -> str:
    """Where the line was logged, from whatever fields the formatter wrote; '' when none."""
    path = next(
        (log[key] for key in ("pathname", "code.filepath", "filename", "module") if log.get(key)),
        "",
    )
    line = log.get("lineno", log.get("code.lineno", ""))
    function = log.get("funcName", log.get("code.function", ""))
    where = f"{_t(path)}:{_t(line, 20)}" if path and line != "" else _t(path)
    return f"{where} in {_t(function, 64)}" if where and function else where


def _logs_without_context(logs: Sequence[LogRecord]) -> list[Finding]:
    places: Counter[tuple[str, str]] = Counter()
    lost: dict[tuple[str, str, bool, bool], list[LogRecord]] = defaultdict(list)
    for log in logs:
        if log.get("logger") == _OWN_LOGGER:
            continue
        place = (cut(str(log.get("logger", "?")), 64), _location(log))
        request, trace = has_context(log, "request_id"), has_context(log, "trace_id")
        if request and trace:
            places[place] += 1
        else:
            lost[place[0], place[1], request, trace].append(log)
    return [
        _without_context(
            logger,
            where,
            request=request,
            trace=trace,
            lines=lines,
            good=places[logger, where],
        )
        for (logger, where, request, trace), lines in lost.items()
    ]


def _without_context(
    logger: str,
    where: str,
    *,
    request: bool,
    trace: bool,
    lines: list[LogRecord],
    good: int,
) -> Finding:
    missing = "request id" if trace else "trace id" if request else "request id or trace id"
    at = f" at {where}" if where else ""
    lines_ = "1 log line" if len(lines) == 1 else f"{len(lines)} log lines"
    summary = f"{lines_} from logger {_t(repr(logger))}{at} without a {missing}"
    details = [f"e.g. {_t(repr(str(lines[0].get('message', ''))[:120]))}"]
    if good:
        details.append(
            f"{good} other line{'s' if good > 1 else ''} from the same place had both ids"
        )
    if not where:
        details.append("the lines name no file or line (no pathname/lineno fields)")
    if not request and not trace:
        cause = (
            "the same code logs with the request's ids at other times: the context was lost "
            "at a hand-off to a thread, a pool or a process made without threadline's "
            "carrier (a plain ThreadPoolExecutor or Thread, loop.run_in_executor, "
            "multiprocessing), or by a task or thread started before the request"
            if good
            else "this code ran outside any request: the work was handed to a thread, a pool "
            "or a process without threadline's carrier, or by a task or thread started "
            "before the request. If it is start-up or a timer, outside any request, this "
            "is expected"
        )
        fix = _HANDOFF_FIX
    elif trace:
        cause = (
            "the trace arrived but threadline's request store did not: the baggage did not "
            "cross (OTEL_PROPAGATORS without baggage or threadline, a hop that forwards only "
            "traceparent), or no tl.request scope was entered (no threadline middleware)"
        )
        fix = (
            "keep baggage in OTEL_PROPAGATORS (the default: tracecontext,baggage), forward "
            "the baggage header at every hop, and install threadline's server middleware ("
            + _SERVERS
            + ") or "
            "enter tl.request.scope(request_id=...)"
        )
    else:
        cause = (
            "the request's values arrived but no span was current: this process does not "
            "set up tracing, or the code ran outside the span that carried the request"
        )
        fix = "call threadline.tracing.configure() in this process (workers and children too)"
    return Finding("log-without-context", summary, cause, fix, details)
