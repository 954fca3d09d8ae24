"""``threadline view``: each trace as a waterfall in the terminal, or as one HTML page.

The terminal drawing is the span tree (service, name, duration) with a bar
per span drawn to the trace's scale, errors, missing parents and cycles of
parents marked, then the trace's log lines in time order. Every text that
came from the files is escaped and cut to its column: a span name or a log
message can never move the cursor, forge a line, or widen every row.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from .._core.text import escape_controls
from .._telemetry.span_file import FIELD_CAP, BadFileError, cut, read_span_files
from ._logs import LogRecord, read_logs
from ._output import count, note, unicode_ok, write
from ._traces import CYCLE, ERROR, ORPHAN, SELF_PARENT, Row, Trace, error_text, group

BAR_WIDTH = 40
SERVICE_WIDTH = 24
NAME_WIDTH = 44
MARK_WIDTH = 200  # an error's text after ERROR
LOGGER_WIDTH = 22
INDENT_LEVELS = 10  # deeper spans are indented as deep, their depth written before the name
_SHORT_LEVELS = frozenset({"INFO", "DEBUG", ""})


def view_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`threadline view FILE [--logs LOGFILE] [--html OUT] [--trace ID]`; returns 0.

    A file that cannot be read, or is not what it should be, is a usage error.
    """
    try:
        (spans_file,) = read_span_files([args.file])
        logs = read_logs(args.logs or [])
    except BadFileError as exc:
        parser.error(f"view: {escape_controls(str(exc))}")
    note("view", spans_file.note())
    note("view", logs.note())
    traces = group(spans_file.spans, logs.records)
    if args.trace:
        traces = [trace for trace in traces if trace.trace_id.startswith(args.trace.lower())]
        if not traces:
            parser.error(f"view: no trace {args.trace!r} in {args.file}")
    if args.html:
        from ._html import render_html  # noqa: PLC0415 - only --html needs it

        drawn = {id(log) for trace in traces for log in trace.logs}
        others = [log for log in logs.records if id(log) not in drawn] if not args.trace else []
        page = render_html(traces, other_logs=others, source=args.file)
        try:
            with open(args.html, "w", encoding="utf-8", errors="backslashreplace") as out:
                out.write(page)
        except OSError as exc:
            parser.error(f"view: cannot write {args.html}: {exc.strerror or exc}")
        write(f"{count(len(traces), 'trace')} written to {args.html}\n")
        return 0
    write(render_text(traces, ascii_only=not unicode_ok(sys.stdout)))
    if args.logs and not args.trace:
        outside = len(logs.records) - sum(len(trace.logs) for trace in traces)
        if outside:
            lines = count(outside, "log line")
            verb = "belongs" if outside == 1 else "belong"
            write(f"\n{lines} {verb} to no trace here (threadline doctor explains)\n")
    return 0


def render_text(traces: Sequence[Trace], *, ascii_only: bool = False) -> str:
    """Every trace as a waterfall with its log lines, as text for a terminal."""
    return "".join(_trace_text(trace, ascii_only) for trace in traces)


def _trace_text(trace: Trace, ascii_only: bool) -> str:
    total = max(trace.end_ns - trace.start_ns, 1)
    lines = [f"\ntrace {trace.trace_id} ({count(len(trace.spans), 'span')})"]
    summary = f"  {_ms(total)}"
    if trace.request_ids:
        summary += "  request " + ", ".join(_clean(rid, 64) for rid in trace.request_ids[:10])
        if len(trace.request_ids) > 10:
            summary += f" and {len(trace.request_ids) - 10} more"
    lines.append(summary)
    cells = [(_clean(row.span.service, SERVICE_WIDTH), _name_cell(row)) for row in trace.rows]
    services = max(len("service"), *(len(service) for service, _ in cells))
    names = min(max(len("span"), *(len(name) for _, name in cells)), NAME_WIDTH)
    scale = "0 ms".ljust(BAR_WIDTH - len(_ms(total))) + _ms(total)
    lines.append(f"  {'service':<{services}}  {'span':<{names}}  {'duration':>10}  {scale}")
    for row, (service, name) in zip(trace.rows, cells, strict=True):
        span = row.span
        duration = span.end_ns - span.start_ns
        bar = _bar(span.start_ns - trace.start_ns, duration, total, ascii_only)
        line = f"  {service:<{services}}  {cut(name, names):<{names}}  {_ms(duration):>10}  {bar}"
        lines.append((line + _marks(row)).rstrip())
    lines.extend(_log_line(log) for log in trace.logs)
    return "\n".join(lines) + "\n"


def _name_cell(row: Row) -> str:
    """The span's name indented by its depth; past `INDENT_LEVELS` the depth is written."""
    depth = min(row.depth, INDENT_LEVELS)
    deeper = f"[{row.depth}] " if row.depth > INDENT_LEVELS else ""
    return "  " * depth + deeper + _clean(row.span.name, NAME_WIDTH)


def _bar(offset: int, duration: int, total: int, ascii_only: bool) -> str:
    """A bar from *offset* for *duration*, both to the scale of *total* in `BAR_WIDTH` cells."""
    first = min(int(offset / total * BAR_WIDTH), BAR_WIDTH - 1)
    last = max(math.ceil((offset + duration) / total * BAR_WIDTH), first + 1)
    full, thin = ("#", "|") if ascii_only else ("\u2588", "\u258f")
    if duration / total * BAR_WIDTH < 0.5:  # too short for a cell: a thin mark where it starts
        return (" " * first + thin).ljust(BAR_WIDTH)
    return (" " * first + full * (min(last, BAR_WIDTH) - first)).ljust(BAR_WIDTH)


def _marks(row: Row) -> str:
    span = row.span
    marks = ""
    if span.status_code == ERROR:
        marks += "  ERROR" + (f" {_clean(why, MARK_WIDTH)}" if (why := error_text(span)) else "")
    if row.mark == ORPHAN:
        marks += f"  (parent {span.parent_id} never arrived)"
    elif row.mark == CYCLE:
        marks += f"  (cycle of parents: its parent {span.parent_id} is drawn under it)"
    elif row.mark == SELF_PARENT:
        marks += "  (cycle of parents: it is its own parent)"
    return marks


def _log_line(log: LogRecord) -> str:
    level = _clean(str(log.get("level", "")).upper(), 16)
    message = _clean(str(log.get("message", "")), FIELD_CAP)
    if level not in _SHORT_LEVELS:
        message = f"{level} {message}"
    logger = _clean(str(log.get("logger", "")), 3 * LOGGER_WIDTH)
    request = _clean(str(log.get("request_id")), 64)
    return f"  log  {logger:<{LOGGER_WIDTH}} request={request}  {message}"


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:.1f} ms"


def _clean(text: str, width: int) -> str:
    """*text* from a file, escaped (no raw control character), cut to *width* characters."""
    return cut(escape_controls(text), width)
