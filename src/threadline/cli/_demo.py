"""``threadline demo``: run the demo application, then draw each request as one trace.

The application is ``examples/demo_services.py`` (in the wheel:
``threadline/_examples/demo_services.py``), a gateway and a backend in two
processes; it runs as a child with the tracing settings in its environment.
Spans go to the embedded default (OTLP JSON lines in a file) or, with
``--otlp URL``, to a Collector; the JSON log lines that every process writes
to stderr are collected. Both files live in a temporary folder removed at the
end, unless ``--out DIR`` keeps them.

With ``--otlp URL`` nothing is said to be sent unless it was: an endpoint
that cannot be reached is reported before the application runs, and export
errors that the application's processes logged are reported after it (exit
code 1 for both).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from .._core.settings import (
    CONFIGURED_ENV,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
    OTEL_TRACES_EXPORTER,
    TRACES_FILE_ENV,
)

MAX_REQUESTS = 1000
SPANS_FILE = "traces.jsonl"
LOGS_FILE = "logs.jsonl"
# The demo says where spans go: settings that would send them elsewhere are dropped.
_DROPPED = (
    OTEL_SDK_DISABLED,
    OTEL_TRACES_EXPORTER,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    CONFIGURED_ENV,
)


def request_count(text: str) -> int:
    """``--requests``: a whole number from 1 to `MAX_REQUESTS`."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_REQUESTS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_REQUESTS}, not {text!r}"
        )
    return count


def otlp_url(text: str) -> str:
    """``--otlp``: an http:// or https:// URL with a host (and a valid port, if any)."""
    parts = urlsplit(text)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number from 0 to 65535
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(
            f"expected an OTLP/HTTP endpoint such as http://127.0.0.1:4318, not {text!r}"
        )
    return text


def out_dir(text: str) -> Path:
    """``--out``: a folder that can be written, made if missing; not an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot make the folder {text!r}: {exc.strerror or exc}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in the folder {text!r}")
    return path


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why nothing listens at the OTLP endpoint *url* (a TCP connection fails); None if one does."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((str(parts.hostname), port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def app_path() -> Path:
    """The demo application: shipped in the wheel, or ``examples/`` in a source checkout.

    Raises:
        FileNotFoundError: neither is there.
    """
    package = Path(__file__).resolve().parent.parent
    for path in (
        package / "_examples" / "demo_services.py",
        package.parent.parent / "examples" / "demo_services.py",
    ):
        if path.is_file():
            return path
    raise FileNotFoundError(f"the demo application is missing from {package}: reinstall threadline")


def run_demo(
    app: Path,
    *,
    otlp: str | None = None,
    requests: int = 2,
    out: Path | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the application *app* (`app_path`), then draw each trace with its log lines.

    Each trace is drawn by `threadline view`'s terminal waterfall.

    Returns 0, or the application's exit code when it failed (its error on stderr).
    """
    from ._output import count, write  # noqa: PLC0415 - loaded with the demo only

    stdout = stdout or sys.stdout
    if otlp and (why := unreachable(otlp)):
        sys.stderr.write(f"threadline demo: could not reach {otlp}: {why}; nothing was sent\n")
        return 1
    kept_or_temporary: AbstractContextManager[str] = (
        nullcontext(str(out)) if out else tempfile.TemporaryDirectory(prefix="threadline-demo-")
    )
    with kept_or_temporary as name:
        folder = Path(name)
        folder.mkdir(parents=True, exist_ok=True)
        spans_file, logs_file = folder / SPANS_FILE, folder / LOGS_FILE
        spans_file.unlink(missing_ok=True)  # the file exporter appends
        env = {key: value for key, value in os.environ.items() if key not in _DROPPED}
        if otlp:
            env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=otlp)
        else:
            env.update({OTEL_TRACES_EXPORTER: "file", TRACES_FILE_ENV: str(spans_file)})
        result = subprocess.run(  # noqa: S603 - our own interpreter and application
            [sys.executable, str(app), "--requests", str(requests)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        logs = _split_logs(result.stderr)
        logs_file.write_text("".join(json.dumps(log) + "\n" for log in logs))
        write(result.stdout, stdout)
        if result.returncode != 0:
            return result.returncode
        if otlp:
            failures = _export_errors(logs)
            if failures:
                spans_of = f"spans of {count(requests, 'request')}"
                sys.stderr.write(
                    f"threadline demo: {spans_of} were not all accepted by {otlp}: {failures[0]}\n"
                )
                return 1
            print(f"spans of {count(requests, 'request')} sent to {otlp}", file=stdout)
            _print_logs(logs, stdout)
        else:
            from .._telemetry.span_file import BadFileError, read_span_files  # noqa: PLC0415 - loads the SDK
            from ._traces import group  # noqa: PLC0415
            from ._view import render_text  # noqa: PLC0415

            try:
                (spans,) = read_span_files([spans_file])
            except BadFileError as exc:  # the application exported no span
                sys.stderr.write(f"threadline demo: no spans to draw: {exc}\n")
                return 1
            write(render_text(group(spans.spans, logs)), stdout)
        if out is None:
            print("\n(--out DIR keeps the spans and log lines)", file=stdout)
        else:
            kept = (
                [f"logs:  {logs_file}"] if otlp else [f"spans: {spans_file}", f"logs:  {logs_file}"]
            )
            print("\n" + "\n".join(kept), file=stdout)
    return 0


def _split_logs(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines; every other line (an error, a warning) goes on to stderr."""
    logs = []
    for line in stderr.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            logs.append(record)
        else:
            sys.stderr.write(line)
    return logs


def _export_errors(logs: list[dict[str, Any]]) -> list[str]:
    """The messages of the warnings and errors the exporters of the application logged."""
    return [
        str(log.get("message"))
        for log in logs
        if str(log.get("level")) in ("WARNING", "ERROR", "CRITICAL")
        and str(log.get("logger")).startswith(("opentelemetry.exporter", "opentelemetry.sdk"))
    ]


def _print_logs(logs: list[dict[str, Any]], out: TextIO) -> None:
    for log in logs:
        print(
            f"  log  request={log.get('request_id')} trace={log.get('trace_id')}  "
            f"{log.get('message')}",
            file=out,
        )
