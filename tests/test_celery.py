"""threadline.celery over a real Redis broker and real `celery worker` processes, per pool kind.

One worker per pool runs one request's worth of work (a task, a task that
publishes a task, a chord, a chain, a retry) and a message with a malformed
carrier; it is then shut down warm, and the spans it exported at shutdown
and its task logs are checked.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chain, chord
from celery.exceptions import TimeLimitExceeded, WorkerLostError
from opentelemetry.trace import SpanKind, StatusCode

import threadline as tl
import threadline.celery
from tests import celery_tasks as tasks
from tests.helpers import SuiteTracerProvider, free_port, marked_line, wait_for
from tests.messaging_contract import MessagingContract, Seen
from tests.redis_broker import CeleryWorker, links_of
from threadline import hooks
from threadline.export import ExportedSpan

PRODUCER, CONSUMER = 4, 5
REQUEST = {"request_id": "req-celery", "user_id": 7}
TIMEOUT = 60  # a hang guard only


@dataclass
class Span:
    """A span from either side, in one shape."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    attributes: dict[str, Any]


@dataclass
class Run:
    """What one worker did for one request, read after its warm shutdown."""

    results: dict[str, Any]
    trace_id: str
    spans: list[Span]
    links: dict[str, list[str]]
    logs: list[dict[str, Any]]
    exit_code: int

    def executions(self, task: str) -> list[Span]:
        return [s for s in self.spans if s.name == f"process tests.celery_tasks.{task}"]


def _local(provider: SuiteTracerProvider) -> list[Span]:
    return [
        Span(
            s.name,
            f"{s.context.trace_id:032x}",
            f"{s.context.span_id:016x}",
            f"{s.parent.span_id:016x}" if s.parent else None,
            s.kind.value + 1,  # the SDK counts from INTERNAL=0, OTLP from 1
            dict(s.attributes or {}),
        )
        for s in provider.exporter.get_finished_spans()
    ]


def _exported(spans: list[ExportedSpan]) -> list[Span]:
    return [Span(s.name, s.trace_id, s.span_id, s.parent_id, s.kind, s.attributes) for s in spans]


@pytest.fixture(scope="module", params=["prefork", "threads", "solo"])
def run(
    request: pytest.FixtureRequest,
    celery_app: Any,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    tracer_provider: SuiteTracerProvider,
) -> Run:
    worker = CeleryWorker(redis_url, request.param, tmp_path_factory.mktemp(request.param))
    tracer = tracer_provider.get_tracer("tests")
    tracer_provider.exporter.clear()
    try:
        with tl.request.scope(REQUEST), tracer.start_as_current_span("request") as root:
            sent = {
                "direct": tasks.observe.delay("direct"),
                "nested": tasks.publish_child.delay("nested"),
                "chord": chord([tasks.observe.si("h1"), tasks.observe.si("h2")])(tasks.collect.s()),
                "chain": chain(tasks.observe.si("c1"), tasks.observe.si("c2")).apply_async(),
                "retry": tasks.flaky.delay(),
            }
        results = {name: result.get(timeout=TIMEOUT) for name, result in sent.items()}
        child = celery_app.AsyncResult(results["nested"]["child"])
        results["child"] = child.get(timeout=TIMEOUT)
        results["malformed"] = celery_app.send_task(
            "tests.celery_tasks.observe",
            args=["malformed"],
            headers={"traceparent": "00-not-a-trace", "baggage": "x" * 9000},
        ).get(timeout=TIMEOUT)
    finally:
        exit_code = worker.stop()
    local = _local(tracer_provider)
    tracer_provider.exporter.clear()
    return Run(
        results,
        f"{root.get_span_context().trace_id:032x}",
        local + _exported(worker.spans()),
        links_of(worker.spans_file),
        worker.logs(),
        exit_code,
    )


def test_stores_arrive_in_every_task(run: Run) -> None:
    """Each task of the request, however it was published, sees the request's stores."""
    seen = [run.results[name] for name in ("direct", "child", "chain", "retry")]
    seen += [run.results["nested"]["seen"], run.results["chord"]["seen"]]
    seen += run.results["chord"]["results"]
    assert [REQUEST] * 8 == [s["request"] for s in seen]


def test_one_trace_across_tasks(run: Run) -> None:
    """Every task, child task, chain link and chord callback runs in the request's trace."""
    seen = [run.results[name] for name in ("direct", "child", "chain", "retry")]
    seen += [run.results["nested"]["seen"], run.results["chord"]["seen"]]
    assert {run.trace_id} == {s["trace_id"] for s in seen}
    assert {run.trace_id} == {s.trace_id for s in run.spans if s.name != "request"} - {None}


