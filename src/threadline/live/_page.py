"""The live view drawn: as text for a terminal (`render_text`) and as an HTML page (`render_html`).

Both draw a snapshot (``/requests``'s JSON: `threadline.live.snapshot`),
which the ``threadline top`` command reads from another process: so
`read_snapshot` checks one strictly first, and every text in it (request
ids, routes, paths, locations: they came from outside) is escaped where it
is drawn (control characters in the terminal, HTML and control characters
in the page). The page loads nothing and runs no script.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping
from typing import Any

from .._core.text import escape_controls

__all__ = ["BadSnapshotError", "read_snapshot", "render_html", "render_text"]

BAR_WIDTH = 32
_TEXT_CUT = 60


class BadSnapshotError(ValueError):
    """What was read is not a snapshot of the live view (names the first thing wrong)."""


def read_snapshot(data: object) -> dict[str, Any]:
    """*data* (parsed JSON) as a snapshot, every field checked; a `BadSnapshotError` if not one."""
    top = _mapping(data, "the snapshot")
    requests = top.get("requests")
    if not isinstance(requests, list):
        raise BadSnapshotError("'requests' is not a list")
    return {
        "time": _number(top.get("time", 0.0), "time"),
        "dropped_requests": _count(top.get("dropped_requests", 0), "dropped_requests"),
        "requests": [_request(item, index) for index, item in enumerate(requests)],
    }


def _request(item: object, index: int) -> dict[str, Any]:
    where = f"request {index}"
    request = _mapping(item, where)
    resources = request.get("resources", [])
    if not isinstance(resources, list):
        raise BadSnapshotError(f"{where}: 'resources' is not a list")
    return {
        "request_id": _text(request.get("request_id"), f"{where}: request_id"),
        "type": _text(request.get("type"), f"{where}: type") or "?",
        "name": _text(request.get("name"), f"{where}: name"),
        "location": _text(request.get("location"), f"{where}: location") or "?",
        "age": _number(request.get("age", 0.0), f"{where}: age"),
        "running": _count(request.get("running", 0), f"{where}: running"),
        "dropped": _count(request.get("dropped", 0), f"{where}: dropped"),
        "resources": [
            _resource(entry, f"{where}, resource {n}") for n, entry in enumerate(resources)
        ],
    }


def _resource(item: object, where: str) -> dict[str, Any]:
    resource = _mapping(item, where)
    duration = resource.get("duration")
    return {
        "type": _text(resource.get("type"), f"{where}: type") or "?",
        "name": _text(resource.get("name"), f"{where}: name"),
        "location": _text(resource.get("location"), f"{where}: location") or "?",
        "start": _number(resource.get("start", 0.0), f"{where}: start"),
        "duration": None if duration is None else _number(duration, f"{where}: duration"),
    }


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadSnapshotError(f"{where} is not an object")
    return value


def _text(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadSnapshotError(f"{where} is not text")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadSnapshotError(f"{where} is not a finite number")
    return max(float(value), 0.0)


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadSnapshotError(f"{where} is not a count")
    return value


def shortened(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """*snapshot* with the folder every location shares taken off them (``app.py:12``)."""
    places = [r["location"] for r in snapshot["requests"]] + [
        resource["location"] for r in snapshot["requests"] for resource in r["resources"]
    ]
    common = _common_folder([place for place in places if "/" in place])
    if not common:
        return dict(snapshot)

    def cut_(place: str) -> str:
        return place[len(common) :] if place.startswith(common) else place

    return {
        **snapshot,
        "requests": [
            {
                **request,
                "location": cut_(request["location"]),
                "resources": [
                    {**resource, "location": cut_(resource["location"])}
                    for resource in request["resources"]
                ],
            }
            for request in snapshot["requests"]
        ],
    }


def _common_folder(places: list[str]) -> str:
    if not places:
        return ""
    first, last = min(places), max(places)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size].rpartition("/")[0] + "/" if "/" in first[:size] else ""


# -- text ----------------------------------------------------------------------------------


def _t(value: str | None, width: int = _TEXT_CUT) -> str:
    text = escape_controls(value if value is not None else "-")
    return text if len(text) <= width else text[: width - 1] + "…"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def _headline(snapshot: Mapping[str, Any], source: str, tool: str = "top") -> str:
    requests = snapshot["requests"]
    at = time.strftime("%H:%M:%S", time.localtime(snapshot["time"]))
    count = f"{len(requests)} request{'s' if len(requests) != 1 else ''} in flight"
    dropped = snapshot["dropped_requests"]
    more = f", {dropped} not tracked (over the limit)" if dropped else ""
    where = f" at {_t(source, 200)}" if source else ""
    return f"threadline {tool}{where}: {count}{more} ({at})"


def render_text(snapshot: Mapping[str, Any], *, source: str = "", unicode: bool = True) -> str:
    """The snapshot as lines for a terminal: each request, slowest first, and its waterfall.

    *unicode* False draws the bars with ``#`` (done) and ``=`` (running).
    """
    done, running = ("█", "▒") if unicode else ("#", "=")
    snapshot = shortened(snapshot)
    lines = [_headline(snapshot, source)]
    for request in sorted(snapshot["requests"], key=lambda r: -r["age"]):
        age = max(request["age"], 1e-9)
        total = len(request["resources"]) + request["dropped"]
        lines.append("")
        lines.append(
            f"{_seconds(request['age']):>8}  {_t(request['request_id'], 40)}  "
            f"{_t(request['name'] or request['type'])}  ({_t(request['location'], 80)})  "
            f"{request['running']} of {total} running"
            + (f", {request['dropped']} not shown" if request["dropped"] else "")
        )
        for resource in request["resources"]:
            start = min(resource["start"], age)
            duration = resource["duration"]
            end = age if duration is None else min(start + duration, age)
            left = round(start / age * BAR_WIDTH)
            width = max(1, round((end - start) / age * BAR_WIDTH))
            bar = " " * left + (running if duration is None else done) * width
            state = "running" if duration is None else _seconds(duration)
            what = resource["type"] + (f" {resource['name']}" if resource["name"] else "")
            lines.append(
                f"{'':10}{_t(what, 28):<28} {bar:<{BAR_WIDTH + 1}} {state:>8}  "
                f"{_t(resource['location'], 80)}"
            )
    if not snapshot["requests"]:
        lines.append("\n  (no request in flight)")
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2937; }
h1 { font-size: 1.25em; margin: 0 0 .6em; }
.request { border: 1px solid #e5e7eb; border-radius: 6px; margin: 0 0 1em; }
.head { display: flex; gap: 1em; padding: 6px 10px; background: #f3f4f6; align-items: baseline; }
.age { font-weight: 600; font-variant-numeric: tabular-nums; min-width: 5em; }
.rid, .loc, .row .what { font-family: ui-monospace, monospace; font-size: 12.5px; }
.loc, .count { color: #6b7280; }
.row { display: grid; grid-template-columns: 22em 1fr 6em; gap: .6em; align-items: center;
  padding: 2px 10px; }
.row .what { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { position: relative; height: 12px; background: #f9fafb; }
.bar { position: absolute; top: 0; bottom: 0; min-width: 2px; border-radius: 2px;
  background: #3b82f6; }
.bar.running { background: repeating-linear-gradient(45deg, #f59e0b 0 4px, #fbbf24 4px 8px); }
.state { text-align: right; font-variant-numeric: tabular-nums; font-size: 12.5px; }
.state.running { color: #b45309; font-weight: 600; }
.none { color: #6b7280; }
"""


