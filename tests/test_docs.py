"""Every Python block of README.md and docs/ runs as written; the docs site has every page.

Each ```python block is a program of its own. A block that cannot be one (it
only shows a signature, or goes on from earlier text) is marked on the line
just before its fence with ``<!-- fragment: why -->``; it must still compile.

The site (mkdocs.yml) lists every page of docs/ in its nav, and its API
reference has a page for every public module; the README lists the same pages.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from threadline import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
OPENING = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
ANY_OPENING = re.compile(r"^[ \t]*(```|~~~)[ \t]*(?P<lang>\S*)")
PYTHON_LIKE = re.compile(r"py|python3?|pycon|ipython", re.IGNORECASE)
FRAGMENT = re.compile(r"^[ \t]*<!--[ \t]*fragment:[ \t]*\S.*-->[ \t]*$")
# A block's run: the environment without any context or telemetry settings of the test run.
CONTEXT_VARIABLES = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
TIMEOUT = 30


@dataclass(frozen=True)
class Block:
    """One fenced Python block: where it opens, its text, and whether it is a marked fragment."""

    page: Path
    line: int
    source: str
    fragment: bool

    @property
    def id(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page.as_posix()}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page; a block in a list item loses the item's indentation."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    number = 0
    while number < len(lines):
        opening = OPENING.match(lines[number])
        number += 1
        if opening is None:
            continue
        start, fence = number, opening["indent"] + "```"
        while number < len(lines) and lines[number].rstrip() != fence:
            number += 1
        if number == len(lines):
            raise ValueError(f"{page.name}:{start}: unclosed ```python block")
        source = textwrap.dedent("\n".join(lines[start:number])) + "\n"
        fragment = start >= 2 and FRAGMENT.match(lines[start - 2]) is not None
        blocks.append(Block(page, start, source, fragment))
        number += 1
    return blocks


BLOCKS = [block for page in PAGES for block in read_blocks(page)]


def block_param(block: Block) -> object:
    return pytest.param(block, id=block.id)


def block_environment() -> dict[str, str]:
    """This environment without a context to continue or telemetry settings to follow."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "THREADLINE_")) and name not in CONTEXT_VARIABLES
    }


@pytest.mark.parametrize("block", [block_param(b) for b in BLOCKS])
def test_block(block: Block, tmp_path: Path) -> None:
    """The block runs alone as __main__ and exits 0 without a traceback; a fragment compiles."""
    if block.fragment:
        compile(block.source, block.id, "exec")
        return
    # A file of its own, not -c: spawn and forkserver workers re-import __main__ from it.
    program = tmp_path / "doc_block.py"
    program.write_text(block.source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", program.name],
        cwd=tmp_path,
        env=block_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = f"{block.id}\n{result.stdout}\n{result.stderr}"
    assert 0 == result.returncode, output
    # Threads and finalizers only print their exceptions: the exit code does not show them.
    assert "Traceback" not in result.stderr, output


def test_blocks_are_found() -> None:
    """Every page with Python examples is read, and no Python fence is spelled so it is missed."""
    assert {"README.md", "carrier.md", "aiohttp.md", "stores.md"} <= {b.page.name for b in BLOCKS}
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            opening = ANY_OPENING.match(line)
            if opening and PYTHON_LIKE.fullmatch(opening["lang"]):
                assert OPENING.match(line), f"{page.name}:{number}: write ```python"


def test_no_table_row_stands_alone() -> None:
    """Each table row sits in a table: a row after a blank line renders as a paragraph."""
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        fenced = False
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            if fenced or not line.startswith("|"):
                continue
            above = lines[number - 2] if number > 1 else ""
            below = lines[number] if number < len(lines) else ""
            assert above.startswith("|") or below.startswith(("|---", "| ---", "|:")), (
                f"{page.name}:{number}: a table row outside its table (a blank line above it?)"
            )


def test_fragment_marks_sit_on_python_blocks() -> None:
    """Each fragment mark is the line just before a ```python block, so none marks nothing."""
    marked = {(b.page, b.line - 1) for b in BLOCKS if b.fragment}
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if "fragment" in line and "<!--" in line:
                assert (page, number) in marked, (
                    f"{page.name}:{number}: write <!-- fragment: why --> just before ```python"
                )


def test_reader(tmp_path: Path) -> None:
    """Blocks are numbered by their opening fence, lose a list item's indent, and show marks."""
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n"
        "```python\nprint(1)\n```\n"
        "- an item:\n\n"
        "  <!-- fragment: a signature -->\n"
        "  ```python\n  def f(x): ...\n  ```\n"
        "```sh\necho no\n```\n",
        encoding="utf-8",
    )
    expected = [(2, "print(1)\n", False), (8, "def f(x): ...\n", True)]
    assert expected == [(b.line, b.source, b.fragment) for b in read_blocks(page)]
    page.write_text("```python\nprint(1)\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unclosed"):
        read_blocks(page)


