"""The one carrier: context as W3C text (traceparent, tracestate, baggage with the stores).

The same encoder and strict decoder serve HTTP headers, environment
variables, process-pool IPC and message headers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence

from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    get_current_span,
)

from .._core.context import STORE_KEY_PREFIX, Context, get_current, span_key
from .._core.drops import record_drop
from .._core.snapshot import Snapshot
from .._core.stores import store_values
from .._core.values import FrozenMapping, foreign_keys
from . import baggage as _baggage
from .tracecontext import (
    MAX_TRACEPARENT_CHARS,
    MAX_TRACESTATE_CHARS,
    VERSION_00,
    format_traceparent,
    parse_traceparent,
    parse_tracestate,
)

__all__ = [
    "BAGGAGE",
    "FIELDS",
    "FIELD_LIMITS",
    "TRACEPARENT",
    "TRACESTATE",
    "ParsedTraceState",
    "extract",
    "extract_context",
    "inject",
    "inject_baggage",
    "inject_context",
    "inject_span",
    "inject_without_failing",
    "require_carrier",
    "without_baggage",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
FIELDS = (TRACEPARENT, TRACESTATE, BAGGAGE)
FIELD_LIMITS = {
    TRACEPARENT: MAX_TRACEPARENT_CHARS,
    TRACESTATE: MAX_TRACESTATE_CHARS,
    BAGGAGE: _baggage.MAX_BYTES,
}
"""The most characters a field may have (all its lines together) to be read at all."""

# Marks a context whose baggage no propagator may write (see `without_baggage`).
_WITHHELD = "threadline.baggage_withheld"

Getter = Callable[[str], Sequence[str]]
Setter = Callable[[str, str], None]


def inject(carrier: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the context (default: the current one) into *carrier* as W3C text fields.

    Sets ``traceparent`` (and ``tracestate``) when a valid span is active and
    ``baggage`` when there is baggage or any store value. When the baggage
    would be over the W3C limits (8192 bytes, 180 members), members that came
    from outside (plain OpenTelemetry baggage, and store values decoded from a
    carrier and not set again here) are dropped, largest first, until it
    fits; the drop is counted as ``baggage.outbound_trimmed``.

    Raises:
        TypeError: a store value cannot cross a process boundary (the message
            names the store and the key), or *carrier* is not a mutable mapping.
        ValueError: the context's own store values alone are over the W3C limits.
    """
    require_carrier(carrier, "__setitem__", "inject()")
    inject_context(carrier.__setitem__, context)


def extract(carrier: Mapping[str, str | Sequence[str]], context: Context | None = None) -> Snapshot:
    """Return the context that *carrier* brought, as a `Snapshot`; never raises for bad input.

    Field names match case-insensitively and a field may hold several values
    (repeated HTTP headers). Invalid fields are dropped whole, counted and
    reported (see `threadline.diagnostics`); the result then holds the rest.
    The context is built on *context* (default: an empty one). A *carrier*
    that is not a mapping is a `TypeError`: the type is the caller's choice.
    """
    if type(carrier) is dict:
        fields = _plain_fields(carrier)
        if fields is not None:
            parent, state, members = fields
            if state is None:
                common = _common_context(parent, members, context)
                if common is not None:
                    return Snapshot(common)
            return Snapshot(_context_of(_values(parent), _values(state), _values(members), context))
    else:
        require_carrier(carrier, "items", "extract()")
    return Snapshot(extract_context(_mapping_getter(carrier), context))


def require_carrier(carrier: object, method: str, caller: str) -> None:
    """Raise `TypeError`, naming *caller*, unless *carrier* is a mapping that has *method*."""
    if isinstance(carrier, (str, bytes)) or not callable(getattr(carrier, method, None)):
        raise TypeError(
            f"{caller} takes a mapping of text fields such as a dict, "
            f"got {type(carrier).__name__} {carrier!r:.60}"
        )


def inject_context(
    set_field: Setter, context: Context | None = None, *, with_baggage: bool = True
) -> None:
    """Write *context* (default: current) through *set_field*; see `inject`.

    The fields are all encoded before the first is set, so an error leaves
    the carrier untouched.
    """
    ctx = get_current() if context is None else context
    for field, value in _encoded(ctx, with_baggage):
        set_field(field, value)


