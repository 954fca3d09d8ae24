"""The aiohttp client side: a `TraceConfig` that carries the caller's context on every request.

A thin adapter of aiohttp's request tracing signals to `threadline._http`.
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
from opentelemetry.trace import get_current_span, set_span_in_context
from yarl import URL

from .._core import lifecycle as _hooks
from .._core.context import Context, get_current
from .._http.core import HostAllowList, end_client_span, start_client_span, write_outgoing
from .._telemetry.spans import record_error

__all__ = ["trace_config"]

_CONTRIB_MARK = "_is_instrumented_by_opentelemetry"
# where a call's resource was made: the first frame outside aiohttp (and threadline, the stdlib)
_SKIP = tuple(
    os.path.dirname(os.path.abspath(module.__file__ or "")) + os.sep
    for module in (aiohttp, aiosignal)
)


def _makes_spans(session: ClientSession) -> bool:
    """Whether OpenTelemetry's aiohttp-client instrumentation traces *session* too."""
    if not any(getattr(config, _CONTRIB_MARK, False) for config in session.trace_configs):
        return False
    # it stands aside where HTTP instrumentation is suppressed
    from opentelemetry.instrumentation.utils import (  # noqa: PLC0415 - present with it
        is_http_instrumentation_enabled,
    )

    return bool(is_http_instrumentation_enabled())


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
    """
    allowed = HostAllowList(baggage_hosts)
    config = TraceConfig()

    async def on_start(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        context = get_current()
        span = None
        if spans and get_current_span(context).is_recording() and not _makes_spans(session):
            url = params.url
            span = start_client_span(params.method, str(url.with_user(None)), url.host, url.port)
            context = set_span_in_context(span, context)
        ctx.threadline_span = span
        ctx.threadline_context = context
        if _hooks.active:  # the call is made here: its resource gets init now, destroy at its end
            ctx.threadline_resource = _hooks.create("http.client", _hooks.location(1, _SKIP))
        write_outgoing(
            params.headers,
            context,
            trusted=allowed.allows(params.url.host),
            send_request_id=send_request_id,
        )

    async def on_redirect(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestRedirectParams
    ) -> None:
        # aiohttp sends the next request with these same headers; only the
        # Location (resolved as aiohttp resolves it) says where they go next.
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        try:
            host = params.url.join(URL(location)).host if location else params.url.host
        except ValueError:
            host = None  # aiohttp will refuse it too; nothing trusted goes meanwhile
        context: Context | None = getattr(ctx, "threadline_context", None)
        write_outgoing(
            params.headers,
            get_current() if context is None else context,
            trusted=allowed.allows(host),
            send_request_id=send_request_id,
            again=True,
        )

    async def on_end(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestEndParams
    ) -> None:
        span = getattr(ctx, "threadline_span", None)
        if span is not None:
            end_client_span(span, params.response.status)
        _destroy(ctx)

    async def on_exception(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        span = getattr(ctx, "threadline_span", None)
        if span is not None:
            record_error(span, params.exception)
            span.end()
        _destroy(ctx)

    config.on_request_start.append(on_start)
    config.on_request_redirect.append(on_redirect)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    return config


def _destroy(ctx: SimpleNamespace) -> None:
    resource = getattr(ctx, "threadline_resource", None)
    if resource is not None:
        ctx.threadline_resource = None
        _hooks.destroy(resource)
