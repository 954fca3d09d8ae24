"""The messaging core without a broker: headers in and out, PRODUCER/CONSUMER spans, the loop.

Messages here are plain header mappings and ``(key, bytes)`` pair lists (the
shape Kafka clients give); tests/messaging_contract.py holds every broker's
adapter to the same promises over a real broker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

import threadline as tl
from tests.helpers import Spans, SuiteTracerProvider, hook_calls, marked_line
from threadline import diagnostics, hooks, lost
from threadline._core.context import Context, attach, get_current, restore
from threadline._core.stores import store_values
from threadline._messaging.consume import Processing, report_processing
from threadline._messaging.headers import (
    RETRY_OF_HEADER,
    Headers,
    fields_of,
    message_context,
    retry_link,
    write_retry_of,
)
from threadline._messaging.publish import Unacked, publish
from threadline._messaging.semconv import Operation
from threadline._wire.carrier import FIELD_LIMITS, FIELDS, extract_context

OP = Operation("kafka", "orders", "m-1")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
BAGGAGE = "request.request_id=r1;tl,plain=p"
CONTRIB = "opentelemetry.instrumentation.kafka"  # another instrumentation's tracer


class PairSetter(Setter[list[tuple[str, bytes]]]):
    """Sets a header as Kafka clients keep them: a (key, UTF-8 bytes) pair appended."""

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


def span_id(span: Any) -> int:
    return int(span.get_span_context().span_id)


def published(headers: Any = None, **options: Any) -> Any:
    """Publish one message inside a request and a span; return its headers."""
    headers = {} if headers is None else headers
    with (
        tl.request.scope(request_id="r1", user_id=7),
        trace.get_tracer("tests").start_as_current_span("request"),
    ):
        publish(headers, OP, **options).end()
    return headers


@pytest.fixture
def events() -> Iterator[list[tuple[str, hooks.Resource]]]:
    """Every hook call while the test runs: (event, resource)."""
    with hook_calls() as calls:
        yield calls


class TestPublish:
    def test_the_carrier_goes_under_a_producer_span(self, spans: Spans) -> None:
        """Inside a recording span the publish is ``send {destination}``; its traceparent goes."""
        headers = published()
        producer = spans.named("send orders")
        assert (SpanKind.PRODUCER, span_id(spans.named("request"))) == (
            producer.kind,
            producer.parent and producer.parent.span_id,
        )
        assert {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": "orders",
            "messaging.message.id": "m-1",
            "threadline.boundary": "kafka",
        } == {k: v for k, v in (producer.attributes or {}).items() if k.startswith(("mess", "thr"))}
        assert f"{span_id(producer):016x}" in headers["traceparent"]
        assert "request.request_id=r1;tl" in headers["baggage"]

    def test_no_span_where_nothing_records(self, spans: Spans) -> None:
        """Outside any span the stores still go; no span is made."""
        headers: dict[str, str] = {}
        with tl.request.scope(request_id="r2"):
            publish(headers, OP).end()
        assert ["baggage"] == list(headers)
        assert [] == spans.finished()

    def test_another_instrumentations_span_is_continued(
        self, spans: Spans, tracer_provider: SuiteTracerProvider
    ) -> None:
        """Its PRODUCER span current here stands for the publish: no second one."""
        contrib = tracer_provider.get_tracer(CONTRIB)
        headers: dict[str, str] = {}
        with contrib.start_as_current_span("orders publish", kind=SpanKind.PRODUCER) as outer:
            handoff = publish(headers, OP)
        handoff.end()
        assert handoff.span is None
        assert ["orders publish"] == [s.name for s in spans.finished()]
        assert f"{span_id(outer):016x}" in headers["traceparent"]

    def test_none_when_the_other_makes_it_next(self, spans: Spans) -> None:
        """When another instrumentation's receiver comes next, threadline makes no span."""
        published(other_makes_it=True)
        assert ["request"] == [s.name for s in spans.finished()]

    def test_a_value_that_cannot_cross_never_fails_the_publish(self) -> None:
        """The message goes without baggage, counted as baggage.outbound_invalid."""
        headers: dict[str, str] = {}
        with tl.request.scope(when=object()), trace.get_tracer("t").start_as_current_span("s"):
            publish(headers, OP).end()
        assert ["traceparent"] == list(headers)
        assert {"baggage.outbound_invalid": 1} == diagnostics.drop_counts()

    def test_pairs_of_bytes_round_trip(self, spans: Spans) -> None:
        """Headers kept as (key, bytes) pairs are written and read back the same."""
        headers = published([], setter=PairSetter())
        assert {"traceparent", "baggage"} == {key for key, _ in headers}
        with Processing(headers, OP):
            assert {"request_id": "r1", "user_id": 7} == tl.request.get()
        consumer = spans.named("process orders")
        assert span_id(spans.named("send orders")) == (consumer.parent and consumer.parent.span_id)

    def test_hooks_see_the_publish_until_its_ack(
        self, events: list[tuple[str, hooks.Resource]]
    ) -> None:
        """A message.publish resource: made at the send (the caller's line), gone at the ack."""
        with tl.request.scope(request_id="h1"):
            handoff = publish({}, OP)  # mark:publish
        handoff.end()
        ours = [(event, resource) for event, resource in events if resource.type != "scope"]
        assert ["init", "destroy"] == [event for event, _ in ours]
        resource = ours[0][1]
        assert ("message.publish", "h1") == (resource.type, resource.request_id)
        assert marked_line(__file__, "# mark:" + "publish") == resource.location