def inject_without_failing(set_field: Setter, context: Context | None = None) -> None:
    """Write *context* as `inject_context` does, never raising for its baggage.

    For carriers that go to a program that may not be threadline (HTTP, the
    propagator API): a context whose baggage cannot be encoded goes without
    baggage, and the drop is counted as ``baggage.outbound_invalid``.
    """
    try:
        inject_context(set_field, context)
    except (TypeError, ValueError) as exc:
        record_drop("baggage.outbound_invalid", str(exc))
        inject_context(set_field, context, with_baggage=False)


def inject_baggage(set_field: Setter, context: Context | None = None) -> None:
    """Write only the ``baggage`` of *context* (default: current), never raising for it.

    For a hand-off that writes its own trace fields (`inject_span`): the
    caller's traceparent is not formatted only to be replaced. A context
    whose baggage cannot be encoded writes none, counted as
    ``baggage.outbound_invalid`` (as `inject_without_failing`).
    """
    global _last_baggage_of  # noqa: PLW0603 - a one-entry cache, replaced whole
    ctx = get_current() if context is None else context
    last = _last_baggage_of
    if last is not None and last[0] is ctx:
        members = last[1]
    else:
        try:
            members = _baggage_members(ctx)
        except (TypeError, ValueError) as exc:
            record_drop("baggage.outbound_invalid", str(exc))
            return
        _last_baggage_of = (ctx, members)
    if members:
        set_field(BAGGAGE, members)


# (every call a context makes: the one context's baggage, as `_encoded` keeps its fields)
_last_baggage_of: tuple[Context, str] | None = None


def inject_span(set_field: Setter, span_context: SpanContext) -> None:
    """Write ``traceparent`` (and ``tracestate``, when it has one) for *span_context*.

    For a hand-off that made its own span, a child of the one the carrier was
    filled from, to be the parent on the far side: its traceparent replaces
    the carrier's, and a child's tracestate is its parent's.
    """
    for field, value in _trace_fields(span_context):
        set_field(field, value)


# Contexts are immutable, so one encoding serves every hand-off made from the
# same one (all the jobs a request submits, all the children it starts).
_last_encoded: tuple[Context, bool, list[tuple[str, str]]] | None = None


def _encoded(ctx: Context, with_baggage: bool) -> list[tuple[str, str]]:
    global _last_encoded  # noqa: PLW0603 - a one-entry cache, replaced whole
    last = _last_encoded
    if last is not None and last[0] is ctx and last[1] == with_baggage:
        return last[2]
    members = _baggage_members(ctx) if with_baggage else ""
    span_context = get_current_span(ctx).get_span_context()
    fields = _trace_fields(span_context) if span_context.is_valid else []
    if members:
        fields.append((BAGGAGE, members))
    _last_encoded = (ctx, with_baggage, fields)
    return fields


def _trace_fields(span_context: SpanContext) -> list[tuple[str, str]]:
    traceparent = format_traceparent(
        span_context.trace_id, span_context.span_id, span_context.trace_flags
    )
    if span_context.trace_state:
        return [(TRACEPARENT, traceparent), (TRACESTATE, span_context.trace_state.to_header())]
    return [(TRACEPARENT, traceparent)]


def without_baggage(context: Context) -> Context:
    """*context* whose baggage no propagator writes: the stores stay readable, the trace goes.

    For a call whose span (and injection) another instrumentation makes:
    OpenTelemetry's baggage is cleared and threadline's carrier writes no
    ``baggage`` from it, so the only baggage the call carries is what
    threadline wrote for the host it goes to.
    """
    from opentelemetry import baggage as otel_baggage  # noqa: PLC0415 - see extract_context

    return otel_baggage.clear(Context({**context, _WITHHELD: True}))


def _baggage_members(ctx: Context) -> str:
    if ctx.get(_WITHHELD):
        return ""
    stores = store_values(ctx)
    # Until OpenTelemetry's baggage API is loaded no context can hold its baggage.
    otel_baggage = sys.modules.get("opentelemetry.baggage")
    held = None if otel_baggage is None else ctx.get(_baggage_key or _load_baggage_key() or "")
    # what the text is made of, by identity: the values are immutable (and held by the entry)
    made_of = (*stores, *map(id, stores.values()), id(held))
    known = _baggage_texts.get(made_of)
    if known is not None:
        return known[0]
    plain: dict[str, str] = {}
    keep = True
    if otel_baggage is not None and (held or _baggage_key is None):
        entries = otel_baggage.get_all(ctx)
        plain = _valid_plain_baggage(entries)
        # (a drop counted is counted again next time; baggage under an unknown key is not known)
        keep = len(plain) == len(entries) and _baggage_key is not None
    if not stores and not plain:
        return ""
    members = list(_baggage.encode(plain, stores))
    text = ",".join(members)
    if len(members) <= _baggage.MAX_MEMBERS and len(text) <= _baggage.MAX_BYTES:
        if keep:
            _keep_baggage(made_of, text, stores, held)
        return text
    foreign = [True] * len(plain) + [
        key in foreign_keys(value) for value in stores.values() for key in value
    ]
    kept = _trimmed(members, foreign)
    return ",".join(kept)


