"""What the tests share: span and log readers, environments, waits, and state keepers.

Test modules and conftest.py import from here (or from the other helper
modules, collector.py and process_jobs.py); nothing imports from conftest.py
or from a test module.

No test may leave process-wide state behind: the autouse fixtures in
conftest.py put the store registry, os.environ and the logging set-up back
after each test (with the context managers below), and the tracer provider is
set once per process, so the whole suite passes when run twice in one
process. scripts/test-twice checks that; it runs, in one interpreter::

    python -c "import pytest, sys; sys.exit(pytest.main([...]) or pytest.main([...]))"
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline._core import stores as _store
from threadline.export import ExportedSpan
from threadline.tracing import StoreSpanProcessor

Serve = Callable[..., Awaitable[str]]
"""The `serve` fixture: start an aiohttp app on a free loopback port, get its base URL."""

# Every trace of `threadline demo`: span name -> (its parent's name, None for the
# trace's root; the service that reports it).
DEMO_TREE = {
    "GET /orders/{order}": (None, "demo-gateway"),
    "GET": ("GET /orders/{order}", "demo-gateway"),
    "GET /stock/{order}": ("GET", "demo-backend"),
    "thread read_stock": ("GET /stock/{order}", "demo-backend"),
    "process checksum": ("GET /stock/{order}", "demo-backend"),
    "subprocess python": ("GET /stock/{order}", "demo-backend"),
    "resize image": ("subprocess python", "demo-python-child"),
    "subprocess sh": ("GET /stock/{order}", "demo-backend"),
}


class SuiteTracerProvider(TracerProvider):
    """The suite's tracer provider: store values on spans, finished spans kept in memory.

    OpenTelemetry lets a process set its global provider once, so a second
    run of the suite in the same process finds this one and reuses it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.exporter = InMemorySpanExporter()
        self.add_span_processor(StoreSpanProcessor())
        self.add_span_processor(SimpleSpanProcessor(self.exporter))


class Spans:
    """The spans finished during one test, with helpers to check parentage."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        """Every span finished so far in this test, in the order they ended."""
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        """The one finished span called *name*; fails when there is none or more than one."""
        matches = [span for span in self.finished() if span.name == name]
        assert len(matches) == 1, f"{len(matches)} spans named {name!r}: {self.finished()}"
        return matches[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OTEL_* and THREADLINE_* settings, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_"))}
    return {**env, **extra}


def check_demo_traces(spans: list[ExportedSpan], requests: int) -> None:
    """One trace per request, every expected span once, under the right parent and service."""
    by_trace: dict[str, list[ExportedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    assert requests == len(by_trace)
    for members in by_trace.values():
        names = sorted(span.name for span in members)
        assert sorted(DEMO_TREE) == names  # every span, and none twice: nothing lost
        by_id = {span.span_id: span for span in members}
        for span in members:
            parent = by_id.get(span.parent_id) if span.parent_id else None
            actual = (parent.name if parent else None, span.service)
            assert DEMO_TREE[span.name] == actual, span.name


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> bool:
    """Poll *condition* until it holds or *seconds* pass; return whether it held (a wait)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class LoopbackResolver(AbstractResolver):
    """Resolves every name to 127.0.0.1, so tests can call 'other' hosts on this machine."""

    async def resolve(
        self, host: str, port: int = 0, family: int = socket.AF_INET
    ) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def kept_store_registry() -> Iterator[None]:
    """Forget the ContextStores made inside the block, so their names can be made again.

    Store names are unique per process and threadline has no public way to
    drop one: this reaches into the private registry, for the tests only.
    """
    saved = dict(_store._registry)
    try:
        yield
    finally:
        with _store._registry_lock:
            _store._registry.clear()
            _store._registry.update(saved)


@contextmanager
def kept_environ() -> Iterator[None]:
    """Undo every change the block made to os.environ."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


_LoggerState = tuple[list[logging.Handler], list[object], int, bool, bool]


def _logger_state(logger: logging.Logger) -> _LoggerState:
    return (
        list(logger.handlers),
        list(logger.filters),
        logger.level,
        logger.propagate,
        logger.disabled,
    )


def _ours(handler: logging.Handler) -> bool:
    # pytest swaps its capture handlers on the root logger for each test phase:
    # those are its own to add and remove.
    return not type(handler).__module__.startswith("_pytest")


@contextmanager
def kept_logging() -> Iterator[None]:
    """Undo what the block did to loggers and the record factory (install(), dictConfig...).

    Loggers made inside the block stay known to logging (it never forgets a
    name) but lose their handlers and filters and go back to the defaults.
    """
    factory = logging.getLogRecordFactory()
    disabled = logging.root.manager.disable
    saved = {name: _logger_state(logger) for name, logger in _loggers()}
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)
        logging.disable(disabled)
        for name, logger in _loggers():
            handlers, filters, level, propagate, off = saved.get(
                name, ([], [], logging.NOTSET, True, False)
            )
            for handler in [h for h in logger.handlers if h not in handlers and _ours(h)]:
                logger.removeHandler(handler)
            for handler in [h for h in handlers if h not in logger.handlers and _ours(h)]:
                logger.addHandler(handler)
            logger.filters[:] = filters  # type: ignore[assignment]
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, off


def _loggers() -> Iterator[tuple[str, logging.Logger]]:
    yield "", logging.root
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            yield name, logger


NO_THREADS_AT_EXIT = pytest.mark.skipif(
    sys.version_info[:3] in ((3, 12, 0), (3, 12, 1)),
    reason="CPython 3.12.0 and 3.12.1 start no thread at exit (gh-113964): no exit bound there",
)
"""Marks a test of the bounded exit export, which needs a thread at exit."""


def marked_line(path: str, marker: str) -> str:
    """``"path:line"`` of the line of *path* that holds *marker* (not a line asking for it)."""
    with open(path) as source:
        for number, text in enumerate(source, 1):
            if marker in text and "line_of" not in text:
                return f"{path}:{number}"
    raise AssertionError(marker)


@contextmanager
def hook_calls() -> Iterator[list[tuple[str, Any]]]:
    """Record every lifecycle-hook call inside the block: ``(event, resource)``, in order."""
    from threadline import hooks

    seen: list[tuple[str, Any]] = []

    def record(event: str) -> Callable[..., None]:
        return lambda resource, *_: seen.append((event, resource))

    hook = hooks.create_hook(
        init=record("init"),
        before=record("before"),
        after=record("after"),
        destroy=record("destroy"),
    )
    hook.enable()
    try:
        yield seen
    finally:
        hook.disable()


def run_app(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``app.py`` in *workdir* with *args*, no OTEL_*/THREADLINE_* settings but *env*."""
    return subprocess.run(
        [sys.executable, "app.py", *args],
        check=False,
        cwd=workdir,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