def test_consumer_spans_are_children_of_producer_spans(run: Run) -> None:
    """Each execution's CONSUMER span is a child of its publish's PRODUCER span, same task id."""
    by_id = {s.span_id: s for s in run.spans}
    consumers = [s for s in run.spans if s.kind == CONSUMER]
    assert 10 == len(consumers)  # 6 observe, publish_child, collect, 2 flaky attempts
    for span in consumers:
        parent = by_id[span.parent_id or ""]
        assert (PRODUCER, span.attributes["messaging.message.id"]) == (
            parent.kind,
            parent.attributes["messaging.message.id"],
        )


def test_one_producer_span_per_publish(run: Run) -> None:
    """Each publish is one PRODUCER span, with the messaging attributes."""
    producers = [s for s in run.spans if s.kind == PRODUCER]
    assert 10 == len(producers)  # 6 from the request; child, chord callback, chain link, retry
    assert 9 == len({s.attributes["messaging.message.id"] for s in producers})  # a retry: same id
    expected = {"messaging.system": "celery", "messaging.operation.type": "send"}
    for span in producers:
        assert expected == {k: span.attributes[k] for k in expected}
        assert span.attributes["messaging.destination.name"] == "celery"
        assert span.name == f"send {span.attributes['celery.task_name']}"


def test_retry_is_a_new_consumer_span_linked_to_its_predecessor(run: Run) -> None:
    """The second attempt is a child of the retry's publish and links to the first attempt."""
    first, second = sorted(run.executions("flaky"), key=lambda s: len(run.links[s.span_id]))
    by_id = {s.span_id: s for s in run.spans}
    assert [first.span_id] == run.links[second.span_id]
    assert first.span_id == by_id[second.parent_id or ""].parent_id


def test_every_task_log_line_has_the_request_and_trace_ids(run: Run) -> None:
    """Each log line a task of the request writes carries its request id and trace id."""
    lines = [line for line in run.logs if "malformed" not in line["message"]]
    assert 10 == len(lines)
    assert {("req-celery", run.trace_id)} == {(x["request_id"], x["trace_id"]) for x in lines}


def test_no_span_lost_at_warm_shutdown(run: Run) -> None:
    """The worker exported, at its warm shutdown, every span it made (none before it)."""
    names = Counter(s.name.rsplit(".", 1)[-1] for s in run.spans if s.kind == CONSUMER)
    assert 0 == run.exit_code
    assert {"observe": 6, "publish_child": 1, "collect": 1, "flaky": 2} == dict(names)


def test_malformed_carrier_is_dropped_and_the_task_runs(run: Run) -> None:
    """A malformed, oversized or non-text carrier is dropped and counted; the task runs."""
    seen = run.results["malformed"]
    assert (None, None) == (seen["request"], seen["trace_id"])
    assert {"traceparent.invalid", "baggage.too_large"} <= set(seen["drops"])


ERROR = 2  # OTLP's STATUS_CODE_ERROR


def test_hard_time_limit_ends_the_consumer_span_with_an_error(
    celery_app: Any, redis_url: str, tmp_path: Path, tracer_provider: SuiteTracerProvider
) -> None:
    """A prefork task killed by its hard time limit has a CONSUMER span, failed, in the trace."""
    worker = CeleryWorker(redis_url, "prefork", tmp_path)
    tracer = tracer_provider.get_tracer("tests")
    try:
        with tl.request.scope(REQUEST), tracer.start_as_current_span("request") as root:
            # the pool kills the child at 1 s; the task would sleep for the whole hang guard
            result = tasks.sleepy.apply_async(args=[TIMEOUT], time_limit=1)
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=TIMEOUT)
    finally:
        assert 0 == worker.stop()
    tracer_provider.exporter.clear()
    (killed,) = [s for s in worker.spans() if s.name == "process tests.celery_tasks.sleepy"]
    assert (CONSUMER, ERROR) == (killed.kind, killed.status_code)
    assert f"{root.get_span_context().trace_id:032x}" == killed.trace_id
    assert "TimeLimitExceeded" in killed.status_message
    assert result.id == killed.attributes["messaging.message.id"]


