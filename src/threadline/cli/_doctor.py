"""``threadline doctor``: where a request's context was lost, why, and what fixes it.

It reads span files (OTLP JSON lines) and JSON log lines and reports:

- spans whose parent never arrived (a broken trace);
- a request split into several traces, seen in the spans' ``request.id``
  attribute or in the log lines' ``request_id``;
- log lines without a request id or a trace id, grouped by logger and code
  location (the ``pathname``/``filename``/``module`` and ``lineno`` fields, or
  OpenTelemetry's ``code.filepath``/``code.lineno``, when the lines have them).

Each finding names its likely cause and the fix.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .._core.text import escape_controls
from .._telemetry.file_exporter import ExportedSpan
from ._traces import Trace, group, has_context, read_logs, read_span_files

_SERVER = 2
_HANDOFF_FIX = (
    "hand the work over with threadline's carriers: tl.ThreadPoolExecutor, tl.Thread, "
    "tl.run_in_executor, tl.ProcessPoolExecutor, threadline.processes, threadline.subprocess; "
    "wrap a callback that another thread calls in tl.bind(fn)"
)


@dataclass(frozen=True)
class Finding:
    """One thing doctor found: what, where, the likely cause and the fix."""

    kind: str  # missing-parent, split-request, split-request-logs, log-without-context
    summary: str
    cause: str
    fix: str
    details: list[str] = field(default_factory=list)


def doctor_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`threadline doctor FILE... [--logs LOGFILE] [--json]`: 0 when clean, 1 with findings."""
    try:
        spans = read_span_files(args.files)
        logs = read_logs(args.logs or [])
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"doctor: cannot read {exc}")
    traces = group(spans, logs)
    findings = diagnose(traces, logs)
    if args.json:
        report = {
            "spans": len(spans),
            "traces": len(traces),
            "logs": len(logs),
            "findings": [asdict(finding) for finding in findings],
        }
        print(json.dumps(report, indent=2))
    else:
        text = render_report(findings, spans=len(spans), traces=len(traces), logs=len(logs))
        # ids, services, paths and loggers come from the files: no raw control character out
        print("\n".join(escape_controls(line) for line in text.split("\n")))
    return 1 if findings else 0


def diagnose(traces: Sequence[Trace], logs: Sequence[dict[str, Any]]) -> list[Finding]:
    """Every finding: broken traces, split requests (spans, then logs), logs without context."""
    reported: set[str] = set()
    return [
        *_missing_parents(traces),
        *_split_requests(traces, reported),
        *_split_in_logs(logs, reported),
        *_logs_without_context(logs),
    ]


def render_report(findings: Sequence[Finding], *, spans: int, traces: int, logs: int) -> str:
    """The findings as text, numbered, each with its cause and fix."""
    read = f"{spans} spans ({traces} traces) and {logs} log lines"
    if not findings:
        return f"threadline doctor: no lost context in {read}"
    lines = [f"threadline doctor: {len(findings)} findings in {read}"]
    for number, finding in enumerate(findings, 1):
        lines.append(f"\n{number}. {finding.summary}")
        lines.extend(f"     {detail}" for detail in finding.details)
        lines.extend(_wrapped("cause: ", finding.cause))
        lines.extend(_wrapped("fix:   ", finding.fix))
    return "\n".join(lines)


def _wrapped(label: str, text: str) -> list[str]:
    return textwrap.wrap(
        text, width=96, initial_indent="   " + label, subsequent_indent=" " * (3 + len(label))
    )


def _describe(span: ExportedSpan) -> str:
    return f"{span.name!r} ({span.service})"


def _missing_parents(traces: Sequence[Trace]) -> list[Finding]:
    findings = []
    for trace in traces:
        by_parent: dict[str, list[ExportedSpan]] = defaultdict(list)
        for span in trace.orphans():
            by_parent[str(span.parent_id)].append(span)
        for parent_id, orphans in by_parent.items():
            names = ", ".join(_describe(span) for span in orphans)
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