def _e(value: str | None) -> str:
    return html.escape(escape_controls(value if value is not None else "-"))


def render_html(
    snapshot: Mapping[str, Any], *, refresh: int | None = None, source: str = ""
) -> str:
    """The snapshot as one self-contained page; *refresh*: reload every so many seconds."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    snapshot = shortened(snapshot)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        meta,
        f"<title>{_e(_headline(snapshot, source, 'live'))}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(_headline(snapshot, source, 'live'))}</h1>",
    ]
    parts.extend(
        _request_html(request) for request in sorted(snapshot["requests"], key=lambda r: -r["age"])
    )
    if not snapshot["requests"]:
        parts.append('<p class="none">No request in flight.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _request_html(request: Mapping[str, Any]) -> str:
    age = max(request["age"], 1e-9)
    total = len(request["resources"]) + request["dropped"]
    dropped = f", {request['dropped']} not shown" if request["dropped"] else ""
    rows = [
        '<section class="request">',
        '<div class="head">'
        f'<span class="age">{_e(_seconds(request["age"]))}</span>'
        f'<span class="rid">{_e(request["request_id"])}</span>'
        f'<span class="name">{_e(request["name"] or request["type"])}</span>'
        f'<span class="loc">{_e(request["location"])}</span>'
        f'<span class="count">{request["running"]} of {total} running{dropped}</span></div>',
    ]
    for resource in request["resources"]:
        start = min(resource["start"], age)
        duration = resource["duration"]
        end = age if duration is None else min(start + duration, age)
        left, width = start / age * 100, max((end - start) / age * 100, 0.3)
        running = duration is None
        what = resource["type"] + (f" {resource['name']}" if resource["name"] else "")
        state = "running" if running else _seconds(duration)
        rows.append(
            f'<div class="row{" running" if running else ""}">'
            f'<span class="what" title="{_e(resource["location"])}">{_e(what)} '
            f'<span class="loc">{_e(resource["location"])}</span></span>'
            f'<div class="track"><div class="bar{" running" if running else ""}" '
            f'style="left:{left:.2f}%;width:{width:.2f}%"></div></div>'
            f'<span class="state{" running" if running else ""}">{_e(state)}</span></div>'
        )
    rows.append("</section>")
    return "\n".join(rows)