def test_cold_shutdown_exports_what_finished(
    celery_app: Any, redis_url: str, tmp_path: Path, tracer_provider: SuiteTracerProvider
) -> None:
    """A prefork worker shut down cold (SIGQUIT) with a task running exports the finished ones."""
    worker = CeleryWorker(redis_url, "prefork", tmp_path)
    tracer = tracer_provider.get_tracer("tests")
    try:
        with tl.request.scope(REQUEST), tracer.start_as_current_span("request"):
            done = [tasks.observe.delay(f"done-{n}") for n in range(2)]
            for result in done:
                result.get(timeout=TIMEOUT)
            tasks.sleepy.delay(TIMEOUT)  # still running at the shutdown
        assert wait_for(lambda: any("sleepy" in x["message"] for x in worker.logs()), TIMEOUT)
    finally:
        worker.stop(signal.SIGQUIT)
    tracer_provider.exporter.clear()
    consumers = [s for s in worker.spans() if s.kind == CONSUMER]
    finished = [s.attributes["messaging.message.id"] for s in consumers if s.status_code != ERROR]
    assert sorted(r.id for r in done) == sorted(finished)
    # the task cut short, if its child could export it, is marked so
    cut = [s for s in consumers if s.name == "process tests.celery_tasks.sleepy"]
    assert [ERROR] * len(cut) == [s.status_code for s in cut]


def test_a_killed_prefork_child_ends_its_consumer_span_failed(
    celery_app: Any, redis_url: str, tmp_path: Path, tracer_provider: SuiteTracerProvider
) -> None:
    """A prefork child SIGKILLed mid-task (an OOM kill): its CONSUMER span is made in the main
    process, failed with WorkerLostError, a child of the publish's PRODUCER span."""
    worker = CeleryWorker(redis_url, "prefork", tmp_path)
    tracer = tracer_provider.get_tracer("tests")
    tracer_provider.exporter.clear()
    try:
        with tl.request.scope(REQUEST), tracer.start_as_current_span("request"):
            result = tasks.killed.delay("oom")
        with pytest.raises(WorkerLostError):
            result.get(timeout=TIMEOUT)
    finally:
        assert 0 == worker.stop()
    (producer,) = [s for s in _local(tracer_provider) if s.kind == PRODUCER]
    tracer_provider.exporter.clear()
    (lost,) = [s for s in worker.spans() if s.name == "process tests.celery_tasks.killed"]
    assert (CONSUMER, ERROR) == (lost.kind, lost.status_code)
    assert "WorkerLostError" == lost.attributes["error.type"]
    assert (producer.trace_id, producer.span_id) == (lost.trace_id, lost.parent_id)
    assert result.id == lost.attributes["messaging.message.id"]


