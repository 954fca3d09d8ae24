"""The ``threadline`` command: ``run``, ``demo``, ``view``, ``doctor`` and ``top``.

``threadline --help`` lists the commands and ``threadline COMMAND --help``
says what one does and takes. `main` runs the command from Python, with the
arguments given as a list, and returns its exit code instead of exiting.

The commands are one table: each row says what ``--help`` shows, which
arguments the command takes, and the module and function that run it. That
module is imported only when its command runs, so ``threadline --help`` is
quick and ``threadline run`` pays for none of the others.

.. versionadded:: 0.1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any, NamedTuple

__all__ = ["main"]

_Entry = Callable[..., int]
"""The function that runs a command, in the command's module."""


def _parser_and_args(
    entry: _Entry, parser: argparse.ArgumentParser, args: argparse.Namespace
) -> int:
    """The usual call: the command's function reads the parsed arguments itself."""
    return entry(parser, args)


class _Command(NamedTuple):
    """One row of the table: a sub-command of ``threadline``."""

    name: str
    summary: str  # its line in ``threadline --help``
    description: str  # what ``threadline NAME --help`` says of it (plain text)
    arguments: Callable[[argparse.ArgumentParser], None]  # adds its options and operands
    module: str  # the module that runs it, in this package: imported only when it runs
    function: str  # the function in that module, called through `call`
    # how the parsed arguments become the function's call
    call: Callable[[_Entry, argparse.ArgumentParser, argparse.Namespace], int] = _parser_and_args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``threadline`` command; return its exit code.

    Args:
        argv: the arguments after ``threadline`` (default: ``sys.argv[1:]``).

    Returns:
        The command's exit code. A usage error exits (``SystemExit`` with 2),
        as argparse does.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    command = _COMMANDS[args.command]
    entry = getattr(import_module(command.module, __name__), command.function)
    return command.call(entry, parser, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="Carry one request's context across processes, as one OpenTelemetry trace.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS.values():
        command.arguments(
            commands.add_parser(command.name, help=command.summary, description=command.description)
        )
    return parser


# threadline run


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request-id", help="run the child in a new request scope with this id")
    parser.add_argument(
        "--user-id",
        help="the user id of the request (without --request-id: the request that came in "
        "the environment, or a new one with a new id)",
    )
    parser.add_argument(
        "--no-bootstrap",
        dest="bootstrap",
        action="store_false",
        help="do not switch on threadline's automatic bootstrap in Python children",
    )
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")


def _call_run(
    run_command: _Entry, parser: argparse.ArgumentParser, args: argparse.Namespace
) -> int:
    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("run: give the command to run after --, e.g. threadline run -- make test")
    if args.request_id is not None:
        from .._http.incoming import is_request_id  # noqa: PLC0415 - loaded when `run` runs

        if not is_request_id(args.request_id):
            parser.error(
                f"run: --request-id {args.request_id!r:.80} is no request id: 1-128 letters, "
                "digits and ._:+/=@- with at least one letter or digit"
            )
    values = {
        key: value
        for key, value in (("request_id", args.request_id), ("user_id", args.user_id))
        if value
    }
    return run_command(command, values, bootstrap=args.bootstrap)


# threadline demo


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--otlp",
        metavar="URL",
        type=_checked_by_demo("otlp_url"),
        help="send the spans to this OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318",
    )
    parser.add_argument(
        "--requests",
        metavar="N",
        type=_checked_by_demo("request_count"),
        default=2,
        help="how many requests (default: 2)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=_checked_by_demo("out_dir"),
        help="keep the spans and the log lines in DIR; without it they are deleted at the end",
    )


def _checked_by_demo(name: str) -> Callable[[str], Any]:
    """An argparse type: the demo's own check of an option, loaded only when the demo runs."""

    def check(text: str) -> Any:
        from . import _demo  # noqa: PLC0415 - `threadline run` never loads the demo

        return getattr(_demo, name)(text)

    return check


