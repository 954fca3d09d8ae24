"""The public surface: __all__ of every public module, and what `import threadline` costs."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

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


PUBLIC_MODULES = [
    "threadline.aiohttp",
    "threadline.aiohttp.client",
    "threadline.aiohttp.server",
    "threadline.asgi",
    "threadline.asgi.middleware",
    "threadline.celery",
    "threadline.cli",
    "threadline.diagnostics",
    "threadline.django",
    "threadline.export",
    "threadline.hooks",
    "threadline.httpx",
    "threadline.kafka",
    "threadline.live",
    "threadline.logging",
    "threadline.loguru",
    "threadline.lost",
    "threadline.processes",
    "threadline.propagation",
    "threadline.rabbitmq",
    "threadline.requests",
    "threadline.structlog",
    "threadline.subprocess",
    "threadline.threads",
    "threadline.tracing",
]


def isort_order(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest: ruff's (isort's) order for __all__."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def defined_names(module: types.ModuleType) -> set[str]:
    """The public names *module*'s own source defines or re-exports (`import X as X`)."""
    assert module.__file__ is not None
    names: set[str] = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname for a in node.names if a.asname and a.asname == a.name)
    return {name for name in names if not name.startswith("_") and name not in {"T"}}


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_lists_its_names(name: str) -> None:
    """Each public module's __all__ is sorted and lists exactly what it defines or re-exports."""
    module = importlib.import_module(name)
    assert sorted(module.__all__, key=isort_order) == list(module.__all__)
    assert defined_names(module) == set(module.__all__)
    for exported in module.__all__:
        getattr(module, exported)


def test_every_public_module_is_checked() -> None:
    """A new public module (no leading underscore on its path) is added to PUBLIC_MODULES."""
    package = Path(tl.__file__).parent
    found = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and not any(part.startswith("_") for part in parts):
            found.add(".".join(("threadline", *parts)))
    assert set(PUBLIC_MODULES) == found


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


def test_import_loads_nothing_until_a_name_is_used() -> None:
    """`import threadline` adds no OpenTelemetry and no `typing`; the first use loads OpenTelemetry.

    Every public name still resolves (PEP 562), and `dir()` lists them all before any is used.
    """
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import threadline\n"
        "added = sorted(set(sys.modules) - before)\n"
        "listed = [n for n in threadline.__all__ if n in dir(threadline)]\n"
        "with threadline.request.scope(request_id='r1'):\n"
        "    threadline.snapshot()\n"
        "print(json.dumps([added, listed, 'opentelemetry.context' in sys.modules,\n"
        "    'typing' in sys.modules]))"
    )
    added, listed, loaded_on_use, typing_on_use = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    assert [] == [m for m in added if m.startswith(("opentelemetry", "typing"))], added
    assert {"threadline", "__future__"} >= {m for m in added if not m.startswith("encodings")}
    assert tl.__all__ == listed
    assert loaded_on_use
    assert not typing_on_use  # a store's first use needs no `typing` either


def test_log_adapters_import_no_library() -> None:
    """threadline, threadline.structlog and threadline.loguru load neither library, nor the SDK."""
    code = (
        "import sys, json, threadline, threadline.structlog, threadline.loguru; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('opentelemetry.sdk', 'structlog', 'loguru')))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert [] == json.loads(result.stdout)