def test_a_failed_publish_ends_its_producer_span_failed(
    tracer_provider: SuiteTracerProvider,
) -> None:
    """A publish to a broker that is down raises to the caller and ends its PRODUCER span with
    an ERROR status (exported, not left open)."""
    app = Celery("broker-down", set_as_current=False, broker=f"redis://127.0.0.1:{free_port()}/0")
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0)
    threadline.celery.setup(app)
    threadline.celery.setup(app)  # again: changes nothing
    tracer = tracer_provider.get_tracer("tests")
    tracer_provider.exporter.clear()
    with tracer.start_as_current_span("request"), pytest.raises(Exception) as raised:  # noqa: PT011
        app.send_task("tests.never_sent", retry=False)
    spans = tracer_provider.exporter.get_finished_spans()
    tracer_provider.exporter.clear()
    (producer,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert StatusCode.ERROR is producer.status.status_code
    assert type(raised.value).__qualname__ == (producer.attributes or {})["error.type"]


class TestOneSoloWorker:
    """Messages that once broke a worker's later tasks, to one solo worker (one process, in order;
    stopped before the next class's worker starts, so no other consumes these)."""

    @pytest.fixture(scope="class")
    @classmethod
    def solo(
        cls, redis_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[CeleryWorker]:
        worker = CeleryWorker(redis_url, "solo", tmp_path_factory.mktemp("solo"))
        yield worker
        assert 0 == worker.stop(), worker.log()[-3000:]

    def test_a_bad_retries_header_drops_only_itself(
        self, celery_app: Any, solo: CeleryWorker, tracer_provider: SuiteTracerProvider
    ) -> None:
        """A message with a valid context and ``retries: "abc"`` runs in that context; the bad
        header alone is dropped, counted and warned, and no receiver fails."""
        tracer = tracer_provider.get_tracer("tests")
        with tl.request.scope(REQUEST), tracer.start_as_current_span("request") as root:
            result = tasks.observe.apply_async(args=["bad retries"], retries="abc")
        seen = result.get(timeout=TIMEOUT)
        tracer_provider.exporter.clear()
        assert (REQUEST, f"{root.get_span_context().trace_id:032x}") == (
            seen["request"],
            seen["trace_id"],
        )
        assert "retries.invalid" in seen["drops"]
        assert "dropped context (retries.invalid)" in solo.log()
        assert "ValueError" not in solo.log()

    def test_a_span_left_attached_by_a_task_ends_with_it(
        self, celery_app: Any, solo: CeleryWorker, tracer_provider: SuiteTracerProvider
    ) -> None:
        """A task that leaves another tracer's CONSUMER span attached: the next task on the same
        worker runs in its own request and trace, not in the one left behind."""
        tracer = tracer_provider.get_tracer("tests")
        with tl.request.scope(request_id="leaker"), tracer.start_as_current_span("first"):
            tasks.leak_span.delay("first").get(timeout=TIMEOUT)
        with tl.request.scope(request_id="next"), tracer.start_as_current_span("second") as second:
            seen = tasks.observe.delay("after the leak").get(timeout=TIMEOUT)
        tracer_provider.exporter.clear()
        assert ({"request_id": "next"}, f"{second.get_span_context().trace_id:032x}") == (
            seen["request"],
            seen["trace_id"],
        )


class CeleryBroker:
    """The messaging contract's broker: tasks over the tests' Redis to a real solo worker."""

    system = destination = consumer_destination = "celery"
    target = consumer_target = "tests.celery_tasks.contract_body"
    retries = True
    id_attribute = "messaging.message.id"

    def carries(self, value: object) -> bool:
        return True

    def __init__(self, app: Any, worker: CeleryWorker, hooks_file: Path) -> None:
        self.app, self.worker, self.hooks_file = app, worker, hooks_file

    def publish(self, headers: Mapping[str, Any] | None = None, *, retry: bool = False) -> str:
        body = tasks.contract_body
        sent = body.apply_async(kwargs={"retry": retry}, headers=headers)  # mark:send
        return str(sent.id)

    def seen(self, message_id: str) -> Seen:
        return Seen(**self.app.AsyncResult(message_id).get(timeout=TIMEOUT))

    def hook_events(self) -> list[dict[str, Any]]:
        """Every hook call in the worker so far."""
        text = self.hooks_file.read_text() if self.hooks_file.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


class TestMessagingContract(MessagingContract):
    """Celery holds the messaging contract (one solo worker: one consumer, in order)."""

    @pytest.fixture(scope="class")
    @classmethod
    def broker(
        cls, celery_app: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[CeleryBroker]:
        directory = tmp_path_factory.mktemp("messaging-contract")
        hooks_file = directory / "hooks.jsonl"
        worker = CeleryWorker(redis_url, "solo", directory, THREADLINE_TEST_HOOKS=str(hooks_file))
        yield CeleryBroker(celery_app, worker, hooks_file)
        assert 0 == worker.stop(), worker.log()[-3000:]

    def test_hooks_see_a_task_from_publish_to_destroy(self, broker: CeleryBroker) -> None:
        """The publish is a message.publish resource here (at the app's line, not Celery's); the
        task a message.process resource in the worker, from init to destroy, with its request id."""
        made: list[tuple[str, hooks.Resource]] = []
        hook = hooks.create_hook(
            init=lambda resource, _: made.append(("init", resource)),
            destroy=lambda resource: made.append(("destroy", resource)),
        ).enable()
        try:
            with tl.request.scope(request_id="hook-task"):
                message_id = broker.publish()
        finally:
            hook.disable()
        broker.seen(message_id)
        published = [(event, r) for event, r in made if r.type == "message.publish"]
        assert ["init", "destroy"] == [event for event, _ in published]
        resource = published[0][1]
        assert ("hook-task", marked_line(__file__, "# mark:" + "send")) == (
            resource.request_id,
            resource.location,
        )

        def worker_events() -> list[dict[str, Any]]:
            found = [e for e in broker.hook_events() if e["type"] == "message.process"]
            return [e for e in found if e["request_id"] == "hook-task"]

        assert wait_for(lambda: len(worker_events()) == 4, TIMEOUT)  # destroy: after the result
        events = worker_events()
        assert ["init", "before", "after", "destroy"] == [e["event"] for e in events]
        assert 1 == len({e["id"] for e in events})
        assert all(e["request"] for e in events)
