"""`threadline doctor`: planted faults in real files found with their cause; none in clean ones."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import span_files
from tests.span_files import Telemetry
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
