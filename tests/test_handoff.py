"""The boundary primitives: a hand-off captures, an arrival restores, one span rule beside OTel."""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
from tests.helpers import Spans, hook_calls, marked_line
from threadline import hooks
from threadline._boundary.coexistence import (
    CONTRIB,
    SpanPlan,
    contrib_after,
    foreign_span,
    plan_span,
)
from threadline._boundary.handoff import (
    CARRIES_CONTEXT,
    Arrival,
    arrive,
    carries_context,
    hand_off,
)
from threadline._core.context import Context, attach, get_current, restore


@pytest.fixture
def events() -> Iterator[list[tuple[str, Any]]]:
    """Every hook call while the test runs: (event, resource)."""
    with hook_calls() as calls:
        yield calls


class TestArrival:
    def test_the_context_is_attached_for_the_block_only(self) -> None:
        """Inside the block the arrived context is current; after it, the one from before."""
        with tl.request.scope(request_id="arrived"):
            arrived = get_current()
        with tl.request.scope(request_id="before"):
            with Arrival(arrived):
                assert "arrived" == tl.request.get()["request_id"]
            assert "before" == tl.request.get()["request_id"]

    def test_an_error_still_restores(self) -> None:
        """A block that raises leaves the previous context current."""
        with tl.request.scope(request_id="arrived"):
            arrived = get_current()
        with pytest.raises(RuntimeError), Arrival(arrived):
            raise RuntimeError("boom")
        assert tl.request.get() is None

    def test_none_stays_in_the_current_context(self) -> None:
        """``Arrival(None)`` changes no context: a thread already runs in its caller's copy."""
        with tl.request.scope(request_id="here"), Arrival(None) as context:
            assert context is get_current()
            assert "here" == tl.request.get()["request_id"]

    def test_a_request_resource_lives_as_long_as_the_block(
        self, events: list[tuple[str, Any]]
    ) -> None:
        """With a resource type, the arrival makes the resource and destroys it at its end."""
        with Arrival(get_current(), resource_type="http.server", request=True) as _:
            assert "http.server" == hooks.current().type
        assert ["init", "before", "after", "destroy"] == [event for event, *_ in events]
        assert hooks.current() is None

    def test_the_resource_has_the_arrived_request_id(self, events: list[tuple[str, Any]]) -> None:
        """The resource is made once the context is attached: it has that request's id."""
        with tl.request.scope(request_id="arrived"):
            arrived = get_current()
        with Arrival(arrived, resource_type="message.process", request=True):
            assert "arrived" == hooks.current().request_id

    def test_only_if_current_leaves_an_earlier_restore(self) -> None:
        """Another receiver put back the context from before both: it stays."""
        before = get_current()
        theirs = attach(Context({"theirs": 1}))
        arrival = Arrival(Context({"ours": 1}), only_if_current=True)
        arrival.__enter__()
        restore(theirs)
        arrival.__exit__(None, None, None)
        assert before is get_current()


class TestHandoff:
    def test_the_resource_is_made_where_the_work_is_handed_over(
        self, events: list[tuple[str, Any]]
    ) -> None:
        """init at the hand-off, with the application's line; before/after where it runs."""
        handoff = hand_off("thread.job")  # the hand-off's line
        line = marked_line(__file__, "# the hand-off" + "'s line")
        arrive(None, handoff.resource, lambda: None)
        handoff.end()
        handoff.end()  # a second end changes nothing
        assert [
            ("init", "thread.job", line),
            ("before", "thread.job", line),
            ("after", "thread.job", line),
            ("destroy", "thread.job", line),
        ] == [(event, resource.type, resource.location) for event, resource in events]

    def test_no_resource_without_a_hook(self) -> None:
        """With no hook enabled a hand-off makes no resource."""
        assert hand_off("thread.job").resource is None

    def test_the_span_is_current_in_the_handed_context(self, spans: Spans) -> None:
        """The span the boundary makes is the parent of what runs on the far side."""
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("caller"):
            handoff = hand_off("process.job", span=lambda _: tracer.start_span("job"))
        assert handoff.span is trace.get_current_span(handoff.context)
        handoff.end(ValueError("bad"))
        assert StatusCode.ERROR == spans.named("job").status.status_code

    def test_a_declined_span_hands_the_callers_context(self) -> None:
        """A span factory that declines leaves the caller's context as it is."""
        with tl.request.scope(request_id="r"):
            handoff = hand_off("process.job", span=lambda _: None)
            assert handoff.context is get_current()
        assert handoff.span is None


