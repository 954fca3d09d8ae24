"""The ``threadline`` command.

threadline run [--request-id ID] [--user-id ID] -- CMD ARGS... runs any
command as a child that continues this process's context (from its own
TRACEPARENT, TRACESTATE and BAGGAGE), with the context in the child's
environment. When OTEL_* settings set up tracing, the child is a span (the
root of a new trace if none came) and its TRACEPARENT names that span.
Standard input, output and error pass through, and the child's exit code is
threadline's (128+N when a signal N ended it, 127 when the command is not
found, 126 when it cannot be run).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from ._settings import CONFIGURED_ENV

__all__ = ["main"]

_TRACING_SETTINGS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    CONFIGURED_ENV,
)
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``threadline`` command; return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
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
    return _run(command, values, bootstrap=args.bootstrap)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline",
        description="Carry one request's context across processes, as one OpenTelemetry trace.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = commands.add_parser(
        "run",
        help="run a command as a traced child, with the context in its environment",
        description=(__doc__ or "").split("\n\n")[1],
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
    demo_parser = commands.add_parser(
        "demo",
        help="run a gateway and a backend and show each request as one trace",
        description="A gateway and a backend, two processes, serve requests across HTTP, a "
        "thread pool, a process pool and child processes; each request is printed as one trace "
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
    return parser


def _checked_by_demo(name: str) -> Callable[[str], Any]:
    """An argparse type: the demo's own check of an option, loaded only when the demo runs."""

    def check(text: str) -> Any:
        from . import _demo  # noqa: PLC0415 - `threadline run` never loads the demo

        return getattr(_demo, name)(text)

    return check


def _run(command: list[str], values: dict[str, str], *, bootstrap: bool = True) -> int:
    """Run *command* in this process's context (plus *values* in `threadline.request`)."""
    import threadline as tl  # noqa: PLC0415 - keep `threadline --help` quick
    from threadline.subprocess import Popen  # noqa: PLC0415

    if any(os.environ.get(name) for name in _TRACING_SETTINGS):
        from threadline.tracing import configure  # noqa: PLC0415

        configure(service_name="threadline-run")

    with ExitStack() as stack:
        stack.enter_context(tl.extract_env())
        if values:
            stack.enter_context(tl.request.merge(values))
        # Forwarding starts before the child does, so a signal sent meanwhile
        # reaches it too instead of ending threadline and orphaning the child.
        forwarder = stack.enter_context(_forwarding_signals())
        try:
            child = Popen(command, bootstrap=bootstrap, span=True)
        except FileNotFoundError:
            sys.stderr.write(f"threadline: {command[0]}: command not found\n")
            return 127
        except OSError as exc:  # not executable, not a program, ...: as a shell does
            sys.stderr.write(f"threadline: {command[0]}: {exc.strerror}\n")
            return 126
        forwarder.forward_to(child)
        code = child.wait()
    return 128 - code if code < 0 else code


class _SignalForwarder:
    """Passes signals on to the child; those that came before it started, once it has."""

    def __init__(self) -> None:
        self._child: Any = None
        self._pending: list[int] = []

    def __call__(self, signum: int, _frame: object) -> None:
        if self._child is None:
            self._pending.append(signum)
        else:
            self._child.send_signal(signum)

    def undelivered(self) -> list[int]:
        """The signals that came while no child was there to take them."""
        return [] if self._child is not None else list(self._pending)

    def forward_to(self, child: Any) -> None:
        # Ctrl-C reaches the whole foreground process group, the child included:
        # ignore it here and let the child decide. Set only now: an ignored
        # signal would stay ignored in the child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._child = child
        while self._pending:
            child.send_signal(self._pending.pop(0))


@contextmanager
def _forwarding_signals() -> Iterator[_SignalForwarder]:
    forwarder = _SignalForwarder()
    previous = {sig: signal.signal(sig, forwarder) for sig in _FORWARDED}
    sigint = signal.getsignal(signal.SIGINT)
    if sigint is not None:  # None: not set from Python, so nothing to put back
        previous[signal.SIGINT] = sigint
    try:
        yield forwarder
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # no child took them (it never started): they were threadline's own
        for signum in forwarder.undelivered():
            signal.raise_signal(signum)


if __name__ == "__main__":
    sys.exit(main())