# The baggage text of store values (and OpenTelemetry baggage) encoded, by their
# identity, whatever context they were in: a request's spans change its context,
# not its stores, so every hand-off of a request writes the same text. Kept only
# when nothing was dropped on the way (a drop is counted at every hand-off);
# each entry holds the values, so their ids are not reused meanwhile.
BAGGAGE_TEXTS_MAX = 256
_baggage_texts: dict[tuple[object, ...], tuple[str, object, object]] = {}


def _keep_baggage(made_of: tuple[object, ...], text: str, stores: object, held: object) -> None:
    if len(_baggage_texts) >= BAGGAGE_TEXTS_MAX:
        _baggage_texts.clear()  # (one call, safe between threads; a busy one refills it)
    _baggage_texts[made_of] = (text, stores, held)


def _within_limits(members: list[str]) -> bool:
    return (
        len(members) <= _baggage.MAX_MEMBERS
        and sum(map(len, members)) + len(members) - 1 <= _baggage.MAX_BYTES
    )


def _trimmed(members: list[str], foreign: list[bool]) -> list[str]:
    """Drop foreign members, largest first (the later of equals first), until the rest fit.

    Raises:
        ValueError: the context's own members alone are over the limits.
    """
    order = sorted(
        (index for index, is_foreign in enumerate(foreign) if is_foreign),
        key=lambda index: (len(members[index]), index),
        reverse=True,
    )
    dropped: set[int] = set()
    kept = members
    for index in order:
        dropped.add(index)
        kept = [member for i, member in enumerate(members) if i not in dropped]
        if _within_limits(kept):
            record_drop(
                "baggage.outbound_trimmed",
                f"{len(dropped)} baggage members that came from outside "
                f"(largest {len(members[order[0]])} bytes) to keep within the W3C limits",
                len(dropped),
            )
            return kept
    text = ",".join(kept)
    largest = max(kept, key=len)
    raise ValueError(
        f"the context's own baggage is {len(kept)} members and {len(text)} bytes, over the "
        f"W3C limits ({_baggage.MAX_MEMBERS} members, {_baggage.MAX_BYTES} bytes); "
        f"the largest member starts {largest[:60]!r}"
    )


def _valid_plain_baggage(entries: Mapping[str, object]) -> dict[str, str]:
    plain: dict[str, str] = {}
    for name, value in entries.items():
        if _baggage.is_token(name):
            plain[name] = str(value)
        else:
            record_drop("baggage.outbound_key", f"OpenTelemetry baggage name {name!r} is no token")
    return plain


def extract_context(get: Getter, context: Context | None = None) -> Context:
    """Build the context that the fields read by *get* bring, on *context* (default: empty).

    A field longer than its `FIELD_LIMITS` (all its values together) is
    dropped unread and counted as ``{field}.too_large``, whichever carrier
    it came in.
    """
    return _context_of(_read(get, TRACEPARENT), get, _read(get, BAGGAGE), context)


def _context_of(
    parents: Sequence[str],
    states: Getter | Sequence[str],
    baggages: Sequence[str],
    context: Context | None,
) -> Context:
    """The context of these fields' values (each within its limit), built once on *context*.

    *states* are the tracestate's values, or the getter to read them with
    once a valid traceparent needs them.
    """
    ctx = _EMPTY if context is None else context
    # what came, gathered first: the new context is built once
    entries: dict[str, object] = {}
    if parents:
        span_context = _span_context(parents, states)
        if span_context is not None:
            entries[_SPAN_KEY] = NonRecordingSpan(span_context)
    if baggages:
        try:
            plain, stores = _baggage.parse(baggages)
        except _baggage.BaggageError as exc:
            record_drop("baggage.invalid", str(exc))
        else:
            for name, items in stores.items():
                entries[STORE_KEY_PREFIX + name] = FrozenMapping(items, name, frozenset(items))
            if plain:
                ctx = _with_plain_baggage(plain, ctx, entries)
    if not entries:
        return Context() if ctx is _EMPTY else ctx
    return Context({**ctx, **entries}) if ctx else Context(entries)


