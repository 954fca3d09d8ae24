"""The official W3C Trace Context test harness, when a copy of it is at hand.

The harness (``test/`` of the w3c/trace-context repository) is not part of
this repository: point ``W3C_TRACE_CONTEXT_TEST`` at a copy of that folder to
run it against each of threadline's service stacks: the aiohttp middleware
and client, and FastAPI with ``threadline.asgi`` under uvicorn calling out
with ``threadline.httpx``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HARNESS = os.environ.get("W3C_TRACE_CONTEXT_TEST")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "w3c-harness"


@pytest.mark.skipif(
    not HARNESS, reason="W3C_TRACE_CONTEXT_TEST does not point at a copy of the harness"
)
@pytest.mark.parametrize("stack", ["aiohttp", "asgi"])
def test_w3c_harness_passes_at_strict_level_2(stack: str) -> None:
    """Every harness test passes at STRICT_LEVEL=2, SPEC_LEVEL=2 (Trace Context Level 2)."""
    assert HARNESS is not None
    result = subprocess.run(
        [str(SCRIPT), "--stack", stack, HARNESS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == result.returncode, result.stderr[-4000:]
    assert "SPEC_LEVEL:   2" in result.stdout
    assert "OK" == result.stderr.splitlines()[-1]  # none failed, none skipped
