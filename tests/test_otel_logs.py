"""The OpenTelemetry logs signal: store values on log records, the pipeline configure() sets up.

End to end through the real Collector: every record of a request, from the
parent, its pool workers (spawn and fork) and a bootstrapped child, arrives
once, with the request's trace and span ids and its store values; an
exception is a log record too under OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import threadline as tl
import threadline.structlog
from tests.collector import read_log_records, running_collector
from tests.helpers import clean_env, wait_for
from threadline._core.settings import read_settings
from threadline._telemetry.logs import configured_log_exporters
from threadline.export import read_spans
from threadline.tracing import StoreLogRecordProcessor


@pytest.fixture
def exported(store: tl.ContextStore) -> Iterator[tuple[logging.Logger, InMemoryLogRecordExporter]]:
    """A logger whose records go through a StoreLogRecordProcessor to memory."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(StoreLogRecordProcessor())
    provider.add_log_record_processor(StoreLogRecordProcessor(store, {"tenant": "tenant.id"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    log = logging.getLogger("tests.otel_logs")  # set back after each test by conftest.py
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    yield log, exporter
    log.removeHandler(handler)
    provider.shutdown()


class TestStoreLogRecordProcessor:
    def test_store_values_and_trace_on_records(
        self,
        exported: tuple[logging.Logger, InMemoryLogRecordExporter],
        store: tl.ContextStore,
        tracer: trace.Tracer,
    ) -> None:
        """A record made in a request has its ids and chosen values, escaped, and its span."""
        log, exporter = exported
        with tl.request.scope(request_id="r\n1", user_id=7), store.scope(tenant="acme"):
            with tracer.start_as_current_span("s") as span:
                log.info("hello")
        [record] = [data.log_record for data in exporter.get_finished_logs()]
        attributes = dict(record.attributes or {})
        assert ("r\\n1", 7, "acme") == (
            attributes["request.id"],
            attributes["enduser.id"],
            attributes["tenant.id"],
        )
        assert span.get_span_context().trace_id == record.trace_id

    def test_the_records_own_attributes_win(
        self, exported: tuple[logging.Logger, InMemoryLogRecordExporter]
    ) -> None:
        log, exporter = exported
        with tl.request.scope(request_id="r1"):
            log.info("hello", extra={"request.id": "given"})
        [data] = exporter.get_finished_logs()
        assert "given" == dict(data.log_record.attributes or {})["request.id"]

    def test_nothing_outside_a_request(
        self, exported: tuple[logging.Logger, InMemoryLogRecordExporter]
    ) -> None:
        log, exporter = exported
        log.info("hello")
        [data] = exporter.get_finished_logs()
        assert "request.id" not in dict(data.log_record.attributes or {})

    def test_structlog_through_the_standard_library(
        self, exported: tuple[logging.Logger, InMemoryLogRecordExporter], tracer: trace.Tracer
    ) -> None:
        """structlog rendered through `logging` reaches the logs signal with its span, values."""
        log, exporter = exported
        chain = [threadline.structlog.add_context, structlog.processors.JSONRenderer()]
        logger = structlog.wrap_logger(log, processors=chain)
        with tl.request.scope(request_id="r1"), tracer.start_as_current_span("s") as span:
            logger.info("hello")
        [record] = [data.log_record for data in exporter.get_finished_logs()]
        assert "r1" == json.loads(str(record.body))["request_id"]
        assert "r1" == dict(record.attributes or {})["request.id"]
        assert span.get_span_context().span_id == record.span_id


class TestSettings:
    def test_unknown_log_exporter_is_a_warning_and_no_pipeline(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        settings = read_settings({"OTEL_LOGS_EXPORTER": "console,zipkin"})
        assert [] == configured_log_exporters(settings)
        assert "OTEL_LOGS_EXPORTER='console,zipkin' is not a valid log exporter list" in (
            threadline_warnings.text
        )

    def test_none_is_no_pipeline(self) -> None:
        assert () == read_settings({"OTEL_LOGS_EXPORTER": "none"}).logs_exporters

    @pytest.mark.parametrize(
        ("value", "expected"), [("logs", "logs"), ("LOGS/DUP", "logs/dup"), ("", "spans")]
    )
    def test_exception_signal(self, value: str, expected: str) -> None:
        settings = read_settings({"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": value})
        assert expected == settings.exception_signal

    def test_bad_exception_signal_is_a_warning(
        self, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        settings = read_settings({"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": "log"})
        assert "spans" == settings.exception_signal
        assert "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN='log' is not a valid" in (
            threadline_warnings.text
        )

    def test_attribute_choices(self, threadline_warnings: pytest.LogCaptureFixture) -> None:
        settings = read_settings(
            {"THREADLINE_SPAN_ATTRIBUTES": "tenant=tenant.id", "THREADLINE_LOG_ATTRIBUTES": "x"}
        )
        assert ((("tenant", "tenant.id"),), None) == (
            settings.span_attributes,
            settings.log_attributes,
        )
        assert "THREADLINE_LOG_ATTRIBUTES='x' is not a valid" in threadline_warnings.text
        assert () == read_settings({"THREADLINE_SPAN_ATTRIBUTES": "none"}).span_attributes


APP = textwrap.dedent(
    """
    import logging, multiprocessing, sys
    import threadline as tl
    from threadline import subprocess as tl_subprocess
    from threadline.logging import install
    from threadline.tracing import configure
    from opentelemetry import trace

    def work(kind):
        logging.getLogger("app.worker").warning("worker %s", kind)

    def fail():
        raise ValueError("no such order")

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO, format="%(request_id)s %(message)s")
        install()
        configure(
            service_name="logs-app",
            span_attributes={"request_id": "request.id", "tenant": "tenant.id"},
            log_attributes={"request_id": "request.id", "tenant": "tenant.id"},
        )
        with trace.get_tracer("app").start_as_current_span("request"):
            with tl.request.scope(request_id="r-\\n1", user_id=7, tenant="acme"):
                logging.getLogger("app").info("parent")
                for method in ("spawn", "fork"):
                    context = multiprocessing.get_context(method)
                    with tl.ProcessPoolExecutor(1, mp_context=context) as pool:
                        pool.submit(work, method).result()
                code = "import logging; logging.warning('child')"
                tl_subprocess.run([sys.executable, "-c", code], check=True)
                with tl.ThreadPoolExecutor(1) as pool:
                    pool.submit(fail).exception()
    """
)


def test_log_records_reach_the_collector_joined_to_their_spans(tmp_path: Path) -> None:
    """Every record of the request arrives once, in the request's trace, with its values."""
    (tmp_path / "app.py").write_text(APP)
    with running_collector(tmp_path) as collector:
        env = clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN="logs/dup",
            OTEL_BLRP_SCHEDULE_DELAY="100",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        result = subprocess.run(
            [sys.executable, "app.py"],
            check=False,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert 0 == result.returncode, result.stderr

        def arrived() -> bool:
            bodies = [r.body for r in read_log_records(collector.logs_file)]
            return "child" in bodies and any(r.startswith("ValueError") for r in bodies if r)

        assert wait_for(arrived, 30), collector.logs_file
        assert wait_for(collector.traces_file.exists, 30)
    # the stderr lines: the workers' records reached the parent's handlers too
    assert "r-\\n1 worker spawn" in result.stderr.splitlines()

    records = read_log_records(collector.logs_file)
    spans = read_spans(collector.traces_file)
    [request] = [span for span in spans if span.name == "request"]
    bodies = sorted(str(r.body) for r in records)
    expected = ["child", "parent", "worker fork", "worker spawn"]
    assert expected == sorted(b for b in bodies if not b.startswith("ValueError"))  # each once
    span_ids = {span.span_id for span in spans if span.trace_id == request.trace_id}
    for record in records:
        assert request.trace_id == record.trace_id, record
        assert record.span_id in span_ids, record  # joined to a span of the trace
        assert "r-\\n1" == record.attributes["request.id"], record
        assert "acme" == record.attributes["tenant.id"], record
        assert "logs-app" == record.service
    [error] = [r for r in records if str(r.body).startswith("ValueError")]
    assert ("ValueError", "no such order", "ERROR") == (
        error.attributes["exception.type"],
        error.attributes["exception.message"],
        error.severity,
    )
    [job] = [span for span in spans if span.span_id == error.span_id]
    assert "error.type" in job.attributes
    # the span attributes chosen in code, in the workers' and the child's spans too
    assert {("r-\\n1", "acme")} == {
        (span.attributes.get("request.id"), span.attributes.get("tenant.id"))
        for span in spans
        if span.trace_id == request.trace_id and span is not request  # made before the scope
    }
    assert '"exception.type"' in collector.traces_file.read_text()  # logs/dup: the event too


EXCEPTION_APP = textwrap.dedent(
    """
    import json
    from opentelemetry import trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        InMemoryLogRecordExporter, SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import threadline as tl
    from threadline.tracing import StoreLogRecordProcessor

    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(StoreLogRecordProcessor())
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    set_logger_provider(logger_provider)

    def fail():
        raise KeyError("order 7")

    with trace.get_tracer("app").start_as_current_span("request"):
        with tl.request.scope(request_id="r1"), tl.ThreadPoolExecutor(1) as pool:
            pool.submit(fail).exception()
    [job] = [s for s in spans.get_finished_spans() if s.name != "request"]
    records = [data.log_record for data in logs.get_finished_logs()]
    print(json.dumps({
        "events": [event.name for event in job.events],
        "status": job.status.status_code.name,
        "records": [
            {
                "attributes": dict(r.attributes),
                "span_id": r.span_id == job.context.span_id,
                "severity": r.severity_text,
            }
            for r in records
        ],
    }))
    """
)


@pytest.mark.parametrize(
    ("opt_in", "events", "records"),
    [
        ("", ["exception"], 0),
        ("logs", [], 1),
        ("logs/dup", ["exception"], 1),
        ("log", ["exception"], 0),
    ],
)
def test_exception_signal_opt_in(
    opt_in: str, events: list[str], records: int, tmp_path: Path
) -> None:
    """A failed job's exception is a span event, a log record in its span, or both, as asked."""
    (tmp_path / "app.py").write_text(EXCEPTION_APP)
    result = subprocess.run(
        [sys.executable, "app.py"],
        check=False,
        cwd=tmp_path,
        env=clean_env(OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=opt_in),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr
    seen = json.loads(result.stdout)
    assert (events, "ERROR") == (seen["events"], seen["status"])
    assert records == len(seen["records"])
    for record in seen["records"]:
        assert (True, "ERROR") == (record["span_id"], record["severity"])
        assert ("KeyError", "'order 7'", "r1") == (
            record["attributes"]["exception.type"],
            record["attributes"]["exception.message"],
            record["attributes"]["request.id"],
        )
        assert "Traceback" in record["attributes"]["exception.stacktrace"]
    if opt_in == "log":
        assert "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN='log' is not a valid" in result.stderr
