"""Text from outside made safe: escapes for log lines, valid UTF-8 for span attributes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from threadline._core.text import escape_controls, escape_json_line, valid_utf8


class TestEscapeControls:
    def test_printable_text_is_returned_as_it_is(self) -> None:
        """The common case is the same object, unchanged."""
        text = "user 42, café"
        assert text is escape_controls(text)

    def test_controls_are_escaped_as_repr_does(self) -> None:
        """CR, LF, tab, other C0 and C1 controls, DEL and separators become escapes."""
        assert "a\\r\\nb\\tc\\x00\\x1b\\x7f\\x85\\u2028\\udc80" == escape_controls(
            "a\r\nb\tc\x00\x1b\x7f\x85\u2028\udc80"
        )


class TestEscapeJsonLine:
    def test_leaves_a_valid_json_line(self) -> None:
        """What json.dumps leaves raw becomes a \\u escape that reads back the same."""
        value = "a\x7f\x85\u2028\U000e0001b"
        line = escape_json_line(json.dumps({"v": value}, ensure_ascii=False))
        assert line.isprintable()
        assert {"v": value} == json.loads(line)


class TestValidUtf8:
    def test_escaped_bytes_become_replacement_characters(self) -> None:
        """Header bytes decoded with surrogateescape come out as U+FFFD."""
        assert "agent\ufffd(" == valid_utf8(b"agent\xc3(".decode("utf-8", "surrogateescape"))

    def test_valid_text_is_returned_as_it_is(self) -> None:
        """ASCII and valid Unicode are unchanged."""
        assert "café" == valid_utf8("café")


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_fuzz_escaped_text_is_one_printable_line(text: str) -> None:
    """Any text, escaped, is printable, one line, and valid UTF-8."""
    escaped = escape_controls(text)
    assert escaped.isprintable()
    assert [escaped] == (escaped.splitlines() or [""])
    escaped.encode()
    valid_utf8(text).encode()
