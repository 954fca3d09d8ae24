"""threadline: one request context across every boundary, as one OpenTelemetry trace.

Importing threadline loads only ``opentelemetry.context``; the names that need
more of OpenTelemetry load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._snapshot import Snapshot as Snapshot
from ._snapshot import bind as bind
from ._snapshot import snapshot as snapshot
from ._store import ContextStore as ContextStore
from ._store import Scope as Scope
from ._store import request as request

if TYPE_CHECKING:
    from ._carrier import extract as extract
    from ._carrier import extract_env as extract_env
    from ._carrier import inject as inject
    from ._carrier import inject_env as inject_env
    from ._threads import Thread as Thread
    from ._threads import ThreadPoolExecutor as ThreadPoolExecutor
    from ._threads import run_in_executor as run_in_executor
    from .processes import ProcessPoolExecutor as ProcessPoolExecutor

__version__ = "0.1.0.dev0"

__all__ = [
    "ContextStore",
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
    "request",
    "run_in_executor",
    "snapshot",
]

_LAZY = {
    "extract": "._carrier",
    "extract_env": "._carrier",
    "inject": "._carrier",
    "inject_env": "._carrier",
    "ProcessPoolExecutor": ".processes",
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
