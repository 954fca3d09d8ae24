"""The public surface: __all__, and what `import threadline` costs."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import threadline as tl


def test_all_is_complete_and_sorted() -> None:
    """__all__ lists every public name once, sorted, and each resolves."""
    public = {
        name
        for name in dir(tl)
        if not name.startswith("_") and not isinstance(getattr(tl, name), types.ModuleType)
    }
    public -= {"annotations", "import_module", "TYPE_CHECKING", "Any"}
    assert sorted(tl.__all__) == tl.__all__
    assert set(tl.__all__) == public
    for name in tl.__all__:
        assert getattr(tl, name) is not None


def test_import_is_light() -> None:
    """Importing threadline loads neither the SDK, nor aiohttp, nor opentelemetry.trace."""
    code = (
        "import sys, json, threadline; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'aiohttp')))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    assert not [m for m in loaded if m.startswith(("opentelemetry.sdk", "aiohttp"))]
    assert "opentelemetry.trace" not in loaded
