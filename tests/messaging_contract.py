"""One contract, every broker: what a user relies on where messages are published and processed.

A broker's adapter enrols by subclassing `MessagingContract` with a ``broker``
fixture that returns a `Broker`: it publishes one message from this process
(in the current context, with extra headers added as they are) and reports
what the consumer's body saw, as `tests.message_probe.observe` returns it, and
the consumer loop's own context when the message arrived.
The consumer runs wherever the broker's consumers run (a worker process, a
task in this process) with a lifecycle hook enabled (in this process the
contract enables one; a worker is told by ``THREADLINE_TEST_HOOKS``), and
processes one message at a time, in one consumer, so that "nothing stale"
means something.

Checked: the stores, the trace and the baggage arrive; the PRODUCER and
CONSUMER spans have the messaging attributes and the right parent;
malformed, oversized, non-text and non-UTF-8 headers are dropped and counted
while the work still runs, and a carrier in bytes is read; no context is
left in the consumer after a message; each message is a ``message.process``
hook resource; a retry is linked to the attempt before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind

import threadline as tl
from tests.helpers import Spans
from threadline import hooks

VALUES = {"request_id": "contract-1", "user_id": 42, "tags": ["a", "b"], "ratio": 0.5, "ok": True}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@dataclass
class Seen:
    """What one message's processing saw (`tests.message_probe.observe`), and its attempt before."""

    request: dict[str, Any] | None
    baggage: dict[str, str]
    trace_id: str | None
    span: dict[str, Any] | None
    drops: dict[str, int]
    resource: dict[str, Any] | None
    retried_from: str | None = None
    """The span id of the attempt before this one, for a retried message."""
    loop: dict[str, Any] | None = None
    """The consumer loop's own context (``request``, ``trace_id``) when the message arrived."""


class Broker(Protocol):
    """What an adapter provides: publish here, report what the consumer's body saw."""

    system: str
    """``messaging.system``."""
    destination: str
    """``messaging.destination.name`` of the messages `publish` sends."""
    target: str
    """What the spans' names say after ``send``/``process`` (the destination, or a task name)."""
    retries: bool
    """Whether `publish` can send a message whose first processing asks for a retry."""
    id_attribute: str
    """The span attribute that holds the id `publish` returns (``messaging.message.id``, or
    ``messaging.kafka.message.key`` where the broker has no message ids)."""
    consumer_destination: str
    """``messaging.destination.name`` at the consumer (RabbitMQ adds the queue's name)."""
    consumer_target: str
    """What the CONSUMER span's name says after ``process``."""

    def carries(self, value: object) -> bool:
        """Whether the broker can carry *value* as a header value at all (Kafka: bytes only)."""

    def publish(self, headers: Mapping[str, Any] | None = None, *, retry: bool = False) -> str:
        """Publish one message in the current context, *headers* added raw; return its id."""

    def seen(self, message_id: str) -> Seen:
        """Wait for the message's (last) processing; what its body saw, and its loop before it."""


