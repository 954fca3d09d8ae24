"""``threadline run``: a command as a traced child that continues this process's context."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from .._core.settings import read_settings
from .._http.incoming import new_request_id

_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def run_command(command: list[str], values: dict[str, str], *, bootstrap: bool = True) -> int:
    """Run *command* in this process's context (plus *values* in `threadline.request`).

    A ``user_id`` without a ``request_id`` joins the request that came in this
    process's environment, or, when none came, a new request with a new id:
    a request scope always has its request id.
    """
    import threadline as tl  # noqa: PLC0415 - keep `threadline --help` quick

    from ..subprocess import Popen  # noqa: PLC0415

    settings = read_settings()
    if settings.traces_exporters or settings.otlp_endpoint_set or settings.parent_configured:
        from .._telemetry.pipeline import configure  # noqa: PLC0415

        configure(service_name="threadline-run")

    with ExitStack() as stack:
        stack.enter_context(tl.extract_env())
        if values:
            inherited = tl.request.get()
            if "request_id" not in values and not (inherited and inherited.get("request_id")):
                values = {"request_id": new_request_id(), **values}
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
