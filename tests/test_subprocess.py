"""Subprocesses: the env carrier, traced run/Popen, and children in other languages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess as std_subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import threadline as tl
from tests.helpers import Spans
from threadline import subprocess

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PRINT_ENV = (
    "import json, os; print(json.dumps({k: os.environ.get(k) "
    "for k in ('TRACEPARENT', 'BAGGAGE', 'THREADLINE_BOOTSTRAP')}))"
)


class TestChildEnv:
    def test_context_and_switch(self, tracer: trace.Tracer) -> None:
        """child_env adds the context under the env-carrier names and the bootstrap switch."""
        with tracer.start_as_current_span("s") as span, tl.request.scope(request_id="e1"):
            env = subprocess.child_env({"PATH": "/bin"})
        assert "/bin" == env["PATH"]
        assert f"{span.get_span_context().trace_id:032x}" in env["TRACEPARENT"]
        assert "request.request_id=e1;tl" == env["BAGGAGE"]
        assert "1" == env[subprocess.BOOTSTRAP_ENV]

    def test_without_bootstrap(self) -> None:
        """bootstrap=False leaves the switch off, even if this process had it."""
        assert subprocess.BOOTSTRAP_ENV not in subprocess.child_env(
            {subprocess.BOOTSTRAP_ENV: "1"}, bootstrap=False
        )

    def test_defaults_to_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without env, the child gets this process's environment plus the context."""
        monkeypatch.setenv("SOME_SETTING", "kept")
        assert "kept" == subprocess.child_env()["SOME_SETTING"]

    def test_value_that_cannot_cross(self, store: tl.ContextStore) -> None:
        """A non-JSON store value: a TypeError naming store and key, before any child starts."""
        with (
            store.scope(handle=object()),
            pytest.raises(TypeError, match=rf"{store.name}.*'handle'"),
        ):
            subprocess.run([sys.executable, "-c", "raise SystemExit(9)"])

    def test_baggage_at_the_limits_can_go_on(self) -> None:
        """Inbound baggage at the W3C limits never fails a child: foreign members make room."""
        inbound = "k=" + "v" * 8190
        with tl.extract({"baggage": inbound}), tl.request.merge(request_id="own"):
            out = subprocess.run(
                [sys.executable, "-c", PRINT_ENV], capture_output=True, text=True, check=True
            ).stdout
        assert "request.request_id=own;tl" == json.loads(out)["BAGGAGE"]

    def test_bootstrap_name_matches_the_pth_hook(self) -> None:
        """The switch the parent sets is the one the .pth hook reads."""
        pth = (
            Path(__file__).resolve().parent.parent / "src" / "threadline-bootstrap.pth"
        ).read_text()
        assert f"'{subprocess.BOOTSTRAP_ENV}'" in pth


class TestRun:
    def test_child_continues_the_trace(self, tracer: trace.Tracer, spans: Spans) -> None:
        """The child's TRACEPARENT names the subprocess span, a child of the caller's span."""
        with tracer.start_as_current_span("parent"), tl.request.scope(request_id="r2"):
            result = subprocess.run(
                [sys.executable, "-c", PRINT_ENV], capture_output=True, text=True, check=True
            )
        seen = json.loads(result.stdout)
        child_span = spans.named("subprocess python")
        assert child_span.parent is not None
        assert spans.named("parent").context.span_id == child_span.parent.span_id
        assert f"-{child_span.context.span_id:016x}-" in seen["TRACEPARENT"]
        assert "request.request_id=r2;tl" == seen["BAGGAGE"]
        attributes = child_span.attributes or {}
        assert (0, "python") == (attributes["process.exit.code"], attributes["process.command"])
        assert isinstance(attributes["process.pid"], int)
        assert os.getpid() != attributes["process.pid"]  # the child's, not this process's
        assert "process.command_args" not in attributes

    def test_failed_child(self, tracer: trace.Tracer, spans: Spans) -> None:
        """A non-zero exit is an error status; check=True raises as subprocess does."""
        with tracer.start_as_current_span("parent"):
            with pytest.raises(std_subprocess.CalledProcessError) as failure:
                subprocess.run(["sh", "-c", "exit 4"], check=True, record_args=True)
        assert 4 == failure.value.returncode
        span = spans.named("subprocess sh")
        assert trace.StatusCode.ERROR == span.status.status_code
        assert ("sh", "-c", "exit 4") == (span.attributes or {})["process.command_args"]

    def test_input_and_timeout(self) -> None:
        """input=, capture_output= and timeout= behave as in subprocess.run."""
        assert "hi" == subprocess.run(["cat"], input="hi", capture_output=True, text=True).stdout
        with pytest.raises(std_subprocess.TimeoutExpired):
            subprocess.run(["sleep", "30"], timeout=0.2)

    def test_missing_program(self, tracer: trace.Tracer, spans: Spans) -> None:
        """A program that does not exist raises as usual, and its span records the error."""
        with tracer.start_as_current_span("parent"), pytest.raises(FileNotFoundError):
            subprocess.run(["no-such-program-here"])
        assert (
            trace.StatusCode.ERROR
            == spans.named("subprocess no-such-program-here").status.status_code
        )

    def test_no_span_without_recording_parent(self, spans: Spans) -> None:
        """Outside a recording span the context still travels, and nothing is recorded."""
        with tl.request.scope(request_id="quiet"):
            out = subprocess.run(
                [sys.executable, "-c", PRINT_ENV], capture_output=True, text=True
            ).stdout
        assert "request.request_id=quiet;tl" == json.loads(out)["BAGGAGE"]
        assert [] == spans.finished()


