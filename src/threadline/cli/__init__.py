"""The ``threadline`` command.

threadline run [--request-id ID] [--user-id ID] -- CMD ARGS... runs any
command as a child that continues this process's context (from its own
TRACEPARENT, TRACESTATE and BAGGAGE), with the context in the child's
environment. When OTEL_* settings set up tracing, the child is a span (the
root of a new trace if none came) and its TRACEPARENT names that span.
Standard input, output and error pass through, and the child's exit code is
threadline's (128+N when a signal N ended it, 127 when the command is not
found, 126 when it cannot be run).

threadline view FILE [--logs LOGFILE] [--html OUT] [--trace ID] draws each
trace of an OTLP JSON lines file (threadline's file output or the
Collector's file exporter) as a waterfall with its log lines, in the
terminal or as one self-contained HTML page.

threadline doctor FILE... [--logs LOGFILE] [--json] reports where context was
lost: spans whose parent never arrived, a request split into several traces,
log lines without a request id or trace id; each with its likely cause and
the fix. It exits with 0 when it found nothing, 1 when it found something.

Each command's module is loaded only when that command runs: `threadline run`
pays for none of the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``threadline`` command; return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _run_demo(parser, args)
    if args.command == "view":
        from ._view import view_command  # noqa: PLC0415 - only `threadline view` loads it

        return view_command(parser, args)
    if args.command == "doctor":
        from ._doctor import doctor_command  # noqa: PLC0415 - only `threadline doctor`

        return doctor_command(parser, args)
    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("run: give the command to run after --, e.g. threadline run -- make test")
    values = {
        key: value
        for key, value in (("request_id", args.request_id), ("user_id", args.user_id))
        if value
    }
    from ._run import run_command  # noqa: PLC0415 - keep `threadline --help` quick

    return run_command(command, values, bootstrap=args.bootstrap)


def _run_demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        import aiohttp  # noqa: F401, PLC0415 - the demo serves HTTP
    except ImportError:
        parser.error("demo: the demo serves HTTP, it needs: pip install 'threadline[aiohttp]'")
    from ._demo import app_path, run_demo  # noqa: PLC0415 - only the demo loads it

    try:
        app = app_path()
    except FileNotFoundError as exc:
        parser.error(f"demo: {exc}")
    return run_demo(app, otlp=args.otlp, requests=args.requests, out=args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="Carry one request's context across processes, as one OpenTelemetry trace.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(commands)
    _add_demo(commands)
    _add_view(commands)
    _add_doctor(commands)
    return parser


def _command(commands: Any, name: str, summary: str, description: str) -> Any:
    """One sub-command: its one-line summary in ``threadline --help``, its description."""
    return commands.add_parser(name, help=summary, description=description)


def _paragraph(number: int) -> str:
    return (__doc__ or "").split("\n\n")[number]


def _add_run(commands: Any) -> None:
    run_parser = _command(
        commands, "run", "run a command as a traced child, with its context", _paragraph(1)
    )
    run_parser.add_argument(
        "--request-id", help="run the child in a new request scope with this id"
    )
    run_parser.add_argument("--user-id", help="with the request scope, the user id")
    run_parser.add_argument(
        "--no-bootstrap",
        dest="bootstrap",
        action="store_false",
        help="do not switch on threadline's automatic bootstrap in Python children",
    )
    run_parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")


def _add_demo(commands: Any) -> None:
    demo_parser = commands.add_parser(
        "demo",
        help="run a gateway and a backend and show each request as one trace",
        description="A gateway and a backend, two processes, serve requests across HTTP, a "
        "thread pool, a process pool and child processes; each request is drawn as one trace "
        "with its log lines. The application is examples/demo_services.py.",
    )
    demo_parser.add_argument(
        "--otlp",
        metavar="URL",
        type=_checked_by_demo("otlp_url"),
        help="send the spans to this OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318",
    )
    demo_parser.add_argument(
        "--requests",
        metavar="N",
        type=_checked_by_demo("request_count"),
        default=2,
        help="how many requests (default: 2)",
    )
    demo_parser.add_argument(
        "--out",
        metavar="DIR",
        type=_checked_by_demo("out_dir"),
        help="keep the spans and the log lines in DIR; without it they are deleted at the end",
    )


def _add_view(commands: Any) -> None:
    view_parser = _command(
        commands, "view", "draw each trace of a span file as a waterfall", _paragraph(2)
    )
    view_parser.add_argument("file", metavar="FILE", help="OTLP JSON lines (spans)")
    view_parser.add_argument(
        "--logs", metavar="LOGFILE", action="append", help="JSON log lines to show (repeatable)"
    )
    view_parser.add_argument(
        "--html", metavar="OUT", help="write one self-contained HTML page to OUT instead"
    )
    view_parser.add_argument(
        "--trace", metavar="ID", help="only the trace with this id (or an id's first digits)"
    )


def _add_doctor(commands: Any) -> None:
    doctor_parser = _command(
        commands, "doctor", "find where context was lost in span and log files", _paragraph(3)
    )
    doctor_parser.add_argument(
        "files", nargs="+", metavar="FILE", help="OTLP JSON lines (spans), one or more"
    )
    doctor_parser.add_argument(
        "--logs", metavar="LOGFILE", action="append", help="JSON log lines to check (repeatable)"
    )
    doctor_parser.add_argument(
        "--json", action="store_true", help="print the findings as one JSON object"
    )


def _checked_by_demo(name: str) -> Callable[[str], Any]:
    """An argparse type: the demo's own check of an option, loaded only when the demo runs."""

    def check(text: str) -> Any:
        from . import _demo  # noqa: PLC0415 - `threadline run` never loads the demo

        return getattr(_demo, name)(text)

    return check


if __name__ == "__main__":
    sys.exit(main())
