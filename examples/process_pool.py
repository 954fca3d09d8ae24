"""One request's context in worker processes, under every start method (docs/processes.md).

Jobs go to a tl.ProcessPoolExecutor; each worker logs with the submitting
request's id and trace id, and each job is a span under the request's span.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import threadline as tl
from threadline.logging import install

FORMAT = "%(processName)-22s request=%(request_id)s trace=%(trace_id).8s… %(message)s"


def set_up_logging() -> None:
    """Run in every worker (initializer=) and in the parent."""
    install()
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stdout, force=True)


def resize(image: int) -> int:
    logging.getLogger("worker").info("resized image %d in pid %d", image, os.getpid())
    return image * 2


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    set_up_logging()
    for method in ("spawn", "forkserver", "fork"):
        with (
            tl.ProcessPoolExecutor(
                max_workers=2,
                mp_context=multiprocessing.get_context(method),
                initializer=set_up_logging,
            ) as pool,
            trace.get_tracer("app").start_as_current_span(f"upload {method}"),
            tl.request.scope(request_id=f"req-{method}"),
        ):
            logging.getLogger("app").info("resizing under %s", method)
            print(f"{method}: results {list(pool.map(resize, range(3)))}", flush=True)
    jobs = [span for span in exporter.get_finished_spans() if span.name == "process resize"]
    print(f"{len(jobs)} job spans, each a child of its request's span")


if __name__ == "__main__":
    main()