# The docs site: mkdocs.yml's nav, the API reference, the README's list.

NAV_PAGE = re.compile(r"^\s*- [^:]+: (?P<page>\S+\.md)\s*$")
API_PAGE = re.compile(r"^::: (?P<module>[\w.]+)\s*$", re.MULTILINE)
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists, as paths under docs/."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:\n") :].splitlines()
    return [match["page"] for line in nav if (match := NAV_PAGE.match(line))]


def public_modules() -> set[str]:
    """threadline and each module or package at its top whose name has no leading _."""
    package = ROOT / "src" / "threadline"
    names = {path.stem for path in package.glob("*.py")}
    names |= {path.name for path in package.iterdir() if (path / "__init__.py").is_file()}
    return {"threadline"} | {f"threadline.{name}" for name in names if not name.startswith("_")}


def api_pages() -> dict[str, str]:
    """Each module the API reference documents, with its page under docs/."""
    return {
        match["module"]: page.relative_to(DOCS).as_posix()
        for page in sorted((DOCS / "reference").glob("*.md"))
        for match in API_PAGE.finditer(page.read_text(encoding="utf-8"))
    }


def first_paragraph_and_block(page: Path) -> tuple[str, str]:
    text = page.read_text(encoding="utf-8")
    paragraph = text.split("\n\n")[1]
    return paragraph, read_blocks(page)[0].source


class TestSite:
    def test_every_page_is_in_the_nav(self) -> None:
        """Each page of docs/ is in the nav once, and each page of the nav exists."""
        pages = sorted(page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md"))
        assert pages == sorted(nav_pages())
        assert len(set(nav_pages())) == len(nav_pages())

    def test_every_public_module_has_its_api_page(self) -> None:
        """The API reference has one page for each public module, and for nothing private."""
        documented = api_pages()
        assert public_modules() == set(documented)
        assert set(documented.values()) <= set(nav_pages())

    def test_the_home_page_says_what_the_readme_says(self) -> None:
        """docs/index.md opens with the README's first paragraph and first example."""
        assert first_paragraph_and_block(ROOT / "README.md") == first_paragraph_and_block(
            DOCS / "index.md"
        )

    def test_the_readme_lists_every_page(self) -> None:
        """The README links every page of the nav but the home page and the API reference."""
        linked = set(LINK.findall((ROOT / "README.md").read_text(encoding="utf-8")))
        guides = {page for page in nav_pages() if page != "index.md"}
        guides = {page for page in guides if not page.startswith("reference/")}
        assert {f"docs/{page}" for page in guides} <= linked
        assert "docs/reference/threadline.md" in linked

    def test_the_command_table_has_every_command(self) -> None:
        """docs/cli.md has a row for each command of `threadline`, naming each of its options."""
        text = (DOCS / "cli.md").read_text(encoding="utf-8")
        rows = {
            line.split("`")[1].split()[1]: line
            for line in text.splitlines()
            if line.startswith("| `threadline ")
        }
        assert list(cli._COMMANDS) == list(rows)
        for name, command in cli._COMMANDS.items():
            parser = argparse.ArgumentParser()
            command.arguments(parser)
            options = {flag for action in parser._actions for flag in action.option_strings}
            options -= {"-h", "--help"}
            assert options <= set(re.findall(r"`(--[\w-]+)", rows[name])), name

    def test_the_site_builds_strictly(self, tmp_path: Path) -> None:
        """`mkdocs build --strict` passes: no broken link or anchor, every reference resolves."""
        pytest.importorskip(
            "mkdocs", reason="the docs extra (Python 3.11+): pip install -e '.[docs]'"
        )
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
            cwd=ROOT,
            env={**block_environment(), "NO_MKDOCS_2_WARNING": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert 0 == result.returncode, result.stderr
        assert (tmp_path / "reference" / "threads" / "index.html").is_file()


def test_install_commands_work_from_a_clone() -> None:
    """threadline is not on PyPI: no page of docs/ says `pip install threadline[...]`.

    What works is a path: ``.[extra]`` inside the clone, ``./threadline[extra]`` beside it.
    """
    from_pypi = re.compile(r"pip install ['\"]?threadline\b")
    found = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in sorted(DOCS.rglob("*.md"))
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if from_pypi.search(line)
    ]
    assert [] == found