def _with_plain_baggage(plain: dict[str, str], ctx: Context, entries: dict[str, object]) -> Context:
    """Add *plain* to *entries* as OpenTelemetry's baggage on *ctx*; return the base to build on."""
    # OpenTelemetry's baggage is a dict under this key; its API sets one at a time
    key = _baggage_key or _load_baggage_key()
    if key is None:  # (an OpenTelemetry without it: its API, member by member)
        from opentelemetry import baggage as otel_baggage  # noqa: PLC0415

        ctx = Context({**ctx, **entries})
        entries.clear()
        for name, value in plain.items():
            ctx = otel_baggage.set_baggage(name, value, ctx)
        return ctx
    held = ctx.get(key)
    if isinstance(held, Mapping) and held:
        entries[key] = {**held, **plain}
    else:
        entries[key] = dict(plain)
    return ctx


_SPAN_KEY = span_key()  # (opentelemetry.trace is loaded here already)
_EMPTY = Context()  # read only: what a context built on nothing starts from
_baggage_key: str | None = None


def _load_baggage_key() -> str | None:
    """OpenTelemetry's baggage key, its module loaded once plain baggage is met.

    (About 6 ms that a bootstrapped child mostly never pays.)
    """
    global _baggage_key  # noqa: PLW0603 - found once
    from opentelemetry import baggage as otel_baggage  # noqa: PLC0415

    _baggage_key = getattr(otel_baggage, "_BAGGAGE_KEY", None)
    return _baggage_key


def _read(get: Getter, field: str) -> Sequence[str]:
    """The values of *field*, or none when they are over its limit (counted)."""
    values = get(field)
    if not values:
        return ()
    size = len(values[0]) if len(values) == 1 else sum(map(len, values))
    if size > FIELD_LIMITS[field]:
        record_drop(f"{field}.too_large", f"{size} characters in {field}")
        return ()
    return values


def _common_context(
    parent: str | None, members: str | None, context: Context | None
) -> Context | None:
    """The context of what `inject` writes under a span for a scope of one plain id, or None.

    That is: a version-00 ``traceparent`` of valid ids and a ``baggage`` of
    one store member of text (`_baggage.ONE_STORE_TEXT`), either absent but
    not both. Each is valid by its one match, so nothing here is dropped:
    any other field (bad ones included) is None, for the general reader.
    """
    entries: dict[str, object] = {}
    # (the baggage first: of the two, it is the one that more often takes another shape)
    if members is not None:
        # (a comma: more members than one, said at once; the match would look further)
        match = None if "," in members else _baggage.ONE_STORE_TEXT.fullmatch(members)
        if match is None:
            return None
        store, key, value = match.groups()
        entries[STORE_KEY_PREFIX + store] = FrozenMapping({key: value}, store, frozenset((key,)))
    if parent is not None:
        match = VERSION_00.fullmatch(parent)
        if match is None:
            return None
        trace_hex, span_hex, flags = match.groups()
        trace_id = int(trace_hex, 16)
        span_id = int(span_hex, 16)
        if not (trace_id and span_id):
            return None
        fields = (trace_id, span_id, True, _FLAGS_OF_TEXT[flags], _NO_TRACE_STATE, True)
        entries[_SPAN_KEY] = NonRecordingSpan(
            _new_tuple(SpanContext, fields) if _DIRECT_SPAN_CONTEXT else SpanContext(*fields[:5])
        )
    if not entries:
        return None
    return Context({**context, **entries}) if context else Context(entries)


def _span_context(parents: Sequence[str], states: Getter | Sequence[str]) -> SpanContext | None:
    if len(parents) > 1:
        record_drop("traceparent.duplicate", f"{len(parents)} traceparent fields")
        return None
    parsed, why = parse_traceparent(parents[0])
    if parsed is None:
        record_drop("traceparent.invalid", f"{why}: {parents[0][:80]!r}")
        return None
    trace_id, span_id, flags = parsed
    trace_state = _NO_TRACE_STATE
    if not isinstance(states, tuple):
        states = _read(states, TRACESTATE)  # type: ignore[arg-type]
    if states:
        members, why = parse_tracestate(list(states))
        if members is None:
            record_drop("tracestate.invalid", why)
        else:
            trace_state = ParsedTraceState(members)
    if _DIRECT_SPAN_CONTEXT:
        # (ids the strict parser accepted: non-zero, 128 and 64 bits, so valid)
        return _new_tuple(SpanContext, (trace_id, span_id, True, _FLAGS[flags], trace_state, True))
    return SpanContext(trace_id, span_id, True, _FLAGS[flags], trace_state)


