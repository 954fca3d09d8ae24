"""`threadline demo`, the README's main job, on the embedded default."""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import check_demo_traces, clean_env
from threadline.cli import main
from threadline.export import read_spans


def demo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadline", "demo", *args],
        env=clean_env(**env),
        capture_output=True,
        check=False,
        text=True,
        timeout=180,
    )


def test_demo_prints_each_request_as_one_trace(tmp_path: Path) -> None:
    """Two requests, two trees of eight spans from both services, every log line under its trace."""
    result = demo("--out", str(tmp_path))
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert 2 == len(re.findall(r"^trace \w{32} \(8 spans\)$", out, re.MULTILINE))
    check_demo_traces(read_spans(tmp_path / "traces.jsonl"), requests=2)
    for service, span in (("demo-gateway", "GET /orders/{order}"), ("demo-backend", "GET /stock")):
        assert 2 == len(re.findall(rf"^ +{service} +{re.escape(span)}", out, re.MULTILINE))
    for logger in ("gateway", "backend.thread", "backend.worker", "python-child", "shell-child"):
        lines = re.findall(rf"^  log  {re.escape(logger)} +request=\w{{32}}  ", out, re.MULTILINE)
        assert 2 == len(lines)
    for block in out.split("\ntrace ")[1:]:  # each trace's log lines carry one request id
        assert 1 == len(set(re.findall(r"request=(\w+)", block)))
    assert f"spans: {tmp_path / 'traces.jsonl'}\nlogs:  {tmp_path / 'logs.jsonl'}\n" in out
    assert 2 == len(re.findall(r"^  service +span +duration  0 ms +[\d.]+ ms$", out, re.MULTILINE))
    # the demo carries every request whole: threadline doctor finds nothing to report
    files = [str(tmp_path / "traces.jsonl"), "--logs", str(tmp_path / "logs.jsonl")]
    assert 0 == main(["doctor", *files])
    assert 2 * 8 == len(re.findall(r'"request_id"', (tmp_path / "logs.jsonl").read_text()))


def test_demo_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """Without --out the spans and logs are deleted at the end, and no path to them is printed."""
    result = demo("--requests", "1", TMPDIR=str(tmp_path))
    assert 0 == result.returncode, result.stderr
    assert 1 == len(re.findall(r"^trace \w{32} \(8 spans\)$", result.stdout, re.MULTILINE))
    assert [] == list(tmp_path.iterdir())
    assert "spans:" not in result.stdout
    assert "(--out DIR keeps the spans and log lines)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--requests", "0"],
            "argument --requests: must be a whole number from 1 to 1000, not '0'",
        ),
        (
            ["--requests", "-1"],
            "argument --requests: must be a whole number from 1 to 1000, not '-1'",
        ),
        (["--requests", "1001"], "argument --requests: must be a whole number from 1 to 1000"),
        (
            ["--otlp", "127.0.0.1:4318"],
            "argument --otlp: expected an OTLP/HTTP endpoint such as http://127.0.0.1:4318, "
            "not '127.0.0.1:4318'",
        ),
        (["--otlp", "ftp://collector:4318"], "argument --otlp: expected an OTLP/HTTP endpoint"),
        (["--otlp", "http://"], "argument --otlp: expected an OTLP/HTTP endpoint"),
        (["--out", "pyproject.toml"], "argument --out: 'pyproject.toml' is not a folder"),
        (
            ["--out", "pyproject.toml/x"],
            "argument --out: cannot make the folder 'pyproject.toml/x': Not a directory",
        ),
    ],
)
def test_demo_refuses_bad_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --requests, --otlp or --out is a usage error (exit code 2) naming the flag."""
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *args])
    assert 2 == exit_info.value.code
    assert message in capsys.readouterr().err


def test_an_endpoint_nothing_listens_on_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """--otlp to a closed port: "could not reach", nothing said to be sent, exit code 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
        assert 1 == main(["demo", "--otlp", url])
    out, err = capsys.readouterr()
    assert "" == out
    assert f"threadline demo: could not reach {url}: Connection refused; nothing was sent\n" == err


def test_an_endpoint_that_refuses_the_spans_is_reported(tmp_path: Path) -> None:
    """--otlp to an HTTP server that is no Collector: the exporters' errors, exit code 1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = demo("--otlp", url, "--requests", "1")
    finally:
        server.shutdown()
        server.server_close()
    assert 1 == result.returncode, result.stderr
    assert "sent to" not in result.stdout
    assert f"threadline demo: spans of 1 request were not all accepted by {url}: " in result.stderr
    assert "Failed to export spans batch code: 501" in result.stderr
