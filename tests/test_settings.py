"""Settings: every variable read by one function, validated once, handed to children explicitly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import clean_env
from threadline._boundary import far_side
from threadline.export import read_spans


def run_python(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run *code* as a program in *tmp_path*, with no OTEL_*/THREADLINE_* settings but *env*."""
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "app.py"],
        check=False,
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


CONFIGURE_AND_SPAN = """
    from opentelemetry import trace
    from threadline import tracing

    provider = tracing.configure(service_name="svc")
    print(type(provider).__name__)
    with trace.get_tracer("app").start_as_current_span("work"):
        pass
"""


class TestTheBugsOfIssue19:
    def test_a_bad_shutdown_timeout_is_a_warning_and_configure_completes(
        self, tmp_path: Path
    ) -> None:
        """THREADLINE_SHUTDOWN_TIMEOUT=5s: said, naming it; the set-up and its exit flush happen."""
        result = run_python(tmp_path, CONFIGURE_AND_SPAN, THREADLINE_SHUTDOWN_TIMEOUT="5s")
        assert 0 == result.returncode, result.stderr
        assert "TracerProvider" == result.stdout.strip()
        assert (
            "THREADLINE_SHUTDOWN_TIMEOUT='5s' is not a valid number of seconds; "
            "using the default 5" in result.stderr
        )
        # the exit flush was registered: the span reached the file at exit
        assert ["work"] == [s.name for s in read_spans(tmp_path / "threadline-traces.jsonl")]

    def test_a_bad_child_exit_timeout_is_said(
        self, monkeypatch: pytest.MonkeyPatch, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """THREADLINE_CHILD_EXIT_TIMEOUT=half is the default, said in a warning naming it."""
        monkeypatch.setenv("THREADLINE_CHILD_EXIT_TIMEOUT", "half")
        assert 0.5 == far_side.child_exit_timeout()
        assert [
            "THREADLINE_CHILD_EXIT_TIMEOUT='half' is not a valid number of seconds; "
            "using the default 0.5"
        ] == [record.getMessage() for record in threadline_warnings.records]

    def test_configure_leaves_os_environ_unchanged(self, tmp_path: Path) -> None:
        """configure() writes nothing to os.environ: what children need is handed to them."""
        code = """
            import json, os
            from threadline import tracing

            before = dict(os.environ)
            tracing.configure(service_name="svc")
            after = dict(os.environ)
            print(json.dumps({k: after.get(k) for k in set(before) ^ set(after)}))
        """
        result = run_python(tmp_path, code)
        assert 0 == result.returncode, result.stderr
        assert {} == json.loads(result.stdout)
