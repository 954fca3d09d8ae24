"""What the span variants of the benchmarks share: a real SDK pipeline whose exporter drops all."""

from __future__ import annotations


def discard_spans() -> None:
    """Set an SDK tracer provider with a batch processor, exporting to nowhere.

    Spans cost what they cost in production, short of the network.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)