def normalized(request: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON's view of store values (tuples become lists)."""
    return None if request is None else json.loads(json.dumps(request))


class MessagingContract:
    """The promises; a subclass provides the ``broker`` fixture (`Broker`)."""

    @pytest.fixture(autouse=True)
    def _hook_on(self) -> Iterator[None]:
        """A lifecycle hook is on, so that an in-process consumer makes its resources."""
        hook = hooks.create_hook().enable()
        yield
        hook.disable()

    def test_stores_trace_and_baggage_arrive(self, broker: Broker, tracer: trace.Tracer) -> None:
        """The publisher's stores (with their JSON types), trace and plain baggage arrive."""
        token = context.attach(baggage.set_baggage("plain", "p 1"))
        try:
            with tl.request.scope(VALUES), tracer.start_as_current_span("publisher") as span:
                message_id = broker.publish()
        finally:
            context.detach(token)
        seen = broker.seen(message_id)
        assert VALUES == normalized(seen.request)
        assert {"plain": "p 1"} == seen.baggage
        assert f"{span.get_span_context().trace_id:032x}" == seen.trace_id

    def test_producer_and_consumer_spans(
        self, broker: Broker, tracer: trace.Tracer, spans: Spans
    ) -> None:
        """``send``: a PRODUCER child of the caller; ``process``: a CONSUMER child of the send."""
        with tracer.start_as_current_span("publisher") as caller:
            message_id = broker.publish()
        seen = broker.seen(message_id)
        (producer,) = [s for s in spans.finished() if s.kind == SpanKind.PRODUCER]
        expected = {
            "messaging.system": broker.system,
            "messaging.destination.name": broker.destination,
            broker.id_attribute: message_id,
        }
        assert caller.get_span_context().span_id == (producer.parent and producer.parent.span_id)
        assert (f"send {broker.target}", "send") == (
            producer.name,
            (producer.attributes or {}).get("messaging.operation.type"),
        )
        assert expected.items() <= dict(producer.attributes or {}).items()
        consumer = seen.span
        assert consumer is not None
        assert ("CONSUMER", f"process {broker.consumer_target}", "process") == (
            consumer["kind"],
            consumer["name"],
            consumer["attributes"].get("messaging.operation.type"),
        )
        expected["messaging.destination.name"] = broker.consumer_destination
        assert expected.items() <= consumer["attributes"].items()
        assert f"{producer.context.span_id:016x}" == consumer["parent_id"]

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({"traceparent": "00-not-a-trace"}, "traceparent.invalid"),
            ({"traceparent": TRACEPARENT, "tracestate": "x" * 9000}, "tracestate.too_large"),
            ({"baggage": "request.request_id=" + "x" * 9000 + ";tl"}, "baggage.too_large"),
            ({"traceparent": 5}, "traceparent.not_text"),
            ({"baggage": ["request.request_id=r;tl"]}, "baggage.not_text"),
            ({"traceparent": b"\xff\xfe" + TRACEPARENT.encode()}, "traceparent.not_utf8"),
        ],
        ids=["invalid", "tracestate-too-large", "too-large", "not-text", "list", "not-utf8"],
    )
    def test_bad_headers_are_dropped_and_counted_and_the_work_runs(
        self, broker: Broker, headers: dict[str, Any], reason: str
    ) -> None:
        """The bad field is dropped whole and counted by the consumer; the body still runs."""
        if not all(broker.carries(value) for value in headers.values()):
            pytest.skip(f"{broker.system} cannot carry such a header value at all")
        seen = broker.seen(broker.publish(headers))
        assert reason in seen.drops
        assert seen.request is None
        if "traceparent" in headers and reason.startswith("tracestate"):
            assert TRACE_ID == seen.trace_id  # the rest of the carrier applies
        else:
            assert seen.trace_id is None

    def test_a_carrier_in_bytes_is_read(self, broker: Broker) -> None:
        """UTF-8 bytes (what Kafka and AMQP clients give) are read as their text."""
        headers = {"traceparent": TRACEPARENT.encode(), "baggage": b"request.request_id=bytes;tl"}
        seen = broker.seen(broker.publish(headers))
        assert ({"request_id": "bytes"}, TRACE_ID, {}) == (seen.request, seen.trace_id, seen.drops)

    def test_nothing_stale_after_a_message(self, broker: Broker, tracer: trace.Tracer) -> None:
        """After a message of a request the consumer's own context is back; the next message,
        without context, runs without a request."""
        with tl.request.scope(request_id="first"), tracer.start_as_current_span("first"):
            first = broker.seen(broker.publish())
        seen = broker.seen(broker.publish())
        assert {"request_id": "first"} == first.request
        assert {"request": None, "trace_id": None} == seen.loop
        assert (None, None, None, {}) == (seen.request, seen.trace_id, seen.span, seen.baggage)

    def test_each_message_is_a_hook_resource(self, broker: Broker) -> None:
        """The body runs as a ``message.process`` resource with the message's request id."""
        with tl.request.scope(request_id="hooked"):
            seen = broker.seen(broker.publish())
        assert {"type": "message.process", "request_id": "hooked"} == seen.resource

    def test_a_retry_is_linked_to_the_attempt_before(
        self, broker: Broker, tracer: trace.Tracer
    ) -> None:
        """The retry's CONSUMER span links to the first attempt's, in the same request."""
        if not broker.retries:
            pytest.skip(f"{broker.system}: no retries")
        with tl.request.scope(request_id="retried"), tracer.start_as_current_span("publisher"):
            message_id = broker.publish(retry=True)
        seen = broker.seen(message_id)
        assert seen.span is not None
        assert seen.retried_from is not None
        assert [seen.retried_from] == seen.span["links"]
        assert {"request_id": "retried"} == seen.request
