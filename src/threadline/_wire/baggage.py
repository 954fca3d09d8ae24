"""W3C Baggage: strict codec, limits, and the encoding of store values as members.

A store value ``{"user_id": 42}`` in store ``request`` travels as the member
``request.user_id=42;tl=json``; a string value as ``request.request_id=r1;tl``.
Percent-encoded octets of a value that are not UTF-8 are read as U+FFFD (the
W3C Baggage Recommendation of 2025), never a reason to drop the baggage.
Any W3C Baggage reader sees the members; the ``tl`` property tells a threadline
reader that they belong to a store, and with which JSON type.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._core.values import FrozenMapping, freeze

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_MEMBERS",
    "ONE_STORE_TEXT",
    "BaggageError",
    "encode",
    "parse",
]

MAX_BYTES = 8192
MAX_MEMBERS = 180
MAX_DEPTH = 32
"""The most nested lists and objects a store member's JSON value may have."""
_OWS = " \t"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"(?:[\x21\x23-\x24\x26-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]|%[0-9A-Fa-f]{2})*")
_STORE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Every baggage-octet but "%" stays as it is, so "+" is a literal plus and a
# space is "%20" (unlike form encoding, where "+" means a space).
_SAFE = "".join(
    chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%' and not chr(c).isalnum()
)
# What quote(value, safe=_SAFE) leaves as it is: those very characters, ASCII
# (the grammar; `_unchanged` decides the same by str methods)
_UNCHANGED = re.compile(r"[\x21\x23-\x24\x26-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# A \uXXXX escape of a surrogate; a pair is fine, one alone is not text.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
STORE_PROPERTY = "tl"
JSON_TYPE = "json"
_PLAIN_MEMBER = (
    r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+="
    r"[\x21\x23-\x24\x26-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
    r"(?:%[0-9A-Fa-f]{2}[\x21\x23-\x24\x26-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)*"
    rf"(?:;{STORE_PROPERTY}(?:={JSON_TYPE})?)?"
)
# The shape every encoder writes (threadline's and OpenTelemetry's): checked
# whole in one match, then split without further checks; anything else (spaces,
# other properties, empty members) takes the member-by-member reader.
_PLAIN_SHAPE = re.compile(f"{_PLAIN_MEMBER}(?:,{_PLAIN_MEMBER})*")
ONE_STORE_TEXT = re.compile(
    r"([A-Za-z0-9_-]{1,64})\.([!#$%&'*+\-.^_`|~0-9A-Za-z]+)="
    r"([\x21\x23-\x24\x26-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*);tl"
)
"""A baggage of one store member of text with no percent-encoding, ``store.key=value;tl``.

What `threadline.inject` writes for a scope of one plain id, the commonest
baggage: matched whole, its groups are the store, the key and the value,
valid as they are (the grammar of `parse`, one member)."""


class BaggageError(ValueError):
    """Inbound baggage that must be dropped whole; the message says why."""


def parse(headers: Sequence[str]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Return ``(plain members, store values by store name)`` from the combined headers.

    The dicts may be those of an earlier call with the same text: read
    them, never change them.

    Raises:
        BaggageError: for anything outside the W3C grammar or its limits.
    """
    text = headers[0] if len(headers) == 1 else ",".join(headers)
    parsed = _parsed.get(text)
    if parsed is not None:
        return parsed
    # (what _parse does, inline: this is every request's first hand-off)
    if len(text) > MAX_BYTES:
        raise BaggageError(f"baggage is {len(text)} bytes, more than {MAX_BYTES}")
    parsed = (_parse_plain_shape if _PLAIN_SHAPE.fullmatch(text) else _parse_members)(text)
    if len(text) <= PARSED_TEXT_MAX:
        if len(_parsed) >= PARSED_MAX:
            _parsed.clear()  # (one call, safe between threads; a busy one refills it)
        _parsed[text] = parsed
    return parsed


# A service sees the same baggage again and again (a tenant, a client's ids);
# parsing is pure, so its result is kept by the exact text, a bounded number.
# Invalid baggage is never kept: each is refused, and counted, again.
PARSED_MAX = 128
PARSED_TEXT_MAX = 1024
_parsed: dict[str, tuple[dict[str, str], dict[str, dict[str, Any]]]] = {}


def _parse(text: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    # Non-ASCII text fails the grammar below, so characters count as bytes here.
    if len(text) > MAX_BYTES:
        raise BaggageError(f"baggage is {len(text)} bytes, more than {MAX_BYTES}")
    if _PLAIN_SHAPE.fullmatch(text):
        return _parse_plain_shape(text)
    return _parse_members(text)


def _parse_members(text: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    plain: dict[str, str] = {}
    stores: dict[str, dict[str, Any]] = {}
    count = 0
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        count += 1
        if count > MAX_MEMBERS:
            raise BaggageError(f"more than {MAX_MEMBERS} baggage members")
        key, value, properties = _parse_member(member)
        if STORE_PROPERTY not in properties:
            plain[key] = value
            continue
        kind = properties[STORE_PROPERTY]
        store, dot, name = key.partition(".")
        if not dot or not name or not _STORE_NAME.fullmatch(store):
            raise BaggageError(f"store member {key!r} is not 'store.key'")
        stores.setdefault(store, {})[name] = _typed(key, value, kind)
    return plain, stores


def _parse_plain_shape(text: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    # The whole text is known to be members `key=value`, `key=value;tl` or
    # `key=value;tl=json`, comma-separated, no spaces: what every encoder
    # writes. One regex has checked the grammar, so str methods split it.
    members = text.split(",")
    if len(members) > MAX_MEMBERS:
        raise BaggageError(f"more than {MAX_MEMBERS} baggage members")
    plain: dict[str, str] = {}
    stores: dict[str, dict[str, Any]] = {}
    for member in members:
        key, _, rest = member.partition("=")
        value, _, kind = rest.partition(";")
        if "%" in value:
            value = _decode(key, value)
        if not kind:
            plain[key] = value
            continue
        store, dot, name = key.partition(".")
        values = stores.get(store)
        if values is None:
            if not dot or not name or not (store in _store_names or _is_store_name(store)):
                raise BaggageError(f"store member {key!r} is not 'store.key'")
            values = stores[store] = {}
        elif not name:
            raise BaggageError(f"store member {key!r} is not 'store.key'")
        values[name] = value if kind == STORE_PROPERTY else _typed(key, value, JSON_TYPE)
    return plain, stores


# Store names are few: each is checked by the grammar once, not per carrier.
_STORE_NAMES_MAX = 1024
_store_names: set[str] = set()


def _is_store_name(name: str) -> bool:
    if _STORE_NAME.fullmatch(name) is None:
        return False
    if len(_store_names) < _STORE_NAMES_MAX:
        _store_names.add(name)
    return True


def _parse_member(member: str) -> tuple[str, str, dict[str, str | None]]:
    pair, *props = member.split(";")
    key, sep, value = pair.partition("=")
    key, value = key.strip(_OWS), value.strip(_OWS)
    if not sep or not _TOKEN.fullmatch(key):
        raise BaggageError(f"bad baggage key in {member[:64]!r}")
    properties: dict[str, str | None] = {}
    for prop in props:
        name, has_value, prop_value = prop.partition("=")
        name = name.strip(_OWS)
        prop_value = prop_value.strip(_OWS)
        if not _TOKEN.fullmatch(name) or (has_value and not _VALUE.fullmatch(prop_value)):
            raise BaggageError(f"bad property {prop[:64]!r} on baggage member {key!r}")
        properties[name] = prop_value if has_value else None
    return key, _decode(key, value), properties


def _decode(key: str, value: str) -> str:
    if not _VALUE.fullmatch(value):
        raise BaggageError(f"bad characters in the value of baggage member {key!r}")
    # W3C Baggage (2025): percent-encoded octets that are not UTF-8 MUST become U+FFFD;
    # the member, and the rest of the baggage, stay.
    if "%" not in value:
        return value
    from urllib.parse import unquote  # noqa: PLC0415 - a child restoring plain ids needs none

    return unquote(value, errors="replace")


def _reject_constant(name: str) -> Any:
    raise BaggageError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BaggageError(f"{text[:32]} is out of range")
    return number


def _object(pairs: list[tuple[str, Any]]) -> FrozenMapping:
    for name, _ in pairs:
        if not name:
            raise BaggageError("an object has an empty key")
    return FrozenMapping({name: freeze(value) for name, value in pairs})


def _depth(text: str) -> int:
    """The deepest nesting of lists and objects in JSON *text*, brackets in strings aside."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # the common case: too few brackets to nest too deep
    depth = deepest = 0
    for char in _JSON_STRING.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# One decoder, made once: json.loads given options makes a new one (and its scanner) per call.
_decode_json = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_object
).decode


def _typed(key: str, value: str, kind: str | None) -> Any:
    if kind is None:
        return value
    if kind != JSON_TYPE:
        raise BaggageError(f"unknown {STORE_PROPERTY}={kind} on store member {key!r}")
    if value.isdecimal() and value.isascii() and (value[0] != "0" or len(value) == 1):
        # a JSON integer of digits only, the commonest typed value (an id, a count):
        # int() reads it as the decoder does, the same limit on digits included
        try:
            return int(value)
        except ValueError as exc:
            raise BaggageError(f"store member {key!r} is not JSON: {exc}") from None
    # Checked before decoding: json.loads recurses once per level.
    if _depth(value) > MAX_DEPTH:
        raise BaggageError(f"store member {key!r} nests deeper than {MAX_DEPTH}")
    try:
        loaded = _decode_json(value)
    except ValueError as exc:  # json.JSONDecodeError and BaggageError both are
        raise BaggageError(f"store member {key!r} is not JSON: {exc}") from None
    if "\\" in value and _ESCAPED_SURROGATE.search(value) and not _is_text(loaded):
        raise BaggageError(f"store member {key!r} holds a lone surrogate, not text")
    return freeze(loaded)


def _is_text(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False, default=dict).encode()
    except UnicodeEncodeError:
        return False
    return True


_ESCAPED = frozenset(' "%,;\\')


def _unchanged(value: str) -> bool:
    """True if `encode_value` leaves *value* as it is (`_UNCHANGED`, by str methods: faster)."""
    return value.isascii() and value.isprintable() and _ESCAPED.isdisjoint(value)


def encode_value(value: str) -> str:
    """Percent-encode *value* as a baggage value (UTF-8; ``+`` stays, space is ``%20``)."""
    if _unchanged(value):
        return value
    from urllib.parse import quote  # noqa: PLC0415 - see _decode

    return quote(value, safe=_SAFE)


def encode(plain: Mapping[str, str], stores: Mapping[str, FrozenMapping]) -> Iterator[str]:
    """Yield the members for plain baggage entries and for each store's values.

    Raises:
        TypeError: a store key is not a W3C token or a value is not JSON-typed;
            the message names the store and the key.
    """
    for key, value in plain.items():
        yield f"{key}={encode_value(value)}"
    for store, values in stores.items():
        yield from _store_members(store, values)


def _store_members(store: str, values: FrozenMapping) -> Iterator[str]:
    for key, value in values.items():
        if key not in _token_keys:
            if not _TOKEN.fullmatch(key):
                raise TypeError(
                    f"ContextStore {store!r} key {key!r} cannot cross a process boundary: "
                    "keys must be W3C baggage tokens (letters, digits, !#$%&'*+-.^_`|~)"
                )
            if len(_token_keys) < _TOKEN_KEYS_MAX:
                _token_keys.add(key)
        if type(value) is str:
            text = value if _unchanged(value) else encode_value(value)
            yield f"{store}.{key}={text};{STORE_PROPERTY}"
        else:
            text = _to_json(store, key, value)
            yield f"{store}.{key}={encode_value(text)};{STORE_PROPERTY}={JSON_TYPE}"


# Store keys are few and fixed in code: each is checked once, not per hand-off.
_TOKEN_KEYS_MAX = 4096
_token_keys: set[str] = set()


def _json_default(value: object) -> object:
    if isinstance(value, FrozenMapping):
        return dict(value)
    raise TypeError(type(value).__name__)


def _to_json(store: str, key: str, value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"ContextStore {store!r} key {key!r} cannot cross a process boundary: "
            f"its value {value!r} is not JSON-typed (str, int, float, bool, None, list, dict; "
            f"{exc})"
        ) from None


def is_token(name: str) -> bool:
    """Return True if *name* may be a baggage key."""
    return _TOKEN.fullmatch(name) is not None
