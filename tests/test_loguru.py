"""threadline.loguru: the context's ids on every loguru record, with the real loguru."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger as base_logger
from opentelemetry import trace

import threadline as tl
import threadline.aiohttp as tla
import threadline.loguru as tll
from tests.helpers import clean_env
from tests.redis_broker import library_logs_from_worker

HOSTILE = "r1\r\nFAKE level=critical\x1b[2J\u2028"
FORMAT = "{extra[request_id]} {extra[user_id]} {extra[trace_id]} {extra[span_id]} {message}"


@pytest.fixture
def sink() -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Lines formatted with the fields and each record's extra; the sink removed afterwards."""
    lines: list[str] = []
    extras: list[dict[str, Any]] = []

    def write(message: Any) -> None:
        lines.append(str(message).rstrip("\n"))
        extras.append(dict(message.record["extra"]))

    handler = base_logger.add(write, format=FORMAT)
    yield lines, extras
    base_logger.remove(handler)


def ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class TestPatch:
    def test_fields_in_scope_and_span(
        self, sink: tuple[list[str], list[dict[str, Any]]], tracer: trace.Tracer
    ) -> None:
        """A record in a request and a span has its request, user, trace and span ids."""
        log = tll.patch(base_logger)
        with tl.request.scope(request_id="r1", user_id=42), tracer.start_as_current_span("s") as s:
            log.info("listing orders")
        trace_id, span_id = ids(s)
        assert [f"r1 42 {trace_id} {span_id} listing orders"] == sink[0]

    def test_placeholder_outside_any_request(
        self, sink: tuple[list[str], list[dict[str, Any]]]
    ) -> None:
        tll.patch(base_logger).info("starting")
        assert ["- - - - starting"] == sink[0]

    def test_the_original_logger_is_left_as_it_is(
        self, sink: tuple[list[str], list[dict[str, Any]]]
    ) -> None:
        tll.patch(base_logger)
        with tl.request.scope(request_id="r1"):
            base_logger.bind(request_id="a", user_id="b", trace_id="c", span_id="d").info("x")
        assert ["a b c d x"] == sink[0]

    def test_the_callers_values_win(self, sink: tuple[list[str], list[dict[str, Any]]]) -> None:
        """A key bound or contextualized is kept; the others are filled."""
        log = tll.patch(base_logger)
        with tl.request.scope(request_id="r1", user_id=42), log.contextualize(user_id="ctx"):
            log.bind(request_id="bound").info("x")
        assert ["bound ctx - - x"] == sink[0]

    def test_chosen_keys_and_no_placeholder(
        self, sink: tuple[list[str], list[dict[str, Any]]], store: tl.ContextStore
    ) -> None:
        log = tll.patch(base_logger, store=store, keys=("tenant",), placeholder=None)
        with store.scope(request_id="j1", tenant="acme"):
            log.bind(user_id="u", trace_id="t", span_id="s").info("x")
        assert {"request_id": "j1", "tenant": "acme"}.items() <= sink[1][0].items()

    def test_not_a_logger_is_a_clear_error(self) -> None:
        with pytest.raises(TypeError, match="needs a loguru logger"):
            tll.patch(object())  # type: ignore[arg-type]

    def test_hostile_values_escaped(self, sink: tuple[list[str], list[dict[str, Any]]]) -> None:
        """A request id that came in with CR, LF, ESC and U+2028 cannot start a line."""
        with tl.request.scope(request_id=HOSTILE):
            tll.patch(base_logger).info("x")
        [line] = sink[0]
        assert line.isprintable()
        assert "r1\\r\\nFAKE level=critical\\x1b[2J\\u2028 - - - x" == line

    @settings(max_examples=200, deadline=None)
    @given(value=st.text())
    def test_any_text_is_one_printable_line(self, value: str) -> None:
        """Whatever text a store value holds, the formatted line shows it escaped, on one line."""
        lines: list[str] = []
        handler = base_logger.add(lines.append, format=FORMAT)
        try:
            with tl.request.scope(request_id=value, user_id=value):
                tll.patch(base_logger).info("x")
        finally:
            base_logger.remove(handler)
        [line] = lines
        assert line.rstrip("\n").isprintable(), repr(line)


