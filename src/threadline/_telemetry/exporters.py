"""The span exporters ``OTEL_TRACES_EXPORTER`` names, made as OpenTelemetry's own set-up makes them.

`threadline.tracing.configure` makes them in the process, or hands their
names to the export process (`threadline._export_process`), which makes them there.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
)
from opentelemetry.sdk.trace.export import SpanExporter

from .._core.settings import DEFAULT_TRACES_FILE, TRACES_FILE_ENV

__all__ = ["exporter_names", "made_exporter", "make_exporter"]


def exporter_names() -> Sequence[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names; without it ``otlp`` or ``file``."""
    setting = os.environ.get("OTEL_TRACES_EXPORTER")
    if setting:
        return [name.strip().lower() for name in setting.split(",") if name.strip()]
    endpoints = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    return ["otlp"] if any(os.environ.get(name) for name in endpoints) else ["file"]


_EXPORTER_GROUP = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_PIP_HINT = {"otlp_proto_grpc": "pip install 'threadline[grpc]'"}
_logger = logging.getLogger("threadline")


def make_exporter(name: str) -> SpanExporter | None:
    """Make the exporter *name* (None for ``none``); a ValueError naming the setting made."""
    return made_exporter(name)[1]


def made_exporter(name: str) -> tuple[str, SpanExporter | None]:
    """Make the exporter *name*; return it with the name that makes the same one anywhere.

    That name is *name*, except for ``otlp``: the entry point its protocol
    chose (``otlp_proto_http`` when the distro's gRPC default fell back), so
    that another process makes the same exporter without deciding again.
    """
    if name == "none":
        return name, None
    if name == "file":
        from .file_exporter import OTLPJsonFileSpanExporter  # noqa: PLC0415

        path = Path(os.environ.get(TRACES_FILE_ENV) or DEFAULT_TRACES_FILE).resolve()
        os.environ[TRACES_FILE_ENV] = str(path)  # children write to the same file
        return name, OTLPJsonFileSpanExporter(path)
    if name == "otlp":
        return _otlp_exporter()
    return name, _load_exporter(name, f"OTEL_TRACES_EXPORTER={name}")


def _otlp_exporter() -> tuple[str, SpanExporter]:
    # As the SDK's own auto-configuration: the per-signal setting first. The
    # default differs: http/protobuf, the exporter threadline depends on.
    http = _OTLP_BY_PROTOCOL["http/protobuf"]
    for setting in (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL):
        protocol = os.environ.get(setting, "").strip()
        if protocol:
            break
    else:
        return http, _load_exporter(http, "OTEL_TRACES_EXPORTER=otlp")
    made = f"{setting}={protocol}"
    name = _OTLP_BY_PROTOCOL.get(protocol)
    if name is None:
        raise ValueError(f"{made}: threadline supports {' and '.join(_OTLP_BY_PROTOCOL)}")
    if protocol == "grpc" and setting == OTEL_EXPORTER_OTLP_PROTOCOL and _distro_default():
        try:
            return name, _load_exporter(name, made)
        except ValueError as exc:
            _logger.warning("%s; sending spans over http/protobuf instead", exc)
            return http, _load_exporter(http, made)
    return name, _load_exporter(name, made)


def _distro_default() -> bool:
    # opentelemetry-distro sets OTEL_EXPORTER_OTLP_PROTOCOL=grpc with
    # os.environ.setdefault: under it, the value may be no choice of the user's.
    return "opentelemetry.distro" in sys.modules


def _load_exporter(name: str, made: str) -> SpanExporter:
    """The exporter the entry point *name* names; a ValueError naming *made*, the setting."""
    found = entry_points(group=_EXPORTER_GROUP, name=name)
    if not found:
        known = sorted({"file", "none", "otlp", *entry_points(group=_EXPORTER_GROUP).names})
        raise ValueError(
            f"{made}: no span exporter {name!r} is installed; OTEL_TRACES_EXPORTER "
            f"may name {', '.join(known)}"
        )
    try:
        exporter = next(iter(found)).load()()
    except ImportError as exc:
        hint = _PIP_HINT.get(name, f"install the package of the exporter {name!r}")
        raise ValueError(f"{made} needs a package that is missing ({exc}): {hint}") from None
    if not isinstance(exporter, SpanExporter):
        raise ValueError(f"{made}: the exporter {name!r} is no span exporter")  # noqa: TRY004
    return exporter