class TestPopen:
    def test_span_ends_when_exit_is_seen(self, tracer: trace.Tracer, spans: Spans) -> None:
        """Leaving `with Popen` waits for the child and ends its span with the exit code."""
        with tracer.start_as_current_span("parent"):
            with subprocess.Popen(["sh", "-c", "exit 0"]) as child:
                pass
        assert 0 == child.returncode
        assert 0 == (spans.named("subprocess sh").attributes or {})["process.exit.code"]

    def test_poll(self, tracer: trace.Tracer, spans: Spans) -> None:
        """poll() ends the span once it sees the exit."""
        with tracer.start_as_current_span("parent"):
            child = subprocess.Popen(["true"])
        while child.poll() is None:
            pass
        assert 0 == (spans.named("subprocess true").attributes or {})["process.exit.code"]


class TestPythonChild:
    def test_explicit_extract_env(self, tracer: trace.Tracer) -> None:
        """A child that calls tl.extract_env() continues the parent's trace and stores."""
        code = (
            "import threadline as tl\n"
            "from opentelemetry import trace\n"
            "with tl.extract_env():\n"
            "    sc = trace.get_current_span().get_span_context()\n"
            "    print(f'{sc.trace_id:032x}', tl.request.get()['request_id'])\n"
        )
        with tracer.start_as_current_span("parent") as span, tl.request.scope(request_id="x1"):
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                bootstrap=False,
            ).stdout
        assert f"{span.get_span_context().trace_id:032x} x1" == out.strip()

    @staticmethod
    def run_unmodified_child(tmp_path: Path, bootstrap: bool) -> tuple[str, dict[str, Any]]:
        """Run examples/children/unmodified_child.py; return its output and its one span."""
        span_file = tmp_path / "child-spans.jsonl"
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "children" / "unmodified_child.py")],
            env={**os.environ, "CHILD_SPAN_FILE": str(span_file)},
            capture_output=True,
            text=True,
            check=True,
            bootstrap=bootstrap,
        ).stdout
        (child_span,) = [json.loads(line) for line in span_file.read_text().splitlines()]
        return out, child_span

    def test_unmodified_child_with_bootstrap(
        self, tracer: trace.Tracer, spans: Spans, tmp_path: Path
    ) -> None:
        """With the automatic bootstrap an unmodified child logs the request id, joins the trace."""
        with tracer.start_as_current_span("parent") as parent, tl.request.scope(request_id="boot1"):
            out, child_span = self.run_unmodified_child(tmp_path, bootstrap=True)
        trace_id = f"{parent.get_span_context().trace_id:032x}"
        assert f"python child working request_id=boot1 trace_id={trace_id}" in out
        assert trace_id == child_span["trace_id"]
        assert f"{spans.named('subprocess python').context.span_id:016x}" == child_span["parent_id"]

    def test_unmodified_child_without_bootstrap(self, tracer: trace.Tracer, tmp_path: Path) -> None:
        """Without the switch the child is untouched: its own trace, no request id."""
        with tracer.start_as_current_span("parent") as parent, tl.request.scope(request_id="boot2"):
            out, child_span = self.run_unmodified_child(tmp_path, bootstrap=False)
        assert "INFO:root:python child working\n" == out
        assert f"{parent.get_span_context().trace_id:032x}" != child_span["trace_id"]

    @pytest.mark.parametrize(
        "first_import",
        ["import logging", "from opentelemetry import trace", "import threadline", "import json"],
    )
    def test_bootstrap_whatever_is_imported_first(self, first_import: str) -> None:
        """The bootstrap works whichever of logging, OpenTelemetry or threadline comes first."""
        code = (
            f"{first_import}\n"
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "logging.info('x')\n"
            "import threadline as tl\n"
            "from opentelemetry import trace\n"
            "trace_id = trace.get_current_span().get_span_context().trace_id\n"
            "print(f'{trace_id:032x}', dict(tl.request.get()))\n"
        )
        env = {
            **os.environ,
            "TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "BAGGAGE": "request.request_id=order;tl",
            subprocess.BOOTSTRAP_ENV: "1",
        }
        result = std_subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert "" == result.stderr
        assert [
            "INFO:root:x request_id=order trace_id=0af7651916cd43dd8448eb211c80319c",
            "0af7651916cd43dd8448eb211c80319c {'request_id': 'order'}",
        ] == result.stdout.splitlines()

    def test_bootstrap_of_a_logging_child_loads_only_what_restoring_needs(self) -> None:
        """A child that only logs gets the parent's ids and plain baggage, and stays light.

        Restoring the carrier loads neither multiprocessing nor threadline's
        settings (the parent set no tracing up: no ``THREADLINE_CONFIGURED``).
        """
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "logging.info('x')\n"
            "heavy = ('multiprocessing', 'threadline._core.settings')\n"
            "print(sorted(name for name in heavy if name in sys.modules))\n"
            "from opentelemetry import baggage\n"
            "print(dict(baggage.get_all()))\n"
        )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTEL_", "THREADLINE_"))
        }
        env.update(
            TRACEPARENT="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            BAGGAGE="request.request_id=order;tl,tenant=acme",
        )
        env[subprocess.BOOTSTRAP_ENV] = "1"
        result = std_subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert "" == result.stderr
        assert [
            "INFO:root:x request_id=order trace_id=0af7651916cd43dd8448eb211c80319c",
            "[]",
            "{'tenant': 'acme'}",
        ] == result.stdout.splitlines()

    @staticmethod
    def run_bootstrapped(
        code: str, baggage: str = "request.request_id=order;tl", **fields: str
    ) -> Any:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTEL_", "THREADLINE_"))
        }
        env.update(
            TRACEPARENT="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", BAGGAGE=baggage
        )
        env.update(fields)
        env[subprocess.BOOTSTRAP_ENV] = "1"
        return std_subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )

    def test_a_child_that_only_imports_logging_loads_neither_threadline_nor_the_trace_api(
        self,
    ) -> None:
        """The light path: importing logging loads opentelemetry.context only, until first read."""
        code = (
            "import logging, sys\n"
            "def loaded():\n"
            "    return sorted(m for m in sys.modules if m == 'threadline'\n"
            "        or m.startswith(('threadline.', 'opentelemetry.trace')))\n"
            "print(loaded())\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "logging.info('x')\n"
            "print('threadline.logging' in loaded(), 'opentelemetry.trace' in loaded())\n"
        )
        result = self.run_bootstrapped(code)
        assert "" == result.stderr
        assert [
            "[]",
            "INFO:root:x request_id=order trace_id=0af7651916cd43dd8448eb211c80319c",
            "True True",
        ] == result.stdout.splitlines()

    @pytest.mark.parametrize("bad", [{"TRACESTATE": "BAD KEY"}, {"TRACEPARENT": "garbage"}])
    def test_a_bad_field_leaves_every_later_line_its_ids(self, bad: dict[str, str]) -> None:
        """A field dropped while the context is restored (its warning logged meanwhile): the
        lines after it still carry what was valid."""
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "logging.info('first')\n"
            "logging.info('second')\n"
        )
        result = self.run_bootstrapped(code, **bad)
        lines = [line for line in result.stdout.splitlines() if line.startswith("INFO")]
        assert 2 == len(lines), result
        assert "threadline dropped context" in result.stdout  # its warning, at the first read
        for line in lines:
            assert "request_id=order" in line, result
        if "TRACESTATE" in bad:  # the traceparent was valid: the trace goes on
            assert all("trace_id=0af7651916cd43dd8448eb211c80319c" in line for line in lines)

    def test_threads_that_log_while_the_context_is_restored_get_their_fields(self) -> None:
        """Several threads log at once as the first records: none goes without its fields;
        each copy of the main thread's context gets the parent's ids."""
        code = (
            "import contextvars, logging, sys, threading\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout,\n"
            "    format='%(message)s %(request_id)s')\n"
            "go = threading.Event()\n"
            "def worker(i, ctx):\n"
            "    go.wait()\n"
            "    ctx.run(logging.info, 'copy %d', i)\n"
            "def plain(i):\n"
            "    go.wait()\n"
            "    logging.info('plain %d', i)\n"
            "ts = [threading.Thread(target=worker, args=(i, contextvars.copy_context()))\n"
            "      for i in range(4)]\n"
            "ts += [threading.Thread(target=plain, args=(i,)) for i in range(4)]\n"
            "for t in ts: t.start()\n"
            "go.set()\n"
            "logging.info('main')\n"
            "for t in ts: t.join()\n"
        )
        result = self.run_bootstrapped(code)
        assert "" == result.stderr
        assert sorted(
            ["main order"]
            + [f"copy {i} order" for i in range(4)]
            + [f"plain {i} -" for i in range(4)]
        ) == sorted(result.stdout.splitlines())

    def test_a_record_factory_set_before_the_first_line_keeps_its_fields(self) -> None:
        """The application wraps the record factory before it logs: its first line has the ids."""
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout,\n"
            "    format='%(message)s %(request_id)s %(custom)s')\n"
            "old = logging.getLogRecordFactory()\n"
            "def factory(*a, **k):\n"
            "    r = old(*a, **k); r.custom = 'mine'; return r\n"
            "logging.setLogRecordFactory(factory)\n"
            "logging.info('first')\n"
            "logging.info('second')\n"
        )
        result = self.run_bootstrapped(code)
        assert "" == result.stderr
        assert ["first order mine", "second order mine"] == result.stdout.splitlines()

    def test_tasks_and_snapshots_made_early_hold_the_parents_context(
        self,
    ) -> None:
        """Every copy of the main thread's context holds the parent's: a snapshot taken
        first thing, a task, the main thread and the program's spans see its ids."""
        code = (
            "import asyncio, contextvars, logging, sys\n"
            "early = contextvars.copy_context()\n"
            "async def other():\n"
            "    await asyncio.sleep(0)\n"
            "    import threadline as tl\n"
            "    print('other task', dict(tl.request.get()))\n"
            "async def main():\n"
            "    task = asyncio.create_task(other())\n"
            "    logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "    logging.info('first read, in a task')\n"
            "    await task\n"
            "asyncio.run(main())\n"
            "import threadline as tl\n"
            "from opentelemetry import trace\n"
            "print('main', dict(tl.request.get()))\n"
            "print('early', early.run(lambda: dict(tl.request.get())))\n"
            "with trace.get_tracer('t').start_as_current_span('s') as span:\n"
            "    print('span', f'{span.get_span_context().trace_id:032x}')\n"
            "print(type(trace.get_current_span().get_span_context()).__name__)\n"
        )
        result = self.run_bootstrapped(code)
        assert "" == result.stderr
        assert [
            "INFO:root:first read, in a task request_id=order "
            "trace_id=0af7651916cd43dd8448eb211c80319c",
            "other task {'request_id': 'order'}",
            "main {'request_id': 'order'}",
            "early {'request_id': 'order'}",
            "span 0af7651916cd43dd8448eb211c80319c",
            "SpanContext",
        ] == result.stdout.splitlines()

    def test_a_thread_that_logs_first_restores_the_main_threads_context(self) -> None:
        """A plain thread's record has no ids (it starts in an empty context); main's has them."""
        code = (
            "import logging, sys, threading\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "thread = threading.Thread(target=logging.info, args=('in a thread',))\n"
            "thread.start(); thread.join()\n"
            "logging.info('in main')\n"
        )
        result = self.run_bootstrapped(code)
        assert "" == result.stderr
        assert [
            "INFO:root:in a thread request_id=- trace_id=-",
            "INFO:root:in main request_id=order trace_id=0af7651916cd43dd8448eb211c80319c",
        ] == result.stdout.splitlines()

    def test_opentelemetrys_own_api_reads_the_parents_context(self) -> None:
        """A program that reads OpenTelemetry's context gets the parent's baggage and span."""
        code = (
            "import logging\n"
            "from opentelemetry import context\n"
            "print(sorted(context.get_current()) != [])\n"
            "from opentelemetry import baggage, trace\n"
            "print(dict(baggage.get_all()))\n"
            "print(f'{trace.get_current_span().get_span_context().trace_id:032x}')\n"
        )
        result = self.run_bootstrapped(code, baggage="request.request_id=order;tl,tenant=acme")
        assert "" == result.stderr
        assert ["True", "{'tenant': 'acme'}", "0af7651916cd43dd8448eb211c80319c"] == (
            result.stdout.splitlines()
        )

    def test_a_bad_carrier_is_reported_and_the_child_runs(self) -> None:
        """Invalid context in the environment is dropped with a warning; the child runs."""
        code = (
            "import logging\nprint('started')\n"
            "import threadline as tl\nprint(dict(tl.request.get()))\n"
        )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTEL_", "THREADLINE_"))
        }
        env.update(TRACEPARENT="garbage", BAGGAGE="request.request_id=order;tl")
        env[subprocess.BOOTSTRAP_ENV] = "1"
        result = std_subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert ["started", "{'request_id': 'order'}"] == result.stdout.splitlines()
        assert "traceparent.invalid" in result.stderr

    def test_the_bootstrap_reads_the_configured_flag_by_its_name(self) -> None:
        """far_side checks THREADLINE_CONFIGURED without loading the settings: the same name."""
        from threadline._boundary import far_side
        from threadline._core import settings

        assert settings.CONFIGURED_ENV == far_side._CONFIGURED_ENV

    def test_bootstrap_with_bad_context_still_starts(self) -> None:
        """Invalid context in the environment is dropped with a warning; the child runs."""
        env = {**os.environ, "TRACEPARENT": "garbage", subprocess.BOOTSTRAP_ENV: "1"}
        result = std_subprocess.run(
            [sys.executable, "-c", "import threadline; print('ran')"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
        )
        assert (0, "ran\n") == (result.returncode, result.stdout)
        assert "traceparent.invalid" in result.stderr

    @pytest.mark.parametrize(
        "bad", ["request.x=" + "%5B" * 2500 + ";tl=json", "request.x=%7B%22%22:1%7D;tl=json"]
    )
    def test_bootstrap_keeps_the_trace_when_baggage_is_bad(self, bad: str) -> None:
        """Baggage the decoder refuses is dropped; the child still continues the trace."""
        code = (
            "import threadline as tl\n"
            "from opentelemetry import trace\n"
            "trace_id = trace.get_current_span().get_span_context().trace_id\n"
            "print(f'{trace_id:032x}', tl.request.get())\n"
        )
        env = {
            **os.environ,
            "TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "BAGGAGE": bad,
            subprocess.BOOTSTRAP_ENV: "1",
        }
        result = std_subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert "0af7651916cd43dd8448eb211c80319c None\n" == result.stdout
        assert "baggage.invalid" in result.stderr


class TestOtherLanguages:
    def test_shell_child(self, tracer: trace.Tracer) -> None:
        """A shell script reads the trace id and request id from its environment."""
        with tracer.start_as_current_span("parent") as span, tl.request.scope(request_id="sh-1"):
            out = subprocess.run(
                ["sh", str(EXAMPLES / "children" / "report_context.sh")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        assert (
            f"shell child: trace_id={span.get_span_context().trace_id:032x} request_id=sh-1\n"
            == out
        )

    @pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
    def test_node_child(self, tracer: trace.Tracer, spans: Spans) -> None:
        """A Node.js script reads the trace id, the request id and a typed user id."""
        with (
            tracer.start_as_current_span("parent") as span,
            tl.request.scope(request_id="a b+c", user_id=42),
        ):
            out = subprocess.run(
                ["node", str(EXAMPLES / "children" / "report_context.js")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        node_span = spans.named("subprocess node")
        assert (
            f"node child: trace_id={span.get_span_context().trace_id:032x} request_id=a b+c "
            f"user_id=42 parent_id={node_span.context.span_id:016x}\n"
        ) == out


class TestOptions:
    @pytest.mark.parametrize(
        ("call", "option"),
        [
            (lambda: subprocess.run(["true"], bootstrap="no"), "bootstrap"),
            (lambda: subprocess.run(["true"], record_args=1), "record_args"),
            (lambda: subprocess.Popen(["true"], span="yes"), "span"),
            (lambda: subprocess.child_env({}, bootstrap=None), "bootstrap"),
        ],
    )
    def test_flags_take_a_bool(self, call: Any, option: str) -> None:
        """A flag given as a str or a number is a TypeError naming it, before any child starts."""
        with pytest.raises(TypeError, match=rf"^{option} takes True or False"):
            call()
