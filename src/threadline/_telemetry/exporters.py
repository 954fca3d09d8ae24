"""The span exporters ``OTEL_TRACES_EXPORTER`` names, made as OpenTelemetry's own set-up makes them.

`configured_exporters` makes the ones the settings name, for
`threadline.tracing.configure`: a name that cannot be made is a setting that
is not valid, said and replaced by the default as every setting is
(`threadline._core.settings`). `new_exporter` makes one exporter by the name
`configured_exporters` gave it, in the export process (`export_child`), which
reads no setting.
`export_to_each` and `flush_each` run several as one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._core.settings import (
    DEFAULT_OTLP_PROTOCOL,
    OTEL_TRACES_EXPORTER,
    Settings,
    invalid_setting,
)

__all__ = [
    "configured_exporters",
    "export_to_each",
    "flush_each",
    "new_exporter",
    "traces_file",
]

_EXPORTER_GROUP = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_PIP_HINT = {"otlp_proto_grpc": "pip install 'threadline[grpc]'"}
_logger = logging.getLogger("threadline")


def configured_exporters(settings: Settings) -> list[tuple[str, SpanExporter | None]]:
    """Make the exporters *settings* name; each with the name that makes the same one anywhere.

    That name is the one given, except for ``otlp``: the entry point its
    protocol chose, so that the export process makes the same exporter
    without deciding again. ``none`` makes None. An ``OTEL_TRACES_EXPORTER``
    naming an exporter that cannot be made (not installed, its package
    missing) is said in a warning naming it, and its default serves instead;
    so is an OTLP protocol whose exporter cannot be made. Never raises for a
    setting.
    """
    made: list[tuple[str, SpanExporter | None]] = []
    try:
        for name in settings.exporter_names:
            made.append(_made(name, settings))  # noqa: PERF401 - the ones made are shut on failure
    except ValueError as exc:
        if not settings.traces_exporters:
            raise  # the default itself: an installation without threadline's dependencies
        for _, exporter in made:
            if exporter is not None:
                with contextlib.suppress(Exception):
                    exporter.shutdown()
        default = settings.default_traces_exporter
        setting = ",".join(settings.traces_exporters)
        invalid_setting(OTEL_TRACES_EXPORTER, setting, f"exporter list ({exc})", repr(default))
        made = [_made(default, settings)]
    return made


def new_exporter(name: str, traces_file: Path) -> SpanExporter | None:
    """Make the exporter *name*, as `configured_exporters` named it (None for ``none``).

    ``file`` writes to *traces_file*. Reads no setting: what it needs is given.

    Raises:
        ValueError: no exporter *name* can be made here; the message says why.
    """
    if name == "none":
        return None
    if name == "file":
        from .file_exporter import OTLPJsonFileSpanExporter  # noqa: PLC0415

        return OTLPJsonFileSpanExporter(traces_file)
    return _load_exporter(name)


def traces_file(settings: Settings) -> Path:
    """The absolute path of the file the ``file`` exporter writes, from this working folder."""
    return Path(settings.traces_file).resolve()


def _made(name: str, settings: Settings) -> tuple[str, SpanExporter | None]:
    if name == "otlp":
        return _otlp_exporter(settings)
    return name, new_exporter(name, traces_file(settings))


def _otlp_exporter(settings: Settings) -> tuple[str, SpanExporter]:
    # As the SDK's own auto-configuration: the per-signal setting first. The
    # default differs: http/protobuf, the exporter threadline depends on.
    name = _OTLP_BY_PROTOCOL[settings.otlp_protocol]
    default = _OTLP_BY_PROTOCOL[DEFAULT_OTLP_PROTOCOL]
    if settings.otlp_protocol_setting is None or name == default:
        return name, _load_exporter(name)
    try:
        return name, _load_exporter(name)
    except ValueError as exc:
        # opentelemetry-distro sets OTEL_EXPORTER_OTLP_PROTOCOL=grpc as a default, a
        # choice the user may never have made: one more reason never to fail here.
        what = f"OTLP protocol here ({exc})"
        invalid_setting(
            settings.otlp_protocol_setting,
            settings.otlp_protocol,
            what,
            repr(DEFAULT_OTLP_PROTOCOL),
        )
        return default, _load_exporter(default)


def _load_exporter(name: str) -> SpanExporter:
    """The span exporter the entry point *name* names; a ValueError saying why it cannot be made."""
    return load_plugin(
        _EXPORTER_GROUP,
        name,
        SpanExporter,
        what="span exporter",
        setting=OTEL_TRACES_EXPORTER,
        builtin=("file", "none", "otlp"),
        hint=_PIP_HINT.get(name),
    )


T = TypeVar("T")


def load_plugin(
    group: str,
    name: str,
    kind: type[T],
    *,
    what: str,
    setting: str,
    builtin: Sequence[str],
    hint: str | None = None,
) -> T:
    """Make the *kind* the entry point *name* of *group* names (an exporter: OTel's plug-ins).

    Raises:
        ValueError: none is installed (the message lists what *setting* may
            name), its package is missing (with *hint*), it fails to start, or
            it makes no *kind*.
    """
    found = entry_points(group=group, name=name)
    if not found:
        known = sorted({*builtin, *entry_points(group=group).names})
        raise ValueError(f"no {what} {name!r} is installed; {setting} may name {', '.join(known)}")
    try:
        made = next(iter(found)).load()()
    except ImportError as exc:
        fix = hint or f"install the package of the exporter {name!r}"
        raise ValueError(
            f"the exporter {name!r} needs a package that is missing ({exc}): {fix}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a plug-in that cannot start must not stop the application
        raise ValueError(
            f"the exporter {name!r} could not be made ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(made, kind):
        raise ValueError(f"the exporter {name!r} is no {what}")  # noqa: TRY004
    return made


def export_to_each(
    exporters: Sequence[SpanExporter], spans: Sequence[ReadableSpan]
) -> SpanExportResult:
    """Export *spans* with each exporter; SUCCESS when every one took them (none raises)."""
    results = [_exported(exporter, spans) for exporter in exporters]
    return SpanExportResult.SUCCESS if all(results) else SpanExportResult.FAILURE


def _exported(exporter: SpanExporter, spans: Sequence[ReadableSpan]) -> bool:
    try:
        return exporter.export(spans) is SpanExportResult.SUCCESS
    except Exception:  # reported as a failed export, as in-process
        _logger.exception("exporting spans with %s failed", type(exporter).__name__)
        return False


def flush_each(exporters: Sequence[SpanExporter], timeout_millis: int) -> bool:
    """Flush each exporter; True when every one did (none raises)."""
    results = [_flushed(exporter, timeout_millis) for exporter in exporters]
    return all(results)


def _flushed(exporter: SpanExporter, timeout_millis: int) -> bool:
    try:
        return bool(exporter.force_flush(timeout_millis))
    except Exception:
        _logger.exception("flushing %s failed", type(exporter).__name__)
        return False
