"""The layout docs/architecture.md describes: layers are folders, in order, with no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "threadline"
LAYERS = ("_core", "_wire", "_telemetry", "_boundary", "_http", "_messaging", "_patching")
"""The private layers, bottom up; everything at the top of the package is above them all."""
TOP_PRIVATE = {"__init__", "__main__", "_pytest_plugin"}
"""Private modules allowed at the top: the package itself and the pytest entry point."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def level(module: str) -> int:
    """The layer of *module*: its folder's place in `LAYERS`, or the top above them."""
    folder = module.split(".", maxsplit=1)[0]
    return LAYERS.index(folder) if folder in LAYERS else len(LAYERS)


def threadline_imports(path: Path) -> set[str]:
    """The threadline modules *path* imports, anywhere in it (function-level imports too)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    if here == ["__init__"]:
        package = []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module == "threadline" or (node.module or "").startswith("threadline."):
                target = node.module.split(".")[1:] if node.module else []
            else:
                continue
            for alias in node.names:  # `from . import lost` imports a module, not a name
                candidate = ".".join([*target, alias.name])
                found.add(candidate if candidate in MODULES else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "threadline":
                    found.add("__init__")
                elif alias.name.startswith("threadline."):
                    found.add(alias.name.removeprefix("threadline."))
    found.discard(".".join(here))
    return found & set(MODULES)


def test_the_layers_are_the_folders() -> None:
    """Each private folder of the package is a layer, and each layer is a folder."""
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name[0] == "_"}
    assert set(LAYERS) == folders - {"__pycache__"}


def test_the_top_holds_public_modules() -> None:
    """Code lives in the layers; the top holds the public modules and the entry points."""
    top = {name for name in MODULES if "." not in name and name not in LAYERS}
    assert set() == {name for name in top if name.startswith("_")} - TOP_PRIVATE


def test_the_architecture_page_shows_the_layers_in_order() -> None:
    """docs/architecture.md's table of layers names the folders, bottom up."""
    page = (PACKAGE.parent.parent / "docs" / "architecture.md").read_text()
    section = page.split("## Layers", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| `(_\w+)/` \|", section, re.MULTILINE)
    assert list(LAYERS) == named


def test_the_package_comment_shows_the_layers_in_order() -> None:
    """``threadline/__init__.py`` opens with the same layers, bottom up."""
    comment = (PACKAGE / "__init__.py").read_text().split("from __future__", 1)[0]
    named = re.findall(r"^# (_\w+)/", comment, re.MULTILINE)
    assert list(LAYERS) == named


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_its_layer_or_below(module: str) -> None:
    """No module reaches up to a layer above its own."""
    above = {
        imported
        for imported in threadline_imports(MODULES[module])
        if level(imported) > level(module)
    }
    assert set() == above


def test_no_import_cycles() -> None:
    """The import graph has no cycles, function-level imports included."""
    graph = {module: threadline_imports(path) for module, path in MODULES.items()}
    graph["__init__"] = set()  # the package imports every layer; nothing imports it back
    for name in LAYERS:  # nor does anything import a layer's own (empty) package
        graph[name] = set()
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
