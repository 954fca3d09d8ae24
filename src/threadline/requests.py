"""requests integration: `instrument` carries the caller's context on every request of a session.

::

    session = threadline.requests.instrument(requests.Session())
    session = threadline.requests.instrument(requests.Session(), baggage_hosts=["*.internal"])

A page of adaptation over `threadline._http.client.ClientExchange`: the
session's ``send`` is wrapped on the instance. requests calls it once per
call and again for every redirect (``Session.resolve_redirects``), so each
hop's headers are decided by the host it goes to.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any, cast
from urllib.parse import urlsplit

import requests
import urllib3

from ._boundary.coexistence import contrib_loaded
from ._core.lifecycle import location
from ._http.client import ClientExchange
from ._http.options import ClientOptions

__all__ = ["instrument"]

_MARK = "_threadline_options"
_CONTRIB_MARK = "opentelemetry_instrumentation_requests_applied"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# where a call's resource was made: the first frame outside requests and urllib3 (and threadline)
_SKIP = tuple(
    os.path.dirname(os.path.abspath(module.__file__ or "")) + os.sep
    for module in (requests, urllib3)
)

# The call in flight in this context: its session and exchange (a redirect's send finds it).
_CALL: ContextVar[tuple[requests.Session, ClientExchange] | None] = ContextVar(
    "threadline.requests.call", default=None
)


def instrument(
    session: requests.Session,
    *,
    baggage_hosts: Iterable[str] = (),
    spans: bool = True,
    send_request_id: bool = True,
) -> requests.Session:
    """Carry the caller's context on every request *session* sends; return *session*.

    Only this session is changed, and instrumenting it again changes nothing
    (the first options stay). Each call runs in the context of the thread
    that makes it and gets a CLIENT span ``"{method}"`` when that context's
    span records. ``traceparent`` goes to every host; baggage (with the store
    values) and ``X-Request-ID`` only to loopback hosts and to *baggage_hosts*
    (``"api.internal"``, or ``"*.internal"`` for every subdomain), decided
    again by the host of every redirect: what requests copies from the
    previous hop is taken out first. ``send_request_id=False`` never sends
    ``X-Request-ID``.

    The span ends with the call for a read response; with ``stream=True``
    when the body has been read to its end (``iter_content``,
    ``iter_lines``, ``.content``) or the response is closed, whichever comes
    first. An error (a connect error, a timeout, too many redirects) fails it
    with ``error.type``. Where OpenTelemetry's requests instrumentation is on,
    its CLIENT spans are the call's, never a second one, and only the baggage
    threadline wrote goes (its own injection is given none).

    Raises:
        TypeError: *session* is not a `requests.Session`; an option of the
            wrong type (*baggage_hosts* given as one ``str``, a flag that is
            not a bool), named.
        ValueError: an entry of *baggage_hosts* that is no host name.
    """
    options = ClientOptions(
        baggage_hosts=baggage_hosts, spans=spans, send_request_id=send_request_id
    )
    if not isinstance(session, requests.Session):
        raise TypeError(f"instrument takes a requests.Session, got {type(session).__name__}")
    if _MARK in vars(session):
        return session
    cls = type(session)  # looked up on each call: an instrumentation patched in later is kept

    def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        headers = cast("MutableMapping[str, str]", request.headers)
        call = _CALL.get()
        if call is not None and call[0] is session and kwargs.get("allow_redirects") is False:
            # a redirect: requests copied the previous hop's headers
            call[1].redirect(headers, request.url)
            return cls.send(session, request, **kwargs)
        url = request.url or ""
        other = _contrib_makes_it(cls)
        exchange = ClientExchange(
            options,
            request.method or "GET",
            url,
            *_host_and_port(url),
            other_makes_it=other,
            where=_call_site,
        )
        exchange.write_headers(headers)
        token = _CALL.set((session, exchange))
        try:
            with exchange.sending():
                response = cls.send(session, request, **kwargs)
        finally:
            _CALL.reset(token)
        follow = response.next  # a redirect not followed: the caller may send it on
        if follow is not None:
            exchange.redirect(cast("MutableMapping[str, str]", follow.headers), follow.url)
        if kwargs.get("stream"):
            _end_when_read(response, exchange)
        else:
            exchange.finish(response.status_code)
        return response

    setattr(session, "send", send)  # noqa: B010 - an instance attribute over the method
    setattr(session, _MARK, options)
    return session


def _host_and_port(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme)


def _end_when_read(response: requests.Response, exchange: ClientExchange) -> None:
    """End *exchange* when *response*'s body has been read to its end or it is closed."""
    status = response.status_code
    close = response.close
    iter_content = response.iter_content

    def closing() -> None:
        try:
            close()
        finally:
            exchange.finish(status)

    def reading(*args: Any, **kwargs: Any) -> Iterator[Any]:
        return _ending(iter_content(*args, **kwargs), exchange, status)

    setattr(response, "close", closing)  # noqa: B010 - an instance attribute over the method
    setattr(response, "iter_content", reading)  # noqa: B010


def _ending(chunks: Iterator[Any], exchange: ClientExchange, status: int) -> Iterator[Any]:
    try:
        yield from chunks
    except Exception as error:
        exchange.fail(error)
        raise
    exchange.finish(status)


def _contrib_makes_it(cls: type[requests.Session]) -> bool:
    """Whether OpenTelemetry's requests instrumentation traces the sends of *cls*."""
    if not (contrib_loaded("requests") and getattr(cls.send, _CONTRIB_MARK, False)):
        return False
    from opentelemetry.instrumentation.utils import (  # noqa: PLC0415 - present with it
        is_http_instrumentation_enabled,
    )

    return bool(is_http_instrumentation_enabled())


def _call_site() -> str:
    """Where the call was made: the first frame outside requests, urllib3 and threadline."""
    return location(1, _SKIP)
