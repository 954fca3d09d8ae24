"""threadline: one request context across every boundary, as one OpenTelemetry trace.

Importing threadline loads nothing else (no OpenTelemetry, not even ``typing``):
each public name loads what it needs on first use, ``request`` and the
snapshots ``opentelemetry.context``, the carrier ``opentelemetry.trace``.
"""

# General layout (docs/architecture.md says more). The private layers are
# folders, bottom up; a module imports only from its own layer or those below:
#
# _core/       the one touch point with OpenTelemetry's context, stores, snapshots,
#              settings (read once), text escaping, drop counters, lifecycle hooks
# _wire/       the strict W3C codecs, the carrier, the environment carrier, formats
# _telemetry/  the one boundary-span helper, the SDK pipeline, exporters, export process
# _boundary/   threads, worker processes, subprocesses: capture, hand off, restore
# _http/       the HTTP exchange core that every server and client adapter is over
# _messaging/  the publish/consume core that every broker adapter is over
# _patching/   one registry of reversible patches (instrument(), the loss detector)
#
# Above them, the public modules: this package, threads, processes, subprocess,
# aiohttp/, celery, logging, tracing, export, propagation, diagnostics, hooks,
# lost, cli/ (each command loaded only when used), and the pytest plugin.

from __future__ import annotations

import os as _os

# Every public name loads on first use (PEP 562 below): `import threadline` itself
# imports no OpenTelemetry and not `typing` (TYPE_CHECKING spelled out, as mypy reads it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._boundary.processes import ProcessPoolExecutor as ProcessPoolExecutor
    from ._core.snapshot import Snapshot as Snapshot
    from ._core.snapshot import bind as bind
    from ._core.snapshot import snapshot as snapshot
    from ._core.stores import ContextStore as ContextStore
    from ._core.stores import Scope as Scope
    from ._core.stores import request as request
    from ._core.values import FrozenMapping as FrozenMapping
    from ._patching.stdlib import instrument as instrument
    from ._patching.stdlib import uninstrument as uninstrument
    from ._wire.carrier import extract as extract
    from ._wire.carrier import inject as inject
    from ._wire.environment import extract_env as extract_env
    from ._wire.environment import inject_env as inject_env
    from .threads import Thread as Thread
    from .threads import ThreadPoolExecutor as ThreadPoolExecutor
    from .threads import run_in_executor as run_in_executor
del TYPE_CHECKING

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
    "ContextStore": "._core.stores",
    "FrozenMapping": "._core.values",
    "Scope": "._core.stores",
    "Snapshot": "._core.snapshot",
    "bind": "._core.snapshot",
    "request": "._core.stores",
    "snapshot": "._core.snapshot",
    "extract": "._wire.carrier",
    "extract_env": "._wire.environment",
    "inject": "._wire.carrier",
    "inject_env": "._wire.environment",
    "instrument": "._patching.stdlib",
    "uninstrument": "._patching.stdlib",
    "ProcessPoolExecutor": "._boundary.processes",
    "Thread": ".threads",
    "ThreadPoolExecutor": ".threads",
    "run_in_executor": ".threads",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'threadline' has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415 - only when a name is first used

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# THREADLINE_LIVE (threadline.live): the view of this process's requests, from the first import.
# One environment lookup otherwise (the name is _core.settings.LIVE_ENV, spelled out: importing
# the settings here would cost every import); the live module loads only when it is set.
if _os.environ.get("THREADLINE_LIVE"):
    from .live import _from_environment

    _from_environment()
