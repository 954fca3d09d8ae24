"""Fixtures only: the session's tracer provider, spans, stores, and no state left behind.

Helpers live in tests/helpers.py. Importing this module changes nothing;
each test leaves the process as it found it, so the suite passes when run
twice in one process: scripts/test-twice checks that.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from opentelemetry import trace

import threadline as tl
from tests.asgi_servers import AsgiServe, asgi_servers
from tests.helpers import (
    Serve,
    Spans,
    SuiteTracerProvider,
    kept_environ,
    kept_logging,
    kept_store_registry,
)
from tests.redis_broker import RedisUnavailableError, redis_server, required
from threadline import diagnostics


@pytest.fixture(scope="session", autouse=True)
def tracer_provider() -> SuiteTracerProvider:
    """The global tracer provider: set on first use, found again by a later run in this process."""
    current = trace.get_tracer_provider()
    if isinstance(current, SuiteTracerProvider):
        return current
    if not isinstance(current, trace.ProxyTracerProvider):
        pytest.fail(f"a tracer provider is set already ({current!r}): the tests need their own")
    provider = SuiteTracerProvider()
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def spans(tracer_provider: SuiteTracerProvider) -> Iterator[Spans]:
    tracer_provider.exporter.clear()
    yield Spans(tracer_provider.exporter)
    tracer_provider.exporter.clear()


@pytest.fixture
def tracer() -> trace.Tracer:
    return trace.get_tracer("tests")


@pytest.fixture(autouse=True)
def _no_stores_left() -> Iterator[None]:
    """Stores a test makes are forgotten after it, so a name can be made again (a second run)."""
    with kept_store_registry():
        yield


@pytest.fixture
def store(_no_stores_left: None) -> tl.ContextStore:
    """A fresh store (names are unique per process; this one is forgotten after the test)."""
    return tl.ContextStore("test-store")


@pytest.fixture(autouse=True)
def _no_environ_left() -> Iterator[None]:
    with kept_environ():
        yield


@pytest.fixture(autouse=True)
def _no_logging_left() -> Iterator[None]:
    with kept_logging():
        yield


@pytest.fixture(autouse=True)
def _fresh_drop_counts() -> Iterator[None]:
    diagnostics.reset_drop_counts()
    yield
    diagnostics.reset_drop_counts()


@pytest.fixture
def threadline_warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="threadline")
    return caplog


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session; skipped where none can start, unless CI requires it."""
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RedisUnavailableError as exc:
        if required():
            pytest.fail(f"THREADLINE_REQUIRE_REDIS is set: {exc}")
        pytest.skip(f"no Redis broker here: {exc}")


@pytest.fixture(scope="session")
def celery_app(redis_url: str) -> object:
    """The tests' Celery app (tests/celery_tasks.py), publishing to the session's Redis."""
    from tests import celery_tasks

    celery_tasks.app.conf.update(broker_url=redis_url, result_backend=redis_url)
    return celery_tasks.app


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start apps on free loopback ports; return their base URLs."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def asgi_serve() -> AsyncIterator[AsgiServe]:
    """Serve ASGI apps with real uvicorn or hypercorn on free loopback ports; all stopped after."""
    async with asgi_servers() as start:
        yield start
