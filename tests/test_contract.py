"""One contract, every boundary: what a user relies on wherever work is handed over.

Each boundary runs a probe on the far side that reports the `tl.request`
values and the trace it sees; the same tests hold for threads, worker
processes, subprocesses, HTTP and Celery.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import trace

import threadline as tl
import threadline.aiohttp as tla
from tests import celery_tasks, process_jobs
from tests.redis_broker import CeleryWorker
from threadline import subprocess as tl_subprocess

VALUES = {"request_id": "contract-1", "user_id": 42, "tags": ["a", "b"], "ratio": 0.5, "ok": True}
PROBE = (
    "import json, threadline as tl\n"
    "from opentelemetry import trace\n"
    "value = tl.request.get()\n"
    "sc = trace.get_current_span().get_span_context()\n"
    "print(json.dumps({'request': dict(value) if value is not None else None,\n"
    "                  'trace_id': f'{sc.trace_id:032x}' if sc.is_valid else None}))\n"
)


def normalized(seen: dict[str, Any]) -> dict[str, Any]:
    """JSON's view of what the probe saw (tuples become lists), without per-hop extras."""
    request = seen["request"]
    if request is not None:
        request = {
            k: v for k, v in json.loads(json.dumps(dict(request))).items() if k != "start_time"
        }
    return {"request": request, "trace_id": seen["trace_id"]}


class BoundaryContract:
    """The promises; subclasses say how to cross their boundary."""

    reusable: ClassVar[bool] = True

    def cross(self) -> dict[str, Any]:
        raise NotImplementedError

    def test_stores_arrive_with_their_types(self) -> None:
        """The store values arrive, each with its JSON type."""
        with tl.request.scope(VALUES):
            assert VALUES == normalized(self.cross())["request"]

    def test_trace_continues(self, tracer: trace.Tracer) -> None:
        """Work on the far side is part of the submitter's trace."""
        with tracer.start_as_current_span("submitter") as span:
            seen = normalized(self.cross())
        assert f"{span.get_span_context().trace_id:032x}" == seen["trace_id"]

    def test_no_context_no_values(self) -> None:
        """Outside any scope and span, the far side sees nothing."""
        assert {"request": None, "trace_id": None} == normalized(self.cross())

    def test_nothing_stale_after_a_request(self, tracer: trace.Tracer) -> None:
        """After a request crossed, the next crossing outside any scope sees nothing of it."""
        with tl.request.scope(request_id="first"), tracer.start_as_current_span("first"):
            self.cross()
        assert {"request": None, "trace_id": None} == normalized(self.cross())


def _observe() -> dict[str, Any]:
    return process_jobs.observe()


class TestThreads(BoundaryContract):
    @pytest.fixture(autouse=True)
    def _pool(self) -> Iterator[None]:
        self.pool = tl.ThreadPoolExecutor(max_workers=1)
        yield
        self.pool.shutdown()

    def cross(self) -> dict[str, Any]:
        return self.pool.submit(_observe).result()


class TestProcessPool(BoundaryContract):
    pool: ClassVar[tl.ProcessPoolExecutor]

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _pool(cls) -> Iterator[None]:
        cls.pool = tl.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        yield
        cls.pool.shutdown()

    def cross(self) -> dict[str, Any]:
        return self.pool.submit(process_jobs.observe).result()


class TestSubprocess(BoundaryContract):
    def cross(self) -> dict[str, Any]:
        out = tl_subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
        )
        return dict(json.loads(out.stdout))


async def _echo(request: web.Request) -> web.Response:
    """Reports what came from the caller: the values and the trace, not what the server made."""
    value = dict(tl.request.get() or {})
    del value["start_time"]
    if value["request_id"] != request.headers.get("X-Request-ID"):
        del value["request_id"]  # the server's own, fresh id
    span = trace.get_current_span()
    continued = getattr(span, "parent", None) is not None  # not a root of the server's own
    sc = span.get_span_context()
    return web.json_response(
        {"request": value or None, "trace_id": f"{sc.trace_id:032x}" if continued else None}
    )


class TestHTTP(BoundaryContract):
    """A real aiohttp server and client on loopback, called from this thread's context."""

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        thread.start()

        async def start() -> tuple[web.AppRunner, aiohttp.ClientSession, str]:
            app = web.Application(middlewares=[tla.middleware(access_log=False)])
            app.router.add_get("/probe", _echo)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            session = aiohttp.ClientSession(trace_configs=[tla.trace_config()])
            return runner, session, f"http://127.0.0.1:{runner.addresses[0][1]}/probe"

        runner, self.session, self.url = asyncio.run_coroutine_threadsafe(
            start(), self.loop
        ).result(30)
        yield

        async def stop() -> None:
            await self.session.close()
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        thread.join(30)
        self.loop.close()

    def cross(self) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            async with self.session.get(self.url) as response:
                return dict(await response.json())

        # run_coroutine_threadsafe copies this thread's context into the task
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)


class TestCelery(BoundaryContract):
    """A task sent over the tests' real Redis to a real prefork `celery worker`."""

    worker: ClassVar[CeleryWorker]

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _worker(
        cls, celery_app: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[None]:
        cls.worker = CeleryWorker(redis_url, "prefork", tmp_path_factory.mktemp("contract"))
        yield
        cls.worker.stop()

    def cross(self) -> dict[str, Any]:
        return dict(celery_tasks.observe.delay("contract").get(timeout=60))
