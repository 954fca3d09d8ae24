"""The public surface: __all__, and what `import threadline` costs."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import threadline as tl


def test_all_is_complete_and_sorted() -> None:
    """__all__ lists every public name once, sorted."""
    public = {
        name
        for name in dir(tl)
        if not name.startswith("_") and not isinstance(getattr(tl, name), types.ModuleType)
    }
    public -= {"annotations", "import_module", "TYPE_CHECKING", "Any"}
    assert sorted(tl.__all__) == tl.__all__
    assert set(tl.__all__) == public


@pytest.mark.parametrize("name", tl.__all__)
def test_each_name_is_threadlines_own(name: str) -> None:
    """Each public name resolves (lazy ones too) to what threadline defines under that name."""
    value = getattr(tl, name)
    if isinstance(value, tl.ContextStore):  # the library's own store, an instance
        assert name == value.name
        return
    assert value.__module__.startswith("threadline.")
    assert value is getattr(sys.modules[value.__module__], name)


def test_import_is_light() -> None:
    """Importing threadline loads neither the SDK, nor aiohttp, nor opentelemetry.trace."""
    code = (
        "import sys, json, threadline; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('opentelemetry', 'aiohttp')))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    assert not [m for m in loaded if m.startswith(("opentelemetry.sdk", "aiohttp"))]
    assert "opentelemetry.trace" not in loaded
