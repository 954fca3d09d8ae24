"""Every ``THREADLINE_*`` environment variable, named once.

OpenTelemetry's own ``OTEL_*`` settings are read where they apply; these are
threadline's additions. (The one-line ``threadline-bootstrap.pth`` hook spells
`BOOTSTRAP_ENV` out itself: a ``.pth`` line cannot import.)
"""

from __future__ import annotations

__all__ = [
    "BOOTSTRAP_ENV",
    "CHILD_EXIT_TIMEOUT_ENV",
    "CONFIGURED_ENV",
    "DEFAULT_CHILD_EXIT_TIMEOUT",
    "DEFAULT_TRACES_FILE",
    "EXPORT_PROCESS_ENV",
    "SERVICE_NAME_ENV",
    "SHUTDOWN_TIMEOUT_ENV",
    "TRACES_FILE_ENV",
]

BOOTSTRAP_ENV = "THREADLINE_BOOTSTRAP"
"""Set to ``1`` in a child's environment, threadline's ``.pth`` hook restores the context
in that Python child at startup (logs get the request's ids, spans join its trace)."""

CONFIGURED_ENV = "THREADLINE_CONFIGURED"
"""Set by `threadline.tracing.configure`, so worker processes and children configure alike."""

SERVICE_NAME_ENV = "THREADLINE_SERVICE_NAME"
"""The service name the parent gave `threadline.tracing.configure` in code: the default of the
workers and children that configure themselves like it (``OTEL_SERVICE_NAME`` still wins)."""

EXPORT_PROCESS_ENV = "THREADLINE_EXPORT_PROCESS"
"""``1``: `threadline.tracing.configure` exports from a process of its own (`export_process`)."""

TRACES_FILE_ENV = "THREADLINE_TRACES_FILE"
"""Where the embedded default writes spans (OTLP JSON lines); default `DEFAULT_TRACES_FILE`."""

DEFAULT_TRACES_FILE = "threadline-traces.jsonl"

SHUTDOWN_TIMEOUT_ENV = "THREADLINE_SHUTDOWN_TIMEOUT"
"""Seconds a process's exit waits at most for its spans to be exported (default 5)."""

CHILD_EXIT_TIMEOUT_ENV = "THREADLINE_CHILD_EXIT_TIMEOUT"
"""Seconds the exit of a worker process or Python child that threadline set up waits at most
for its spans to be exported (default `DEFAULT_CHILD_EXIT_TIMEOUT`): such a process is often
started inside a request, which must not wait for an unreachable Collector."""

DEFAULT_CHILD_EXIT_TIMEOUT = 0.5