class TestUnacked:
    def test_the_ack_ends_the_publish(self, spans: Spans) -> None:
        """A publish kept until its ack ends then, once."""
        waiting = Unacked()
        with trace.get_tracer("t").start_as_current_span("s"):
            waiting.add("m-1", publish({}, OP))
        assert [] == [s for s in spans.finished() if s.name == "send orders"]
        waiting.ack("m-1")
        waiting.ack("m-1")
        spans.named("send orders")

    def test_it_stays_bounded(self, spans: Spans) -> None:
        """Past its limit the oldest publish (whose ack never came) is ended."""
        waiting = Unacked(limit=2)
        with trace.get_tracer("t").start_as_current_span("s"):
            for n in range(3):
                waiting.add(f"m-{n}", publish({}, OP._replace(destination=f"q{n}")))
        assert ["send q0"] == [s.name for s in spans.finished() if s.name.startswith("send")]


class TestHeaders:
    @pytest.mark.parametrize(
        "headers",
        [
            {"traceparent": TRACEPARENT, "baggage": BAGGAGE},
            {"traceparent": TRACEPARENT.encode(), "baggage": BAGGAGE.encode()},
            [("traceparent", TRACEPARENT.encode()), ("baggage", BAGGAGE.encode())],
            [("traceparent", TRACEPARENT), ("other", b"\xff"), ("baggage", BAGGAGE)],
        ],
    )
    def test_text_and_bytes_read_alike(self, headers: Headers) -> None:
        """Mappings and pairs, text and UTF-8 bytes: the same context."""
        context, link = message_context(fields_of(headers))
        assert link is None
        assert {"request_id": "r1"} == tl.request.get(context)
        assert {"plain": "p"} == dict(baggage.get_all(context))
        assert (
            0x0AF7651916CD43DD8448EB211C80319C
            == trace.get_current_span(context).get_span_context().trace_id
        )
        assert {} == diagnostics.drop_counts()

    @pytest.mark.parametrize(
        ("bad", "reason"),
        [
            (("traceparent", b"\xff" * 55), "traceparent.not_utf8"),
            (("traceparent", 55), "traceparent.not_text"),
            (("traceparent", "00-" + "1" * 600), "traceparent.too_large"),
            (("traceparent", TRACEPARENT), "traceparent.duplicate"),
            (("traceparent", "00-nonsense"), "traceparent.invalid"),
        ],
    )
    def test_a_bad_field_is_dropped_whole_and_the_rest_applies(
        self, bad: tuple[str, Any], reason: str
    ) -> None:
        """The bad traceparent is dropped and counted; the baggage still arrives."""
        first = [("traceparent", TRACEPARENT)] if reason == "traceparent.duplicate" else []
        context, _ = message_context(fields_of([*first, bad, ("baggage", BAGGAGE)]))
        assert not trace.get_current_span(context).get_span_context().is_valid
        assert {"request_id": "r1"} == tl.request.get(context)
        assert {reason: 1} == diagnostics.drop_counts()

    def test_nothing_brings_nothing(self) -> None:
        """No headers, or none of threadline's: an empty context, nothing counted."""
        for headers in (None, {}, [], {"other": "x"}, [("other", b"\xff")]):
            assert (Context(), None) == message_context(fields_of(headers))
        assert {} == diagnostics.drop_counts()

    def test_distrusted_is_a_link_without_baggage(self) -> None:
        """From outside the application: an empty context, a link to the publisher's span."""
        context, link = message_context(
            fields_of({"traceparent": TRACEPARENT, "baggage": BAGGAGE}), trust=False
        )
        assert Context() == context
        assert link is not None
        assert 0xB7AD6B7169203331 == link.context.span_id

    def test_the_retry_header_is_a_traceparent_only(self) -> None:
        """A retried span with a tracestate is named by its traceparent alone, and read back."""
        span_context = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            is_remote=False,
            trace_flags=TraceFlags(1),
            trace_state=TraceState([("vendor", "v")]),
        )
        headers: dict[str, str] = {}
        write_retry_of(headers, PairSetterForDict(), span_context)
        assert {RETRY_OF_HEADER: TRACEPARENT} == headers
        link = retry_link(fields_of(headers))
        assert link is not None
        assert span_context.span_id == link.context.span_id


