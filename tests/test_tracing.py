"""Store values on spans, and trace ids for logs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from tests.helpers import Spans
from threadline._core.values import FrozenMapping
from threadline._telemetry.attributes import (
    MAX_ATTRIBUTE_CHARS,
    REQUEST_ATTRIBUTES,
    attribute_value,
    chosen_attributes,
)
from threadline.tracing import StoreSpanProcessor, configure, current_trace_ids


class TestStoreSpanProcessor:
    def test_request_ids_on_spans(self, spans: Spans, tracer: trace.Tracer) -> None:
        """Spans started in a request scope carry request.id and enduser.id."""
        with tl.request.scope(request_id="r1", user_id=42), tracer.start_as_current_span("a"):
            with tracer.start_as_current_span("b"):
                pass
        for name in ("a", "b"):
            attributes = spans.named(name).attributes
            assert ("r1", 42) == (attributes["request.id"], attributes["enduser.id"])

    def test_no_scope_no_attributes(self, spans: Spans, tracer: trace.Tracer) -> None:
        """Outside a scope nothing is added."""
        with tracer.start_as_current_span("plain"):
            pass
        assert "request.id" not in spans.named("plain").attributes

    def test_explicit_parent_context_is_used(self, spans: Spans, tracer: trace.Tracer) -> None:
        """A span started with context= takes the values from that context, not the current one."""
        with tl.request.scope(request_id="from-context"):
            snap = tl.snapshot()
        with tl.request.scope(request_id="current"):
            tracer.start_span("explicit", context=snap.context).end()
        assert "from-context" == spans.named("explicit").attributes["request.id"]

    def test_other_store_all_keys(self, store: tl.ContextStore) -> None:
        """For another store every key lands as store.key; lists become arrays, dicts JSON."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(StoreSpanProcessor(store))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with store.scope(tenant="acme", tags=["a", "b"], meta={"k": 1}, nothing=None):
            provider.get_tracer("t").start_span("s").end()
        attributes = exporter.get_finished_spans()[0].attributes
        assert attributes is not None
        assert "acme" == attributes[f"{store.name}.tenant"]
        assert ("a", "b") == attributes[f"{store.name}.tags"]
        assert '{"k": 1}' == attributes[f"{store.name}.meta"]
        assert f"{store.name}.nothing" not in attributes

    def test_an_object_changed_in_the_scope_is_copied_as_it_is_now(
        self, store: tl.ContextStore
    ) -> None:
        """Each span gets the store's values as they are when it starts, a mutable one too."""

        class Box:
            def __init__(self) -> None:
                self.n = 1

            def __repr__(self) -> str:
                return f"Box({self.n})"

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(StoreSpanProcessor(store, {"box": "box", "id": "id"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        box, spans = Box(), provider.get_tracer("t")
        with store.scope(box=box, id="a"):
            spans.start_span("first").end()
            box.n = 2
            spans.start_span("second").end()
        with store.scope(id="b"):
            spans.start_span("third").end()
        found = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
        assert "a" == found["first"]["id"] == found["second"]["id"]
        assert found["first"]["box"] != found["second"]["box"]
        assert {"id": "b"} == found["third"]

    def test_values_from_outside_escaped_and_limited(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A request id with control characters is escaped on the span; a huge one is cut."""
        with tl.request.scope(request_id="r1\r\nx\x1b", user_id="u" * 10_000):
            tracer.start_span("hostile").end()
        attributes = spans.named("hostile").attributes
        assert "r1\\r\\nx\\x1b" == attributes["request.id"]
        assert "u" * MAX_ATTRIBUTE_CHARS == attributes["enduser.id"]

    @given(
        st.one_of(
            st.text(max_size=5000),
            st.text(alphabet=st.characters(max_codepoint=127), min_size=4090, max_size=4100),
            st.integers(),
            st.booleans(),
            st.floats(allow_nan=False),
            st.lists(st.text(max_size=20), max_size=3),
        )
    )
    def test_every_value_as_attribute_value_makes_it(self, value: object) -> None:
        """The quick path (short printable ASCII, numbers) gives what the general one gives."""
        values = FrozenMapping({"request_id": value, "user_id": 42}, "request")
        expected = [("request.id", attribute_value(value)), ("enduser.id", 42)]
        assert expected == chosen_attributes(values, REQUEST_ATTRIBUTES, "request")

    def test_threadlines_span_and_the_users_carry_the_same(
        self, spans: Spans, tracer: trace.Tracer
    ) -> None:
        """A boundary span of threadline's and a span of the user's get the same store values."""
        with tl.request.scope(request_id="r1", user_id=42), tracer.start_as_current_span("outer"):
            with tl.ThreadPoolExecutor(1) as pool:
                pool.submit(lambda: tracer.start_span("inner").end()).result()
            tracer.start_span("beside").end()
        (job,) = [s for s in spans.finished() if s.attributes.get("threadline.boundary")]
        for span in (job, spans.named("inner"), spans.named("beside"), spans.named("outer")):
            assert ("r1", 42) == (span.attributes["request.id"], span.attributes["enduser.id"])
        with tl.request.scope(request_id="r2"), tracer.start_as_current_span("outer2"):
            with tl.ThreadPoolExecutor(1) as pool:
                pool.submit(lambda: None).result()
        job2 = next(s for s in spans.finished() if s.parent == spans.named("outer2").context)
        assert "r2" == job2.attributes["request.id"]
        assert "enduser.id" not in job2.attributes

    def test_custom_maps_and_several_processors(self) -> None:
        """Other stores, custom maps, several processors and a subclass: the same on every span.

        threadline's own spans get the store's attributes at their start, so a
        sampler sees them too; a subclass that overrides ``on_start`` sets its own after.
        """
        program = textwrap.dedent(
            """
            import json
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler
            import threadline as tl
            from threadline.tracing import StoreSpanProcessor

            seen = {}

            class Seeing(Sampler):
                def should_sample(self, parent_context, trace_id, name, *args, **kwargs):
                    attributes = args[1] if len(args) > 1 else kwargs.get("attributes")
                    seen[name] = sorted(attributes or {})
                    return ALWAYS_ON.should_sample(parent_context, trace_id, name, *args, **kwargs)

                def get_description(self):
                    return "seeing"

            class Marking(StoreSpanProcessor):
                def on_start(self, span, parent_context=None):
                    super().on_start(span, parent_context)
                    span.set_attribute("marked", True)

            tenant = tl.ContextStore("tenant")
            exporter = InMemorySpanExporter()
            provider = TracerProvider(sampler=Seeing())
            provider.add_span_processor(StoreSpanProcessor())
            provider.add_span_processor(
                StoreSpanProcessor(tenant, {"name": "tenant.name", "plan": "request.id"})
            )
            provider.add_span_processor(StoreSpanProcessor(tenant))
            provider.add_span_processor(Marking(tl.request, {"user_id": "marked.user"}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            tracer = trace.get_tracer("user")

            def work():
                pass

            with tl.request.scope(request_id="r1", user_id=7):
                with tenant.scope(name="acme", plan="gold"), tracer.start_as_current_span("outer"):
                    with tl.ThreadPoolExecutor(1) as pool:
                        pool.submit(work).result()
                    tracer.start_span("user").end()
            print(json.dumps({
                "spans": {s.name: dict(s.attributes) for s in exporter.get_finished_spans()},
                "seen": seen,
            }))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
        )
        assert 0 == done.returncode, done.stderr
        found = json.loads(done.stdout)
        store_attributes = {
            "request.id": "gold",  # the second processor's map, set over the first's
            "enduser.id": 7,
            "tenant.name": "acme",
            "tenant.plan": "gold",
            "marked.user": 7,
            "marked": True,
        }
        job = found["spans"]["thread work"]
        assert {"threadline.boundary": "thread", "code.function.name": "work"} | (
            store_attributes
        ) == job
        assert store_attributes == found["spans"]["user"]
        assert store_attributes == found["spans"]["outer"]
        # threadline's span had them at its start (the subclass's own come after it)
        assert [
            "code.function.name",
            "enduser.id",
            "request.id",
            "tenant.name",
            "tenant.plan",
            "threadline.boundary",
        ] == found["seen"]["thread work"]
        assert [] == found["seen"]["user"]

    def test_needs_a_store(self) -> None:
        """Passing something else is a clear error."""
        with pytest.raises(TypeError, match="ContextStore"):
            StoreSpanProcessor("request")  # type: ignore[arg-type]

    @pytest.mark.parametrize("attributes", ["tenant", ["tenant"], {"tenant": 5}])
    def test_attributes_are_a_mapping_of_names(self, attributes: object) -> None:
        """attributes given as one str, a list or with a non-str name: a TypeError naming it."""
        with pytest.raises(TypeError, match=r"^attributes takes a mapping"):
            StoreSpanProcessor(tl.request, attributes)  # type: ignore[arg-type]


def test_current_trace_ids(tracer: trace.Tracer) -> None:
    """The current ids, as hex, for logs; None without a span."""
    assert current_trace_ids() is None
    with tracer.start_as_current_span("s") as span:
        sc = span.get_span_context()
        assert (f"{sc.trace_id:032x}", f"{sc.span_id:016x}") == current_trace_ids()


class TestAttributeChoices:
    @pytest.mark.parametrize(
        ("arguments", "error"),
        [
            ({"span_attributes": ["request_id"]}, TypeError),
            ({"log_attributes": {"request_id": ""}}, ValueError),
            ({"span_attributes": {"a,b": "x"}}, ValueError),
            ({"span_attributes": {"a": "x\n"}}, ValueError),
        ],
    )
    def test_a_wrong_choice_is_a_clear_error(
        self, arguments: dict[str, object], error: type[Exception]
    ) -> None:
        """A choice that is not store keys to attribute names raises, naming the argument."""
        with pytest.raises(error, match=next(iter(arguments))):
            configure(**arguments)  # type: ignore[arg-type]


def test_a_flush_after_shutdown_has_nothing_left_to_do(caplog: pytest.LogCaptureFixture) -> None:
    """An exit flush that runs after the provider's shutdown (a spawn worker on Python 3.13).

    The shutdown exported what was queued: the flush says so at once, never a
    time-out, and never calls the shut exporter again.
    """
    from threadline._telemetry import pipeline

    exporter = InMemorySpanExporter()
    processor = pipeline._CountingBatchSpanProcessor(pipeline._CountingSpanExporter(exporter))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    provider.get_tracer("t").start_span("queued").end()
    provider.shutdown()
    assert ["queued"] == [span.name for span in exporter.get_finished_spans()]
    assert processor.force_flush(100) is True
    assert not [r for r in caplog.records if "shutdown" in r.getMessage()]