_NO_TRACE_STATE = TraceState()  # immutable: one serves every span context without one
_FLAGS = tuple(TraceFlags(flags) for flags in range(4))  # the known flags: 2 bits
_FLAGS_OF_TEXT = {f"{flags:02x}": _FLAGS[flags & 0x03] for flags in range(256)}
_new_tuple = tuple.__new__


def _span_context_is_its_fields() -> bool:
    """True if the installed API's `SpanContext` is the tuple of its fields and nothing more.

    Its ``__new__`` (opentelemetry-api 1.x) only adds ``is_valid``, the ids'
    range, to the tuple; where that still holds, a span context of ids the
    strict parser accepted is made as that tuple directly, without the
    check again. Any other layout takes the public constructor.
    """
    fields = (1, 2, True, _FLAGS[1], _NO_TRACE_STATE, True)
    made = SpanContext(1, 2, True, _FLAGS[1], _NO_TRACE_STATE)
    direct = _new_tuple(SpanContext, fields)
    try:
        read: tuple[object, ...] = (made.trace_id, made.span_id, made.is_remote)
        read += (made.trace_flags, made.trace_state, made.is_valid)
        return (
            type(made) is SpanContext
            and tuple(made) == fields
            and read == fields
            and getattr(made, "__dict__", None) == getattr(direct, "__dict__", None)
        )
    except (AttributeError, TypeError):  # pragma: no cover - another API's layout
        return False


_DIRECT_SPAN_CONTEXT = _span_context_is_its_fields()


class ParsedTraceState(TraceState):
    """A `TraceState` of members the strict parser accepted, kept as they came.

    OpenTelemetry's own `TraceState` validates keys by an older grammar and
    would drop keys the current one allows (``foo@``, ``foo@@bar``).
    """

    def __init__(self, members: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self._dict = dict(members)


def _plain_fields(carrier: dict[str, object]) -> tuple[str | None, str | None, str | None] | None:
    """The (traceparent, tracestate, baggage) texts of a dict as `inject` writes it, or None.

    That is: no key but the fields' own lower-case names, each field one
    text within its limit (an absent one None). Any other carrier is None,
    for the general reader (which counts what it drops).
    """
    if not _FIELD_NAMES.issuperset(carrier):  # another key, or another spelling, may be there
        return None
    for value in carrier.values():
        if type(value) is not str:
            return None
    texts: dict[str, str] = carrier  # type: ignore[assignment] # (every value is a str: checked)
    parent = texts.get(TRACEPARENT)
    state = texts.get(TRACESTATE)
    members = texts.get(BAGGAGE)
    if (
        (parent is not None and len(parent) > MAX_TRACEPARENT_CHARS)
        or (state is not None and len(state) > MAX_TRACESTATE_CHARS)
        or (members is not None and len(members) > _baggage.MAX_BYTES)
    ):
        return None
    return parent, state, members


def _values(text: str | None) -> tuple[str, ...]:
    return () if text is None else (text,)


_FIELD_NAMES = frozenset(FIELDS)


def _mapping_getter(carrier: Mapping[str, str | Sequence[str]]) -> Getter:
    # Every key is looked at, so "traceparent" and "Traceparent" side by side
    # count as the duplicate they are.
    lowered = _lower_keys(carrier.items())
    return lambda field: lowered.get(field, ())


def _lower_keys(items: Iterable[tuple[str, str | Sequence[str]]]) -> dict[str, list[str]]:
    """The carrier's own fields among *items*, by lower-case name; other keys are skipped."""
    lowered: dict[str, list[str]] = {}
    for key, value in items:
        if not isinstance(key, str):
            continue
        field = key.lower()
        if field not in FIELDS:
            continue
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            values = list(value)
        else:  # bytes, None, numbers: what came is not text, so it cannot be W3C text
            record_drop(f"{field}.not_text", f"a {type(value).__name__} in {key}")
            continue
        held = lowered.get(field)
        if held is None:
            lowered[field] = values
        else:
            held.extend(values)
    return lowered