def _call_demo(run_demo: _Entry, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        import aiohttp  # noqa: F401, PLC0415 - the demo serves HTTP
    except ImportError:
        parser.error("demo: the demo serves HTTP, it needs: pip install 'threadline[aiohttp]'")
    from ._demo import app_path  # noqa: PLC0415 - loaded with run_demo, only by the demo

    try:
        app = app_path()
    except FileNotFoundError as exc:
        parser.error(f"demo: {exc}")
    return run_demo(app, otlp=args.otlp, requests=args.requests, out=args.out)


# threadline view


def _view_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="OTLP JSON lines (spans)")
    parser.add_argument(
        "--logs", metavar="LOGFILE", action="append", help="JSON log lines to show (repeatable)"
    )
    parser.add_argument(
        "--html", metavar="OUT", help="write one self-contained HTML page to OUT instead"
    )
    parser.add_argument(
        "--trace", metavar="ID", help="only the trace with this id (or an id's first digits)"
    )


# threadline doctor


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="OTLP JSON lines (spans), any number; at least one FILE or --logs",
    )
    parser.add_argument(
        "--logs", metavar="LOGFILE", action="append", help="JSON log lines to check (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON object")


# threadline top


def _top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="URL", help="the live view of a service, e.g. http://127.0.0.1:8123"
    )
    parser.add_argument("--once", action="store_true", help="draw one snapshot and exit")
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_positive_seconds,
        default=1.0,
        help="seconds between two redraws (default: 1)",
    )
    parser.add_argument(
        "--html", metavar="OUT", help="write one snapshot as an HTML page to OUT and exit"
    )


def _positive_seconds(text: str) -> float:
    import math  # noqa: PLC0415 - only top takes seconds

    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


_COMMANDS = {
    command.name: command
    for command in (
        _Command(
            name="run",
            summary="run a command as a traced child, with its context",
            description=(
                "threadline run [--request-id ID] [--user-id ID] -- CMD ARGS... runs any command "
                "as a child that continues this process's context (from its own TRACEPARENT, "
                "TRACESTATE and BAGGAGE), with the context in the child's environment. When "
                "OTEL_* settings set up tracing, the child is a span (the root of a new trace if "
                "none came) and its TRACEPARENT names that span. Standard input, output and error "
                "pass through, and the child's exit code is threadline's (128+N when a signal N "
                "ended it, 127 when the command is not found, 126 when it cannot be run)."
            ),
            arguments=_run_arguments,
            module="._run",
            function="run_command",
            call=_call_run,
        ),
        _Command(
            name="demo",
            summary="run a gateway and a backend and show each request as one trace",
            description=(
                "A gateway and a backend, two processes, serve requests across HTTP, a thread "
                "pool, a process pool and child processes; each request is drawn as one trace "
                "with its log lines. The application is examples/demo_services.py."
            ),
            arguments=_demo_arguments,
            module="._demo",
            function="run_demo",
            call=_call_demo,
        ),
        _Command(
            name="view",
            summary="draw each trace of a span file as a waterfall",
            description=(
                "threadline view FILE [--logs LOGFILE] [--html OUT] [--trace ID] draws each trace "
                "of an OTLP JSON lines file (threadline's file output or the Collector's file "
                "exporter) as a waterfall with its log lines, in the terminal or as one "
                "self-contained HTML page. It exits with 0, or 2 for a usage error (a file that "
                "cannot be read or is not what it should be)."
            ),
            arguments=_view_arguments,
            module="._view",
            function="view_command",
        ),
        _Command(
            name="doctor",
            summary="find where context was lost in span and log files",
            description=(
                "threadline doctor [FILE...] [--logs LOGFILE] [--json] reports where context was "
                "lost: spans whose parent never arrived or whose parents form a cycle, a request "
                "split into several traces, log lines without a request id or trace id; each "
                "with its likely cause and the fix. It exits with 0 when it found nothing, 1 "
                "when it found something, 2 for a usage error (a file that cannot be read or is "
                "not what it should be)."
            ),
            arguments=_doctor_arguments,
            module="._doctor",
            function="doctor_command",
        ),
        _Command(
            name="top",
            summary="show the requests in flight in a running service, refreshing",
            description=(
                "threadline top URL [--once] [--interval SECONDS] [--html OUT] reads the live "
                "view a service serves (threadline.live.serve() or THREADLINE_LIVE) and shows "
                "each request in flight, the slowest first, with the resources it made and "
                "which still run, redrawn every --interval seconds until Ctrl-C. It exits with "
                "0; 1 when --once or --html cannot read the view; 2 for a usage error."
            ),
            arguments=_top_arguments,
            module="._top",
            function="top_command",
        ),
    )
}


if __name__ == "__main__":
    sys.exit(main())
