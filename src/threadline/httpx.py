"""httpx integration: `instrument` carries the caller's context on every request of a client.

::

    client = threadline.httpx.instrument(httpx.Client())
    client = threadline.httpx.instrument(httpx.AsyncClient(), baggage_hosts=["*.internal"])

A page of adaptation over `threadline._http.client.ClientExchange`: the
client's ``send`` (one call, in the caller's context, redirects included) and
``_send_single_request`` (one hop: where the transport for the URL is chosen,
so every transport and mount is covered) are wrapped on the instance.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import httpcore
import httpx

from ._boundary.coexistence import contrib_loaded, is_contrib
from ._core.lifecycle import location
from ._http.client import ClientExchange
from ._http.options import ClientOptions

__all__ = ["instrument"]

_Client = TypeVar("_Client", httpx.Client, httpx.AsyncClient)

_MARK = "_threadline_options"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# where a call's resource was made: the first frame outside httpx and httpcore (and threadline)
_SKIP = tuple(
    os.path.dirname(os.path.abspath(module.__file__ or "")) + os.sep for module in (httpx, httpcore)
)


class _Call:
    """One call in flight: its exchange, and whether its first hop has gone."""

    __slots__ = ("exchange", "sent")

    def __init__(self, exchange: ClientExchange) -> None:
        self.exchange = exchange
        self.sent = False

    def hop(self, request: httpx.Request) -> None:
        """Write the headers of the next hop: the first as is, a later one decided again."""
        if self.sent:  # httpx copied the previous hop's headers
            self.exchange.redirect(request.headers, str(request.url))
        else:
            self.sent = True
            self.exchange.write_headers(request.headers)


_CALL: ContextVar[_Call | None] = ContextVar("threadline.httpx.call", default=None)


def instrument(
    client: _Client,
    *,
    baggage_hosts: Iterable[str] = (),
    spans: bool = True,
    send_request_id: bool = True,
) -> _Client:
    """Carry the caller's context on every request *client* sends; return *client*.

    *client* is an `httpx.Client` or `httpx.AsyncClient`; only this one is
    changed, and instrumenting it again changes nothing (the first options
    stay). Each call runs in the context it is made in (the calling task's,
    the calling thread's) and gets a CLIENT span ``"{method}"`` when that
    context's span records. ``traceparent`` goes to every host; baggage (with
    the store values) and ``X-Request-ID`` only to loopback hosts and to
    *baggage_hosts* (``"api.internal"``, or ``"*.internal"`` for every
    subdomain), decided again by the host of every redirect: what httpx
    copies from the previous hop is taken out first. ``send_request_id=False``
    never sends ``X-Request-ID``.

    The span ends when the response is closed: at once for a read response,
    when the body is read to its end or the response closed for
    ``client.stream(...)`` and ``send(..., stream=True)``. An error (a
    connect error, a timeout, too many redirects) fails it with
    ``error.type``. Where OpenTelemetry's httpx instrumentation traces the
    client, its CLIENT span is the call's, never a second one, and only the
    baggage threadline wrote goes (its own injection is given none).

    Raises:
        TypeError: *client* is not an httpx client; an option of the wrong
            type (*baggage_hosts* given as one ``str``, a flag that is not a
            bool), named.
        ValueError: an entry of *baggage_hosts* that is no host name.
    """
    options = ClientOptions(
        baggage_hosts=baggage_hosts, spans=spans, send_request_id=send_request_id
    )
    if not isinstance(client, (httpx.Client, httpx.AsyncClient)):
        raise TypeError(
            f"instrument takes an httpx.Client or httpx.AsyncClient, got {type(client).__name__}"
        )
    if _MARK in vars(client):
        return client
    if isinstance(client, httpx.AsyncClient):
        _instrument_async(client, options)
    else:
        _instrument_sync(client, options)
    setattr(client, _MARK, options)
    return client


def _instrument_sync(client: httpx.Client, options: ClientOptions) -> None:
    cls = type(client)  # looked up on each call: an instrumentation patched in later is kept

    def send(request: httpx.Request, **kwargs: Any) -> httpx.Response:
        exchange = _exchange(options, request, _contrib_makes_it(client, request.url))
        token = _CALL.set(_Call(exchange))
        try:
            with exchange.sending():
                response = cls.send(client, request, **kwargs)
        finally:
            _CALL.reset(token)
        _end_with(response, exchange, _EndingStream)
        return response

    def send_single_request(request: httpx.Request) -> httpx.Response:
        call = _CALL.get()
        if call is not None:
            call.hop(request)
        return cls._send_single_request(client, request)

    setattr(client, "send", send)  # noqa: B010 - an instance attribute over the method
    setattr(client, "_send_single_request", send_single_request)  # noqa: B010


def _instrument_async(client: httpx.AsyncClient, options: ClientOptions) -> None:
    cls = type(client)

    async def send(request: httpx.Request, **kwargs: Any) -> httpx.Response:
        exchange = _exchange(options, request, _contrib_makes_it(client, request.url))
        token = _CALL.set(_Call(exchange))
        try:
            with exchange.sending():
                response = await cls.send(client, request, **kwargs)
        finally:
            _CALL.reset(token)
        _end_with(response, exchange, _AsyncEndingStream)
        return response

    async def send_single_request(request: httpx.Request) -> httpx.Response:
        call = _CALL.get()
        if call is not None:
            call.hop(request)
        return await cls._send_single_request(client, request)

    setattr(client, "send", send)  # noqa: B010 - an instance attribute over the method
    setattr(client, "_send_single_request", send_single_request)  # noqa: B010


def _end_with(
    response: httpx.Response,
    exchange: ClientExchange,
    ending: type[_EndingStream | _AsyncEndingStream],
) -> None:
    """End *exchange* now for a read response, or when the streamed one is closed."""
    follow = response.next_request  # a redirect not followed: the caller may send it on
    if follow is not None:
        exchange.redirect(follow.headers, str(follow.url))
    if response.is_closed:
        exchange.finish(response.status_code)
    else:
        response.stream = ending(response.stream, exchange, response.status_code)


def _exchange(options: ClientOptions, request: httpx.Request, other: bool) -> ClientExchange:
    url = request.url
    return ClientExchange(
        options,
        request.method,
        str(url),
        url.host,
        url.port or _DEFAULT_PORTS.get(url.scheme),
        other_makes_it=other,
        where=_call_site,
    )


class _EndingStream(httpx.SyncByteStream):
    """A response body that ends the call's exchange when it is closed (or fails reading)."""

    def __init__(self, stream: Any, exchange: ClientExchange, status: int) -> None:
        self._stream = stream
        self._exchange = exchange
        self._status = status

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as error:
            self._exchange.fail(error)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._exchange.finish(self._status)


