"""threadline: one request context across every boundary, as one OpenTelemetry trace.

Importing threadline loads only ``opentelemetry.context``; the names that need
more of OpenTelemetry load on first use.
"""

# General layout (docs/architecture.md says more). Layers, bottom up; a module
# imports only from the layers below it:
#
# core        _context.py    the one touch point with OpenTelemetry's runtime context
#             _settings.py   every THREADLINE_* environment name
#             _values.py     FrozenMapping, the immutable store values
#             _hooks.py      lifecycle hooks' runtime: the one flag every boundary reads
#             _store.py      ContextStore and Scope: named values inside the context
#             _snapshot.py   snapshot() and bind(): the whole context, frozen
# wire        _tracecontext.py, _baggage.py   strict W3C codecs and their limits
#             _carrier.py    inject/extract: the one carrier, as text fields
#             _formats.py    the formats configured for HTTP and the environment
#             _env_carrier.py  the carrier in environment variables (any propagator)
#             _propagator.py the carrier as an OpenTelemetry TextMapPropagator
#             propagation.py the propagator and the environment getter/setter, public
#             diagnostics.py counters and warnings for what was dropped
# spans       _spans.py      the one helper that starts a boundary span
#             tracing.py     SDK set-up from OTEL_*, store values on spans
#             export.py      the embedded default exporter (OTLP JSON lines)
# boundaries  _threads.py                    threads and thread pools
#             _processes.py -> processes.py  worker processes (parent side)
#             _far_side.py                   what runs on the far side of a process
#             _subprocess.py -> subprocess.py  children, context in their environment
#             ../_threadline_bootstrap.py    the Python child's automatic bootstrap
#             _http.py                       HTTP that is not framework-specific
#             aiohttp/                       server.py, client.py over _http
# tools       logging.py, hooks.py (lifecycle hooks), lost.py (the loss detector),
#             cli/ (threadline run, demo, view, doctor; each loaded only when used)
#             _instrument.py   instrument(): the standard library's hand-offs patched
#             _instrumentor.py the same as an OpenTelemetry instrumentor (entry point)
#             _pytest_plugin.py  the pytest plugin (entry point): spans and lost-context checks

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._snapshot import Snapshot as Snapshot
from ._snapshot import bind as bind
from ._snapshot import snapshot as snapshot
from ._store import ContextStore as ContextStore
from ._store import Scope as Scope
from ._store import request as request
from ._values import FrozenMapping as FrozenMapping

if TYPE_CHECKING:
    from ._carrier import extract as extract
    from ._carrier import inject as inject
    from ._env_carrier import extract_env as extract_env
    from ._env_carrier import inject_env as inject_env
    from ._instrument import instrument as instrument
    from ._instrument import uninstrument as uninstrument
    from ._processes import ProcessPoolExecutor as ProcessPoolExecutor
    from ._threads import Thread as Thread
    from ._threads import ThreadPoolExecutor as ThreadPoolExecutor
    from ._threads import run_in_executor as run_in_executor

__version__ = "0.1.0.dev0"

__all__ = [
    "ContextStore",
    "FrozenMapping",
    "ProcessPoolExecutor",
    "Scope",
    "Snapshot",
    "Thread",
    "ThreadPoolExecutor",
    "bind",
    "extract",
    "extract_env",
    "inject",
    "inject_env",
    "instrument",
    "request",
    "run_in_executor",
    "snapshot",
    "uninstrument",
]

_LAZY = {
    "extract": "._carrier",
    "extract_env": "._env_carrier",
    "inject": "._carrier",
    "inject_env": "._env_carrier",
    "instrument": "._instrument",
    "uninstrument": "._instrument",
    "ProcessPoolExecutor": "._processes",
    "Thread": "._threads",
    "ThreadPoolExecutor": "._threads",
    "run_in_executor": "._threads",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'threadline' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
