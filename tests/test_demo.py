"""`threadline demo`, the README's main job, on the embedded default."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import check_demo_traces, clean_env
from threadline.export import read_spans


def test_demo_prints_each_request_as_one_trace() -> None:
    """Two requests, two trees of eight spans, and every log line under its own trace."""
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "demo"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert 2 == len(re.findall(r"^trace \w{32} \(8 spans\)$", out, re.MULTILINE))
    traces_file = re.search(r"^spans: (.+)$", out, re.MULTILINE)
    assert traces_file is not None
    check_demo_traces(read_spans(Path(traces_file[1])), requests=2)
    for service in ("gateway", "backend.thread", "backend.worker", "python-child", "shell-child"):
        assert 2 == len(re.findall(rf"^  log  {re.escape(service)} +request=\w{{32}}  ", out, re.MULTILINE))
    blocks = out.split("\ntrace ")[1:]
    for block in blocks:  # each trace's log lines carry one request id
        assert 1 == len(set(re.findall(r"request=(\w+)", block)))
