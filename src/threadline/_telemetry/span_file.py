"""The strict reader of span files: `threadline.export.read_spans`, `view` and `doctor`.

A span file is OTLP JSON lines (threadline's file output, the Collector's
``file`` exporter): every line that is not blank is UTF-8 JSON, an object
with a ``resourceSpans`` list. A file that is not one (missing, empty, not
UTF-8, not JSON, JSON of another shape such as a log line) raises `BadFileError`,
which names the file and the line: the tools make it a usage error.
(`read_spans`, for programs, reads an empty file as no spans.)

Inside a well-formed line, what can be read is read, and what cannot is
counted in `SpanFile`:

- a span is *skipped* when it is not an object, when its ``traceId``,
  ``spanId`` or ``parentSpanId`` is not hex of the right length (32, 16, 16
  digits; an empty or missing ``parentSpanId`` is a root), or when its start or
  end time is not a whole number of nanoseconds from 0 to 2**64 - 1;
- any other field of the wrong type is *dropped*: a name that is not a string
  becomes ``""``, a kind or status that is not one of OTLP's becomes 0
  (unspecified, unset), an attribute that is not a ``{"key", "value"}`` pair
  or whose value is not an OTLP value is left out, an end before the start
  becomes the start;
- a ``resourceSpans`` or ``scopeSpans`` entry that is not an object, or whose
  list is not a list, is skipped with the spans in it (they cannot be counted);
- a line of another OTLP signal (``resourceLogs``, ``resourceMetrics``,
  ``resourceProfiles``: the Collector's file exporter may share one file
  between pipelines) is skipped and counted; a file of nothing else is a
  usage error.

Every text (names, services, attribute keys and values) is cut at
`FIELD_CAP` characters, its last one ``…``: the output stays bounded by the
input. Log files are read by `._logs`.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.text import count

__all__ = [
    "BadFileError",
    "ExportedSpan",
    "SpanFile",
    "read_span_file",
    "read_span_files",
    "read_spans",
]


@dataclass(frozen=True)
class ExportedSpan:
    """One span read back from an OTLP JSON file."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status_message: str = ""

    @property
    def duration_ms(self) -> float:
        """The span's duration in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6


def read_spans(path: str | os.PathLike[str]) -> list[ExportedSpan]:
    """Every span in an OTLP JSON lines file (threadline's or the Collector's ``file`` exporter).

    An empty file holds no spans. Inside a line, a span with bad ids or times
    is skipped and a malformed field left out (`read_span_file` counts them).

    Raises:
        BadFileError: (a `ValueError`) the file cannot be read, or is not OTLP
            JSON lines; it names the file and the line.
    """
    return read_span_file(path, empty_ok=True).spans


FIELD_CAP = 1000
"""The most characters a text read from a file keeps (the last one ``…`` when it was cut)."""

VALUE_DEPTH = 8
"""How deep an attribute's array or key-value list may nest; deeper ones are dropped."""

