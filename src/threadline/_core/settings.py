"""Every environment variable threadline reads: each named once, all read by `read_settings`.

`read_settings` reads them into one frozen `Settings`, validated, before
anything is set up. One rule holds for every variable, OpenTelemetry's own
for its settings: a value that is not valid is a warning on the
``threadline`` logger naming the variable and the value
(``THREADLINE_SHUTDOWN_TIMEOUT='5s' is not a valid number of seconds; using
the default 5``), and the documented default serves instead. A setting never
stops the application from starting. An empty value is an unset one. (An
argument given in code is another matter: a wrong one is the programmer's
mistake, and `threadline.tracing.configure` raises for it.)

Nothing here writes to ``os.environ``. What the processes threadline starts
need in order to set themselves up like this one is handed to them
explicitly: `for_workers` (pool workers and ``Process`` children),
`configured_marks` (the environment of Python children and of the export
process).

The one-line ``threadline-bootstrap.pth`` hook spells `BOOTSTRAP_ENV` out
itself: a ``.pth`` line cannot import.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BOOTSTRAP_ENV",
    "CHILD_EXIT_TIMEOUT_ENV",
    "CONFIGURED_ENV",
    "DEFAULT_CHILD_EXIT_TIMEOUT",
    "DEFAULT_OTLP_PROTOCOL",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TRACES_FILE",
    "EXCEPTION_SIGNALS",
    "EXPORT_PROCESS_ENV",
    "LIVE_ENV",
    "LOG_ATTRIBUTES_ENV",
    "METRIC_ATTRIBUTES_ENV",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_LOGS_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_PROPAGATORS",
    "OTEL_PYTHON_TRACER_PROVIDER",
    "OTEL_SDK_DISABLED",
    "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN",
    "OTEL_TRACES_EXPORTER",
    "OTLP_PROTOCOLS",
    "SERVICE_NAME_ENV",
    "SHUTDOWN_TIMEOUT_ENV",
    "SPAN_ATTRIBUTES_ENV",
    "TRACES_FILE_ENV",
    "Settings",
    "attribute_map_text",
    "configured_marks",
    "for_workers",
    "invalid_setting",
    "is_loopback",
    "mark_configured",
    "parse_address",
    "read_settings",
    "valid_seconds",
]

# --------------------------------------------------------------------------- threadline's own

BOOTSTRAP_ENV = "THREADLINE_BOOTSTRAP"
"""Set to ``1`` in a child's environment, threadline's ``.pth`` hook restores the context
in that Python child at startup (logs get the request's ids, spans join its trace). Read by
the ``.pth`` line itself: any value but empty and ``0`` is on."""

CONFIGURED_ENV = "THREADLINE_CONFIGURED"
"""``1`` in the environment threadline gives a worker or Python child of a process that set
tracing up with `threadline.tracing.configure`: the child sets itself up alike. Never written
into the parent's own environment. Boolean (``1``/``true``, ``0``/``false``); default off."""

SERVICE_NAME_ENV = "THREADLINE_SERVICE_NAME"
"""The service name the parent gave `threadline.tracing.configure` in code, handed to the
workers and children that set themselves up like it (``OTEL_SERVICE_NAME`` still wins)."""

EXPORT_PROCESS_ENV = "THREADLINE_EXPORT_PROCESS"
"""``1``: `threadline.tracing.configure` runs the exporters in a process of their own.
Boolean (``1``/``true``, ``0``/``false``); default off."""

TRACES_FILE_ENV = "THREADLINE_TRACES_FILE"
"""Where the embedded default (the ``file`` exporter) writes spans, as OTLP JSON lines;
default `DEFAULT_TRACES_FILE`. Children are handed the absolute path, so all write one file."""

DEFAULT_TRACES_FILE = "threadline-traces.jsonl"

SHUTDOWN_TIMEOUT_ENV = "THREADLINE_SHUTDOWN_TIMEOUT"
"""Seconds (finite, not negative) a process's exit waits at most for its spans to be
exported; default `DEFAULT_SHUTDOWN_TIMEOUT`."""

DEFAULT_SHUTDOWN_TIMEOUT = 5.0

CHILD_EXIT_TIMEOUT_ENV = "THREADLINE_CHILD_EXIT_TIMEOUT"
"""Seconds (finite, not negative) the exit of a worker process or Python child that threadline
set up waits at most for its spans to be exported (default `DEFAULT_CHILD_EXIT_TIMEOUT`): such
a process is often started inside a request, which must not wait for an unreachable Collector."""

DEFAULT_CHILD_EXIT_TIMEOUT = 0.5

SPAN_ATTRIBUTES_ENV = "THREADLINE_SPAN_ATTRIBUTES"
"""Which `threadline.request` keys `threadline.tracing.configure` puts on spans, under which
attribute names: ``key=name`` pairs, comma-separated (``request_id=request.id,tenant=tenant.id``),
or ``none``. Default: ``request_id=request.id,user_id=enduser.id``. Handed to workers and children
when ``configure(span_attributes=...)`` chose them in code."""

LOG_ATTRIBUTES_ENV = "THREADLINE_LOG_ATTRIBUTES"
"""As `SPAN_ATTRIBUTES_ENV`, for the log records of the logs pipeline; default: the span's."""

METRIC_ATTRIBUTES_ENV = "THREADLINE_METRIC_ATTRIBUTES"
"""As `SPAN_ATTRIBUTES_ENV`, for the data points of the metrics pipeline; default ``none``: a
value per request (its id) on a data point makes a time series per request."""

LIVE_ENV = "THREADLINE_LIVE"
"""``HOST:PORT`` (a loopback address: ``127.0.0.1:8123``, ``[::1]:0``, ``localhost:8123``):
the process serves `threadline.live`'s view of its requests there from the first
``import threadline``. Unset: off. Any other value (a remote address too: only code can allow
one) is a warning and off. Not handed to workers: one process serves the view."""

# --------------------------------------------------------------------------- OpenTelemetry's
# Named as OpenTelemetry's SDK names them (opentelemetry.sdk.environment_variables), which
# this module cannot import: reading settings must not load the SDK.

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""``true``: `threadline.tracing.configure` sets nothing up. ``true`` or ``false``, as
OpenTelemetry reads it; default ``false``."""

OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
"""Comma-separated exporter names: ``otlp``, ``file``, ``none`` or any installed
``opentelemetry_traces_exporter`` entry point. Default: ``otlp`` when an OTLP endpoint is set,
else ``file``. Checked against what is installed where the exporters are made."""

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""Where OTLP goes; read by OpenTelemetry's exporters. Here: set, it makes ``otlp`` the default."""

OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""As `OTEL_EXPORTER_OTLP_ENDPOINT`, for traces only."""

OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""What ``otlp`` speaks: one of `OTLP_PROTOCOLS`; default `DEFAULT_OTLP_PROTOCOL`."""

OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
"""As `OTEL_EXPORTER_OTLP_PROTOCOL`, for traces only, and read first."""

OTEL_LOGS_EXPORTER = "OTEL_LOGS_EXPORTER"
"""Comma-separated log record exporter names: ``otlp``, ``console``, ``none`` or any installed
``opentelemetry_logs_exporter`` entry point. Unset (or ``none``): no logs pipeline is set up.
Checked against what is installed where the exporters are made."""

OTEL_EXPORTER_OTLP_LOGS_PROTOCOL = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
"""As `OTEL_EXPORTER_OTLP_PROTOCOL`, for logs only, and read first."""

OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""Comma-separated metric exporter names: ``otlp``, ``console``, ``none`` or any installed
``opentelemetry_metrics_exporter`` entry point (a push exporter or a pull reader). Unset (or
``none``): no metrics pipeline is set up. Checked against what is installed where they are made."""

OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
"""As `OTEL_EXPORTER_OTLP_PROTOCOL`, for metrics only, and read first."""

OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN = "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN"
"""Where threadline records an exception that fails a span, as the semantic conventions for
exceptions name it: ``logs`` (a log record), ``logs/dup`` (a log record and a span event);
unset, an event on the span."""

EXCEPTION_SIGNALS = ("spans", "logs", "logs/dup")
"""What `Settings.exception_signal` may be: ``spans`` is the default, the others opt in."""

OTLP_PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_OTLP_PROTOCOL = "http/protobuf"
"""The specification's recommended default, and the exporter threadline depends on."""

OTEL_PROPAGATORS = "OTEL_PROPAGATORS"
"""The propagators; read by OpenTelemetry. Here: set, threadline consults the global one."""

OTEL_PYTHON_TRACER_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER"
"""A tracer provider to load by name; read by OpenTelemetry. Here: set, one may be set."""

_READ = (
    CONFIGURED_ENV,
    SERVICE_NAME_ENV,
    EXPORT_PROCESS_ENV,
    TRACES_FILE_ENV,
    SHUTDOWN_TIMEOUT_ENV,
    CHILD_EXIT_TIMEOUT_ENV,
    SPAN_ATTRIBUTES_ENV,
    LOG_ATTRIBUTES_ENV,
    METRIC_ATTRIBUTES_ENV,
    LIVE_ENV,
    OTEL_SDK_DISABLED,
    OTEL_TRACES_EXPORTER,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_PROPAGATORS,
    OTEL_PYTHON_TRACER_PROVIDER,
    OTEL_LOGS_EXPORTER,
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_METRICS_EXPORTER,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN,
)
"""Every variable `read_settings` reads."""

_HANDED_ON = ("OTEL_", "THREADLINE_")
"""The settings a worker takes from its parent: these prefixes."""

_logger = logging.getLogger("threadline")


@dataclass(frozen=True)
class Settings:
    """What the environment asks of threadline, validated: `read_settings` makes it.

    Each field is one variable's value, or its default when it is unset,
    empty or not valid.
    """

    parent_configured: bool = False
    """`CONFIGURED_ENV`: the parent set tracing up with threadline; set up alike."""
    service_name: str | None = None
    """`SERVICE_NAME_ENV`: the service name the parent gave in code, or None."""
    export_process: bool = False
    """`EXPORT_PROCESS_ENV`: export from a process of its own."""
    traces_file: str = DEFAULT_TRACES_FILE
    """`TRACES_FILE_ENV`: where the ``file`` exporter writes (relative to the working folder)."""
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    """`SHUTDOWN_TIMEOUT_ENV`: the bound of the exit export, in seconds."""
    child_exit_timeout: float = DEFAULT_CHILD_EXIT_TIMEOUT
    """`CHILD_EXIT_TIMEOUT_ENV`: the bound of a worker's or child's exit export, in seconds."""
    span_attributes: tuple[tuple[str, str], ...] | None = None
    """`SPAN_ATTRIBUTES_ENV`: ``(store key, attribute name)`` pairs; None: the default."""
    log_attributes: tuple[tuple[str, str], ...] | None = None
    """`LOG_ATTRIBUTES_ENV`: as `span_attributes`, for log records; None: the spans' choice."""
    metric_attributes: tuple[tuple[str, str], ...] | None = None
    """`METRIC_ATTRIBUTES_ENV`: as `span_attributes`, for metric data points; None: none."""
    sdk_disabled: bool = False
    """`OTEL_SDK_DISABLED`: set nothing up."""
    traces_exporters: tuple[str, ...] = ()
    """`OTEL_TRACES_EXPORTER`'s names, lower-cased; empty when it is unset."""
    otlp_endpoint_set: bool = False
    """`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""
    otlp_protocol: str = DEFAULT_OTLP_PROTOCOL
    """What ``otlp`` speaks: the per-signal setting, else the general one, else the default."""
    otlp_protocol_setting: str | None = None
    """The variable that chose `otlp_protocol`; None when it is the default."""
    propagators_set: bool = False
    """`OTEL_PROPAGATORS` is set."""
    tracer_provider_named: bool = False
    """`OTEL_PYTHON_TRACER_PROVIDER` is set."""
    logs_exporters: tuple[str, ...] = ()
    """`OTEL_LOGS_EXPORTER`'s names, lower-cased, ``none`` left out; empty: no logs pipeline."""
    otlp_logs_protocol: str = DEFAULT_OTLP_PROTOCOL
    """What ``otlp`` speaks for logs: the per-signal setting, else the general one, else the
    default."""
    otlp_logs_protocol_setting: str | None = None
    """The variable that chose `otlp_logs_protocol`; None when it is the default."""
    metrics_exporters: tuple[str, ...] = ()
    """`OTEL_METRICS_EXPORTER`'s names, lower-cased, ``none`` left out; empty: no metrics
    pipeline."""
    otlp_metrics_protocol: str = DEFAULT_OTLP_PROTOCOL
    """What ``otlp`` speaks for metrics, chosen as `otlp_logs_protocol` is."""
    otlp_metrics_protocol_setting: str | None = None
    """The variable that chose `otlp_metrics_protocol`; None when it is the default."""
    exception_signal: str = "spans"
    """`OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN`: one of `EXCEPTION_SIGNALS`."""
    live_address: tuple[str, int] | None = None
    """`LIVE_ENV`: the loopback ``(host, port)`` the live view serves on, or None (off)."""

    @property
    def default_traces_exporter(self) -> str:
        """What an unset (or not valid) `OTEL_TRACES_EXPORTER` means: ``otlp`` or ``file``."""
        return "otlp" if self.otlp_endpoint_set else "file"

    @property
    def exporter_names(self) -> tuple[str, ...]:
        """The exporters to make: `traces_exporters`, else `default_traces_exporter`."""
        return self.traces_exporters or (self.default_traces_exporter,)


_last: tuple[tuple[str | None, ...], Settings] | None = None


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Return the settings in *environ* (default: this process's environment), validated.

    Never raises for what the environment holds: each value that is not
    valid is said in a warning naming the variable and the value, and its
    default is used. This process's environment is parsed once for as long
    as the variables read keep their values, so its warnings come once.
    """
    global _last  # noqa: PLW0603 - a one-entry cache, keyed by the values read
    if environ is not None:
        return _parse(environ)
    key = tuple(map(os.environ.get, _READ))
    last = _last
    if last is not None and last[0] == key:
        return last[1]
    settings = _parse(os.environ)
    _last = (key, settings)
    return settings


def _parse(env: Mapping[str, str]) -> Settings:
    general = _protocol(env, OTEL_EXPORTER_OTLP_PROTOCOL, repr(DEFAULT_OTLP_PROTOCOL))
    protocol, protocol_setting = _otlp_protocol(env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, general)
    logs_protocol, logs_protocol_setting = _otlp_protocol(
        env, OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, general
    )
    metrics_protocol, metrics_protocol_setting = _otlp_protocol(
        env, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, general
    )
    return Settings(
        parent_configured=_flag(env, CONFIGURED_ENV),
        service_name=_text(env, SERVICE_NAME_ENV),
        export_process=_flag(env, EXPORT_PROCESS_ENV),
        traces_file=_text(env, TRACES_FILE_ENV) or DEFAULT_TRACES_FILE,
        shutdown_timeout=_seconds(env, SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT),
        child_exit_timeout=_seconds(env, CHILD_EXIT_TIMEOUT_ENV, DEFAULT_CHILD_EXIT_TIMEOUT),
        span_attributes=_attribute_map(env, SPAN_ATTRIBUTES_ENV),
        log_attributes=_attribute_map(env, LOG_ATTRIBUTES_ENV),
        metric_attributes=_attribute_map(env, METRIC_ATTRIBUTES_ENV),
        sdk_disabled=_flag(env, OTEL_SDK_DISABLED, numbers=False),
        traces_exporters=_names(env, OTEL_TRACES_EXPORTER),
        otlp_endpoint_set=bool(
            _text(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
            or _text(env, OTEL_EXPORTER_OTLP_ENDPOINT)
        ),
        otlp_protocol=protocol,
        otlp_protocol_setting=protocol_setting,
        propagators_set=_text(env, OTEL_PROPAGATORS) is not None,
        tracer_provider_named=_text(env, OTEL_PYTHON_TRACER_PROVIDER) is not None,
        logs_exporters=tuple(n for n in _names(env, OTEL_LOGS_EXPORTER) if n != "none"),
        otlp_logs_protocol=logs_protocol,
        otlp_logs_protocol_setting=logs_protocol_setting,
        metrics_exporters=tuple(n for n in _names(env, OTEL_METRICS_EXPORTER) if n != "none"),
        otlp_metrics_protocol=metrics_protocol,
        otlp_metrics_protocol_setting=metrics_protocol_setting,
        exception_signal=_exception_signal(env),
        live_address=_live_address(env),
    )


def invalid_setting(variable: str, value: str, what: str, default: str) -> None:
    """Say that *value* of *variable* is not a valid *what*, and that *default* serves instead.

    The rule for every setting; *default* is as it should be shown (``5``,
    ``'file'``). The value is shown with `repr`, control characters escaped.
    """
    _logger.warning("%s=%r is not a valid %s; using the default %s", variable, value, what, default)


def valid_seconds(value: float) -> bool:
    """Whether *value* is a number of seconds a wait can take: finite and not negative."""
    return math.isfinite(value) and value >= 0


def _text(env: Mapping[str, str], variable: str) -> str | None:
    value = env.get(variable, "").strip()
    return value or None


_TRUE = {"true": True, "false": False}
_TRUE_OR_NUMBER = {**_TRUE, "1": True, "0": False}


def _flag(env: Mapping[str, str], variable: str, *, numbers: bool = True) -> bool:
    # OTEL_* booleans are spelled as OpenTelemetry reads them: true or false.
    value = _text(env, variable)
    if value is None:
        return False
    spellings = _TRUE_OR_NUMBER if numbers else _TRUE
    flag = spellings.get(value.lower())
    if flag is None:
        what = "boolean (1, true, 0 or false)" if numbers else "boolean (true or false)"
        invalid_setting(variable, env[variable], what, "false")
        return False
    return flag


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    value = _text(env, variable)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not valid_seconds(seconds):
        invalid_setting(variable, env[variable], "number of seconds", f"{default:g}")
        return default
    return seconds


def _names(env: Mapping[str, str], variable: str) -> tuple[str, ...]:
    value = _text(env, variable)
    if value is None:
        return ()
    return tuple(name.strip().lower() for name in value.split(",") if name.strip())


def _attribute_map(env: Mapping[str, str], variable: str) -> tuple[tuple[str, str], ...] | None:
    value = _text(env, variable)
    if value is None:
        return None
    if value.lower() == "none":
        return ()
    pairs = []
    for item in value.split(","):
        key, equals, name = (part.strip() for part in item.partition("="))
        if not (key and equals and name) or not (key + name).isprintable():
            invalid_setting(variable, env[variable], "list of key=attribute pairs", "(default)")
            return None
        pairs.append((key, name))
    return tuple(pairs)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) as ``(host, port)``; a ValueError saying why not."""
    host, colon, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (colon and host and port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8123, [::1]:0)")
    if not host.isprintable() or any(char in host for char in " /[]@"):
        raise ValueError(f"{text!r} has no valid host")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether *host* is ``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    import ipaddress  # noqa: PLC0415 - only where an address is checked

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _live_address(env: Mapping[str, str]) -> tuple[str, int] | None:
    value = _text(env, LIVE_ENV)
    if value is None:
        return None
    try:
        host, port = parse_address(value)
    except ValueError:
        host, port = "", 0
    if not is_loopback(host):
        invalid_setting(LIVE_ENV, env[LIVE_ENV], "loopback HOST:PORT", "(off)")
        return None
    return host, port


def attribute_map_text(pairs: Mapping[str, str]) -> str:
    """The text of `SPAN_ATTRIBUTES_ENV` that says *pairs* (store key to attribute name)."""
    return ",".join(f"{key}={name}" for key, name in pairs.items()) or "none"


def _exception_signal(env: Mapping[str, str]) -> str:
    value = _text(env, OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN)
    if value is None:
        return "spans"
    if value.lower() in EXCEPTION_SIGNALS[1:]:
        return value.lower()
    invalid_setting(
        OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN,
        env[OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN],
        "exception signal (logs or logs/dup)",
        "(span events)",
    )
    return "spans"


def _otlp_protocol(
    env: Mapping[str, str], per_signal: str, general: str | None
) -> tuple[str, str | None]:
    # As OpenTelemetry's own set-up: the per-signal setting first, then the general one.
    fallback = (
        repr(DEFAULT_OTLP_PROTOCOL)
        if general is None
        else f"{general!r} (from {OTEL_EXPORTER_OTLP_PROTOCOL})"
    )
    signal = _protocol(env, per_signal, fallback)
    if signal is not None:
        return signal, per_signal
    if general is not None:
        return general, OTEL_EXPORTER_OTLP_PROTOCOL
    return DEFAULT_OTLP_PROTOCOL, None


def _protocol(env: Mapping[str, str], variable: str, default: str) -> str | None:
    value = _text(env, variable)
    if value is None or value in OTLP_PROTOCOLS:
        return value
    invalid_setting(
        variable, env[variable], f"OTLP protocol ({' or '.join(OTLP_PROTOCOLS)})", default
    )
    return None


# --------------------------------------------------------------------------- handed on

_marks: dict[str, str] = {}


def mark_configured(marks: Mapping[str, str]) -> None:
    """Remember what this process's `threadline.tracing.configure` decided, for its children.

    *marks* are variables (`CONFIGURED_ENV`, `SERVICE_NAME_ENV`, the absolute
    `TRACES_FILE_ENV`) that the processes threadline starts get in their
    environment, never written into this process's own.
    """
    _marks.clear()
    _marks.update(marks)


def configured_marks() -> dict[str, str]:
    """The variables `mark_configured` recorded; empty until this process configured tracing."""
    return dict(_marks)


def for_workers() -> dict[str, str]:
    """What a worker process adopts: this process's ``OTEL_*`` and ``THREADLINE_*`` settings.

    With `configured_marks` over them, so that a worker sets itself up as
    this process did, whatever environment it was started with (a forkserver
    may have started before the set-up).
    """
    found = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(_HANDED_ON) and name != LIVE_ENV
    }
    found.update(_marks)
    return found
