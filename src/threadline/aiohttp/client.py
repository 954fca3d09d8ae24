"""The aiohttp client side: a `TraceConfig` that carries the caller's context on every request.

A page of adaptation: aiohttp's request tracing signals, turned into the calls of
`threadline._http.client.ClientExchange`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import SimpleNamespace

import aiohttp
import aiosignal
from aiohttp import (
    ClientSession,
    TraceConfig,
    TraceRequestEndParams,
    TraceRequestExceptionParams,
    TraceRequestRedirectParams,
    TraceRequestStartParams,
)
from yarl import URL

from .._boundary.coexistence import contrib_loaded
from .._core.lifecycle import location
from .._http.client import ClientExchange
from .._http.options import ClientOptions

__all__ = ["trace_config"]

_CONTRIB_MARK = "_is_instrumented_by_opentelemetry"
# where a call's resource was made: the first frame outside aiohttp (and threadline, the stdlib)
_SKIP = tuple(
    os.path.dirname(os.path.abspath(module.__file__ or "")) + os.sep
    for module in (aiohttp, aiosignal)
)


def trace_config(
    *,
    baggage_hosts: Iterable[str] = (),
    spans: bool = True,
    send_request_id: bool = True,
) -> TraceConfig:
    """Return an `aiohttp.TraceConfig` that carries the caller's context on every request.

    ``traceparent`` and ``tracestate`` go to every host. Baggage (with the
    store values) and ``X-Request-ID`` go only to loopback hosts and to
    *baggage_hosts*: exact names (``"api.internal"``), or ``"*.internal"``
    for every subdomain; a user id never leaks to a third-party API.
    ``send_request_id=False`` never sends ``X-Request-ID``.
    The decision is made again for every redirect, by the host it goes to.
    Each request gets a CLIENT span ``"{method}"``, so each call has its own
    parent id; without a recording span the caller's span is the parent. A
    session that OpenTelemetry's aiohttp-client instrumentation also traces
    gets its CLIENT span only, never a second one.

    Raises:
        TypeError: an option of the wrong type (*baggage_hosts* given as one
            ``str``, a flag that is not a bool), named.
        ValueError: an entry of *baggage_hosts* that is no host name.
    """
    signals = _Signals(
        ClientOptions(baggage_hosts=baggage_hosts, spans=spans, send_request_id=send_request_id)
    )
    config = TraceConfig()
    config.on_request_start.append(signals.on_start)
    config.on_request_redirect.append(signals.on_redirect)
    config.on_request_end.append(signals.on_end)
    config.on_request_exception.append(signals.on_exception)
    return config


class _Signals:
    """aiohttp's request signals, each call one `ClientExchange` (kept in the signals' *ctx*)."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options

    async def on_start(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        url = params.url
        ctx.threadline = exchange = ClientExchange(
            self.options,
            params.method,
            str(url),
            url.host,
            url.port,
            other_makes_it=_makes_spans(session),
            where=_call_site,
        )
        exchange.write_headers(params.headers)

    async def on_redirect(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestRedirectParams
    ) -> None:
        # aiohttp sends the next request with these same headers
        exchange: ClientExchange | None = getattr(ctx, "threadline", None)
        if exchange is not None:
            exchange.redirect(params.headers, _next_url(params))

    async def on_end(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestEndParams
    ) -> None:
        exchange: ClientExchange | None = getattr(ctx, "threadline", None)
        if exchange is not None:
            exchange.finish(params.response.status)

    async def on_exception(
        self, session: ClientSession, ctx: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        exchange: ClientExchange | None = getattr(ctx, "threadline", None)
        if exchange is not None:
            exchange.fail(params.exception)


def _makes_spans(session: ClientSession) -> bool:
    """Whether OpenTelemetry's aiohttp-client instrumentation traces *session* too."""
    if not contrib_loaded("aiohttp.client") or not any(
        getattr(config, _CONTRIB_MARK, False) for config in session.trace_configs
    ):
        return False
    # it stands aside where HTTP instrumentation is suppressed
    from opentelemetry.instrumentation.utils import (  # noqa: PLC0415 - present with it
        is_http_instrumentation_enabled,
    )

    return bool(is_http_instrumentation_enabled())


def _next_url(params: TraceRequestRedirectParams) -> str | None:
    """Where the redirect goes: its ``Location``, resolved as aiohttp resolves it."""
    headers = params.response.headers
    given = headers.get("Location") or headers.get("URI")
    if not given:
        return str(params.url)
    try:
        return str(params.url.join(URL(given)))
    except ValueError:
        return None  # aiohttp will refuse it too; nothing trusted goes meanwhile


def _call_site() -> str:
    """Where the call was made: the first frame outside aiohttp, threadline and the stdlib."""
    return location(1, _SKIP)