_MAX_U64 = 2**64 - 1
_MAX_I64 = 2**63 - 1
_HEX = frozenset("0123456789abcdefABCDEF")
_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_OTHER_SIGNALS = frozenset({"resourceLogs", "resourceMetrics", "resourceProfiles"})
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class BadFileError(ValueError):
    """A file the tools cannot read: it is named, with the line when one is at fault."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, reason: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")


@dataclass
class SpanFile:
    """What one span file held: its spans, and how many were skipped or had a field dropped."""

    path: str
    spans: list[ExportedSpan] = field(default_factory=list)
    skipped: int = 0
    dropped: int = 0  # spans read with one or more fields dropped
    other_lines: int = 0  # OTLP lines of logs, metrics or profiles

    def note(self) -> str:
        """One line saying what was skipped or dropped; ``""`` when the file was clean."""
        parts = []
        if self.skipped:
            parts.append(f"{count(self.skipped, 'span')} skipped (bad ids or times)")
        if self.dropped:
            parts.append(f"{count(self.dropped, 'span')} read with a malformed field left out")
        if self.other_lines:
            parts.append(f"{count(self.other_lines, 'line')} of logs, metrics or profiles skipped")
        return f"{self.path}: {', '.join(parts)}" if parts else ""


def cut(text: str, cap: int = FIELD_CAP) -> str:
    """*text*, or its first ``cap - 1`` characters and ``…`` when it is longer."""
    return text if len(text) <= cap else text[: cap - 1] + "\u2026"


# Span files


def read_span_file(path: str | os.PathLike[str], *, empty_ok: bool = False) -> SpanFile:
    """Every span of the OTLP JSON lines file *path*; with *empty_ok*, an empty file has none.

    Raises:
        BadFileError: the file cannot be opened, or is not OTLP JSON lines.
    """
    found = SpanFile(os.fspath(path))
    lines = 0
    for number, document in _json_lines(path):
        if not isinstance(document, dict):
            reason = f"not OTLP spans: {_kind(document)}, not an object with resourceSpans"
            raise BadFileError(path, number, reason)
        if "resourceSpans" not in document and _OTHER_SIGNALS.intersection(document):
            found.other_lines += 1  # the Collector's file exporter may share a file
            continue
        if "resourceSpans" not in document:
            reason = "not OTLP spans: an object without resourceSpans (a log file? use --logs)"
            raise BadFileError(path, number, reason)
        resource_spans = document["resourceSpans"]
        if not isinstance(resource_spans, list):
            raise BadFileError(
                path, number, f"resourceSpans is {_kind(resource_spans)}, not a list"
            )
        lines += 1
        for resource in resource_spans:
            _read_resource(resource, found)
    if not lines and found.other_lines:
        raise BadFileError(path, None, "no spans: only OTLP logs, metrics or profiles")
    if not lines and not empty_ok:
        raise BadFileError(path, None, "empty: no OTLP JSON line in it")
    return found


def _json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of *path* (numbered from 1) parsed as JSON, strictly."""
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below; bytes: a bad one names its line
    except OSError as exc:
        raise BadFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
    with file:
        number = 0
        while True:
            try:
                raw = file.readline()
            except OSError as exc:  # a folder, a device that fails
                raise BadFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
            if not raw:
                return
            number += 1
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise BadFileError(path, number, "not UTF-8 text") from None
            yield number, _parse(path, number, text)


