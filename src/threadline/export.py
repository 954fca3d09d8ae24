"""Span export: the embedded default (OTLP JSON lines in a local file) and its reader.

`OTLPJsonFileSpanExporter` writes what the OpenTelemetry Collector's ``file``
exporter writes: one OTLP/JSON ``ExportTraceServiceRequest`` per line (ids in
hex, field names in lowerCamelCase). Many processes may append to one file.
`read_spans` reads either, so one reader serves the embedded default and a
real Collector's output.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._telemetry.file_exporter import OTLPJsonFileSpanExporter as OTLPJsonFileSpanExporter
from ._telemetry.span_file import ExportedSpan as ExportedSpan
from ._telemetry.span_file import read_spans as read_spans

__all__ = [
    "ExportedSpan",
    "OTLPJsonFileSpanExporter",
    "read_spans",
]
