"""Shared fixtures: one SDK tracer provider with an in-memory exporter for the session."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from threadline import diagnostics
from threadline.tracing import StoreSpanProcessor

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(StoreSpanProcessor())
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)

_names = itertools.count()


class Spans:
    """The spans finished during one test, with helpers to check parentage."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        matches = [span for span in self.finished() if span.name == name]
        assert len(matches) == 1, f"{len(matches)} spans named {name!r}: {self.finished()}"
        return matches[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    _exporter.clear()
    yield Spans(_exporter)
    _exporter.clear()


@pytest.fixture
def tracer() -> trace.Tracer:
    return trace.get_tracer("tests")


@pytest.fixture
def store() -> tl.ContextStore:
    """A fresh store with a unique name (names are unique per process)."""
    return tl.ContextStore(f"test-{next(_names)}")


@pytest.fixture(autouse=True)
def _fresh_drop_counts() -> Iterator[None]:
    diagnostics.reset_drop_counts()
    yield
    diagnostics.reset_drop_counts()


@pytest.fixture
def threadline_warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="threadline")
    return caplog