def _split_requests(traces: Sequence[Trace], reported: set[str]) -> list[Finding]:
    """A finding per request id on spans of several traces; each such id goes in *reported*."""
    by_request: dict[str, list[Trace]] = defaultdict(list)
    for trace in traces:
        for request_id in trace.request_ids():
            by_request[request_id].append(trace)
    findings = []
    for request_id, split in by_request.items():
        if len(split) < 2:
            continue
        reported.add(request_id)
        details = []
        for trace in split:
            root = trace.by_start()[0]
            details.append(f"trace {trace.trace_id} starts at {_describe(root)}")
        later_roots = [trace.by_start()[0] for trace in split[1:]]
        over_http = any(root.kind == _SERVER for root in later_roots)
        findings.append(
            Finding(
                kind="split-request",
                summary=f"request {request_id} is split over {len(split)} traces",
                cause=(
                    "a hop started a new trace instead of continuing the request's: the "
                    "traceparent did not arrive (a client that sends only X-Request-ID or "
                    "baggage, a proxy that drops it), or the server did not trust it "
                    "(threadline.aiohttp.middleware(trust_incoming=False), right only at a "
                    "public edge)"
                    if over_http
                    else "work of the request was handed to another process or thread "
                    "without threadline's carrier, so it started a trace of its own"
                ),
                fix=(
                    "send the context on every outgoing call (threadline.aiohttp.trace_config(),"
                    " or tl.inject(headers) for another client) and keep trust_incoming=True "
                    "between your own services"
                    if over_http
                    else _HANDOFF_FIX
                ),
                details=details,
            )
        )
    return findings


def _split_in_logs(logs: Sequence[dict[str, Any]], reported: set[str]) -> list[Finding]:
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
                summary=f"request {request_id} logs under {len(by_trace)} traces",
                cause="part of the request ran under another trace: a hop or a hand-off "
                "started a new trace but kept the request id (it came in X-Request-ID or "
                "baggage without a traceparent), or a thread or task kept a context from "
                "another request",
                fix="carry the whole context, not the id alone: "
                + _HANDOFF_FIX
                + "; threadline.aiohttp.trace_config() on HTTP clients",
                details=[
                    f"trace {trace_id}: logger {', '.join(sorted(loggers))}"
                    for trace_id, loggers in by_trace.items()
                ],
            )
        )
    return findings


def _location(log: dict[str, Any]) -> str:
    """Where the line was logged, from whatever fields the formatter wrote; '' when none."""
    path = next(
        (log[key] for key in ("pathname", "code.filepath", "filename", "module") if log.get(key)),
        "",
    )
    line = log.get("lineno", log.get("code.lineno", ""))
    function = log.get("funcName", log.get("code.function", ""))
    where = f"{path}:{line}" if path and line != "" else str(path)
    return f"{where} in {function}" if where and function else where


def _logs_without_context(logs: Sequence[dict[str, Any]]) -> list[Finding]:
    places: Counter[tuple[str, str]] = Counter()
    lost: dict[tuple[str, str, bool, bool], list[dict[str, Any]]] = defaultdict(list)
    for log in logs:
        place = (str(log.get("logger", "?")), _location(log))
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
    lines: list[dict[str, Any]],
    good: int,
) -> Finding:
    missing = "request id" if trace else "trace id" if request else "request id or trace id"
    at = f" at {where}" if where else ""
    lines_ = "1 log line" if len(lines) == 1 else f"{len(lines)} log lines"
    summary = f"{lines_} from logger {logger!r}{at} without a {missing}"
    details = [f"e.g. {str(lines[0].get('message', ''))[:120]!r}"]
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
            "the baggage header at every hop, and install threadline.aiohttp.middleware() or "
            "enter tl.request.scope(request_id=...)"
        )
    else:
        cause = (
            "the request's values arrived but no span was current: this process does not "
            "set up tracing, or the code ran outside the span that carried the request"
        )
        fix = "call threadline.tracing.configure() in this process (workers and children too)"
    return Finding("log-without-context", summary, cause, fix, details)
