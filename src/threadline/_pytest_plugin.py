"""threadline's pytest plugin (entry point ``pytest11``, name ``threadline``): off until asked.

Loading it registers a marker and two fixtures, nothing more; a test opts in:

- ``threadline_spans``: the spans the test finished, from an in-memory exporter
  on the global SDK tracer provider (one is set when there is none yet);
- ``@pytest.mark.threadline_no_lost_context`` (or the fixture
  ``threadline_lost_context``): the test fails when context was lost in it
  (or bled from one request into the next), each loss named with its
  location and cause.

Losses come from the loss detector, `threadline.lost`, switched on for the
test alone.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

MARKER = "threadline_no_lost_context"
LOST_CONTEXT_FIXTURE = "threadline_lost_context"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}: fail the test when threadline finds context lost in it (where, and why)",
    )


# -- spans -----------------------------------------------------------------------------------


class TestSpans:
    """The spans finished while one test ran (any thread), in the order they ended."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []

    def finished(self) -> list[ReadableSpan]:
        """Every span finished so far in this test."""
        return list(self._spans)

    def named(self, name: str) -> ReadableSpan:
        """The one finished span called *name*; an `AssertionError` when there is none or more."""
        matches = [span for span in self._spans if span.name == name]
        assert len(matches) == 1, f"{len(matches)} spans named {name!r}"  # noqa: S101
        return matches[0]

    def clear(self) -> None:
        """Forget the spans finished so far."""
        self._spans.clear()


class _Sinks:
    """The tests collecting spans now; the processor on the provider hands each span to them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sinks: list[TestSpans] = []

    def hand_out(self, span: ReadableSpan) -> None:
        with self.lock:
            for sink in self.sinks:
                sink._spans.append(span)


_sinks = _Sinks()


def _processor() -> Any:
    """A span processor giving finished spans to `_sinks` (the SDK is loaded only now)."""
    from opentelemetry.sdk.trace import SpanProcessor  # noqa: PLC0415 - a test asked for spans

    class Collector(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            _sinks.hand_out(span)

    return Collector()


def _collecting_provider() -> None:
    """Make sure the global tracer provider is an SDK one with the collecting processor on it."""
    from opentelemetry import trace  # noqa: PLC0415 - only for a test that asks for spans
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        from ._telemetry.pipeline import StoreSpanProcessor  # noqa: PLC0415

        provider = TracerProvider()
        provider.add_span_processor(StoreSpanProcessor())
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        pytest.fail(
            f"threadline_spans needs an SDK TracerProvider; the global one is {provider!r}",
            pytrace=False,
        )
    # A provider cannot drop a processor again: add ours once, keep it for the process.
    if not getattr(provider, "_threadline_pytest_collector", False):
        provider.add_span_processor(_processor())
        provider._threadline_pytest_collector = True  # type: ignore[attr-defined]


@pytest.fixture
def threadline_spans() -> Iterator[TestSpans]:
    """The spans this test finishes, on the global SDK tracer provider (set if none is).

    A provider can be set once per process: when one is set already and is an
    SDK `TracerProvider`, an in-memory processor is added to it (once) and the
    fixture sees only the spans that end while this test runs.

    .. versionadded:: 0.1
    """
    _collecting_provider()
    sink = TestSpans()
    with _sinks.lock:
        _sinks.sinks.append(sink)
    try:
        yield sink
    finally:
        with _sinks.lock:
            _sinks.sinks.remove(sink)


# -- lost context ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LostContext:
    """One hand-off that ran without its request's context: where, and why."""

    location: str
    cause: str


class _Detection:
    """Losses seen while one test runs, by the loss detector (`threadline.lost`)."""

    def start(self) -> None:
        from . import lost  # noqa: PLC0415 - loaded only for a test that asks

        lost.clear()
        lost.enable(log=False)

    def stop(self) -> list[LostContext]:
        from . import lost  # noqa: PLC0415 - loaded by start

        found = lost.reports()
        lost.disable()
        return [
            LostContext(report.location, f"{report.cause}: {report.message}") for report in found
        ]


@pytest.fixture
def threadline_lost_context() -> None:
    """Fail this test when context is lost in it, as ``@pytest.mark.threadline_no_lost_context``.

    .. versionadded:: 0.1
    """


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Around a test that asked: detect lost context, fail the test naming each loss."""
    fixtures = getattr(item, "fixturenames", ())
    if item.get_closest_marker(MARKER) is None and LOST_CONTEXT_FIXTURE not in fixtures:
        return (yield)
    detection = _Detection()
    detection.start()
    try:
        result = yield
    finally:
        losses = detection.stop()
    if losses:
        lines = "\n".join(f"  {loss.location}: {loss.cause}" for loss in losses)
        pytest.fail(f"threadline: context was lost in this test:\n{lines}", pytrace=False)
    return result