class TestSinks:
    def test_serialized_lines(self, tmp_path: Path, tracer: trace.Tracer) -> None:
        """serialize=True: the fields are under record.extra, with JSONFormatter's names."""
        path = tmp_path / "log.jsonl"
        handler = base_logger.add(path, serialize=True)
        try:
            with tl.request.scope(request_id=HOSTILE, user_id=7):
                with tracer.start_as_current_span("s") as s:
                    tll.patch(base_logger).info("x")
        finally:
            base_logger.remove(handler)
        [line] = path.read_text().splitlines()
        extra = json.loads(line)["record"]["extra"]
        trace_id, span_id = ids(s)
        expected = {"request_id": "r1\\r\\nFAKE level=critical\\x1b[2J\\u2028", "user_id": 7}
        assert {**expected, "trace_id": trace_id, "span_id": span_id} == extra

    def test_enqueued_sink_gets_the_fields_of_the_call(
        self, sink: tuple[list[str], list[dict[str, Any]]]
    ) -> None:
        """enqueue=True: the sink runs on loguru's thread, the fields are those of the call."""
        lines: list[str] = []
        handler = base_logger.add(lines.append, format=FORMAT, enqueue=True)
        log = tll.patch(base_logger)
        try:
            with tl.ThreadPoolExecutor(max_workers=2) as pool:
                for i in range(6):
                    with tl.request.scope(request_id=f"r{i}"):
                        pool.submit(log.info, "job {}", i)
            base_logger.complete()
        finally:
            base_logger.remove(handler)
        expected = sorted(f"r{i} - - - job {i}" for i in range(6))
        assert expected == sorted(line.rstrip("\n") for line in lines)


WORKERS_APP = textwrap.dedent(
    """
    import multiprocessing
    import sys
    from loguru import logger
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    import threadline as tl
    import threadline.loguru

    log = None

    def set_logger(given):
        global log
        log = given

    def work(kind):
        log.info("worked {}", kind)

    if __name__ == "__main__":
        logger.remove()
        context = multiprocessing.get_context(sys.argv[1])
        # loguru's multiprocessing sink: its queue made in the workers' start method
        logger.add(sys.argv[2], serialize=True, enqueue=True, context=context)
        log = threadline.loguru.patch(logger)
        trace.set_tracer_provider(TracerProvider())
        with trace.get_tracer("app").start_as_current_span("request"):
            with tl.request.scope(request_id="r-7", user_id="u\\n1"):
                log.info("parent")
                with tl.ProcessPoolExecutor(
                    1, mp_context=context, initializer=set_logger, initargs=(log,)
                ) as pool:
                    pool.submit(work, "executor").result()
        logger.complete()
    """
)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_process_pool_through_an_enqueued_sink(method: str, tmp_path: Path) -> None:
    """Workers log through the parent's enqueued sink, with the parent's request and trace."""
    (tmp_path / "app.py").write_text(WORKERS_APP)
    out = tmp_path / "log.jsonl"
    result = subprocess.run(
        [sys.executable, "app.py", method, str(out)],
        check=False,
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    records = [json.loads(line)["record"] for line in out.read_text().splitlines()]
    assert ["parent", "worked executor"] == [r["message"] for r in records]
    extras = [r["extra"] for r in records]
    assert {("r-7", "u\\n1")} == {(e["request_id"], e["user_id"]) for e in extras}
    assert extras[0]["trace_id"] == extras[1]["trace_id"] != "-"
    assert records[0]["process"]["id"] != records[1]["process"]["id"]


def test_celery_worker(redis_url: str, celery_app: Any, tmp_path: Path) -> None:
    """A task run by a real prefork worker logs, through an enqueued sink, with its request."""
    trace_id, folder = library_logs_from_worker(redis_url, celery_app, tmp_path)
    [line] = (folder / "loguru.jsonl").read_text().splitlines()
    record = json.loads(line)["record"]
    assert "loguru t1" == record["message"]
    extra = record["extra"]
    assert ("req-\\nlib", 7, trace_id) == (extra["request_id"], extra["user_id"], extra["trace_id"])


async def test_http_hop(serve: Any, sink: tuple[list[str], list[dict[str, Any]]]) -> None:
    """The gateway's and the backend's records share the request id and the trace."""
    log = tll.patch(base_logger)

    async def backend(request: web.Request) -> web.Response:
        log.info("backend")
        return web.json_response({})

    backend_app = web.Application(middlewares=[tla.middleware()])
    backend_app.router.add_get("/", backend)
    downstream = await serve(backend_app)

    async def gateway(request: web.Request) -> web.Response:
        log.info("gateway")
        async with (
            aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session,
            session.get(downstream) as response,
        ):
            return web.json_response(await response.json())

    gateway_app = web.Application(middlewares=[tla.middleware()])
    gateway_app.router.add_get("/", gateway)
    upstream = await serve(gateway_app)
    async with aiohttp.ClientSession() as session, session.get(upstream) as response:
        assert 200 == response.status
    gateway_extra, backend_extra = sink[1]
    assert gateway_extra["request_id"] == backend_extra["request_id"] != "-"
    assert gateway_extra["trace_id"] == backend_extra["trace_id"] != "-"
    assert ["gateway", "backend"] == [line.rsplit(" ", 1)[1] for line in sink[0]]