class PairSetterForDict(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key] = value


class TestProcessing:
    def test_the_work_runs_in_the_messages_context_under_a_consumer_span(
        self, spans: Spans
    ) -> None:
        """The stores arrive; ``process {destination}`` is a child of the publish's span."""
        headers = published()
        before = get_current()
        with Processing(headers, OP) as context:
            assert context is get_current()
            assert {"request_id": "r1", "user_id": 7} == tl.request.get()
        assert before is get_current()
        consumer, producer = spans.named("process orders"), spans.named("send orders")
        assert (SpanKind.CONSUMER, span_id(producer)) == (
            consumer.kind,
            consumer.parent and consumer.parent.span_id,
        )
        assert {
            "messaging.operation.type": "process",
            "messaging.destination.name": "orders",
        }.items() <= dict(consumer.attributes or {}).items()

    def test_a_message_that_brings_nothing_runs_without_a_request(self) -> None:
        """Never under the loop's own values, nor the previous message's."""
        with tl.request.scope(request_id="loop"):
            with Processing(published(), OP):
                assert "r1" == tl.request.get()["request_id"]
            with Processing([], OP):
                assert tl.request.get() is None
                assert not trace.get_current_span().get_span_context().is_valid
            assert "loop" == tl.request.get()["request_id"]

    def test_an_error_fails_the_span_and_restores(self, spans: Spans) -> None:
        """The body raised: the span is failed, the loop's context is back."""
        headers = published()
        with pytest.raises(ValueError, match="bad"), Processing(headers, OP):
            raise ValueError("bad")
        assert tl.request.get() is None
        failed = spans.named("process orders")
        assert (StatusCode.ERROR, "ValueError") == (
            failed.status.status_code,
            (failed.attributes or {}).get("error.type"),
        )

    def test_a_break_restores(self, spans: Spans) -> None:
        """The loop broke out of the body: the span ends as it is, the context is back."""
        headers = published()
        for _ in range(3):
            with Processing(headers, OP):
                break
        assert tl.request.get() is None
        assert StatusCode.UNSET == spans.named("process orders").status.status_code

    async def test_a_cancellation_restores(self, spans: Spans) -> None:
        """A cancelled consumer task is back in its own context, the span ended, not failed."""
        headers = published()
        started, after = asyncio.Event(), []

        async def consume() -> None:
            try:
                async with Processing(headers, OP):
                    started.set()
                    await asyncio.sleep(60)
            finally:
                after.append(tl.request.get())

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [None] == after
        assert StatusCode.UNSET == spans.named("process orders").status.status_code

    def test_distrusted_starts_a_trace_linked_to_the_publisher(self, spans: Spans) -> None:
        """From outside: a new trace, linked to the publish; no stores."""
        headers = published()
        with Processing(headers, OP, trust=False):
            assert tl.request.get() is None
        consumer, producer = spans.named("process orders"), spans.named("send orders")
        assert consumer.parent is None
        assert [span_id(producer)] == [link.context.span_id for link in consumer.links]

    def test_a_retry_links_to_the_attempt_before(self, spans: Spans) -> None:
        """The second attempt's span links to the first's (RETRY_OF_HEADER)."""
        with Processing(published(), OP) as first:
            retried = published(retry_of=trace.get_current_span(first).get_span_context())
        with Processing(retried, OP, retry=True):
            pass
        one, two = [s for s in spans.finished() if s.name == "process orders"]
        assert [span_id(one)] == [link.context.span_id for link in two.links]

    def test_a_batch_is_one_span_linked_to_each_message(self, spans: Spans) -> None:
        """One CONSUMER span, linked to each publisher, in the loop's own context."""
        messages = [published(), published(), {}]
        with tl.request.scope(request_id="loop"), Processing.batch(messages, OP):
            assert "loop" == tl.request.get()["request_id"]
        batch = spans.named("process orders")
        producers = [s for s in spans.finished() if s.name == "send orders"]
        assert [span_id(p) for p in producers] == [link.context.span_id for link in batch.links]
        assert 3 == (batch.attributes or {})["messaging.batch.message_count"]

    def test_another_instrumentations_span_is_continued(
        self, spans: Spans, tracer_provider: SuiteTracerProvider
    ) -> None:
        """Its CONSUMER span current here stands for the processing; the stores go on it."""
        headers = published()
        contrib = tracer_provider.get_tracer(CONTRIB)
        with contrib.start_as_current_span("orders process", kind=SpanKind.CONSUMER) as outer:
            with Processing(headers, OP) as processing:
                assert outer is trace.get_current_span()
                assert "r1" == tl.request.get()["request_id"]
        assert processing is not None
        assert [] == [s for s in spans.finished() if s.name == "process orders"]

    def test_left_as_it_is_when_another_restored_first(self) -> None:
        """Signal-driven: another receiver put back the context from before both; it stays."""
        base = get_current()
        token = attach(Context({"theirs": 1}))  # another instrumentation's prerun
        processing = Processing(published(), OP, only_if_current=True)
        processing.begin()
        restore(token)  # its postrun, first
        processing.end()
        assert base is get_current()

    def test_hooks_see_each_message_as_a_request(
        self, events: list[tuple[str, hooks.Resource]]
    ) -> None:
        """A message.process resource with the message's request id, around the work."""
        headers = published()
        events.clear()
        with Processing(headers, OP, where="consumer.py:1"):
            running = hooks.current()
        assert ["init", "before", "after", "destroy"] == [event for event, _ in events]
        resource = events[0][1]
        assert running is resource
        assert ("message.process", "r1", True, "consumer.py:1") == (
            resource.type,
            resource.request_id,
            resource.request,
            resource.location,
        )

    def test_the_loss_detector_sees_work_that_outlives_the_message(self) -> None:
        """A thread the work started, still running after it: reported as outlived."""
        headers = published()
        release = threading.Event()
        with lost.detecting(log=False) as found:
            with Processing(headers, OP):
                thread = tl.Thread(target=release.wait)
                thread.start()  # mark:outlives
            release.set()
            thread.join()
        (report,) = [r for r in found.reports() if r.cause == "outlived"]
        assert marked_line(__file__, "# mark:" + "outlives") == report.location
        assert "'r1'" in report.message

    def test_a_killed_processing_is_reported_after_the_fact(self, spans: Spans) -> None:
        """Its CONSUMER span, failed, dated from its start, a child of the publish."""
        headers = published()
        report_processing(headers, OP, TimeoutError("killed"), start_time=1_000_000_000)
        killed = spans.named("process orders")
        assert (StatusCode.ERROR, 1_000_000_000) == (killed.status.status_code, killed.start_time)
        assert span_id(spans.named("send orders")) == (killed.parent and killed.parent.span_id)