def _parse(path: str | os.PathLike[str], number: int, text: str) -> Any:
    try:
        return json.loads(text, parse_constant=reject_constant)
    except RecursionError:
        raise BadFileError(path, number, "not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, an integer of too many digits, NaN
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise BadFileError(path, number, f"not JSON: {cut(reason, 120)}") from None


def reject_constant(name: str) -> Any:
    """`json.loads`'s ``parse_constant``: ``NaN`` and ``Infinity`` are not JSON."""
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _read_resource(resource: Any, found: SpanFile) -> None:
    if not isinstance(resource, dict):
        return
    attributes, _ = _attributes(_get(resource.get("resource"), "attributes"))
    service = attributes.get("service.name")
    service = service if isinstance(service, str) else "unknown_service"
    scopes = resource.get("scopeSpans", ())
    for scope in scopes if isinstance(scopes, list) else ():
        spans = scope.get("spans", ()) if isinstance(scope, dict) else ()
        for span in spans if isinstance(spans, list) else ():
            read = _span(span, service)
            if read is None:
                found.skipped += 1
                continue
            exported, dropped = read
            found.spans.append(exported)
            found.dropped += dropped


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _span(span: Any, service: str) -> tuple[ExportedSpan, bool] | None:
    """The span and whether a field was dropped; None when it cannot be read at all."""
    if not isinstance(span, dict):
        return None
    trace_id, span_id = _hex_id(span.get("traceId"), 32), _hex_id(span.get("spanId"), 16)
    parent = span.get("parentSpanId")
    parent_id = None if parent in (None, "") else _hex_id(parent, 16)
    start, end = _time(span.get("startTimeUnixNano")), _time(span.get("endTimeUnixNano"))
    if trace_id is None or span_id is None or start is None or end is None:
        return None
    if parent_id is None and parent not in (None, ""):
        return None
    name, kind = span.get("name", ""), _enum(span.get("kind", 0), _KINDS, 5)
    status = span.get("status", {})
    status = status if isinstance(status, dict) else None
    code = _enum(status.get("code", 0), _STATUS_CODES, 2) if status is not None else 0
    message = status.get("message", "") if status is not None else ""
    attributes, bad_attributes = _attributes(span.get("attributes"))
    dropped = (
        not isinstance(name, str)
        or kind is None
        or code is None
        or status is None
        or not isinstance(message, str)
        or bad_attributes
        or end < start
    )
    exported = ExportedSpan(
        name=cut(name) if isinstance(name, str) else "",
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        kind=kind or 0,
        start_ns=start,
        end_ns=max(start, end),
        status_code=code or 0,
        service=service,
        attributes=attributes,
        status_message=cut(message) if isinstance(message, str) else "",
    )
    return exported, dropped


def _hex_id(value: Any, digits: int) -> str | None:
    """A valid OTLP id (hex of *digits* digits, not all zero), lowercased; else None."""
    if not isinstance(value, str) or len(value) != digits or not _HEX.issuperset(value):
        return None
    value = value.lower()
    return None if value == "0" * digits else value


def _time(value: Any) -> int | None:
    """Nanoseconds (OTLP's fixed64: a JSON number or a decimal string); None when not one."""
    if isinstance(value, bool):
        return None
    digits = isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20
    if digits or (isinstance(value, float) and value.is_integer()):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= _MAX_U64:
        return None
    return value


def _enum(value: Any, names: dict[str, int], highest: int) -> int | None:
    """An OTLP enum given by number or by name; None when it is neither."""
    if isinstance(value, str):
        return names.get(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= highest:
        return value
    return None


def _attributes(pairs: Any) -> tuple[dict[str, Any], bool]:
    """The attributes of an OTLP ``KeyValue`` list, and whether any was left out."""
    if pairs is None:
        return {}, False
    if not isinstance(pairs, list):
        return {}, True
    attributes: dict[str, Any] = {}
    bad = False
    for pair in pairs:
        key = _get(pair, "key")
        value = _value(_get(pair, "value"), VALUE_DEPTH) if isinstance(key, str) else _BAD
        if value is _BAD:
            bad = True
        else:
            attributes[cut(key)] = value
    return attributes, bad


_BAD = object()


def _value(value: Any, depth: int) -> Any:
    """An OTLP ``AnyValue`` as Python (text cut at `FIELD_CAP`); `_BAD` when it is not one."""
    if not isinstance(value, dict) or len(value) > 1:
        return _BAD
    if not value:
        return None  # an empty AnyValue: OTLP's "no value"
    ((key, item),) = value.items()
    if key in ("arrayValue", "kvlistValue"):
        # protobuf's JSON leaves out an empty list: {"arrayValue": {}} is []
        items = item.get("values", []) if isinstance(item, dict) else None
        if depth <= 0 or not isinstance(items, list):
            return _BAD
        return _array(items, depth - 1) if key == "arrayValue" else _kvlist(items, depth - 1)
    read = _SCALARS.get(key)
    return _BAD if read is None else read(item)


def _array(items: list[Any], depth: int) -> Any:
    values = [_value(element, depth) for element in items]
    return _BAD if any(element is _BAD for element in values) else values


def _kvlist(items: list[Any], depth: int) -> Any:
    pairs = [(_get(pair, "key"), _value(_get(pair, "value"), depth)) for pair in items]
    if any(not isinstance(key, str) or value is _BAD for key, value in pairs):
        return _BAD
    return {cut(key): value for key, value in pairs}


def _string(item: Any) -> Any:
    return cut(item) if isinstance(item, str) else _BAD


def _bool(item: Any) -> Any:
    return item if isinstance(item, bool) else _BAD


def _int64(item: Any) -> Any:
    if isinstance(item, str) and len(item) <= 20 and item.lstrip("-").isdigit() and item.isascii():
        item = int(item)
    if isinstance(item, int) and not isinstance(item, bool) and -_MAX_I64 - 1 <= item <= _MAX_I64:
        return item
    return _BAD


def _double(item: Any) -> Any:
    if isinstance(item, str):
        return _NON_FINITE.get(item, _BAD)  # protobuf's JSON names for them
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return float(item) if abs(item) <= 1e308 else _BAD
    return _BAD


def _bytes(item: Any) -> Any:
    if not isinstance(item, str):
        return _BAD
    try:
        return cut(base64.b64decode(item, validate=True).hex())
    except ValueError:
        return _BAD


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "stringValue": _string,
    "boolValue": _bool,
    "intValue": _int64,
    "doubleValue": _double,
    "bytesValue": _bytes,
}


def read_span_files(paths: Sequence[str | os.PathLike[str]]) -> list[SpanFile]:
    """Every file of *paths*; a span that two files (or one, twice) hold is kept once.

    Raises:
        BadFileError: for the first file that is not OTLP JSON lines.
    """
    seen: set[tuple[str, str]] = set()
    files = []
    for path in paths:
        found = read_span_file(path)
        unique = []
        for span in found.spans:
            key = (span.trace_id, span.span_id)
            if key not in seen:
                seen.add(key)
                unique.append(span)
        found.spans = unique
        files.append(found)
    return files
