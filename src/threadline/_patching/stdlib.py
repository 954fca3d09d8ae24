"""`threadline.instrument()`: the standard library's hand-offs, patched to carry the context.

Each patch is a plain function put in place of one class attribute, around
what was there, which it calls. It goes through threadline's own carriers:
the thread pool and `Thread` of `_threads`, the process carrier of
`_processes`, the environment of `_subprocess`. Every wrapper has
``__wrapped__`` (what it wraps) and `INSTRUMENTED_ATTRIBUTE` set to True.

The wrappers are the layer ``"instrument"`` of the patch registry
(`.registry`): beside the loss detector's layer in any interleaving, under
wrapt proxies (OpenTelemetry's threading instrumentation) in either order,
each taken out alone. A wrapper the registry could not take out (someone's
plain function wraps it) stays, passing every call straight through.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import multiprocessing
import multiprocessing.pool
import multiprocessing.process
import subprocess
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from .._boundary import processes as _processes
from .._boundary import subprocess as _subprocess
from .._boundary import threads as _threads
from .._boundary.far_side import adopt_settings, run_worker_steps, worker_steps
from .._boundary.handoff import carries_context
from .._telemetry.spans import call_as_job, callable_name
from . import registry

__all__ = [
    "INSTRUMENTED_ATTRIBUTE",
    "instrument",
    "instrumented",
    "register_patches",
    "uninstrument",
]

INSTRUMENTED_ATTRIBUTE = "__threadline_instrumented__"
"""True on each function `instrument` puts in place; its ``__wrapped__`` is what it wraps."""

# Threads and processes the standard library starts for its own machinery (pool
# workers, manager and feeder threads, manager servers) are left alone: they
# outlive the request that happened to start them and run no request's work.
_MACHINERY = ("concurrent.futures", "multiprocessing", "asyncio", "queue", "opentelemetry")

_POOL_METHODS = (  # as threadline's Pool: apply (through apply_async), map, imap, ...
    "apply_async",
    "map",
    "map_async",
    "starmap",
    "starmap_async",
    "imap",
    "imap_unordered",
)


LAYER = "instrument"
"""The registry layer of these wrappers."""

_lock = threading.Lock()
_active = False
_providers: list[Callable[[], list[registry.Patch]]] = []


def register_patches(provider: Callable[[], list[registry.Patch]]) -> None:
    """Have `instrument` also apply the patches *provider* returns (an integration's clients).

    *provider* is called at each `instrument` (so it may look at what is
    imported then); its patches are in the same layer, so `uninstrument`
    takes them out with the standard library's. Registered while instrumented,
    they apply at once. Registering the same provider again does nothing.
    """
    with _lock:
        if provider in _providers:
            return
        _providers.append(provider)
        if _active:
            registry.add(LAYER, *provider())


def instrument() -> None:
    """Patch the standard library's hand-offs so plain code carries the context.

    After it, `concurrent.futures.ThreadPoolExecutor.submit`,
    `threading.Thread.start` (any subclass, overridden ``run`` included),
    `concurrent.futures.ProcessPoolExecutor.submit`,
    `multiprocessing.Process.start` (every start method), the task methods of
    `multiprocessing.pool.Pool`, and `subprocess.Popen` (and so
    `asyncio.create_subprocess_exec`/``_shell`` and ``loop.run_in_executor``,
    which go through them) behave like threadline's own classes: the work runs
    in the caller's stores, span and contextvars, under a job span when the
    caller's span records. Threadline's own classes are not wrapped twice.
    Calling it again does nothing; it is safe from any thread.

    .. versionadded:: 0.1
    """
    global _active  # noqa: PLW0603 - the one switch every wrapper reads
    with _lock:
        if _active:
            return
        registry.add(LAYER, *_patches(), *(p for make in _providers for p in make()))
        _active = True


def uninstrument() -> None:
    """Undo `instrument`: each patched attribute is the very object it was before.

    When another instrumentation wrapped the same attribute since (with wrapt,
    as OpenTelemetry's do), or the loss detector is on, only this layer is
    taken out and theirs stay. Calling it when not instrumented does nothing.

    .. versionadded:: 0.1
    """
    global _active  # noqa: PLW0603 - the one switch every wrapper reads
    with _lock:
        _active = False
        registry.remove(LAYER)


def instrumented() -> bool:
    """Return True between `instrument` and `uninstrument`."""
    return _active


# -- the patches ----------------------------------------------------------------------------


def _patches() -> list[registry.Patch]:
    pool = multiprocessing.pool.Pool
    targets: list[tuple[type, str, Callable[[Any], Callable[..., Any]]]] = [
        (concurrent.futures.ThreadPoolExecutor, "submit", _thread_pool_submit),
        (threading.Thread, "start", _thread_start),
        (concurrent.futures.ProcessPoolExecutor, "submit", _process_pool_submit),
        (multiprocessing.process.BaseProcess, "start", _process_start),
        *((pool, name, _pool_method) for name in _POOL_METHODS),
        (subprocess.Popen, "__init__", _popen_init),
    ]
    return [
        registry.Patch(owner, name, functools.partial(_marked, make))
        for owner, name, make in targets
    ]


def _marked(make: Callable[[Any], Callable[..., Any]], inner: Any) -> Callable[..., Any]:
    """``make(inner)``, named as *inner*, with ``__wrapped__`` and the marks others read."""
    wrapper = make(inner)
    functools.update_wrapper(wrapper, inner, updated=())  # no marks of the layers under it
    setattr(wrapper, INSTRUMENTED_ATTRIBUTE, True)
    return carries_context(wrapper)  # the loss detector skips it


# -- the wrappers ----------------------------------------------------------------------------


def _carries_context(fn: object) -> bool:
    """True for ``some_context.run`` (or a partial of it): the job has its context already."""
    if isinstance(fn, functools.partial):
        fn = fn.func
    return isinstance(getattr(fn, "__self__", None), contextvars.Context)


def _job_name(fn: Callable[..., Any]) -> str:
    # OpenTelemetry's threading instrumentation, above this wrapper, hands over a
    # closure around the caller's function: name the function.
    code = getattr(fn, "__code__", None)
    if code is not None and "original_func" in code.co_freevars:
        closure = getattr(fn, "__closure__", None) or ()
        fn = closure[code.co_freevars.index("original_func")].cell_contents
    return callable_name(fn)


def _thread_pool_submit(original: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not _active or isinstance(self, _threads.ThreadPoolExecutor) or _carries_context(fn):
            return original(self, fn, *args, **kwargs)
        run = contextvars.copy_context().run
        return original(self, run, call_as_job, _threads.BOUNDARY, fn, args, kwargs, _job_name(fn))

    return submit


def _is_machinery(fn: object) -> bool:
    module = str(getattr(fn, "__module__", None) or "")
    return any(module == name or module.startswith(name + ".") for name in _MACHINERY)


def _thread_start(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def start(self: threading.Thread) -> None:
        target = getattr(self, "_target", None)
        if (
            not _active
            or isinstance(self, _threads.Thread)
            or "run" in self.__dict__
            or _is_machinery(target or type(self).run)
        ):
            return original(self)
        run = self.run
        # As threadline's Thread: an instance attribute shadows run() for
        # _bootstrap_inner, and _run_in drops it when the thread is done.
        self.run = functools.partial(  # type: ignore[method-assign]
            _threads.Thread._run_in,
            self,  # type: ignore[arg-type]
            contextvars.copy_context(),
            run,
            callable_name(target or run),
            None,  # no lifecycle-hook resource: hooks follow threadline's own classes
        )
        try:
            return original(self)
        except BaseException:
            del self.run
            raise

    return start


def _process_pool_submit(original: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not _active or isinstance(self, _processes.ProcessPoolExecutor):
            return original(self, fn, *args, **kwargs)
        # what threadline's ProcessPoolExecutor.submit does, for any pool
        return _processes.submit_in_context(functools.partial(original, self), fn, args, kwargs)

    return submit


def _process_start(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def start(self: multiprocessing.process.BaseProcess) -> None:
        target = getattr(self, "_target", None)
        if (
            not _active
            or isinstance(self, _processes._CarriesContext)
            or "run" in self.__dict__
            or _is_machinery(target)
        ):
            return original(self)
        method = getattr(self, "_start_method", None) or multiprocessing.get_start_method()
        run = self.run
        # The child gets run() as an instance attribute: forked with the
        # process, or pickled with it under spawn and forkserver (unpickled,
        # the bound method is the class's run again). The parent drops it.
        self.run = functools.partial(  # type: ignore[method-assign]
            _run_child,
            _processes.capture(),
            _processes.capture_settings(),
            worker_steps(method),
            run,
            callable_name(target or run),
        )
        try:
            return original(self)
        finally:
            del self.run

    return start


def _run_child(
    carrier: Mapping[str, str],
    settings: Mapping[str, str],
    steps: tuple[Any, ...],
    run: Callable[[], None],
    name: str,
) -> None:
    """In the child: what threadline's Process does in ``_bootstrap``, then run in context."""
    adopt_settings(settings)
    run_worker_steps(steps)
    _processes._run_child(carrier, run, name)


def _pool_method(original: Callable[..., Any]) -> Callable[..., Any]:
    def in_callers_context(self: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not _active or isinstance(self, _processes.Pool):
            return original(self, func, *args, **kwargs)
        return original(self, _processes._bound(func), *args, **kwargs)

    return in_callers_context


_ENV_POSITION = 9  # Popen(args, bufsize, executable, stdin, stdout, stderr, preexec_fn,
#                         close_fds, shell, cwd, env, ...): env after args, at 9


def _popen_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:  # noqa: N807
        if not _active or isinstance(self, _subprocess.Popen):
            return original(self, args, *rest, **kwargs)
        if len(rest) > _ENV_POSITION:
            env = _subprocess.child_env(rest[_ENV_POSITION])
            rest = (*rest[:_ENV_POSITION], env, *rest[_ENV_POSITION + 1 :])
        elif kwargs.get("env") is None:
            kwargs["env"] = _subprocess._environ_with(None, bootstrap=True)
        else:
            kwargs["env"] = _subprocess.child_env(kwargs["env"])
        return original(self, args, *rest, **kwargs)

    return __init__
