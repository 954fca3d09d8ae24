"""Text from outside made safe to write: escaped for log lines, valid UTF-8 for span attributes.

Both functions return their argument itself when there is nothing to change,
so the common case costs one C-level check.
"""

from __future__ import annotations

__all__ = ["count", "escape_controls", "escape_json_line", "valid_utf8"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    r"""Return *text* with every character that is not printable escaped as `repr` does.

    Control characters (CR, LF and every other C0 and C1 character, DEL),
    line and paragraph separators, format characters and lone surrogates
    become ``\r``, ``\n``, ``\xNN``, ``\uNNNN``: a value can never start a
    new log line or rewrite the terminal. Printable text is returned as it is.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _json_escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def escape_json_line(line: str) -> str:
    r"""Return a JSON text with every character that is not printable as a ``\uXXXX`` escape.

    For `json.dumps` output with ``ensure_ascii=False``, which leaves DEL, C1
    controls, line separators and lone surrogates raw.
    """
    if line.isprintable():
        return line
    return "".join(char if char.isprintable() else _json_escaped(char) for char in line)


def valid_utf8(text: str) -> str:
    """Return *text* as valid UTF-8 text: bytes that were not UTF-8 become U+FFFD.

    A server that decodes header bytes with ``surrogateescape`` leaves lone
    surrogates, which no UTF-8 encoder (the OTLP exporter's) accepts.
    """
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # a surrogate that no byte was escaped into
            return text.encode("utf-8", "replace").decode()
    return text


def count(number: int, noun: str) -> str:
    """``1 span``, ``2 spans``: *number* and *noun*, plural when it is not 1."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
