"""``threadline view``: each trace as a waterfall in the terminal, or as one HTML page.

The terminal drawing is the span tree (service, name, duration) with a bar
per span drawn to the trace's scale, errors and missing parents marked, then
the trace's log lines in time order. Every text that came from the files is
escaped: a span name or a log message can never move the cursor or forge a
line.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._core.text import escape_controls
from .._telemetry.file_exporter import ExportedSpan
from ._traces import ERROR, Trace, error_text, group, read_logs, read_span_files

BAR_WIDTH = 40
NAME_WIDTH = 44
_SHORT_LEVELS = frozenset({"INFO", "DEBUG", ""})


def view_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`threadline view FILE [--logs LOGFILE] [--html OUT] [--trace ID]`; returns 0."""
    try:
        spans = read_span_files([args.file])
        logs = read_logs(args.logs or [])
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"view: cannot read {exc}")
    traces = group(spans, logs)
    if args.trace:
        traces = [trace for trace in traces if trace.trace_id.startswith(args.trace.lower())]
        if not traces:
            parser.error(f"view: no trace {args.trace!r} in {args.file}")
    if args.html:
        from ._html import render_html  # noqa: PLC0415 - only --html needs it

        drawn = {id(log) for trace in traces for log in trace.logs}
        others = [log for log in logs if id(log) not in drawn] if not args.trace else []
        page = render_html(traces, other_logs=others, source=args.file)
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"{len(traces)} traces written to {args.html}")
        return 0
    ascii_only = "utf" not in (getattr(sys.stdout, "encoding", None) or "").lower()
    sys.stdout.write(render_text(traces, ascii_only=ascii_only))
    if args.logs:
        shown = sum(len(trace.logs) for trace in traces)
        outside = len(logs) - shown
        if outside and not args.trace:
            print(f"\n{outside} log lines belong to no trace here (threadline doctor explains)")
    return 0


def render_text(traces: Sequence[Trace], *, ascii_only: bool = False) -> str:
    """Every trace as a waterfall with its log lines, as text for a terminal."""
    return "".join(_trace_text(trace, ascii_only) for trace in traces)


def _trace_text(trace: Trace, ascii_only: bool) -> str:
    total = max(trace.end_ns - trace.start_ns, 1)
    lines = [f"\ntrace {_clean(trace.trace_id)} ({len(trace.spans)} spans)"]
    summary = f"  {_ms(total)}"
    if trace.request_ids():
        summary += "  request " + ", ".join(_clean(rid) for rid in trace.request_ids())
    lines.append(summary)
    rows = list(trace.walk())
    services = max(len(_clean(span.service)) for _, span in rows)
    names = min(max(2 * depth + len(_clean(span.name)) for depth, span in rows), NAME_WIDTH)
    scale = "0 ms".ljust(BAR_WIDTH - len(_ms(total))) + _ms(total)
    lines.append(f"  {'service':<{services}}  {'span':<{names}}  {'duration':>10}  {scale}")
    orphans = {span.span_id for span in trace.orphans()}
    for depth, span in rows:
        name = _fit("  " * depth + _clean(span.name), names)
        duration = span.end_ns - span.start_ns
        bar = _bar(span.start_ns - trace.start_ns, duration, total, ascii_only)
        row = f"  {_clean(span.service):<{services}}  {name:<{names}}  {_ms(duration):>10}  {bar}"
        lines.append((row + _marks(span, span.span_id in orphans)).rstrip())
    lines.extend(_log_line(log) for log in trace.logs)
    return "\n".join(lines) + "\n"


def _bar(offset: int, duration: int, total: int, ascii_only: bool) -> str:
    """A bar from *offset* for *duration*, both to the scale of *total* in `BAR_WIDTH` cells."""
    first = min(int(offset / total * BAR_WIDTH), BAR_WIDTH - 1)
    last = max(math.ceil((offset + duration) / total * BAR_WIDTH), first + 1)
    full, thin = ("#", "|") if ascii_only else ("\u2588", "\u258f")
    if duration / total * BAR_WIDTH < 0.5:  # too short for a cell: a thin mark where it starts
        return (" " * first + thin).ljust(BAR_WIDTH)
    return (" " * first + full * (min(last, BAR_WIDTH) - first)).ljust(BAR_WIDTH)


def _marks(span: ExportedSpan, orphan: bool) -> str:
    marks = ""
    if span.status_code == ERROR:
        marks += "  ERROR" + (f" {_clean(why)}" if (why := error_text(span)) else "")
    if orphan:
        marks += f"  (parent {_clean(str(span.parent_id))} never arrived)"
    return marks


def _log_line(log: dict[str, Any]) -> str:
    level = str(log.get("level", "")).upper()
    message = _clean(str(log.get("message", "")))
    if level not in _SHORT_LEVELS:
        message = f"{_clean(level)} {message}"
    logger = _clean(str(log.get("logger", "")))
    return f"  log  {logger:<22} request={_clean(str(log.get('request_id')))}  {message}"


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:.1f} ms"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _clean(text: str) -> str:
    return escape_controls(text)
