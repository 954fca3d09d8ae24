"""The live view's endpoint: a read-only HTTP server of the standard library, in a daemon thread.

It answers ``GET`` only: ``/`` (the page), ``/requests`` (the requests in
flight, JSON) and ``/leaks`` (JSON). It binds the address it is given; only
loopback addresses unless the caller allowed others. A request without
exactly one ``Host``, a loopback name, is refused (403), so a web page
cannot read the view through DNS rebinding; nothing is ever changed
through it.
"""

from __future__ import annotations

import http.server
import json
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any

from .._core.settings import is_loopback

__all__ = ["LiveServer"]

_PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


class LiveServer:
    """The endpoint `threadline.live.serve` started; `close` stops it.

    Attributes:
        host: the address it listens on; port: its port (the one chosen when 0 was asked).
        url: ``http://HOST:PORT`` (IPv6 in brackets).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        allow_remote: bool,
        page: Callable[[], str],
        requests: Callable[[], Any],
        leaks: Callable[[], Any],
        on_close: Callable[[], None],
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        routes = {
            "/": ("text/html; charset=utf-8", lambda: page().encode()),
            "/requests": ("application/json", lambda: _json(requests())),
            "/leaks": ("application/json", lambda: _json(leaks())),
        }

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self._server = Server((host, port), _handler(routes, allow_remote))
        bound = self._server.server_address
        self.host: str = str(bound[0])
        self.port: int = int(bound[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._on_close = on_close
        # what `close` writes to, to wake the thread: it sleeps in select() without a timeout
        self._wake, self._woken = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="threadline-live", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Answer each look as it comes, asleep in between (no polling) until `close`."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._woken, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if any(key.fileobj is self._woken for key, _ in ready):
                    return
                self._server.handle_request()  # (ready: it accepts at once, a thread answers)

    def close(self) -> None:
        """Stop serving and close the socket (tracking stops with the last server)."""
        if self._thread.is_alive():
            self._wake.send(b"\0")
            self._thread.join()
            self._server.server_close()
            self._wake.close()
            self._woken.close()
            self._on_close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveServer({self.url!r})"


def _json(data: Any) -> bytes:
    # ensure_ascii: every control character and every non-ASCII one leaves as a \u escape
    return json.dumps(data, ensure_ascii=True, allow_nan=False).encode("ascii")


def _handler(
    routes: dict[str, tuple[str, Callable[[], bytes]]], allow_remote: bool
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "threadline-live"
        sys_version = ""

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if not (allow_remote or _loopback_host(self.headers.get_all("Host") or [])):
                self._send(403, "text/plain; charset=utf-8", b"not a loopback Host\n")
            elif route is None:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
            else:
                kind, body = route
                self._send(200, kind, body())

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", _PAGE_POLICY)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Nothing: the view writes no log line per look."""

    return Handler


def _loopback_host(values: list[str]) -> bool:
    """Whether the request has one ``Host``, a loopback name (two: a proxy may read either)."""
    if len(values) != 1:
        return False
    host = values[0].strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return bool(host) and is_loopback(host)