class _AsyncEndingStream(httpx.AsyncByteStream):
    """An async response body that ends the call's exchange when it is closed (or fails reading)."""

    def __init__(self, stream: Any, exchange: ClientExchange, status: int) -> None:
        self._stream = stream
        self._exchange = exchange
        self._status = status

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as error:
            self._exchange.fail(error)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._exchange.finish(self._status)


def _contrib_makes_it(client: httpx.Client | httpx.AsyncClient, url: httpx.URL) -> bool:
    """Whether OpenTelemetry's httpx instrumentation traces the transport *url* goes through."""
    if not contrib_loaded("httpx"):
        return False
    transport = client._transport_for_url(url)
    name = "handle_async_request" if isinstance(client, httpx.AsyncClient) else "handle_request"
    # its instrumentor wraps the method (on the class, or on the client's transports) with wrapt
    wrapped = hasattr(getattr(transport, name, None), "__wrapped__")
    if not (wrapped or is_contrib(transport, "httpx")):
        return False
    from opentelemetry.instrumentation.utils import (  # noqa: PLC0415 - present with it
        is_http_instrumentation_enabled,
    )

    return bool(is_http_instrumentation_enabled())


def _call_site() -> str:
    """Where the call was made: the first frame outside httpx, httpcore, threadline, the stdlib."""
    return location(1, _SKIP)
