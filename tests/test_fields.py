"""The one strict reader of carrier fields from outside (HTTP request and message headers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from threadline import diagnostics
from threadline._wire.fields import FieldGetter, GetAll

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HTTP = FieldGetter(repeatable=True)
MESSAGE = FieldGetter(repeatable=False)


def fields(**values: Sequence[Any]) -> GetAll:
    return values.get


class TestText:
    def test_str_is_read_as_it_is(self) -> None:
        """A text value comes back as it came."""
        assert [TRACEPARENT] == MESSAGE.get(fields(traceparent=[TRACEPARENT]), "traceparent")

    def test_utf8_bytes_are_text(self) -> None:
        """Bytes (Kafka, AMQP) are read as their UTF-8 text."""
        for raw in (TRACEPARENT.encode(), bytearray(TRACEPARENT.encode())):
            assert [TRACEPARENT] == MESSAGE.get(fields(traceparent=[raw]), "traceparent")

    def test_invalid_utf8_is_dropped_and_counted(self) -> None:
        """Bytes that are not UTF-8 are dropped, counted as not_utf8."""
        assert MESSAGE.get(fields(baggage=[b"k=\xff\xfe"]), "baggage") is None
        assert {"baggage.not_utf8": 1} == diagnostics.drop_counts()

    @pytest.mark.parametrize("value", [5, 1.5, None, ["a"], {"a": 1}, object()])
    def test_non_text_is_dropped_and_counted(self, value: object) -> None:
        """A value that is neither text nor bytes is dropped, counted as not_text."""
        assert MESSAGE.get(fields(tracestate=[value]), "tracestate") is None
        assert HTTP.get(fields(tracestate=["a=1", value]), "tracestate") is None
        assert {"tracestate.not_text": 2} == diagnostics.drop_counts()

    def test_absent_is_none(self) -> None:
        """A field that did not come is None, and nothing is counted."""
        assert MESSAGE.get(fields(), "traceparent") is None
        assert {} == diagnostics.drop_counts()


class TestLimits:
    @pytest.mark.parametrize("value", ["x" * 513, b"x" * 513])
    def test_over_the_limit_is_dropped_unread(self, value: str | bytes) -> None:
        """A traceparent over 512 characters (or bytes) is dropped, counted as too_large."""
        assert MESSAGE.get(fields(traceparent=[value]), "traceparent") is None
        assert {"traceparent.too_large": 1} == diagnostics.drop_counts()

    def test_http_lines_count_together(self) -> None:
        """HTTP's repeated baggage lines are one field: their sizes add up."""
        assert ["a=1", "b=2"] == HTTP.get(fields(baggage=["a=1", "b=2"]), "baggage")
        assert HTTP.get(fields(baggage=["a=" + "1" * 5000, "b=" + "2" * 5000]), "baggage") is None
        assert {"baggage.too_large": 1} == diagnostics.drop_counts()

    def test_fields_without_a_limit_are_read_whole(self) -> None:
        """Another propagator's field (b3) has no limit of threadline's; it is still text only."""
        assert ["x" * 10_000] == MESSAGE.get(fields(b3=["x" * 10_000]), "b3")


class TestDuplicates:
    def test_a_message_field_given_twice_is_dropped(self) -> None:
        """Message headers hold one value a key: two are dropped, counted as duplicate."""
        assert MESSAGE.get(fields(baggage=["a=1", "b=2"]), "baggage") is None
        assert {"baggage.duplicate": 1} == diagnostics.drop_counts()

    def test_http_may_repeat(self) -> None:
        """HTTP headers may repeat (their lines are one list): the values all come back."""
        assert ["a=1", "b=2"] == HTTP.get(fields(baggage=("a=1", "b=2")), "baggage")
