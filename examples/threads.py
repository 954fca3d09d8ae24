"""Threads: a pool, a Thread, run_in_executor and a foreign thread's callback (docs/threads.md)."""

from __future__ import annotations

import asyncio
import threading

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("example")


def who() -> str:
    value = tl.request.get()
    return value["request_id"] if value else "-"


def c_library_calls_back(callback: object) -> None:
    """Stands in for a C library that calls back on a thread of its own."""
    thread = threading.Thread(target=callback)  # type: ignore[arg-type]
    thread.start()
    thread.join()


async def main() -> None:
    with tracer.start_as_current_span("request"), tl.request.scope(request_id="r1"):
        with tl.ThreadPoolExecutor(max_workers=2) as pool:
            print("pool job sees:", pool.submit(who).result())
        print("run_in_executor sees:", await tl.run_in_executor(None, who))
        thread = tl.Thread(target=lambda: print("tl.Thread sees:", who()))
        thread.start()
        thread.join()
        c_library_calls_back(tl.bind(lambda: print("bound callback sees:", who())))
    for span in exporter.get_finished_spans():
        parent = f"{span.parent.span_id:016x}" if span.parent else "(root)"
        print(f"span {span.name!r} parent={parent} id={span.context.span_id:016x}")


if __name__ == "__main__":
    asyncio.run(main())
