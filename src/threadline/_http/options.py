"""The options of HTTP servers and clients: frozen data, checked once when made, never per request.

Each adapter's factory (``threadline.aiohttp.middleware(**options)``, …)
makes one `ServerOptions` or `ClientOptions` from its keyword arguments, so
a wrong option is an error where the application sets it up, naming the
option, and every request reads plain attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._core.checks import require_bool
from .hosts import HostAllowList
from .semconv import StatusPolicy, client_error, server_error

__all__ = ["ClientOptions", "ServerOptions", "UserIdExtractor"]

UserIdExtractor = Callable[[Any], Any]
"""Called with the framework's request (it may be ``async``); returns the user id, or None."""

_SERVER_LOGGER = logging.getLogger("threadline.http")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How a server treats each request; the first five are the user's options everywhere.

    Attributes:
        trust_incoming: continue the trace and baggage that came; False (a
            public edge): a new trace with a link to the incoming one, no
            incoming baggage.
        accept_request_id: reuse a well-formed incoming request id.
        user_id: the extractor of the user id, or None; with one, its answer
            is the only user id.
        spans: make a SERVER span per request.
        access_log: write the access line at the end of each request.
        server_timing: send the SERVER span's traceparent back in a
            ``Server-Timing`` response header (Trace Context Level 3), to
            trusted callers only (with *trust_incoming*).
        logger: where the access and unhandled-exception lines go (the
            adapter's logger, ``threadline.aiohttp``, …).
        is_error: which response statuses make the span an error.

    Raises:
        TypeError: an option of the wrong type, named.
    """

    trust_incoming: bool = True
    accept_request_id: bool = True
    user_id: UserIdExtractor | None = None
    spans: bool = True
    access_log: bool = True
    logger: logging.Logger = _SERVER_LOGGER
    is_error: StatusPolicy = server_error
    server_timing: bool = False

    def __post_init__(self) -> None:
        _require_bools(
            self, "trust_incoming", "accept_request_id", "spans", "access_log", "server_timing"
        )
        if self.user_id is not None and not callable(self.user_id):
            raise TypeError(
                f"user_id takes a function of the request (or None), got {self.user_id!r}"
            )
        if not isinstance(self.logger, logging.Logger):
            raise TypeError(f"logger takes a logging.Logger, got {self.logger!r}")
        _require_callable(self.is_error, "is_error")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a client treats each outgoing call.

    Attributes:
        baggage_hosts: hosts, besides loopback, that receive baggage and the
            request id: exact names, or ``*.domain`` for every subdomain
            (kept as a tuple).
        spans: make a CLIENT span per call (when the caller's span records).
        send_request_id: send ``X-Request-ID`` to the allowed hosts.
        is_error: which response statuses make the span an error.
        allowed: the `HostAllowList` made of *baggage_hosts*.

    Raises:
        TypeError: an option of the wrong type (*baggage_hosts* given as one
            ``str``, bytes, a mapping or None, or holding something else), named.
        ValueError: a host in *baggage_hosts* that is no host name.
    """

    baggage_hosts: Iterable[str] = ()
    spans: bool = True
    send_request_id: bool = True
    is_error: StatusPolicy = client_error
    allowed: HostAllowList = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_bools(self, "spans", "send_request_id")
        _require_callable(self.is_error, "is_error")
        allowed = HostAllowList(self.baggage_hosts)
        object.__setattr__(self, "baggage_hosts", allowed.hosts)
        object.__setattr__(self, "allowed", allowed)


def _require_bools(options: object, *names: str) -> None:
    for name in names:
        require_bool(name, getattr(options, name))


def _require_callable(value: object, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} takes a function of the status code, got {value!r}")
