"""``threadline view --html``: one self-contained HTML page, a waterfall per trace.

The page loads nothing (its Content-Security-Policy allows no fetch and no
script): the styles are inline and a span's details open on click as a
``<details>`` element, so the page works from a file, offline, in any
browser. Every text from the files is HTML-escaped (and its control
characters escaped as in the terminal); every span is a row, those of a cycle
of parents flagged.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .._core.text import escape_controls
from .._telemetry.span_file import ExportedSpan
from ._logs import LogRecord
from ._output import count
from ._traces import CYCLE, ERROR, ORPHAN, SELF_PARENT, Row, Trace, error_text, log_time_ns

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUSES = ("UNSET", "OK", "ERROR")
_PALETTE = ("#3b82f6", "#10b981", "#f59e0b", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16")
_INDENT_LEVELS = 10  # deeper spans are indented as deep as this
_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2937; }
code, .mono, .logs td { font-family: ui-monospace, monospace; font-size: 12.5px; }
h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.6em 0 .2em; }
h3 { font-size: .95em; margin: 1em 0 .3em; color: #4b5563; }
.summary { color: #4b5563; margin: 0 0 .6em; }
.waterfall { border: 1px solid #e5e7eb; border-radius: 6px; }
.ruler, summary { display: grid; grid-template-columns: 11em 22em 6em 1fr; gap: .6em;
  align-items: center; padding: 2px 8px; }
.ruler { color: #6b7280; font-size: 12px; border-bottom: 1px solid #e5e7eb; }
.ruler .scale { display: flex; justify-content: space-between; }
summary { cursor: pointer; list-style: none; }
summary::-webkit-details-marker { display: none; }
summary:hover, details[open] > summary { background: #f3f4f6; }
.service { color: #4b5563; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.duration { text-align: right; font-variant-numeric: tabular-nums; }
.track { position: relative; height: 12px; background: #f9fafb; }
.bar { position: absolute; top: 0; bottom: 0; min-width: 2px; border-radius: 2px; }
.error .name, .error .duration { color: #b91c1c; font-weight: 600; }
.error .bar { background: repeating-linear-gradient(45deg, #dc2626 0 4px, #f87171 4px 8px)
  !important; }
.flag { font-size: 11px; font-weight: 600; margin-left: .4em; padding: 0 4px; border-radius: 3px; }
.flag.err { color: #fff; background: #dc2626; } .flag.lost { color: #92400e; background: #fde68a; }
.flag.cycle { color: #fff; background: #7c3aed; }
.detail { margin: 2px 8px 8px 12em; padding: 6px 10px; background: #f9fafb;
  border-left: 3px solid #d1d5db; }
.detail table { border-collapse: collapse; }
.detail th { text-align: left; font-weight: 500; color: #6b7280; padding: 1px 12px 1px 0;
  vertical-align: top; }
.detail td { font-family: ui-monospace, monospace; font-size: 12.5px; word-break: break-all; }
.logs { border-collapse: collapse; width: 100%; }
.logs th { text-align: left; font-weight: 500; color: #6b7280; border-bottom: 1px solid #e5e7eb; }
.logs td { padding: 2px 10px 2px 0; vertical-align: top; }
.logs .level-WARNING td { background: #fffbeb; } .logs .level-ERROR td { background: #fef2f2; }
.logs .level-CRITICAL td { background: #fef2f2; }
.missing { color: #b45309; }
"""


def render_html(
    traces: Sequence[Trace], *, other_logs: Sequence[LogRecord] = (), source: str = ""
) -> str:
    """The page: every trace's waterfall (details on click) and log lines, then the other logs."""
    services = sorted({span.service for trace in traces for span in trace.spans})
    colours = {name: _PALETTE[index % len(_PALETTE)] for index, name in enumerate(services)}
    title = f"threadline: {count(len(traces), 'trace')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="summary">from <code>{_e(source)}</code>; click a span for its details</p>'
        if source
        else "",
    ]
    parts.extend(_trace_html(trace, colours) for trace in traces)
    if other_logs:
        parts.append(f"<h2>{count(len(other_logs), 'log line')} outside these traces</h2>")
        parts.append(_logs_html(other_logs, None))
    parts.append("</body></html>\n")
    return "\n".join(part for part in parts if part)