def test_the_loss_detectors_mark() -> None:
    """`carries_context` marks what runs in its caller's context, as the detector reads it."""

    @carries_context
    def job() -> None: ...

    assert getattr(job, CARRIES_CONTEXT) is True
    assert getattr(tl.ThreadPoolExecutor, CARRIES_CONTEXT) is True
    assert getattr(tl.ProcessPoolExecutor, CARRIES_CONTEXT) is True


class TestPlanSpan:
    """`plan_span`: one rule for every boundary beside OpenTelemetry's instrumentations."""

    def test_another_instrumentations_span_is_continued(self) -> None:
        """A recording SERVER span of another tracer is the operation's span: no second."""
        with trace.get_tracer("contrib").start_as_current_span("GET", kind=SpanKind.SERVER) as span:
            assert SpanPlan(span, False) == plan_span("SERVER", get_current(), root=True)

    def test_a_span_of_another_kind_is_a_parent(self) -> None:
        """A current INTERNAL span is the parent of threadline's own span, not a stand-in."""
        with trace.get_tracer("app").start_as_current_span("work"):
            assert SpanPlan(None, True) == plan_span("CLIENT", get_current())

    def test_threadlines_own_span_is_never_foreign(self) -> None:
        """A span threadline made is not continued as if another instrumentation's."""
        with trace.get_tracer("threadline").start_as_current_span("x", kind=SpanKind.SERVER):
            assert foreign_span(get_current(), "SERVER") is None

    def test_nothing_when_another_makes_it_next_or_spans_are_off(self) -> None:
        """Standing aside: its middleware comes next, or the adapter's spans are off."""
        with trace.get_tracer("app").start_as_current_span("work"):
            assert SpanPlan(None, False) == plan_span("CLIENT", get_current(), other_makes_it=True)
            assert SpanPlan(None, False) == plan_span("CLIENT", get_current(), spans=False)

    def test_a_root_only_where_asked(self) -> None:
        """Without a parent a client makes no span; a server (root=True) does."""
        assert SpanPlan(None, False) == plan_span("CLIENT", get_current())
        assert SpanPlan(None, True) == plan_span("SERVER", get_current(), root=True)

    def test_the_parent_may_be_apart(self) -> None:
        """The foreign span is looked for in the context; the recording, on the parent."""
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        parent = tl.extract({"traceparent": traceparent}).context  # a message's publisher
        assert SpanPlan(None, True) == plan_span("CONSUMER", get_current(), parent=parent)
        assert SpanPlan(None, False) == plan_span("CONSUMER", get_current(), parent=Context())
        consumer = trace.get_tracer("contrib").start_as_current_span("p", kind=SpanKind.CONSUMER)
        with consumer as span:
            assert SpanPlan(span, False) == plan_span("CONSUMER", get_current(), parent=parent)


def _ours() -> None: ...


def _theirs() -> None: ...


_theirs.__module__ = CONTRIB["celery"]


def test_contrib_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenTelemetry's receiver after ours is found, through weak references too, once its
    instrumentation is imported (before, no receiver of its can exist: none is looked for)."""
    monkeypatch.delitem(sys.modules, CONTRIB["celery"], raising=False)
    assert not contrib_after(_ours, [_ours, weakref.ref(_theirs)], "celery")
    monkeypatch.setitem(sys.modules, CONTRIB["celery"], types.ModuleType(CONTRIB["celery"]))
    assert contrib_after(_ours, [_ours, weakref.ref(_theirs)], "celery")
    assert not contrib_after(_ours, [_theirs, _ours], "celery")
    assert not contrib_after(_ours, [_ours, _theirs], "aiohttp.server")
