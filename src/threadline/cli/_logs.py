"""The log lines `threadline view` and `threadline doctor` read: JSON lines, leniently.

A log file may hold anything a program wrote to its stream: a line that is
not a JSON object (a traceback, text, JSON nested too deeply) is skipped and
counted. Each field of a line is kept as a scalar, its text cut at
`FIELD_CAP` characters; a list or an object becomes its compact JSON text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    return {cut(key): _log_field(value) for key, value in record.items()}


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
