"""A publisher beside OpenTelemetry's Celery instrumentation: ``python -m tests.celery_publisher``.

tests/test_celery_coexistence.py runs it with THREADLINE_TEST_CONTRIB
(``hand``; or ``launcher``, under ``opentelemetry-instrument``),
THREADLINE_TEST_REDIS and THREADLINE_TRACES_FILE. It publishes one
request's tasks, waits for them and prints, as JSON, the request's trace id
and what each task saw.
"""

from __future__ import annotations

import json

from opentelemetry import trace

import threadline as tl
from tests import celery_tasks as tasks

REQUEST = {"request_id": "req-contrib", "user_id": 9}
TIMEOUT = 60  # a hang guard only


def main() -> None:
    """Publish a task and a task that publishes one, inside the request; print what they saw."""
    # `setup` ran at import: by hand, the instrumentation comes after it, as it may in apps
    tasks.trace_beside_contrib("publisher")
    tracer = trace.get_tracer("publisher")
    with tl.request.scope(REQUEST), tracer.start_as_current_span("request") as root:
        direct = tasks.observe.delay("direct")
        nested = tasks.publish_child.delay("nested")
    results = {"direct": direct.get(timeout=TIMEOUT), "nested": nested.get(timeout=TIMEOUT)}
    results["child"] = tasks.app.AsyncResult(results["nested"]["child"]).get(timeout=TIMEOUT)
    trace_id = f"{root.get_span_context().trace_id:032x}"
    print(json.dumps({"trace_id": trace_id, "results": results}))


if __name__ == "__main__":
    main()