def _trace_html(trace: Trace, colours: dict[str, str]) -> str:
    total = max(trace.end_ns - trace.start_ns, 1)
    services = len({span.service for span in trace.spans})
    summary = f"{count(len(trace.spans), 'span')} · {count(services, 'service')} · {_ms(total)}"
    if trace.request_ids:
        summary += " · request " + ", ".join(f"<code>{_e(r)}</code>" for r in trace.request_ids)
    rows = [
        _span_html(row, trace, total=total, colour=colours[row.span.service]) for row in trace.rows
    ]
    return "\n".join(
        [
            f'<section class="trace" id="trace-{_e(trace.trace_id)}">',
            f"<h2>trace <code>{_e(trace.trace_id)}</code></h2>",
            f'<p class="summary">{summary}</p>',
            '<div class="waterfall">',
            '<div class="ruler"><span>service</span><span>span</span>'
            f'<span class="duration">duration</span><span class="scale"><span>0 ms</span>'
            f"<span>{_ms(total)}</span></span></div>",
            *rows,
            "</div>",
            f"<h3>{count(len(trace.logs), 'log line')}</h3>" if trace.logs else "",
            _logs_html(trace.logs, trace.start_ns) if trace.logs else "",
            "</section>",
        ]
    )


def _span_html(row: Row, trace: Trace, *, total: int, colour: str) -> str:
    span, orphan, cycle = row.span, row.mark == ORPHAN, row.mark in (CYCLE, SELF_PARENT)
    depth = min(row.depth, _INDENT_LEVELS)
    deeper = f"[{row.depth}] " if row.depth > _INDENT_LEVELS else ""
    left = (span.start_ns - trace.start_ns) / total * 100
    width = (span.end_ns - span.start_ns) / total * 100
    error = span.status_code == ERROR
    classes = "span" + (" error" if error else "") + (" orphan" if orphan else "")
    classes += " cycle" if cycle else ""
    flags = ('<span class="flag err">error</span>' if error else "") + (
        '<span class="flag lost">parent missing</span>' if orphan else ""
    )
    flags += '<span class="flag cycle">cycle of parents</span>' if cycle else ""
    return (
        f'<details class="{classes}" id="span-{_e(span.span_id)}">'
        f'<summary><span class="service" title="{_e(span.service)}">{_e(span.service)}</span>'
        f'<span class="name" style="padding-left:{depth * 1.1:.1f}em">{deeper}{_e(span.name)}'
        f"{flags}</span>"
        f'<span class="duration">{_ms(span.end_ns - span.start_ns)}</span>'
        f'<span class="track"><span class="bar" style="left:{left:.3f}%;width:{width:.3f}%;'
        f'background:{colour}"></span></span></summary>'
        f'<div class="detail">{_details_html(span, row.mark)}</div></details>'
    )


def _details_html(span: ExportedSpan, mark: str) -> str:
    status = _STATUSES[span.status_code] if 0 <= span.status_code < 3 else str(span.status_code)
    if span.status_code == ERROR and error_text(span):
        status += f": {error_text(span)}"
    parent = span.parent_id or "none (the trace's root)"
    if mark == ORPHAN:
        parent += " (never arrived: its process did not export it)"
    elif mark == SELF_PARENT:
        parent += " (the span itself: a cycle of parents)"
    elif mark == CYCLE:
        parent += " (drawn under this span: a cycle of parents)"
    kind = _KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else str(span.kind)
    rows = [
        ("span", span.name),
        ("service", span.service),
        ("span id", span.span_id),
        ("parent id", parent),
        ("trace id", span.trace_id),
        ("kind", kind),
        ("status", status),
        ("start", _utc(span.start_ns)),
        ("duration", _ms(span.end_ns - span.start_ns)),
        *((key, _value(value)) for key, value in sorted(span.attributes.items())),
    ]
    body = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in rows)
    return f"<table>{body}</table>"


def _logs_html(logs: Sequence[LogRecord], start_ns: int | None) -> str:
    head = "<tr><th>time</th><th>+ms</th><th>level</th><th>logger</th><th>request</th>"
    head += "<th>message</th></tr>"
    rows = []
    for log in logs:
        at = log_time_ns(log)
        # log times have millisecond precision: a line in the trace's first ms may seem earlier
        offset = f"{max((at - start_ns) / 1e6, 0.0):.1f}" if at is not None and start_ns else ""
        level = str(log.get("level", ""))
        request = str(log.get("request_id", "-"))
        request_cell = (
            f'<span class="missing">{_e(request)}</span>' if request == "-" else _e(request)
        )
        rows.append(
            f'<tr class="log level-{_e(level)}"><td>{_e(str(log.get("time", "")))}</td>'
            f"<td>{offset}</td><td>{_e(level)}</td><td>{_e(str(log.get('logger', '')))}</td>"
            f"<td>{request_cell}</td><td>{_e(str(log.get('message', '')))}</td></tr>"
        )
    return f'<table class="logs">{head}{"".join(rows)}</table>'


def _value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _utc(nanoseconds: int) -> str:
    moment = datetime.fromtimestamp(nanoseconds / 1e9, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:.1f} ms"


def _e(text: str) -> str:
    return html.escape(escape_controls(text), quote=True)
