"""The log lines `threadline view` and `threadline doctor` read: JSON lines, leniently.

A log file may hold anything a program wrote to its stream: a line that is
not a JSON object (a traceback, text, JSON nested too deeply) is skipped and
counted. Each field of a line is kept as a scalar, its text cut at
`FIELD_CAP` characters; a list or an object becomes its compact JSON text.

Three shapes are read, each into the names of `threadline.logging.JSONFormatter`
(``time``, ``level``, ``logger``, ``message``, ``request_id``, ``trace_id``, …):
threadline's own lines; structlog's ``JSONRenderer`` lines (the message under
``event``, the time under ``timestamp``); and loguru's ``serialize=True``
lines (``{"text": …, "record": {…}}``, the fields under ``record.extra``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._telemetry.span_file import BadFileError, cut, reject_constant
from ._output import count

LogRecord = dict[str, "str | int | float | bool | None"]
"""A log line: its fields, each a scalar (a list or object becomes its compact JSON text)."""

_MAX_U64 = 2**64 - 1


@dataclass
class LogFiles:
    """The JSON objects of log files, and how many lines were not one."""

    records: list[LogRecord] = field(default_factory=list)
    skipped: int = 0

    def note(self) -> str:
        """One line saying how many lines were skipped; ``""`` when none."""
        if not self.skipped:
            return ""
        return f"{count(self.skipped, 'log line')} skipped (not a JSON object)"


def read_logs(paths: Sequence[str | os.PathLike[str]]) -> LogFiles:
    """The JSON objects of JSON-lines files; any other line is skipped and counted.

    Raises:
        BadFileError: a file cannot be opened.
    """
    found = LogFiles()
    for path in paths:
        try:
            file = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise BadFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
        with file:
            try:
                for line in file:
                    record = _log_record(line) if line.strip() else None
                    if record is not None:
                        found.records.append(record)
                    elif line.strip():
                        found.skipped += 1
            except OSError as exc:
                raise BadFileError(path, None, f"cannot read it: {exc.strerror or exc}") from None
    return found


def _log_record(line: str) -> LogRecord | None:
    try:
        record = json.loads(line, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    return {cut(key): _log_field(value) for key, value in _flat(record).items()}


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """*record* in `JSONFormatter`'s names, whether threadline, structlog or loguru wrote it."""
    inner = record.get("record")
    if isinstance(inner, dict) and "text" in record:
        return _from_loguru(inner)
    if "message" not in record and "event" in record:  # structlog
        flat = {key: value for key, value in record.items() if key not in ("event", "timestamp")}
        flat["message"] = record["event"]
        if "time" not in record and "timestamp" in record:
            flat["time"] = record["timestamp"]
        return flat
    return record


def _from_loguru(record: dict[str, Any]) -> dict[str, Any]:
    extra = record.get("extra")
    flat: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
    flat["message"] = record.get("message")
    flat["logger"] = record.get("name")
    level, file, moment = record.get("level"), record.get("file"), record.get("time")
    if isinstance(level, dict):
        flat["level"] = level.get("name")
    if isinstance(file, dict):
        flat["pathname"] = file.get("path")
    flat["lineno"] = record.get("line")
    flat["funcName"] = record.get("function")
    if isinstance(moment, dict) and isinstance(moment.get("timestamp"), (int, float)):
        try:
            when = datetime.fromtimestamp(moment["timestamp"], timezone.utc)
        except (OverflowError, OSError, ValueError):  # out of the platform's range, NaN
            pass
        else:
            flat["time"] = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {key: value for key, value in flat.items() if value is not None}


def _log_field(value: Any) -> str | int | float | bool | None:
    if isinstance(value, str):
        return cut(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_U64:
        return cut(str(value))
    if value is None or isinstance(value, (bool, int, float)):
        return value
    try:
        return cut(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (ValueError, RecursionError):  # nested deeper than the encoder goes
        return "\u2026"
