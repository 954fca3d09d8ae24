"""What a request brings: its context (within the fields' limits), its trust, its request id.

Header values may come as ``str`` (aiohttp) or ``bytes`` (ASGI). Every field
read here is ASCII by its grammar, so bytes are decoded as ASCII, strictly: a
field with any other byte is dropped whole and counted, like any invalid one.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence
from typing import TypeGuard

from opentelemetry.trace import Link, get_current_span

from .._core.context import Context
from .._core.drops import record_drop
from .._core.stores import request as request_store
from .._core.stores import with_store_values
from .._wire.carrier import BAGGAGE, TRACEPARENT
from .._wire.fields import FieldGetter
from .._wire.formats import DEFAULT, configured_formats, extract_formats

__all__ = [
    "REQUEST_ID_HEADER",
    "GetAll",
    "incoming_context",
    "is_request_id",
    "new_request_id",
    "request_id_of",
    "without_incoming_user",
]

REQUEST_ID_HEADER = "X-Request-ID"

GetAll = Callable[[str, Sequence[str]], Sequence[str | bytes]]
"""``get_all(name, ())``: every value of one request header, or the default given. *name* is
lower case; the adapter matches it case-insensitively (a multidict's bound ``getall`` does)."""

_NONE: Sequence[str] = ()
_REQUEST_ID_FIELD = REQUEST_ID_HEADER.lower()
# at least one letter or digit: "-" is the logs' placeholder for "no request"
_REQUEST_ID = re.compile(r"(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9._:+/=@-]{1,128}")
_EMPTY = Context()
# Request ids need to be unique, not secret; OpenTelemetry's trace ids come from
# the same generator. It spares a system call per request.
_ids = random.Random()  # noqa: S311
if hasattr(os, "register_at_fork"):  # a forked worker (gunicorn --preload) makes ids of its own
    os.register_at_fork(after_in_child=_ids.seed)


def incoming_context(get_all: GetAll, trust: bool) -> tuple[Context, Link | None]:
    """Return the context a request brought, and None; distrusted, an empty one and a link.

    Read in the configured formats (threadline's carrier unless
    ``OTEL_PROPAGATORS`` says otherwise). A threadline field longer than its
    limit (`threadline._wire.carrier.FIELD_LIMITS`, all its header lines
    together) is dropped unread. Distrusted: the incoming span, when valid,
    becomes the link of a new trace, and baggage is never read.
    """
    formats = configured_formats()
    if formats is DEFAULT and not get_all(TRACEPARENT, _NONE) and not get_all(BAGGAGE, _NONE):
        return _EMPTY, None  # nothing came (tracestate alone means nothing): nothing to parse
    context = extract_formats(get_all, _LIMITED, formats, with_baggage=trust)
    if trust:
        return context, None
    remote_context = get_current_span(context).get_span_context()
    return _EMPTY, Link(remote_context) if remote_context.is_valid else None


# HTTP may repeat a header (its lines are one list); the fields read here are ASCII
_LIMITED = FieldGetter(repeatable=True, encoding="ascii", undecodable="invalid")


def request_id_of(get_all: GetAll, accept: bool, incoming: Context) -> str:
    """Return the request's id, by one rule for every hop.

    With *accept*: a well-formed ``X-Request-ID`` header, else the request id
    that came in the trusted baggage (*incoming*: a hop that forwards only
    ``traceparent`` and ``baggage`` keeps it), else a new one. Well-formed is
    one value for which `is_request_id` holds; anything else is dropped and
    counted as ``request_id.invalid``. A distrusted request brings no baggage,
    so it gets the header's id or a new one.
    """
    if not accept:
        return new_request_id()
    given = get_all(_REQUEST_ID_FIELD, _NONE)
    if given:
        first = given[0]
        if isinstance(first, bytes):
            first = first.decode("ascii", "replace")  # U+FFFD is outside the grammar
        if len(given) == 1 and is_request_id(first):
            return first
        record_drop("request_id.invalid", f"{REQUEST_ID_HEADER} {first[:64]!r}")
    values = request_store.get(incoming) if incoming else None
    carried = values.get("request_id") if values is not None else None
    if is_request_id(carried):
        return carried
    if carried is not None:
        record_drop("request_id.invalid", f"baggage request.request_id {str(carried)[:64]!r}")
    return new_request_id()


def is_request_id(value: object) -> TypeGuard[str]:
    """Return True if *value* may be a request id.

    A request id is a ``str`` of 1-128 letters, digits and ``._:+/=@-``, at
    least one of them a letter or digit (so never the logs' placeholder ``-``).
    """
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """A fresh request id: 32 hex digits."""
    return _ids.randbytes(16).hex()


def without_incoming_user(incoming: Context) -> Context:
    """Return *incoming* without a ``user_id`` that came in the baggage.

    Where the application says who the user is (a ``user_id`` extractor), its
    answer is the only one: a client's own claim never stands in for "nobody".
    """
    value = request_store.get(incoming) if incoming else None
    if value is None or "user_id" not in value:
        return incoming
    kept = {key: item for key, item in value.items() if key != "user_id"}
    return with_store_values(incoming, {request_store.name: kept})
