"""The official W3C Trace Context test harness, when a copy of it is at hand.

The harness (``test/`` of the w3c/trace-context repository) is not part of
this repository: point ``W3C_TRACE_CONTEXT_TEST`` at a copy of that folder to
run it against threadline's aiohttp middleware and client.
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
def test_w3c_harness_passes_at_strict_level_2() -> None:
    """Every harness test passes at STRICT_LEVEL=2, SPEC_LEVEL=2 (Trace Context Level 2)."""
    assert HARNESS is not None
    result = subprocess.run(
        [str(SCRIPT), HARNESS], capture_output=True, text=True, timeout=300, check=False
    )
    assert 0 == result.returncode, result.stderr[-4000:]
    assert "SPEC_LEVEL:   2" in result.stdout
    assert "skipped" not in result.stderr.splitlines()[-1]
