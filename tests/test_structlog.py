"""threadline.structlog: the context's ids on every structlog event, with the real structlog."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace

import threadline as tl
import threadline.aiohttp as tla
import threadline.structlog as tls
from tests.helpers import clean_env
from tests.redis_broker import library_logs_from_worker

HOSTILE = "r1\r\nFAKE level=critical\x1b[2J\u2028"


def json_logger(*processors: Any) -> tuple[Any, io.StringIO]:
    stream = io.StringIO()
    chain = [*processors, structlog.processors.JSONRenderer()]
    return structlog.wrap_logger(structlog.PrintLogger(stream), processors=chain), stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class TestAddContext:
    def test_fields_in_scope_and_span(self, tracer: trace.Tracer) -> None:
        """An event in a request and a span has its request, user, trace and span ids."""
        log, stream = json_logger(tls.add_context)
        with tl.request.scope(request_id="r1", user_id=42), tracer.start_as_current_span("s") as s:
            log.info("listing orders", count=3)
        trace_id, span_id = ids(s)
        expected = {"event": "listing orders", "count": 3, "request_id": "r1", "user_id": 42}
        expected.update(trace_id=trace_id, span_id=span_id)
        assert [expected] == records(stream)

    def test_each_line_reads_its_own_context(self, tracer: trace.Tracer) -> None:
        """Lines one after another in changing scopes and spans each get their context's ids."""
        log, stream = json_logger(tls.processor(keys=["cart"]))
        with tl.request.scope(request_id="r1", cart={"items": [1]}):
            log.info("a")
            log.info("b")
            with tracer.start_as_current_span("s") as span:
                log.info("c")
            with tl.request.merge(request_id="r2"):
                log.info("d")
            log.info("e")
        log.info("f")
        with tl.request.scope(request_id="r1"):
            log.info("g")
        found = [(r["request_id"], r["span_id"], r.get("cart")) for r in records(stream)]
        cart = {"items": [1]}
        assert [
            ("r1", "-", cart),
            ("r1", "-", cart),
            ("r1", ids(span)[1], cart),
            ("r2", "-", cart),
            ("r1", "-", cart),
            ("-", "-", "-"),
            ("r1", "-", "-"),
        ] == found

    def test_a_line_changing_its_fields_changes_no_other(self) -> None:
        """A processor after add_context may change what it added: the next line is unchanged."""

        def spoil(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
            event["cart"]["items"].append("spoiled")
            return event

        log, stream = json_logger(tls.processor(keys=["cart"]), spoil)
        with tl.request.scope(cart={"items": [1]}):
            log.info("a")
            log.info("b")
        assert [[1, "spoiled"], [1, "spoiled"]] == [r["cart"]["items"] for r in records(stream)]

    def test_placeholder_outside_any_request(self) -> None:
        """Outside any request or span every field is the placeholder, never an error."""
        log, stream = json_logger(tls.add_context)
        log.info("starting")
        fields = {"request_id": "-", "user_id": "-", "trace_id": "-", "span_id": "-"}
        assert [{"event": "starting", **fields}] == records(stream)

    def test_no_placeholder_leaves_absent_fields_out(self) -> None:
        log, stream = json_logger(tls.processor(placeholder=None))
        with tl.request.scope(request_id="r1"):
            log.info("x")
        assert [{"event": "x", "request_id": "r1"}] == records(stream)

    def test_the_callers_values_win(self) -> None:
        """A key given in the call, bound, or merged from structlog's contextvars is kept."""
        log, stream = json_logger(structlog.contextvars.merge_contextvars, tls.add_context)
        structlog.contextvars.bind_contextvars(user_id="bound-user")
        try:
            with tl.request.scope(request_id="r1", user_id=42):
                log.bind(trace_id="given").info("x", request_id="explicit")
        finally:
            structlog.contextvars.clear_contextvars()
        [record] = records(stream)
        assert ("explicit", "bound-user", "given") == (
            record["request_id"],
            record["user_id"],
            record["trace_id"],
        )
        assert "-" == record["span_id"]

    def test_chosen_keys_from_another_store(self, store: tl.ContextStore) -> None:
        log, stream = json_logger(tls.processor(store=store.name, keys=("tenant",)))
        with store.scope(request_id="j1", tenant="acme"):
            log.info("x")
        [record] = records(stream)
        assert ("j1", "-", "acme") == (record["request_id"], record["user_id"], record["tenant"])

    def test_nested_values_are_json(self) -> None:
        """A store value that is a mapping or a list is written as a JSON object or array."""
        log, stream = json_logger(tls.processor(keys=("roles", "org")))
        with tl.request.scope(roles=("admin", "dev"), org={"id": 7, "name": "a\nb"}):
            log.info("x")
        [record] = records(stream)
        assert (["admin", "dev"], {"id": 7, "name": "a\\nb"}) == (record["roles"], record["org"])

    def test_every_line_is_strict_json(self) -> None:
        """NaN and infinities in store values are written as text: strict JSON readers take it."""
        log, stream = json_logger(tls.processor(keys=("ratio", "scores")))
        with tl.request.scope(ratio=float("nan"), scores=(float("inf"), 1.5)):
            log.info("x")

        def refuse(constant: str) -> None:
            raise ValueError(constant)

        [record] = [
            json.loads(line, parse_constant=refuse) for line in stream.getvalue().splitlines()
        ]
        assert ("nan", ["inf", 1.5]) == (record["ratio"], record["scores"])

    def test_unknown_store_or_bad_keys_are_clear_errors(self) -> None:
        with pytest.raises(ValueError, match="no ContextStore named 'nope'"):
            tls.processor(store="nope")
        with pytest.raises(TypeError, match="keys takes a list of store keys, not one"):
            tls.processor(keys="tenant")
        with pytest.raises(TypeError, match="placeholder takes a str or None"):
            tls.processor(placeholder=0)  # type: ignore[arg-type]

    def test_picklable(self) -> None:
        """The processor can be handed to a worker process as part of a configuration."""
        processor = tls.processor(keys=("tenant",))
        copy = pickle.loads(pickle.dumps(processor))  # noqa: S301 - its own bytes
        event: dict[str, Any] = {}
        with tl.request.scope(request_id="r1", tenant="acme"):
            copy(None, "info", event)
        assert ("r1", "acme") == (event["request_id"], event["tenant"])


class TestHostileValues:
    def test_json_renderer_one_line(self) -> None:
        """A request id that came in with CR, LF, ESC and U+2028 cannot start a JSON line."""
        log, stream = json_logger(tls.add_context)
        with tl.request.scope(request_id=HOSTILE, user_id={"k\n": "v\x85"}):
            log.info("x")
        assert 1 == len(stream.getvalue().splitlines())
        [record] = records(stream)
        assert "r1\\r\\nFAKE level=critical\\x1b[2J\\u2028" == record["request_id"]
        assert {"k\\n": "v\\x85"} == record["user_id"]

    def test_console_renderer_one_line(self) -> None:
        """structlog's console renderer writes strings raw: the processor escaped them first."""
        stream = io.StringIO()
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        log = structlog.wrap_logger(
            structlog.PrintLogger(stream), processors=[tls.add_context, renderer]
        )
        with tl.request.scope(request_id=HOSTILE):
            log.info("x")
        [line] = stream.getvalue().splitlines()
        assert "request_id=" in line
        assert line.isprintable()  # splitlines() split at CR, LF and U+2028: none is left

    @settings(max_examples=200, deadline=None)
    @given(value=st.text(), key=st.text(min_size=1, max_size=5))
    def test_any_text_is_one_printable_line(self, value: str, key: str) -> None:
        """Whatever text a store value holds, alone or nested, each renderer writes one line."""
        console = structlog.dev.ConsoleRenderer(colors=False)
        with tl.request.scope(request_id=value, user_id={key: [value]}):
            for renderer in (console, structlog.processors.JSONRenderer()):
                event = renderer(None, "info", tls.add_context(None, "info", {"event": "x"}))
                assert isinstance(event, str)
                assert event.isprintable(), repr(event)


class TestAcrossBoundaries:
    def test_thread_pool(self) -> None:
        """Events logged in pool threads carry the request that submitted the job."""
        log, stream = json_logger(tls.add_context)
        with tl.ThreadPoolExecutor(max_workers=2) as pool:
            for i in range(8):
                with tl.request.scope(request_id=f"r{i}"):
                    pool.submit(log.info, "job", job=i)
        got = sorted((r["job"], r["request_id"]) for r in records(stream))
        assert [(i, f"r{i}") for i in range(8)] == got


WORKERS_APP = textwrap.dedent(
    """
    import multiprocessing
    import sys
    import structlog
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    import threadline as tl
    import threadline.structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            threadline.structlog.add_context,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
    )

    def work(kind):
        structlog.get_logger().info("worked", kind=kind)

    if __name__ == "__main__":
        trace.set_tracer_provider(TracerProvider())
        with trace.get_tracer("app").start_as_current_span("request") as span:
            with tl.request.scope(request_id="r-7", user_id="u\\n1"):
                structlog.get_logger().info("parent")
                context = multiprocessing.get_context(sys.argv[1])
                with tl.ProcessPoolExecutor(1, mp_context=context) as pool:
                    pool.submit(work, "executor").result()
    """
)


def run_app(tmp_path: Path, source: str, *args: str) -> str:
    (tmp_path / "app.py").write_text(source)
    result = subprocess.run(
        [sys.executable, "app.py", *args],
        check=False,
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    return result.stdout


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_process_pool_workers(method: str, tmp_path: Path) -> None:
    """A process-pool worker's events carry the parent's request and trace, escaped."""
    lines = [json.loads(line) for line in run_app(tmp_path, WORKERS_APP, method).splitlines()]
    assert ["parent", "worked"] == [line["event"] for line in lines]
    assert {("r-7", "u\\n1")} == {(line["request_id"], line["user_id"]) for line in lines}
    parent, worker = lines
    assert parent["trace_id"] == worker["trace_id"] != "-"
    assert parent["span_id"] != worker["span_id"]  # the worker's job span


def test_celery_worker(redis_url: str, celery_app: Any, tmp_path: Path) -> None:
    """A task run by a real prefork worker logs with the publisher's request and trace."""
    trace_id, folder = library_logs_from_worker(redis_url, celery_app, tmp_path)
    [line] = (folder / "structlog.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert ("structlog", "t1") == (record["event"], record["tag"])
    assert ("req-\\nlib", 7, trace_id) == (
        record["request_id"],
        record["user_id"],
        record["trace_id"],
    )


async def test_http_hop(serve: Any) -> None:
    """The gateway's and the backend's events share the request id and the trace."""
    log, stream = json_logger(tls.add_context)

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
    gateway_line, backend_line = records(stream)
    assert ("gateway", "backend") == (gateway_line["event"], backend_line["event"])
    assert gateway_line["request_id"] == backend_line["request_id"] != "-"
    assert gateway_line["trace_id"] == backend_line["trace_id"] != "-"
