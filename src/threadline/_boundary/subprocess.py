"""The implementation of `threadline.subprocess`: children that carry the context."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._core.checks import require_bool
from .._core.context import Context
from .._core.settings import BOOTSTRAP_ENV, configured_marks, for_workers
from .._telemetry.spans import is_recording, provider_set, start_boundary_span
from .._wire.environment import as_text, carrier_names, inject_env
from .handoff import Handoff, hand_off

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["Popen", "child_env", "run"]

BOUNDARY = "subprocess"


def child_env(
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
    *,
    context: Context | None = None,
    bootstrap: bool = True,
) -> dict[str, str]:
    """Return the environment for a child: *env* (default: ``os.environ``) plus the context.

    A bytes *env* (``os.environb.copy()``) is decoded as ``os.environ`` does: the
    result is text, and no inherited bytes ``TRACEPARENT`` or ``BAGGAGE`` is left in it.

    Use it with any way of starting a process, e.g.
    ``await asyncio.create_subprocess_exec(*cmd, env=child_env())``.

    With *bootstrap* (a Python child restores the context at start-up), and
    once this process set tracing up with `threadline.tracing.configure`,
    the child also gets what it needs to set itself up alike: the marks of
    that set-up (``THREADLINE_CONFIGURED``, the service name given in code,
    the absolute ``THREADLINE_TRACES_FILE``) and, into an *env* you pass,
    this process's ``OTEL_*`` and ``THREADLINE_*`` settings where *env* has
    none of its own.

    Raises:
        TypeError: a store value cannot cross a process boundary; the message
            names the store and the key.
    """
    require_bool("bootstrap", bootstrap)
    # as text, one kind of name: a stale bytes TRACEPARENT cannot hide beside ours
    result = as_text(os.environ if env is None else env)
    inject_env(result, context)
    if bootstrap:
        result[BOOTSTRAP_ENV] = "1"
        marks = configured_marks()
        if marks and env is None:
            result.update(marks)
        elif marks:
            result.update({**for_workers(), **result})
    else:
        result.pop(BOOTSTRAP_ENV, None)
    return result


def _environ_with(context: Context | None, bootstrap: bool) -> Mapping[Any, Any]:
    """This process's environment plus the context, built as cheaply as CPython allows.

    On POSIX, os.environ keeps the environment as bytes: copying those and
    handing bytes to Popen saves decoding and re-encoding every variable.
    """
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return child_env(None, context=context, bootstrap=bootstrap)
    fields: dict[str, str] = {}
    inject_env(fields, context)
    environ: dict[bytes, bytes] = data.copy()
    for name in carrier_names():
        environ.pop(name.encode(), None)
    environ.update((name.encode(), value.encode()) for name, value in fields.items())
    if bootstrap:
        environ[BOOTSTRAP_ENV.encode()] = b"1"
        marks = configured_marks().items()
        environ.update((os.fsencode(name), os.fsencode(value)) for name, value in marks)
    else:
        environ.pop(BOOTSTRAP_ENV.encode(), None)
    return environ


class Popen(subprocess.Popen):  # type: ignore[type-arg]
    """`subprocess.Popen` with the context in the child's environment, and a span for the child.

    Pass ``env`` by keyword (default: this process's environment); the
    context is added to it. The span (when the caller's span records) starts
    here and ends when the exit is seen (`wait`, `communicate`, `poll`, or
    leaving ``with``), with ``process.exit.code`` and an error status for a
    non-zero code. ``record_args=True`` also records the arguments
    (``process.command_args``), which may hold secrets, so it is off by default.
    ``span=True`` records the span whenever a tracer provider is set, as the
    root of a new trace when there is none yet; ``span=False`` never does.
    """

    def __init__(
        self,
        args: Any,
        *,
        env: Mapping[str, str] | None = None,
        bootstrap: bool = True,
        record_args: bool = False,
        span: bool | None = None,
        **kwargs: Any,
    ) -> None:
        require_bool("bootstrap", bootstrap)
        require_bool("record_args", record_args)
        if span is not None:
            require_bool("span", span)
        wanted = is_recording() if span is None else span and provider_set()
        # The child runs another program: its resource gets init here, destroy at its exit.
        handoff = hand_off(
            "subprocess", span=lambda _: _start_span(args, kwargs, record_args) if wanted else None
        )
        self._threadline_handoff: Handoff | None = handoff
        context = handoff.context if handoff.span is not None else None
        if env is None:
            environ = _environ_with(context, bootstrap)
        else:
            environ = child_env(env, context=context, bootstrap=bootstrap)
        try:
            super().__init__(args, env=environ, **kwargs)
        except BaseException as exc:
            self._end(exc)
            raise
        if handoff.span is not None:
            handoff.span.set_attribute("process.pid", self.pid)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child as `subprocess.Popen.wait` does, and end its span."""
        code = super().wait(timeout)
        self._end()
        return code

    def poll(self) -> int | None:
        """Check the child as `subprocess.Popen.poll` does; end its span once it has exited."""
        code = super().poll()
        if code is not None:
            self._end()
        return code

    def _end(self, error: BaseException | None = None) -> None:
        """End the child's span (with its exit code, or *error*) and its resource, once."""
        handoff, self._threadline_handoff = getattr(self, "_threadline_handoff", None), None
        if handoff is None:
            return
        span = handoff.span
        if span is not None and error is None and self.returncode is not None:
            from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - loaded already

            span.set_attribute("process.exit.code", self.returncode)
            if self.returncode != 0:
                span.set_status(Status(StatusCode.ERROR, f"exit code {self.returncode}"))
        handoff.end(error)


def _start_span(args: Any, kwargs: Mapping[str, Any], record_args: bool) -> Span:
    argv = _argv(args, kwargs)
    program = os.path.basename(argv[0]) if argv else "?"
    attributes: dict[str, Any] = {"process.command": program}
    if record_args:
        attributes["process.command_args"] = argv
    return start_boundary_span(BOUNDARY, f"{BOUNDARY} {program}", attributes=attributes)


def _argv(args: Any, kwargs: Mapping[str, Any]) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        argv = text.split() if kwargs.get("shell") else [text]
    else:
        argv = [os.fsdecode(arg) for arg in args]
    executable = kwargs.get("executable")
    if executable is not None and argv:
        argv[0] = os.fsdecode(executable)
    return argv


def run(
    args: Any,
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run` through threadline's `Popen`: same arguments, results and errors.

    Takes `Popen`'s ``env``, ``bootstrap`` and ``record_args`` too.
    """
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with Popen(args, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except BaseException:  # as subprocess.run: never leave the child running
            process.kill()
            process.wait()
            raise
        code = process.poll()
    assert code is not None  # noqa: S101 - communicate() returned, so the child has exited
    if check and code:
        raise subprocess.CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)
