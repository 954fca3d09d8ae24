"""The layout docs/architecture.md describes: layers in order, no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "threadline"
LAYERS = {
    "core": ["_context", "_settings", "_text", "_values", "_hooks", "_store", "_snapshot"],
    "wire": [
        "_tracecontext",
        "_baggage",
        "_carrier",
        "_formats",
        "_env_carrier",
        "_propagator",
        "propagation",
        "diagnostics",
    ],
    "spans": ["_spans", "_exporters", "_export_process", "tracing", "export"],
    "boundaries": [
        "_threads",
        "_processes",
        "processes",
        "_far_side",
        "_subprocess",
        "subprocess",
        "_http",
        "aiohttp",
        "aiohttp.server",
        "aiohttp.client",
        "celery",
    ],
    "tools": [
        "logging",
        "_instrument",
        "_instrumentor",
        "_pytest_plugin",
        "hooks",
        "lost",
        "cli._traces",
        "cli._view",
        "cli._html",
        "cli._doctor",
        "cli._run",
        "cli._demo",
        "cli",
        "__init__",
        "__main__",
    ],
}
LEVEL = {module: level for level, modules in enumerate(LAYERS.values()) for module in modules}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def threadline_imports(path: Path) -> set[str]:
    """The threadline modules *path* imports, anywhere in it (function-level imports too)."""
    here = module_name(path)
    package = here.split(".")[:-1] if path.name != "__init__.py" else here.split(".")
    if here == "__init__":
        package = []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("threadline."):
                target = node.module.split(".")[1:]
            else:
                continue
            names = [".".join(target)] if target else ["__init__"]
            if not node.module or node.module == "threadline":  # from . import _processes
                names = [".".join([*target, alias.name]) for alias in node.names]
                names = [name if name in LEVEL else "__init__" for name in names]
            found.update(name for name in names if name in LEVEL)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "threadline":  # the package: the top layer
                    found.add("__init__")
                elif alias.name.startswith("threadline."):
                    found.add(alias.name.removeprefix("threadline."))
    found.discard(here)
    return found & set(LEVEL)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_its_layer() -> None:
    """A new module is placed in a layer here before it lands."""
    assert set(LEVEL) == set(MODULES)


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md's table of layers names exactly the modules there are."""
    page = (PACKAGE.parent.parent / "docs" / "architecture.md").read_text()
    section = page.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    named = {name.removesuffix(".py") for name in re.findall(r"`([\w/]+\.py)`", table)}
    named = {name.rsplit("/", 1)[-1] for name in named} - {"_threadline_bootstrap"}
    packages = {"__init__", "__main__", "aiohttp", "cli"}
    modules = {name.rsplit(".", 1)[-1] for name in MODULES} - packages
    assert modules == named


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_its_layer_or_below(module: str) -> None:
    """No module reaches up to a layer above its own."""
    above = {
        imported
        for imported in threadline_imports(MODULES[module])
        if LEVEL[imported] > LEVEL[module]
    }
    assert set() == above


def test_no_import_cycles() -> None:
    """The import graph has no cycles, function-level imports included."""
    graph = {module: threadline_imports(path) for module, path in MODULES.items()}
    graph["__init__"] = set()  # the package imports every layer; nothing imports it back
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for imported in graph[module]:
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
