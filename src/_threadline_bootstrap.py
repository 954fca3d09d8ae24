"""threadline's automatic bootstrap for Python children (loaded by threadline-bootstrap.pth).

Runs at interpreter start-up only when ``THREADLINE_BOOTSTRAP`` is set in the
environment, and costs almost nothing there: it only watches imports. Once the
program has imported ``logging``, every log record gets the request's ids
(`threadline.logging.install`, and ``logging.basicConfig``'s default format
shows them); once it has imported OpenTelemetry (or threadline), the context in
``TRACEPARENT``/``TRACESTATE``/``BAGGAGE`` is the main thread's context, so its
spans join the parent's trace and its stores hold the parent's values.
"""

from __future__ import annotations

import sys
from _thread import get_ident

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs this file's budget
if TYPE_CHECKING:
    from typing import Any

BASIC_FORMAT = "%(levelname)s:%(name)s:%(message)s request_id=%(request_id)s trace_id=%(trace_id)s"


def _import_threadline() -> None:
    import threadline  # noqa: F401, PLC0415 - the whole point is to import it late


def _restore_context() -> None:
    import threadline  # noqa: PLC0415
    from threadline._core.context import attach  # noqa: PLC0415

    # Never detached: the context belongs to the (main thread of the) process.
    attach(threadline.extract_env().context)
    from threadline._boundary.far_side import (  # noqa: PLC0415
        bound_exit_export,
        configure_like_parent,
    )

    configure_like_parent()
    bound_exit_export()


def _enrich_logs() -> None:
    import logging  # noqa: PLC0415

    from threadline.logging import install  # noqa: PLC0415

    install()
    basic_config = logging.basicConfig

    def basicConfig(**kwargs: Any) -> None:  # noqa: N802 - it stands in for logging.basicConfig
        if "format" not in kwargs and kwargs.get("style", "%") == "%":
            kwargs["format"] = BASIC_FORMAT
        basic_config(**kwargs)

    logging.basicConfig = basicConfig


_pending: dict[str, Any] = {
    "opentelemetry.context": _import_threadline,
    "threadline": _restore_context,
    "logging": _enrich_logs,
}
_ready: list[tuple[str, Any]] = []
_depth: dict[int, int] = {}
_running = False


def _run_ready() -> None:
    # Steps run only once the outermost import in progress has finished:
    # run in the middle of one, they would meet half-initialised modules.
    global _running  # noqa: PLW0603 - one runner at a time
    if _running:
        return
    _running = True
    try:
        while _ready:
            name, step = _ready.pop(0)
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a child must start even if this fails
                sys.stderr.write(f"threadline bootstrap: {name}: {type(exc).__name__}: {exc}\n")
    finally:
        _running = False
    if not _pending and _watcher in sys.meta_path:
        sys.meta_path.remove(_watcher)


class _WatchedLoader:
    """A loader that counts imports in progress and marks the modules threadline waits for."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._loader, attribute)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        thread = get_ident()
        _depth[thread] = _depth.get(thread, 0) + 1
        try:
            self._loader.exec_module(module)
        finally:
            _depth[thread] -= 1
        step = _pending.pop(self._name, None)
        if step is not None:
            _ready.append((self._name, step))
        if _ready and not _depth[thread]:
            _run_ready()


class _Watcher:
    """A meta path finder that wraps loaders while threadline still waits for a module."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WatchedLoader(spec.loader, name)
                return spec
        return None


_watcher = _Watcher()


def start() -> None:
    """Begin watching; steps for modules already imported run at once."""
    _ready.extend((name, _pending.pop(name)) for name in list(_pending) if name in sys.modules)
    sys.meta_path.insert(0, _watcher)
    _run_ready()


start()
