"""W3C Trace Context: strict parsing and formatting of traceparent and tracestate.

Follows the W3C Trace Context Level 2 Editor's Draft (2026): the tracestate key
grammar ``( lcalpha / DIGIT ) 0*255 ( keychar )`` with ``@`` anywhere after the
first character, duplicated tracestate keys inherited, the random-trace-id flag.
Parsers return None for input that must be ignored, and the reason beside it.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_TRACEPARENT_CHARS",
    "MAX_TRACESTATE_CHARS",
    "MAX_TRACESTATE_MEMBERS",
    "VERSION_00",
    "format_traceparent",
    "parse_traceparent",
    "parse_tracestate",
]

_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-[\x20-\x7e]*)?"
)
VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""A version-00 traceparent, exactly (what nearly every request brings): its ids and flags.

The ids may still be all zeros, which is invalid."""
_OWS = " \t"
_KNOWN_FLAGS = 0x03  # sampled (Level 1) and random trace-id (Level 2)
_TRACESTATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACEPARENT_CHARS = 512
"""A longer traceparent (a future version's extra fields included) is not read at all."""
MAX_TRACESTATE_CHARS = 8192
"""A longer tracestate is not read at all (W3C: 32 members; vendors keep at least 512 chars)."""

TraceParent = tuple[int, int, int]


def parse_traceparent(header: str) -> tuple[TraceParent | None, str]:
    """Return ``(trace_id, span_id, flags)`` from one traceparent value, or None and why not.

    Follows Trace Context Level 2: version ``ff`` is invalid, version ``00``
    has exactly four fields, a later version may append ``-``-led fields that
    are ignored; ids are lower-case hex and not all zero.
    """
    if len(header) == 55:  # the common case, checked whole
        match = VERSION_00.fullmatch(header)
        if match is not None:
            trace_id, span_id, flags = match.groups()
            trace = int(trace_id, 16)
            span = int(span_id, 16)
            if trace and span:
                return (trace, span, int(flags, 16) & _KNOWN_FLAGS), ""
    return _parse_any(header)  # (all-zero ids too: said by the general way)


def _parse_any(header: str) -> tuple[TraceParent | None, str]:
    match = _TRACEPARENT.fullmatch(header.strip(_OWS))
    if match is None:
        return None, "not version-traceid-parentid-flags in lower-case hex"
    version = match["version"]
    if version == "ff":
        return None, "version ff is invalid"
    if version == "00" and match["rest"] is not None:
        return None, "version 00 has exactly four fields"
    trace_id = int(match["trace_id"], 16)
    span_id = int(match["span_id"], 16)
    if not trace_id:
        return None, "trace-id is all zeros"
    if not span_id:
        return None, "parent-id is all zeros"
    return (trace_id, span_id, int(match["flags"], 16) & _KNOWN_FLAGS), ""


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """Return the version-00 traceparent for these ids; only known flags are kept."""
    try:  # (bytes.hex: a third of the time of format() with "032x")
        trace_hex = trace_id.to_bytes(16, "big").hex()
        span_hex = span_id.to_bytes(8, "big").hex()
    except OverflowError:  # ids out of their range (no valid span has them): as they are
        return f"00-{trace_id:032x}-{span_id:016x}-{flags & _KNOWN_FLAGS:02x}"
    return f"00-{trace_hex}-{span_hex}-{_FLAGS_TEXT[flags & _KNOWN_FLAGS]}"


_FLAGS_TEXT = ("00", "01", "02", "03")


def parse_tracestate(headers: list[str]) -> tuple[list[tuple[str, str]] | None, str]:
    """Return the members of the (combined) tracestate headers, or None and why not.

    Empty list members are skipped as HTTP lists allow; a bad key or value or
    more than 32 members invalidate the whole tracestate. Of a duplicated key
    the first member is kept (the draft lets a vendor discard duplicates it
    did not generate), so the rest of the tracestate is inherited.
    """
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    count = 0
    for header in headers:
        for raw in header.split(","):
            member = raw.strip(_OWS)
            if not member:
                continue
            key, sep, value = member.partition("=")
            if not sep or not _TRACESTATE_KEY.fullmatch(key):
                return None, f"bad tracestate key in {member[:64]!r}"
            if not _TRACESTATE_VALUE.fullmatch(value):
                return None, f"bad tracestate value for key {key!r}"
            count += 1
            if key not in seen:
                seen.add(key)
                members.append((key, value))
    if count > MAX_TRACESTATE_MEMBERS:
        return None, f"{count} tracestate members, more than {MAX_TRACESTATE_MEMBERS}"
    return members, ""
