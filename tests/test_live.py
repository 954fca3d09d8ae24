"""`threadline.live`: requests in flight, the bleed watch, leaks; real servers, a real browser."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.server
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace

import threadline as tl
import threadline.aiohttp
import threadline.asgi
import threadline.subprocess
from tests.asgi_servers import AsgiServe
from tests.helpers import Serve, clean_env, free_port, marked_line
from threadline import diagnostics, live, lost
from threadline._core import lifecycle
from threadline._core.settings import LIVE_ENV, for_workers, parse_address, read_settings
from threadline.cli import main
from threadline.live import _tracker
from threadline.live._page import BadSnapshotError, read_snapshot, render_html, render_text

pytest_plugins = ["pytester"]
HERE = Path(__file__).resolve()


@pytest.fixture
def server() -> Iterator[live.LiveServer]:
    """The live view of this process, on a free loopback port; closed and forgotten after."""
    with live.serve() as started:
        yield started
    _tracker.tracker.forget_leaks()


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """GET *url*: status, headers, body (an HTTP error is an answer too)."""
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a loopback test URL
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - ditto
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def requests_of(url: str) -> list[dict[str, Any]]:
    status, _, body = fetch(url + "/requests")
    assert 200 == status
    return list(json.loads(body)["requests"])


# -- the endpoint -------------------------------------------------------------------------


class TestServe:
    @pytest.mark.parametrize("address", ["0.0.0.0:0", "192.0.2.7:8123", "[::]:0", "example.com:80"])
    def test_refuses_any_address_but_loopback(self, address: str) -> None:
        """A non-loopback address is a ValueError naming it, and nothing is served."""
        with pytest.raises(ValueError, match="is not a loopback address") as raised:
            live.serve(address)
        assert repr(address) in str(raised.value)
        assert not lifecycle.active

    def test_a_remote_address_when_allowed_explicitly(self) -> None:
        """allow_remote=True binds what it is told (here every interface, closed at once)."""
        with live.serve("0.0.0.0:0", allow_remote=True) as started:
            assert started.url.startswith("http://0.0.0.0:")
            assert 200 == fetch(f"http://127.0.0.1:{started.port}/requests")[0]

    @pytest.mark.parametrize("address", ["nope", "127.0.0.1:99999", "127.0.0.1:", ":80"])
    def test_a_bad_address_is_a_clear_error(self, address: str) -> None:
        """Not HOST:PORT: a ValueError naming what was given."""
        with pytest.raises(ValueError, match=r"is not HOST:PORT"):
            live.serve(address)

    def test_wrong_types_are_named(self) -> None:
        """A programmer's mistake: a TypeError naming the argument."""
        with pytest.raises(TypeError, match="address must be a str"):
            live.serve(8123)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="allow_remote"):
            live.serve(allow_remote="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="log"):
            live.leaks(log=None)  # type: ignore[arg-type]

    def test_off_until_served_and_off_again_after(self) -> None:
        """No hook and no thread before serve() or after close(): the view costs nothing off."""
        assert not lifecycle.active
        before = set(threading.enumerate())
        with live.serve() as started:
            assert lifecycle.active
            assert "threadline-live" in {thread.name for thread in threading.enumerate()}
            assert started.url.startswith("http://127.0.0.1:")
        assert not lifecycle.active
        assert before >= set(threading.enumerate())

    @pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
    def test_the_view_thread_sleeps_while_nobody_reads(self, server: live.LiveServer) -> None:
        """Unread, the view's thread never wakes (no polling), yet answers the next look at once."""
        (thread,) = [t for t in threading.enumerate() if t.name == "threadline-live"]

        def wakeups() -> int:
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            return int(status.split("voluntary_ctxt_switches:")[1].split()[0])

        assert [] == requests_of(server.url)
        before = -1
        for _ in range(50):  # until it has settled into its wait after that look
            settled, before = before, wakeups()
            if settled == before:
                break
            threading.Event().wait(0.1)
        threading.Event().wait(1.0)  # long enough for several polls of a polling server
        assert before == wakeups()
        assert [] == requests_of(server.url)

    def test_read_only_and_for_loopback_hosts_only(self, server: live.LiveServer) -> None:
        """GET only; an unknown path 404; a Host that is not loopback (DNS rebinding) 403."""
        status, headers, body = fetch(server.url + "/requests")
        assert (200, "application/json") == (status, headers["Content-Type"])
        assert {"requests": [], "dropped_requests": 0} == {
            key: value
            for key, value in json.loads(body).items()
            if key in ("requests", "dropped_requests")
        }
        assert "no-store" == headers["Cache-Control"]
        assert 404 == fetch(server.url + "/admin")[0]
        assert 403 == fetch(server.url + "/requests", Host="attacker.example:80")[0]
        assert 200 == fetch(server.url + "/", Host=f"localhost:{server.port}")[0]
        post = urllib.request.Request(server.url + "/requests", data=b"x", method="POST")  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=30)  # noqa: S310 - a loopback test URL
        with refused.value:
            assert 501 == refused.value.code

    @pytest.mark.parametrize(
        "hosts",
        [
            ["127.0.0.1", "evil.com"],
            ["evil.com", "127.0.0.1"],
            ["127.0.0.1", "127.0.0.1"],
            ["localhost", "[::1]"],
            [],
        ],
    )
    def test_one_loopback_host_or_403(self, server: live.LiveServer, hosts: list[str]) -> None:
        """Two Host headers (a proxy may read either), or none: refused, whatever they name."""
        fields = "".join(f"Host: {host}\r\n" for host in hosts)
        assert b"403" == raw_status(server, f"GET /requests HTTP/1.1\r\n{fields}\r\n")
        assert b"200" == raw_status(server, "GET /requests HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    def test_serving_says_where_it_serves(self, caplog: pytest.LogCaptureFixture) -> None:
        """serving(): the view open now, None when none is; each logs its URL once, at INFO."""
        assert live.serving() is None
        with caplog.at_level(logging.INFO, live.LOGGER_NAME), live.serve() as started:
            assert started is live.serving()
        assert live.serving() is None
        assert [f"threadline.live: serving the live view at {started.url}"] == [
            record.getMessage() for record in caplog.records if record.name == live.LOGGER_NAME
        ]


def raw_status(server: live.LiveServer, request: str) -> bytes:
    """The status code the view answers to *request*, sent as it is on a raw socket."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(request.encode("latin-1"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b" ", 2)[1]


@given(st.text(max_size=40))
def test_an_address_from_outside_is_read_strictly(text: str) -> None:
    """Any THREADLINE_LIVE text: a (host, port) to bind, or a ValueError; never another error."""
    try:
        host, port = parse_address(text)
    except ValueError:
        return
    assert 0 <= port <= 65535
    assert host.isprintable()
    assert host


class TestEnvironment:
    @pytest.mark.parametrize("value", ["nope", "0.0.0.0:8123", "127.0.0.1:http", "[::1]"])
    def test_a_bad_value_is_a_warning_and_off(
        self, value: str, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """THREADLINE_LIVE that is not a loopback HOST:PORT: warned, named, and off."""
        assert read_settings({LIVE_ENV: value}).live_address is None
        assert f"{LIVE_ENV}={value!r} is not a valid loopback HOST:PORT" in (
            threadline_warnings.text
        )

    def test_not_handed_to_workers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A worker process gets the other settings, never the live view's address."""
        monkeypatch.setenv(LIVE_ENV, "127.0.0.1:8123")
        monkeypatch.setenv("THREADLINE_SHUTDOWN_TIMEOUT", "3")
        assert LIVE_ENV not in for_workers()
        assert "3" == for_workers()["THREADLINE_SHUTDOWN_TIMEOUT"]

    def test_a_port_in_use_is_a_warning_and_off(self) -> None:
        """THREADLINE_LIVE naming a port another program holds: the program runs, warned."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = subprocess.run(
                [sys.executable, "-c", "import threadline; print('ran')"],
                env=clean_env(**{LIVE_ENV: f"127.0.0.1:{port}"}),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert (0, "ran\n") == (result.returncode, result.stdout)
        assert f"{LIVE_ENV}=127.0.0.1:{port}: the live view cannot serve there" in result.stderr

    def test_served_from_the_first_import(self) -> None:
        """A process started with THREADLINE_LIVE serves its view once it imports threadline."""
        port = free_port()
        code = (
            "import threadline, urllib.request\n"
            f"print(urllib.request.urlopen('http://127.0.0.1:{port}/requests').read().decode())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=clean_env(**{LIVE_ENV: f"127.0.0.1:{port}"}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        assert [] == json.loads(result.stdout)["requests"]

    def test_port_0_says_which_port(self) -> None:
        """THREADLINE_LIVE=127.0.0.1:0: serving() has the URL, and one INFO line says it."""
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
            "import threadline.live, urllib.request\n"
            "url = threadline.live.serving().url\n"
            "print(url)\n"
            "print(urllib.request.urlopen(url + '/requests').status)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=clean_env(**{LIVE_ENV: "127.0.0.1:0"}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        url, status = result.stdout.split()
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        assert "200" == status
        assert f"threadline.live threadline.live: serving the live view at {url}" in (
            result.stderr.splitlines()
        )


# -- requests in flight, through a real aiohttp server --------------------------------------


class Slow:
    """A service whose requests wait until released, with a task, a job, a thread and a child."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.gate = threading.Event()

    async def slow(self, request: web.Request) -> web.Response:
        task = asyncio.create_task(self.release.wait())  # MARK-TASK
        child = threadline.subprocess.Popen(  # MARK-CHILD
            [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
        )
        with tl.ThreadPoolExecutor(1) as pool:
            pool.submit(self.gate.wait)  # MARK-JOB
            thread = tl.Thread(target=self.gate.wait)
            thread.start()  # MARK-THREAD
            await task
            self.gate.set()
        assert child.stdin is not None
        child.stdin.close()
        await asyncio.to_thread(child.wait)
        thread.join()
        return web.Response(text="done")


@pytest.fixture
async def slow_service(serve: Serve) -> AsyncIterator[tuple[str, Slow]]:
    service = Slow()
    app = web.Application()
    threadline.aiohttp.setup(app)
    app.router.add_get("/slow/{n}", service.slow)
    url = await serve(app)
    yield url, service
    service.release.set()
    service.gate.set()


@pytest.fixture
async def two_in_flight(
    slow_service: tuple[str, Slow], server: live.LiveServer
) -> AsyncIterator[list[dict[str, Any]]]:
    """Two slow requests in flight (the first began earlier); the view's JSON of them."""
    url, service = slow_service
    async with ClientSession() as session:
        first = asyncio.create_task(session.get(url + "/slow/1", headers={"X-Request-ID": "r-1"}))
        assert await _until(lambda: len(live.snapshot()["requests"]) == 1)  # type: ignore[arg-type]
        second = asyncio.create_task(session.get(url + "/slow/2", headers={"X-Request-ID": "r-2"}))
        assert await _until(lambda: _running(live.snapshot()) == 8)
        yield await asyncio.to_thread(requests_of, server.url)
        service.release.set()
        for call in (first, second):
            answer = await call
            assert 200 == answer.status
            answer.release()


def _running(snapshot: Any) -> int:
    return sum(request["running"] for request in snapshot["requests"])


async def _until(condition: Any, seconds: float = 30) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return False


class TestInFlight:
    async def test_each_request_with_what_it_made_slowest_first(
        self, two_in_flight: list[dict[str, Any]]
    ) -> None:
        """Request id, route, age, and every resource still running, at the line that made it."""
        assert ["r-1", "r-2"] == [request["request_id"] for request in two_in_flight]
        first, second = two_in_flight
        assert first["age"] > second["age"]
        for request in two_in_flight:
            assert ("http.server", "GET /slow/{n}") == (request["type"], request["name"])
            assert 4 == request["running"]
            made = {(r["type"], r["location"], r["duration"]) for r in request["resources"]}
            assert {
                ("task", marked_line(str(HERE), "MARK-TASK"), None),
                ("subprocess", marked_line(str(HERE), "MARK-CHILD"), None),
                ("thread.job", marked_line(str(HERE), "MARK-JOB"), None),
                ("thread", marked_line(str(HERE), "MARK-THREAD"), None),
            } == made

    def test_a_message_in_processing(self, server: live.LiveServer) -> None:
        """A message's processing is a request too, named by its operation, its work under it."""
        from threadline._messaging.consume import Processing
        from threadline._messaging.semconv import Operation

        gate = threading.Event()
        with Processing({}, Operation("kafka", "orders")), tl.ThreadPoolExecutor(1) as pool:
            pool.submit(gate.wait, 30)
            (shown,) = live.snapshot()["requests"]  # type: ignore[misc]
            gate.set()
        assert ("message.process", "process orders") == (shown["type"], shown["name"])
        assert ["thread.job"] == [resource["type"] for resource in shown["resources"]]

    async def test_the_requests_leave_the_view_when_they_end(
        self, slow_service: tuple[str, Slow], server: live.LiveServer
    ) -> None:
        """Once answered, a request is no longer in flight; nothing it made outlived it."""
        url, service = slow_service
        service.release.set()
        async with ClientSession() as session, session.get(url + "/slow/1") as answer:
            assert 200 == answer.status
        assert [] == await asyncio.to_thread(requests_of, server.url)
        assert [] == live.leaks(log=False)

    async def test_top_once_draws_them(
        self, two_in_flight: list[dict[str, Any]], server: live.LiveServer, capsys: Any
    ) -> None:
        """`threadline top URL --once`: the requests, slowest first, a bar per resource."""
        assert 0 == await asyncio.to_thread(main, ["top", server.url, "--once"])
        out = capsys.readouterr().out
        assert f"threadline top at {server.url}: 2 requests in flight" in out
        assert out.index("r-1") < out.index("r-2")
        assert 2 == out.count("4 of 4 running")
        assert 8 == out.count("running  ")


def fastapi_slow(entered: threading.Event, gate: threading.Event) -> Any:
    """A FastAPI app whose ``/slow/{n}`` waits for *gate* once it *entered*."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/slow/{n}")
    async def slow(n: str) -> dict[str, str]:
        entered.set()
        await asyncio.to_thread(gate.wait, 30)
        return {"n": n}

    threadline.asgi.setup(app)
    code = slow.__code__
    app.state.handler = f"{code.co_filename}:{code.co_firstlineno}"
    return app


class TestRouted:
    async def test_an_asgi_request_shows_its_route_and_handler_once_routed(
        self, asgi_serve: AsgiServe, server: live.LiveServer, capsys: Any
    ) -> None:
        """FastAPI routes inside the app: once it did, the view shows the route and handler,
        never the raw path (here with control characters in it)."""
        entered, gate = threading.Event(), threading.Event()
        app = fastapi_slow(entered, gate)
        base = await asgi_serve(app, "uvicorn")
        async with ClientSession() as session:
            call = asyncio.create_task(session.get(base + "/slow/%1b%5b2J%0a"))
            try:
                assert await _until(entered.is_set)
                (shown,) = await asyncio.to_thread(requests_of, server.url)
                assert await asyncio.to_thread(main, ["top", server.url, "--once"]) == 0
            finally:
                gate.set()
            async with await call as answer:
                assert 200 == answer.status
        assert ("GET /slow/{n}", app.state.handler) == (shown["name"], shown["location"])
        out = capsys.readouterr().out
        assert "GET /slow/{n}" in out
        assert "2J" not in out


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "soon"])
def test_top_takes_an_interval_above_zero(interval: str, capsys: Any) -> None:
    """--interval that is not a number of seconds above 0: a usage error naming it."""
    with pytest.raises(SystemExit) as usage:
        main(["top", "http://127.0.0.1:1", "--interval", interval])
    assert 2 == usage.value.code
    assert f"{interval!r} is not a number of seconds above 0" in capsys.readouterr().err


def test_top_redraws_until_interrupted(server: live.LiveServer) -> None:
    """`threadline top URL`: the screen cleared and redrawn every --interval, until Ctrl-C (0)."""
    top = subprocess.Popen(
        [sys.executable, "-m", "threadline", "top", server.url, "--interval", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert top.stdout is not None
    drawn = []
    with top.stdout:
        while len(drawn) < 2:
            line = top.stdout.readline()
            assert line, "top ended early"
            if "threadline top at" in line:
                drawn.append(line)
        top.send_signal(signal.SIGINT)
        top.stdout.read()
    assert 0 == top.wait(30)
    assert all(line.startswith("\x1b[H\x1b[2Jthreadline top at") for line in drawn)


# -- the page in a real browser -------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium (as tests/test_view.py finds it), else skipped."""
    import shutil

    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("THREADLINE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed; THREADLINE_REQUIRE_CHROMIUM is set")
        pytest.skip("chromium is not installed")
    return found


def browse(chromium: str, url: str, *args: str) -> str:
    """Load *url* in headless Chromium; what it printed (the DOM with --dump-dom)."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1300,700",
            "--virtual-time-budget=1000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr[-2000:]
    return result.stdout


class TestPage:
    async def test_the_browser_shows_each_request_and_its_waterfall(
        self, two_in_flight: list[dict[str, Any]], server: live.LiveServer, chromium: str
    ) -> None:
        """Chromium's DOM of the served page: a section per request, a bar per resource."""
        dom = await asyncio.to_thread(browse, chromium, server.url + "/", "--dump-dom")
        assert 2 == dom.count('<section class="request">')
        assert dom.index("r-1") < dom.index("r-2")
        assert 8 == dom.count('class="bar running"')
        assert '<meta http-equiv="refresh" content="2">' in dom
        assert "<script" not in dom

    async def test_top_html_writes_the_same_page(
        self,
        two_in_flight: list[dict[str, Any]],
        server: live.LiveServer,
        chromium: str,
        tmp_path: Path,
        capsys: Any,
    ) -> None:
        """`threadline top URL --html OUT`: one snapshot as a page, with no refresh."""
        out = tmp_path / "top.html"
        assert 0 == await asyncio.to_thread(main, ["top", server.url, "--html", str(out)])
        assert f"2 requests in flight written to {out}" in capsys.readouterr().out
        dom = await asyncio.to_thread(browse, chromium, out.as_uri(), "--dump-dom")
        assert 2 == dom.count('<section class="request">')
        assert "refresh" not in dom


# -- values from outside ---------------------------------------------------------------------

HOSTILE = "\x1b[2J<script>alert(1)</script>\n\u202eforged line"
KEYS = st.sampled_from(
    [
        "requests",
        "resources",
        "request_id",
        "age",
        "start",
        "duration",
        "name",
        "type",
        "location",
        "running",
        "dropped",
        "time",
        "dropped_requests",
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=3), inner),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_a_snapshot_from_outside_is_read_strictly(data: object) -> None:
    """Any JSON value: a snapshot that draws, or a BadSnapshotError; never another error."""
    try:
        snapshot = read_snapshot(data)
    except BadSnapshotError:
        return
    for drawn in (render_text(snapshot), render_html(snapshot)):
        assert "\x1b" not in drawn


class TestEscaping:
    def test_the_json_the_page_and_the_text_escape_what_came_from_outside(
        self, server: live.LiveServer
    ) -> None:
        """A hostile request id: \\u escapes in JSON, entities in the page, no raw control char."""
        inside, done = threading.Event(), threading.Event()

        def request() -> None:
            with tl.request.scope(request_id=HOSTILE):
                inside.set()
                done.wait(30)

        worker = threading.Thread(target=request)
        worker.start()
        try:
            assert inside.wait(30)
            _, _, body = fetch(server.url + "/requests")
            _, _, page = fetch(server.url + "/")
        finally:
            done.set()
            worker.join()
        assert body.isascii()
        assert b"\\u001b[2J<script>" in body
        text = page.decode()
        assert "<script>" not in text
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        drawn = render_text(read_snapshot(json.loads(body)))
        assert "\x1b" not in drawn
        assert "\u202e" not in drawn
        assert not any(line.startswith("forged") for line in drawn.splitlines())

    def test_top_says_when_what_it_reads_is_no_view(self, capsys: Any) -> None:
        """A server that answers something else: top --once exits 1 naming the URL; no crash."""

        class Other(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"requests": [{"age": "soon"}]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
        serving = threading.Thread(target=other.serve_forever)
        serving.start()
        try:
            url = f"http://127.0.0.1:{other.server_address[1]}"
            assert 1 == main(["top", url, "--once"])
        finally:
            other.shutdown()
            other.server_close()
            serving.join()
        out = capsys.readouterr().out
        assert f"{url}/requests is not a threadline live view: request 0: age" in out
        with pytest.raises(SystemExit) as usage:
            main(["top", "file:///etc/passwd", "--once"])
        assert 2 == usage.value.code


# -- bounded ----------------------------------------------------------------------------------


class TestBounded:
    def test_requests_and_resources_past_the_caps_are_counted(
        self, server: live.LiveServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Over MAX_REQUESTS and MAX_RESOURCES nothing more is kept; what was left out counted."""
        monkeypatch.setattr(_tracker, "MAX_REQUESTS", 2)
        monkeypatch.setattr(_tracker, "MAX_RESOURCES", 3)
        gate = threading.Event()
        with tl.ThreadPoolExecutor(5) as pool, contextlib.ExitStack() as stack:
            stack.callback(gate.set)
            for n in range(2):
                stack.enter_context(tl.request.scope(request_id=f"r{n}"))
            for _ in range(5):
                pool.submit(gate.wait, 30)
            stack.enter_context(tl.request.scope(request_id="r2"))
            snapshot = live.snapshot()
        assert 1 == snapshot["dropped_requests"]
        (outer, inner) = snapshot["requests"]  # type: ignore[misc]
        assert ("r0", "r1") == (outer["request_id"], inner["request_id"])
        assert (3, 2) == (len(inner["resources"]), inner["dropped"])


# -- the bleed watch ---------------------------------------------------------------------------


def asgi_app(ids: itertools.count[int]) -> Any:
    """A plain ASGI app that begins each request with threadline and attaches its context."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        with tl.request.scope(request_id=f"r{next(ids)}"):  # MARK-ASGI
            otel_context.attach(otel_context.get_current())  # never detached
            await receive()
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})

    return app


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app that does nothing with context: it answers ``ok``."""
    if scope["type"] == "http":
        await receive()
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


async def pipelined(reset_contextvars: bool, requests: int, app: Any = None) -> None:
    """Serve *requests* pipelined on one connection with uvicorn (h11), as a client does."""
    import uvicorn

    config = uvicorn.Config(
        app or asgi_app(itertools.count(1)),
        host="127.0.0.1",
        port=0,
        http="h11",
        lifespan="off",
        log_level="warning",
        reset_contextvars=reset_contextvars,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    assert await _until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]

    def client() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" * requests)
            data = b""
            while data.count(b"ok") < requests:
                data += connection.recv(65536)

    try:
        await asyncio.to_thread(client)
    finally:
        server.should_exit = True
        await serving


class TestBleed:
    async def test_uvicorn_without_reset_contextvars(self) -> None:
        """The second pipelined request begins in the first's context: reported once, counted."""
        pytest.importorskip("uvicorn")
        with lost.detecting(log=False) as found:
            await pipelined(reset_contextvars=False, requests=3)
        bleeds = [report for report in found.reports() if report.cause == "bleed"]
        where = marked_line(str(HERE), "MARK-ASGI")
        assert [(where, "r1")] == [(report.location, report.request_id) for report in bleeds]
        assert "still held the request id of request 'r1'" in bleeds[0].message
        assert "--reset-contextvars" in bleeds[0].message
        assert 2 == diagnostics.drop_counts()[lost.BLEED_REASON]

    async def test_uvicorn_with_reset_contextvars_has_none(self) -> None:
        """The same requests with --reset-contextvars: each begins clean, nothing reported."""
        pytest.importorskip("uvicorn")
        with lost.detecting(log=False) as found:
            await pipelined(reset_contextvars=True, requests=3)
        assert [] == [report for report in found.reports() if report.cause == "bleed"]
        assert lost.BLEED_REASON not in diagnostics.drop_counts()

    async def test_threadline_asgi_middleware_keeps_uvicorn_requests_apart(self) -> None:
        """uvicorn's send runs in the context the request came in with: nothing bleeds, no flag."""
        import threadline.asgi

        app = threadline.asgi.Middleware(answer)
        with lost.detecting(log=False) as found:
            await pipelined(reset_contextvars=False, requests=3, app=app)
        assert [] == [report for report in found.reports() if report.cause == "bleed"]
        assert lost.BLEED_REASON not in diagnostics.drop_counts()

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11's")
    async def test_aiohttp_handler_that_never_detaches(self, serve: Serve) -> None:
        """threadline's middleware sees the next request begin in the ended one's context."""
        shared = contextvars.copy_context()  # one Context for every request: the bug
        kept: list[otel_context.Context] = []

        @web.middleware
        async def in_one_context(request: web.Request, handler: Any) -> web.StreamResponse:
            loop = asyncio.get_running_loop()
            return await loop.create_task(handler(request), context=shared)  # MARK-SHARED

        @web.middleware
        async def keeps_the_context(request: web.Request, handler: Any) -> web.StreamResponse:
            response = await handler(request)
            otel_context.attach(kept.pop())  # the request's context, never detached
            return response

        async def handler(request: web.Request) -> web.Response:  # MARK-AIOHTTP
            kept.append(otel_context.get_current())
            return web.Response(text=tl.request.get()["request_id"])  # type: ignore[index]

        app = web.Application()
        threadline.aiohttp.setup(app)
        app.middlewares[0:0] = [in_one_context, keeps_the_context]
        app.router.add_get("/", handler)
        url = await serve(app)
        with lost.detecting(log=False) as found:
            async with ClientSession() as session:
                for request_id in ("a-1", "a-2", "a-3"):
                    async with session.get(url, headers={"X-Request-ID": request_id}) as answer:
                        assert request_id == await answer.text()  # threadline's own is clean
        bleeds = [report for report in found.reports() if report.cause == "bleed"]
        # where the shared Context enters (a task), and the request that begins in it
        assert [
            (marked_line(str(HERE), "MARK-SHARED"), "a-1"),
            (marked_line(str(HERE), "MARK-AIOHTTP"), "a-1"),
        ] == [(report.location, report.request_id) for report in bleeds]
        assert bleeds[0].message.startswith("a task began here in a context that still held")
        assert bleeds[1].message.startswith("an HTTP request began here in a context that still")
        assert 4 == diagnostics.drop_counts()[lost.BLEED_REASON]

    async def test_work_left_running_is_outlived_not_a_bleed(self) -> None:
        """A task that outlives its request and makes more work there: outlived, no bleed."""
        ended = asyncio.Event()

        async def later() -> None:
            await ended.wait()
            await asyncio.create_task(asyncio.sleep(0))  # still the ended request's own work

        with lost.detecting(log=False) as found:
            with tl.request.scope(request_id="r-gone"):
                left = asyncio.create_task(later())
            ended.set()
            await left
        assert ["outlived"] == [report.cause for report in found.reports()]

    def test_a_store_value_an_ended_request_set(self, store: tl.ContextStore) -> None:
        """No request id bled in, but a value the ended request set: reported with it."""

        def serve(request_id: str) -> None:
            with tl.request.scope(request_id=request_id), store.scope(tenant=request_id):
                kept = tl.request.exit(tl.snapshot)  # the tenant, without the request's id
            kept.__enter__()  # attached again, never left

        shared = contextvars.copy_context()
        with lost.detecting(log=False) as found:
            shared.run(serve, "r1")
            shared.run(serve, "r2")
        (bleed,) = found.reports()
        assert ("bleed", "r1") == (bleed.cause, bleed.request_id)
        assert "the test-store store's values set by request 'r1'" in bleed.message

    def test_a_value_from_before_the_requests_is_no_bleed(self, store: tl.ContextStore) -> None:
        """A value every request inherits (set at start-up) is not any request's: not reported."""
        with lost.detecting(log=False) as found, store.scope(region="eu"):
            for request_id in ("r1", "r2"):
                with tl.request.scope(request_id=request_id):
                    pass
        assert [] == found.reports()

    def test_a_request_inside_a_live_one_is_no_bleed(self) -> None:
        """A request begun inside another that still runs (an in-process call) is not reported."""
        with lost.detecting(log=False) as found:
            with tl.request.scope(request_id="outer"), tl.request.scope(request_id="inner"):
                pass
            with tl.request.scope(request_id="again"):
                pass
        assert [] == [report for report in found.reports() if report.cause == "bleed"]

    def test_the_pytest_marker_fails_a_test_where_context_bled(
        self, pytester: pytest.Pytester
    ) -> None:
        """@pytest.mark.threadline_no_lost_context names the bleed, its place and its request."""
        pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        path = pytester.makepyfile(
            test_bleeds="""
            import contextvars
            import pytest
            import threadline as tl

            def serve(request_id):
                with tl.request.scope(request_id=request_id):  # BLEEDS-HERE
                    snap = tl.snapshot()
                snap.__enter__()  # attached, never left

            @pytest.mark.threadline_no_lost_context
            def test_two_requests_in_one_context():
                shared = contextvars.copy_context()
                shared.run(serve, "first")
                shared.run(serve, "second")
            """
        )
        result = pytester.runpytest("--strict-markers")
        result.assert_outcomes(failed=1)
        where = marked_line(str(path), "BLEEDS-HERE")
        result.stdout.fnmatch_lines([f"*{where}: bleed: a request scope began here*'first'*"])


# -- leaks ---------------------------------------------------------------------------------------


class RequestOfRecord(logging.Handler):
    """Each record with the request id and trace id current where it was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        value = tl.request.get()
        trace_id = trace.get_current_span().get_span_context().trace_id
        self.seen.append(
            (record.getMessage(), None if value is None else value["request_id"], trace_id)
        )


def boom() -> None:
    raise ValueError("boom")


class TestLeaks:
    async def test_what_requests_left_behind_in_their_context(
        self, server: live.LiveServer, tracer: trace.Tracer
    ) -> None:
        """Outlived work, unretrieved failures, an unended span: listed, logged in the request."""
        record = RequestOfRecord()
        logging.getLogger(live.LOGGER_NAME).addHandler(record)
        forever = asyncio.Event()
        pool = tl.ThreadPoolExecutor(1)
        try:
            with tl.request.scope(request_id="r-leak"), tracer.start_as_current_span("GET /leak"):
                trace_id = trace.get_current_span().get_span_context().trace_id
                sleeper = asyncio.create_task(forever.wait())  # LEAK-TASK
                failing = asyncio.create_task(asyncio.to_thread(boom))  # LEAK-FAILED-TASK
                job = pool.submit(boom)  # LEAK-JOB
                tracer.start_span("never ended")  # LEAK-SPAN
                await asyncio.wait([failing])
                retrieved = pool.submit(boom)
                with pytest.raises(ValueError, match="boom"):
                    retrieved.result()
            assert await _until(job.done)
            found = live.leaks()
        finally:
            forever.set()
            await sleeper
            failing._log_traceback = False  # type: ignore[attr-defined] # asyncio: said here
            pool.shutdown()
            logging.getLogger(live.LOGGER_NAME).removeHandler(record)

        def at(mark: str) -> str:
            return marked_line(str(HERE), mark)

        assert {
            ("outlived", "task", at("LEAK-TASK"), ""),
            ("unretrieved", "task", at("LEAK-FAILED-TASK"), "ValueError('boom')"),
            ("unretrieved", "thread.job", at("LEAK-JOB"), "ValueError('boom')"),
            ("unended", "span 'never ended'", at("LEAK-SPAN"), ""),
        } == {(leak.kind, leak.what, leak.location, leak.detail) for leak in found}
        assert {"r-leak"} == {leak.request_id for leak in found}
        assert 4 == len(record.seen)
        assert {("r-leak", trace_id)} == {(request, trace) for _, request, trace in record.seen}

    def test_the_tasks_of_every_loop_requests_begin_on(self, server: live.LiveServer) -> None:
        """Loops one after another on a thread, and one on another thread: each one's tasks seen."""
        failed: list[asyncio.Task[None]] = []

        async def request(request_id: str) -> None:
            with tl.request.scope(request_id=request_id):
                await asyncio.create_task(asyncio.sleep(0))
                failed.append(asyncio.create_task(_raise_value_error()))
                await asyncio.wait(failed[-1:])

        try:
            for request_id in ("r-loop-1", "r-loop-2", "r-loop-3"):
                asyncio.run(request(request_id))  # a new loop each time, on this thread
            elsewhere = threading.Thread(target=asyncio.run, args=(request("r-thread"),))
            elsewhere.start()
            elsewhere.join()
            asyncio.run(request("r-loop-4"))  # and back on this thread, a new loop again
            found = live.leaks(log=False)
        finally:
            for task in failed:
                task._log_traceback = False  # type: ignore[attr-defined] # asyncio: said here

        assert ["r-loop-1", "r-loop-2", "r-loop-3", "r-thread", "r-loop-4"] == [
            leak.request_id for leak in found if leak.kind == "unretrieved"
        ]

    def test_listed_at_exit_in_a_child_interpreter(self, tmp_path: Path) -> None:
        """A program that exits with leaks: each logged at exit, with its place and its request."""
        program = tmp_path / "leaky.py"
        program.write_text(
            "import logging, threading\n"
            "import threadline as tl, threadline.logging\n"
            "from threadline import live\n"
            "threadline.logging.install()\n"
            "logging.basicConfig(format='%(request_id)s %(message)s')\n"
            "live.serve()\n"
            "pool = tl.ThreadPoolExecutor(1)\n"
            "with tl.request.scope(request_id='r-exit'):\n"
            "    tl.Thread(target=threading.Event().wait, daemon=True).start()  # EXIT-THREAD\n"
            "    job = pool.submit(int, 'x')  # EXIT-JOB\n"
            "pool.shutdown()\n"
        )
        result = subprocess.run(
            [sys.executable, str(program)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        lines = result.stderr.splitlines()
        thread_at = marked_line(str(program), "EXIT-THREAD")
        job_at = marked_line(str(program), "EXIT-JOB")
        assert [
            f"r-exit threadline: a thread made at {thread_at} still runs after its request "
            f"ended; it belonged to request 'r-exit' (begun at {program}:8)",
            f"r-exit threadline: a thread.job made at {job_at} failed and nobody retrieved "
            "its exception: ValueError(\"invalid literal for int() with base 10: 'x'\"); it "
            f"belonged to request 'r-exit' (begun at {program}:8)",
        ] == lines


# -- the docs' pictures --------------------------------------------------------------------------

ROOT = HERE.parent.parent
REGENERATE = "THREADLINE_REGENERATE_DOCS"
PAGE_SHOT = ROOT / "docs" / "images" / "live-page.png"
LIVE_DOC = ROOT / "docs" / "live.md"


def test_the_docs_pictures_of_the_views(request: pytest.FixtureRequest) -> None:
    """docs/live.md's terminal view and page screenshot, made from examples/live_view.py.

    With THREADLINE_REGENERATE_DOCS=1 they are made again (in headless Chromium);
    otherwise they are checked to be there.
    """
    if os.environ.get(REGENERATE):
        chromium = request.getfixturevalue("chromium")
        example = subprocess.Popen(
            [sys.executable, "examples/live_view.py", "--hold"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert example.stdin is not None
        assert example.stdout is not None
        try:
            url = example.stdout.readline().strip()
            top = subprocess.run(
                [sys.executable, "-m", "threadline", "top", url, "--once"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            PAGE_SHOT.parent.mkdir(exist_ok=True)
            browse(chromium, url + "/", f"--screenshot={PAGE_SHOT}")
        finally:
            example.stdin.close()
            assert 0 == example.wait(60)
            example.stdout.close()
        first = top.split("\n\n")[:2]  # the headline and the oldest request
        text = LIVE_DOC.read_text()
        before, rest = text.split("<!-- top:begin -->\n", 1)
        after = rest.split("<!-- top:end -->", 1)[1]
        block = "```text\n" + "\n\n".join(first).rstrip() + "\n```\n"
        LIVE_DOC.write_text(before + "<!-- top:begin -->\n" + block + "<!-- top:end -->" + after)
    assert b"\x89PNG\r\n\x1a\n" == PAGE_SHOT.read_bytes()[:8]
    block = LIVE_DOC.read_text().split("<!-- top:begin -->", 1)[1].split("<!-- top:end -->")[0]
    assert "threadline top at http://127.0.0.1:" in block
    assert "GET /orders/{order}" in block


async def _raise_value_error() -> None:
    raise ValueError("boom")
