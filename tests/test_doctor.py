"""`threadline doctor`: planted faults in real files found with their cause; none in clean ones."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

import threadline as tl
from tests import span_files
from tests.span_files import TRACE_ID, Telemetry, otlp_line, otlp_span, span_id
from threadline.cli import main


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Telemetry]:
    tm = Telemetry(tmp_path)
    yield tm
    tm.close()


def doctor(tm: Telemetry, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["doctor", str(tm.spans), "--logs", str(tm.logs), *extra])
    return code, capsys.readouterr().out


def findings(tm: Telemetry, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out = doctor(tm, capsys, "--json")
    report = json.loads(out)
    assert (1 if report["findings"] else 0) == code
    return list(report["findings"])


class TestClean:
    def test_clean_requests_have_no_findings(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Requests carried by threadline across HTTP and a pool: nothing to report, exit 0."""
        span_files.clean_request(telemetry, "r-1")
        span_files.clean_request(telemetry, "r-2")
        code, out = doctor(telemetry, capsys)
        assert (
            0,
            "threadline doctor: no lost context in 8 spans (2 traces) and 6 log lines\n",
        ) == (
            code,
            out,
        )


class TestPlantedFaults:
    def test_a_parent_that_never_arrived(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A span whose parent's process exported nothing: a broken trace naming span and parent."""
        span_files.clean_request(telemetry, "r-1")
        span_files.parent_never_exported(telemetry, "r-lost")
        (found,) = findings(telemetry, capsys)
        assert "missing-parent" == found["kind"]
        assert re.fullmatch(
            r"broken trace \w{32}: span 'resize image' \(child\) has parent \w{16}, "
            r"which never arrived",
            str(found["summary"]),
        )
        assert "was never exported" in str(found["cause"])
        assert "threadline.tracing.configure()" in str(found["fix"])

    def test_a_request_split_over_two_traces(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Same request.id on two traces: the finding names both roots and the HTTP cause."""
        span_files.split_request(telemetry, "r-split")
        (found,) = findings(telemetry, capsys)  # the logs' split is the same fault: not twice
        assert ("split-request", "request r-split is split over 2 traces") == (
            found["kind"],
            found["summary"],
        )
        details = list(found["details"])  # type: ignore[call-overload]
        assert re.fullmatch(
            r"trace \w{32} starts at 'GET /orders/\{order\}' \(gateway\)", details[0]
        )
        assert re.fullmatch(r"trace \w{32} starts at 'GET /stock' \(backend\)", details[1])
        assert "the traceparent did not arrive" in str(found["cause"])
        assert "threadline.aiohttp.trace_config()" in str(found["fix"])

    def test_a_request_split_seen_in_the_logs_alone(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Log lines of one request id under two trace ids, without spans saying so."""
        span_files.split_request(telemetry, "r-split")
        assert 1 == main(["doctor", "--logs", str(telemetry.logs), "--json"])  # no span file
        (found,) = json.loads(capsys.readouterr().out)["findings"]
        assert ("split-request-logs", "request r-split logs under 2 traces") == (
            found["kind"],
            found["summary"],
        )
        assert {"logger backend", "logger gateway"} == {
            detail.split(": ", 1)[1]
            for detail in found["details"]  # type: ignore[attr-defined]
        }

    def test_log_lines_without_context_grouped_by_logger_and_line(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A raw Thread loses both ids: grouped by logger and file:line; cause, a hand-off."""
        span_files.clean_request(telemetry, "r-1")
        span_files.raw_thread(telemetry, "r-2")
        span_files.raw_thread(telemetry, "r-3")
        (found,) = findings(telemetry, capsys)
        assert "log-without-context" == found["kind"]
        location = re.escape(str(Path(span_files.__file__)))
        assert re.fullmatch(
            rf"2 log lines from logger 'worker' at {location}:\d+ without a request id or trace id",
            str(found["summary"]),
        )
        assert "lost at a hand-off" in str(found["cause"])
        assert "tl.ThreadPoolExecutor" in str(found["fix"])

    def test_one_request_bled_into_the_next(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A SERVER span under an ended request's span, and its log line in that request's trace."""
        span_files.bled_requests(telemetry, "r-first", "r-second")
        found = findings(telemetry, capsys)
        assert ["bleed", "bleed-logs"] == [finding["kind"] for finding in found]
        bleed, logs = found
        assert "'GET /orders' (api)" in str(bleed["summary"])
        assert "of request r-first, a request that had ended" in str(bleed["summary"])
        assert "request r-second" in str(bleed["details"])
        assert "of request r-first holds log lines of request r-second" in str(logs["summary"])
        assert "--reset-contextvars" in str(bleed["fix"])

    def test_every_fault_at_once_as_text(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The text report numbers each finding with its cause and fix; exit code 1."""
        span_files.clean_request(telemetry, "r-1")
        span_files.parent_never_exported(telemetry, "r-lost")
        span_files.split_request(telemetry, "r-split")
        span_files.raw_thread(telemetry, "r-3")
        code, out = doctor(telemetry, capsys)
        assert 1 == code
        assert out.startswith("threadline doctor: 3 findings in ")
        assert 3 == len(re.findall(r"^\d\. ", out, re.MULTILINE))
        assert 3 == len(re.findall(r"^   cause: ", out, re.MULTILINE))
        assert 3 == len(re.findall(r"^   fix:   ", out, re.MULTILINE))


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A span file that cannot be read: exit code 2 and the reason."""
    with pytest.raises(SystemExit) as exit_info:
        main(["doctor", str(tmp_path / "none.jsonl")])
    assert 2 == exit_info.value.code
    assert "none.jsonl: cannot read it: No such file or directory" in capsys.readouterr().err


def test_outside_text_never_reaches_the_terminal_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log line's logger and location with control characters are printed escaped."""
    logs = tmp_path / "logs.jsonl"
    line = {"logger": "evil\x1b[31m", "pathname": "/x\x1b]0;title\x07.py", "lineno": 3}
    logs.write_text(json.dumps({**line, "message": "m", "request_id": "-", "trace_id": "-"}) + "\n")
    assert 1 == main(["doctor", "--logs", str(logs)])
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "evil\\x1b[31m" in out


# Files no SDK would write

FORGED = "\n2. fake finding\nthreadline doctor: no lost context in 0 spans"


def test_no_value_from_a_file_can_add_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Line feeds in a log line's path, logger, ids and a span's trace id stay inside one line."""
    spans = tmp_path / "spans.jsonl"
    spans.write_text(
        otlp_line([otlp_span(span_id(1))])
        + otlp_line([otlp_span(span_id(2), traceId=TRACE_ID[:-1] + FORGED)])
    )
    logs = tmp_path / "logs.jsonl"
    common = {"message": "m" + FORGED, "lineno": FORGED, "funcName": FORGED}
    lines = [
        {**common, "logger": "a" + FORGED, "pathname": "/x" + FORGED, "request_id": "-"},
        {**common, "request_id": "r" + FORGED, "trace_id": "t1" + FORGED, "logger": FORGED},
        {**common, "request_id": "r" + FORGED, "trace_id": "t2" + FORGED, "logger": FORGED},
    ]
    logs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert 1 == main(["doctor", str(spans), "--logs", str(logs)])
    out, err = capsys.readouterr()
    assert "1 span skipped (bad ids or times)" in err  # the forged trace id is not an id
    assert 2 == len(re.findall(r"^\d+\. ", out, re.MULTILINE))
    assert not re.search(r"^(2\. fake|threadline doctor: no lost)", out, re.MULTILINE)
    assert out.startswith("threadline doctor: 2 findings in 1 span (1 trace) and 3 log lines\n")
    assert all(char == "\n" or char.isprintable() for char in out)
    assert "\\n2. fake finding" in out


def test_a_cycle_of_parents_is_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace whose spans are each other's parents has no root: doctor says so, exit 1."""
    spans = tmp_path / "spans.jsonl"
    spans.write_text(
        otlp_line(
            [
                otlp_span(span_id(1), span_id(2), "a"),
                otlp_span(span_id(2), span_id(1), "b"),
                otlp_span(span_id(3), span_id(3), "self"),
            ]
        )
    )
    assert 1 == main(["doctor", str(spans), "--json"])
    (found,) = json.loads(capsys.readouterr().out)["findings"]
    assert "parent-cycle" == found["kind"]
    assert (
        f"broken trace {TRACE_ID}: its spans' parents form 2 cycles; it has no root"
        == (found["summary"])
    )
    assert [
        "span 'a' (svc) is its own ancestor (its parent 0000000000000002 descends from it)",
        "span 'self' (svc) is its own parent",
    ] == found["details"]
    assert "IdGenerator" in found["fix"]


@pytest.mark.timeout(120)  # a guard: a deep trace takes seconds, not the quadratic minutes
def test_a_deep_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace 30,000 spans deep (deeper than any recursion could go) is checked whole."""
    path = tmp_path / "spans.jsonl"
    span_files.write_chain(path, 30_000)
    assert 0 == main(["doctor", str(path)])
    assert (
        "threadline doctor: no lost context in 30000 spans (1 trace) and 0 log lines\n"
        == capsys.readouterr().out
    )


def test_ascii_terminal(tmp_path: Path) -> None:
    """With PYTHONIOENCODING=ascii a name like 'café ☕' is written escaped, never an error."""
    spans = tmp_path / "spans.jsonl"
    orphan = otlp_span(span_id(1), span_id(9), "caf\u00e9 \u2615")
    spans.write_text(otlp_line([orphan], "s\u00e9rvice"))
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "doctor", str(spans)],
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        capture_output=True,
        text=True,
        encoding="ascii",
        timeout=60,
        check=False,
    )
    assert 1 == result.returncode, result.stderr
    assert "span 'caf\\xe9 \\u2615' (s\\xe9rvice) has parent 0000000000000009" in result.stdout


class TestStructlogAndLoguruLines:
    """Lines written by structlog's JSONRenderer and loguru's serialize=True, through threadline."""

    def write_lines(self, tm: Telemetry) -> None:
        import loguru
        import structlog

        import threadline.loguru
        import threadline.structlog

        with tm.logs.open("a", encoding="utf-8") as stream:
            slog = structlog.wrap_logger(
                structlog.PrintLogger(stream),
                processors=[
                    threadline.structlog.add_context,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer(),
                ],
            )
            loguru.logger.remove()
            sink = loguru.logger.add(stream, serialize=True)
            llog = threadline.loguru.patch(loguru.logger)
            try:
                gateway = tm.tracer("gateway")
                with tl.request.scope(request_id="r-9"):
                    with gateway.start_as_current_span("GET /orders", kind=SpanKind.SERVER):
                        slog.info("structlog in the request")
                        llog.info("loguru in the request")
                slog.info("structlog outside any request")
                llog.info("loguru outside any request")
            finally:
                loguru.logger.remove(sink)

    def test_doctor_reads_their_ids(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Lines in the request count as good; each outside one is found, named by its message."""
        self.write_lines(telemetry)
        found = findings(telemetry, capsys)
        summaries = [str(finding["summary"]) for finding in found]
        assert 2 == len(found), summaries
        assert all("without a request id or trace id" in summary for summary in summaries)
        examples = " ".join(str(finding["details"]) for finding in found)
        assert "structlog outside any request" in examples
        assert "loguru outside any request" in examples
        assert any("tests/test_doctor.py" in summary for summary in summaries)  # loguru's place

    def test_view_draws_them_in_their_trace(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Both libraries' lines are drawn under the request's trace with its id."""
        self.write_lines(telemetry)
        assert 0 == main(["view", str(telemetry.spans), "--logs", str(telemetry.logs)])
        out = capsys.readouterr().out
        assert "request=r-9  structlog in the request" in out
        assert "request=r-9  loguru in the request" in out


def test_threadlines_own_drop_reports_are_not_lost_context(
    telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request whose X-Request-ID was dropped: threadline's own warning is no finding."""
    span_files.clean_request(telemetry, "r-1")
    from threadline import diagnostics

    diagnostics.reset_drop_counts()
    tl.extract({"traceparent": "not a traceparent"})  # warned on the threadline logger
    own = [json.loads(line) for line in telemetry.logs.read_text().splitlines()]
    assert any(line["logger"] == "threadline" for line in own)
    assert [] == findings(telemetry, capsys)