# The property tests are functions, not methods: Hypothesis refuses a test method that a
# second run of the suite in the same process calls on a new instance.

NAMES = st.sampled_from(["traceparent", "tracestate", "baggage", "Traceparent", "other"])
TEXT = st.one_of(
    st.sampled_from([TRACEPARENT, "vendor=v,other=o", BAGGAGE, "request.n=1;tl=json"]),
    st.text(max_size=40),
    st.just("request.request_id=" + "y" * 9000 + ";tl"),
    st.just("00-" + "a" * 600),
)
VALUES = st.one_of(
    TEXT,
    TEXT.map(str.encode),
    st.binary(max_size=40),
    st.just(b"\xff" * 600),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=4), max_size=2),
)
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=8)


def clean(headers: Mapping[str, Any] | list[tuple[str, Any]]) -> dict[str, str]:
    """What a correct reader keeps: each of threadline's fields given once, as text in its limit."""
    if isinstance(headers, Mapping):  # a key holds one value; None is no value
        items = [(key, value) for key, value in headers.items() if value is not None]
    else:
        items = headers
    kept: dict[str, str] = {}
    for field in FIELDS:
        values = [value for key, value in items if key == field]
        if len(values) != 1 or not isinstance(values[0], (str, bytes)):
            continue
        if len(values[0]) > FIELD_LIMITS[field]:
            continue
        try:
            kept[field] = values[0] if isinstance(values[0], str) else values[0].decode()
        except UnicodeDecodeError:
            continue
    return kept


@settings(max_examples=300, deadline=None)
@given(headers=st.one_of(PAIRS, PAIRS.map(dict)))
def test_the_reader_never_raises_nor_half_applies(
    headers: Mapping[str, Any] | list[tuple[str, Any]],
) -> None:
    """Whatever came, each field is applied whole, as the strict decoder reads it alone, or not."""
    context, link = message_context(fields_of(headers))
    kept = clean(headers)
    expected = extract_context(lambda field: [kept[field]] if field in kept else [])
    assert link is None
    assert (
        trace.get_current_span(expected).get_span_context()
        == trace.get_current_span(context).get_span_context()
    )
    assert dict(baggage.get_all(expected)) == dict(baggage.get_all(context))
    assert store_values(expected) == store_values(context)
