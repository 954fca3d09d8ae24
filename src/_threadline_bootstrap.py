"""threadline's automatic bootstrap for Python children (loaded by threadline-bootstrap.pth).

Runs at interpreter start-up only when ``THREADLINE_BOOTSTRAP`` is set in the
environment, and costs almost nothing there: it only watches imports. Once the
program has imported ``logging``, every log record gets the request's ids
(`threadline.logging.install`, and ``logging.basicConfig``'s default format
shows them); once it has imported OpenTelemetry (or threadline), the context in
``TRACEPARENT``/``TRACESTATE``/``BAGGAGE`` is the main thread's context, so its
spans join the parent's trace and its stores hold the parent's values.

A child that imports ``logging`` first takes the light path: it loads only
``opentelemetry.context`` and puts a context in place that is empty until
something first reads it or logs a record; that first reader (or ``import
threadline``) restores the carrier into that very context, so every thread,
task and snapshot that inherited it sees the parent's ids. A child that logs
nothing and reads no context never loads threadline or OpenTelemetry's
trace API.
"""

from __future__ import annotations

import sys
from _thread import RLock, get_ident

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


def _patch_basic_config(logging: Any) -> None:
    basic_config = logging.basicConfig

    def basicConfig(**kwargs: Any) -> None:  # noqa: N802 - it stands in for logging.basicConfig
        if "format" not in kwargs and kwargs.get("style", "%") == "%":
            kwargs["format"] = BASIC_FORMAT
        basic_config(**kwargs)

    logging.basicConfig = basicConfig


def _enrich_logs() -> None:
    import logging  # noqa: PLC0415

    from threadline.logging import install  # noqa: PLC0415

    install()
    _patch_basic_config(logging)


def _on_logging() -> None:
    """`logging` is imported: the light path where it is correct, else the whole restore now."""
    import logging  # noqa: PLC0415
    import os  # noqa: PLC0415

    light = not (
        "opentelemetry.context" in sys.modules  # restored when its step runs, just after this
        or "threadline" in sys.modules
        or os.environ.get("OTEL_PYTHON_CONTEXT")  # another runtime context: as before
        or os.environ.get("THREADLINE_CONFIGURED")  # the child sets tracing up: as before
    )
    if not light:
        _enrich_logs()
        return
    _pending.pop("opentelemetry.context", None)  # imported here, restored on first read
    _pending["threadline"] = _complete  # before the program's own threadline.logging.install()
    _patch_basic_config(logging)
    original = logging.getLogRecordFactory()

    def light_factory(*args: Any, **kwargs: Any) -> Any:
        # The first record restores the context (another thread's waits for that); the
        # restore puts threadline's factory over the original in its place. A thread that
        # took this one just before, or an application's factory that wrapped it, still
        # calls it: each record gets its fields here (again from threadline's, if on top).
        if not _state.get("done"):
            _complete()
        record = original(*args, **kwargs)
        _fields_for(record)
        return record

    logging.setLogRecordFactory(light_factory)
    _state["factory"] = (light_factory, original)
    _attach_deferred()


_state: dict[str, Any] = {}
_lock = RLock()


def _attach_deferred() -> None:
    from opentelemetry import context  # noqa: PLC0415
    from opentelemetry.context.context import Context  # noqa: PLC0415

    class Deferred(Context):
        """The process's context, filled from the carrier when first read, then a plain Context."""

        def __getattribute__(self, name: str) -> Any:
            if name != "__class__":
                _complete()
            return object.__getattribute__(self, name)

        def __getitem__(self, key: str) -> object:
            _complete()
            return dict.__getitem__(self, key)

        def __contains__(self, key: object) -> bool:
            _complete()
            return dict.__contains__(self, key)

        def __iter__(self) -> Any:
            _complete()
            return dict.__iter__(self)

        def __len__(self) -> int:
            _complete()
            return dict.__len__(self)

        def __eq__(self, other: object) -> bool:
            _complete()
            return dict.__eq__(self, other)

        def __ne__(self, other: object) -> bool:
            _complete()
            return dict.__ne__(self, other)

        def __repr__(self) -> str:
            _complete()
            return dict.__repr__(self)

        __hash__ = None  # type: ignore[assignment]

    deferred = Deferred()
    _state["context"] = (deferred, Context)
    context.attach(deferred)  # never detached: the main thread's context, as the restore's


def _fields_for(record: Any) -> None:
    """Give *record* threadline's log fields, if its logging is installed."""
    installed = getattr(sys.modules.get("threadline.logging"), "_installed", None)
    if installed:
        installed[1].enrich(record)


def _complete() -> None:
    """Restore the carrier into the deferred context and put threadline's logging in: once.

    Done is said only once the context is filled: another thread that reads
    or logs meanwhile waits on the lock; the restoring thread's own reads (a
    warning about a bad carrier, logged while it restores) see the context
    still empty, and what they cached of it is dropped once it is filled.
    """
    if _state.get("done"):
        return
    with _lock:
        if _state.get("done") or _state.get("restoring") == get_ident():
            return
        _state["restoring"] = get_ident()
        _pending.pop("threadline", None)
        deferred, plain = _state.pop("context", (None, None))
        try:
            light, original = _state.pop("factory", (None, None))
            import logging  # noqa: PLC0415 - imported already: the light path began there

            from threadline.logging import _install_over  # noqa: PLC0415

            # first: a thread that logs from now on waits in the context's first read
            current = logging.getLogRecordFactory()
            _install_over(original if current is light else current)
            if deferred is not None:
                import threadline  # noqa: PLC0415

                restored = threadline.extract_env(context=plain()).context
                dict.update(deferred, restored)
            from threadline._boundary.far_side import (  # noqa: PLC0415
                bound_exit_export,
                configure_like_parent,
            )

            configure_like_parent()
            bound_exit_export()
        except Exception as exc:  # noqa: BLE001 - a child must run even if this fails
            sys.stderr.write(f"threadline bootstrap: {type(exc).__name__}: {exc}\n")
        finally:
            if deferred is not None:
                deferred.__class__ = plain  # reads cost nothing from now on
                _forget_cached(deferred)
            _state["done"] = True
            _state.pop("restoring", None)
        if not _pending and _watcher in sys.meta_path:
            sys.meta_path.remove(_watcher)


def _forget_cached(context: Any) -> None:
    # threadline keeps what it made of the last context it met (log fields, the carrier's
    # text), as a context never changes; this one did, in place, so what was made of it
    # while it was empty goes
    installed = getattr(sys.modules.get("threadline.logging"), "_installed", None)
    if installed:
        installed[1]._last = None
    carrier = sys.modules.get("threadline._wire.carrier")
    if carrier is not None:
        for name in ("_last_encoded", "_last_baggage_of"):
            last = getattr(carrier, name, None)
            if last is not None and last[0] is context:
                setattr(carrier, name, None)


_pending: dict[str, Any] = {
    "opentelemetry.context": _import_threadline,
    "threadline": _restore_context,
    "logging": _on_logging,
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
