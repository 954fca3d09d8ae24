"""The threadline command: `threadline run -- CMD`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from threadline import subprocess as tl_subprocess
from threadline.cli import main

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def threadline(
    *args: str, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadline", *args],
        check=False,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


class TestRun:
    def test_context_reaches_the_command(self) -> None:
        """The child gets threadline's own context, a request scope, and the bootstrap switch."""
        result = threadline(
            "run",
            "--request-id",
            "cli-1",
            "--user-id",
            "u7",
            "--",
            "sh",
            "-c",
            'echo "$TRACEPARENT|$BAGGAGE|$THREADLINE_BOOTSTRAP"',
            env={"TRACEPARENT": TRACEPARENT},
        )
        assert 0 == result.returncode, result.stderr
        assert (
            f"{TRACEPARENT}|request.request_id=cli-1;tl,request.user_id=u7;tl|1\n" == result.stdout
        )

    def test_user_id_alone_makes_a_request(self) -> None:
        """--user-id without --request-id: a request scope with a new id, never one without."""
        result = threadline("run", "--user-id", "u8", "--", "sh", "-c", 'echo "$BAGGAGE"')
        assert 0 == result.returncode, result.stderr
        made, user = result.stdout.strip().split(",")
        assert re.fullmatch(r"request\.request_id=[0-9a-f]{32};tl", made)
        assert "request.user_id=u8;tl" == user

    def test_user_id_alone_joins_the_request_that_came(self) -> None:
        """--user-id with a request id in the environment's baggage: that request, this user."""
        result = threadline(
            "run",
            "--user-id",
            "u9",
            "--",
            "sh",
            "-c",
            'echo "$BAGGAGE"',
            env={"BAGGAGE": "request.request_id=parent-1;tl"},
        )
        assert 0 == result.returncode, result.stderr
        assert "request.request_id=parent-1;tl,request.user_id=u9;tl\n" == result.stdout

    @pytest.mark.parametrize("given", ["-", "...", "has space", ""])
    def test_a_malformed_request_id_is_refused(self, given: str) -> None:
        """--request-id takes what a server would accept: never the logs' placeholder ``-``."""
        result = threadline("run", "--request-id", given, "--", "sh", "-c", "echo ran")
        assert 2 == result.returncode
        assert "--request-id" in result.stderr
        assert "ran" not in result.stdout

    def test_exit_code_is_the_commands(self) -> None:
        """threadline exits with the command's code."""
        assert 3 == threadline("run", "--", "sh", "-c", "exit 3").returncode

    def test_stdin_passes_through(self) -> None:
        """Standard input reaches the command; its output comes back."""
        assert "piped\n" == threadline("run", "--", "cat", input="piped\n").stdout

    def test_killed_by_signal(self) -> None:
        """A command ended by signal N makes threadline exit 128+N, as a shell does."""
        assert 143 == threadline("run", "--", "sh", "-c", "kill -TERM $$").returncode

    def test_signals_are_forwarded(self) -> None:
        """SIGTERM sent to threadline reaches the command, which may handle it."""
        script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
        with subprocess.Popen(
            [sys.executable, "-m", "threadline", "run", "--", "sh", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            assert "ready\n" == proc.stdout.readline()
            proc.terminate()
            assert "got-term\n" == proc.stdout.readline()
            assert 7 == proc.wait(30)

    def test_command_not_found(self) -> None:
        """A missing command exits 127 with a clear message, as a shell does."""
        result = threadline("run", "--", "no-such-command-x")
        assert 127 == result.returncode
        assert "no-such-command-x: command not found" in result.stderr

    def test_command_cannot_run(self, tmp_path: Path) -> None:
        """A file that is not executable exits 126 with the reason."""
        script = tmp_path / "not-executable.sh"
        script.write_text("echo never\n")
        script.chmod(0o644)
        result = threadline("run", "--", str(script))
        assert 126 == result.returncode
        assert "Permission denied" in result.stderr

    def test_needs_a_command(self) -> None:
        """`threadline run` alone is a usage error."""
        result = threadline("run")
        assert 2 == result.returncode
        assert "give the command to run" in result.stderr

    def test_console_script_installed(self) -> None:
        """The `threadline` command is installed with the package."""
        script = os.path.join(os.path.dirname(sys.executable), "threadline")
        result = subprocess.run(
            [script, "run", "--", "true"], capture_output=True, text=True, timeout=60, check=False
        )
        assert 0 == result.returncode, result.stderr


def test_run_records_a_span_when_tracing_is_configured(tmp_path: Path) -> None:
    """With OTEL_* settings, `threadline run` configures tracing: the command is a span."""
    from threadline.export import read_spans

    traces = tmp_path / "traces.jsonl"
    result = threadline(
        "run",
        "--",
        "sh",
        "-c",
        'echo "$TRACEPARENT"',
        env={
            "TRACEPARENT": TRACEPARENT,
            "OTEL_TRACES_EXPORTER": "file",
            "THREADLINE_TRACES_FILE": str(traces),
        },
    )
    assert 0 == result.returncode, result.stderr
    (span,) = read_spans(traces)
    assert ("subprocess sh", "threadline-run") == (span.name, span.service)
    assert (TRACEPARENT.split("-")[1], TRACEPARENT.split("-")[2]) == (span.trace_id, span.parent_id)
    assert f"-{span.span_id}-" in result.stdout


def test_run_is_a_root_span_without_an_incoming_trace(tmp_path: Path) -> None:
    """With tracing set up and no TRACEPARENT, the child is the root span of a new trace."""
    from threadline.export import read_spans

    traces = tmp_path / "traces.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in {"TRACEPARENT", "BAGGAGE"}}
    env.update(OTEL_TRACES_EXPORTER="file", THREADLINE_TRACES_FILE=str(traces))
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "run", "--", "sh", "-c", 'echo "$TRACEPARENT"'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    (span,) = read_spans(traces)
    assert ("subprocess sh", None) == (span.name, span.parent_id)
    version, trace_id, parent_id, flags = result.stdout.strip().split("-")
    assert ("00", span.trace_id, span.span_id) == (version, trace_id, parent_id)
    assert int(flags, 16) & 1  # sampled


def test_run_help_is_plain_text() -> None:
    """`threadline run --help` shows no reStructuredText markup."""
    result = threadline("run", "--help")
    assert 0 == result.returncode
    assert "``" not in result.stdout
    assert "the child is a span" in " ".join(result.stdout.split())


def test_run_loads_neither_the_viewer_nor_the_demo() -> None:
    """`threadline run` imports only its own module of the command package."""
    code = (
        "import sys, threadline.cli as cli; cli.main(['run', '--', 'true']); "
        "print(sorted(m for m in sys.modules if m.startswith('threadline.cli.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "['threadline.cli._run']\n" == result.stdout


def test_help_loads_no_command() -> None:
    """`threadline --help` lists every command of the table and imports none of their modules."""
    code = (
        "import sys, threadline.cli as cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('threadline.cli.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.endswith("[]\n")
    assert all(f"    {name} " in result.stdout for name in ("run", "demo", "view", "doctor"))


class TestSignalsBeforeTheChild:
    def test_signal_during_start_reaches_the_child(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A signal sent while the child is being started is passed on once it runs."""
        real_popen = tl_subprocess.Popen

        def slow_start(command: list[str], **kwargs: Any) -> Any:
            os.kill(os.getpid(), signal.SIGUSR1)  # arrives before the child exists
            return real_popen(["sleep", "60"], **kwargs)

        monkeypatch.setattr(tl_subprocess, "Popen", slow_start)
        # the child, not threadline, is ended by it: threadline reports 128 + the signal
        assert 128 + signal.SIGUSR1 == main(["run", "--", "anything"])

    def test_signal_without_a_child_is_threadlines_own(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the child cannot start, a signal that came meanwhile is raised in threadline."""
        received: list[int] = []
        previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: received.append(signum))

        def cannot_start(command: list[str], **kwargs: Any) -> Any:
            os.kill(os.getpid(), signal.SIGUSR1)
            raise FileNotFoundError(command[0])

        monkeypatch.setattr(tl_subprocess, "Popen", cannot_start)
        try:
            assert 127 == main(["run", "--", "no-such-command"])
        finally:
            signal.signal(signal.SIGUSR1, previous)
        assert [signal.SIGUSR1] == received
