"""What the docs site adds to MkDocs and mkdocstrings (both named in mkdocs.yml).

MkDocs hooks: the pages in docs/ link to programs and configuration beside
them (``../examples/threads.py``), which GitHub shows. On the site, each such
file becomes a page of its own under ``source/`` that shows it, and the links
lead there; a link to a file that does not exist stays as it is, so the strict
build reports it.

A griffe extension, `RestructuredTextBits`: the docstrings are Google style
with the few reStructuredText habits of the Python world, which it turns into
Markdown for the API reference: ``.. versionadded:: 0.1`` becomes a line
"Added in version 0.1", and an example introduced by ``::`` becomes a Python
code block.
"""

from __future__ import annotations

import posixpath
import re
import textwrap
from pathlib import Path
from typing import Any

import griffe
from mkdocs.structure.files import File, Files, InclusionLevel

# A Markdown link target that leaves docs/: ](../examples/threads.py) or ](../x.yaml#part).
_OUTSIDE = re.compile(r"\]\((?P<target>\.\./[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
_LANGUAGES = {".py": "python", ".js": "javascript", ".yaml": "yaml", ".yml": "yaml", ".sh": "sh"}
PREFIX = "source"


def _repository_file(config: Any, page_uri: str, target: str) -> str | None:
    """The target's path in the repository when it is a file outside docs/, else None."""
    root = Path(config["docs_dir"]).parent
    path = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
    if not path.startswith("../") or path.startswith("../../"):
        return None
    relative = path[len("../") :]
    return relative if (root / relative).is_file() else None


def _page(relative: str, text: str) -> str:
    language = _LANGUAGES.get(Path(relative).suffix, "text")
    fence = "````" if "```" in text else "```"
    return f"# `{relative}`\n\n{fence}{language}\n{text.rstrip()}\n{fence}\n"


def on_files(files: Files, config: Any) -> Files:
    """Add a page under ``source/`` for each repository file a page links to."""
    root = Path(config["docs_dir"]).parent
    wanted: set[str] = set()
    for file in files.documentation_pages():
        for link in _OUTSIDE.finditer(Path(file.abs_src_path or "").read_text(encoding="utf-8")):
            relative = _repository_file(config, file.src_uri, link["target"])
            if relative is not None:
                wanted.add(relative)
    for relative in sorted(wanted):
        text = (root / relative).read_text(encoding="utf-8")
        page = File.generated(
            config,
            f"{PREFIX}/{relative}.md",
            content=_page(relative, text),
            inclusion=InclusionLevel.NOT_IN_NAV,  # reached by the links, not listed
        )
        files.append(page)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point each link to a repository file at that file's page."""

    def relink(link: re.Match[str]) -> str:
        relative = _repository_file(config, page.file.src_uri, link["target"])
        if relative is None:
            return link[0]
        here = posixpath.dirname(page.file.src_uri) or "."
        target = posixpath.relpath(f"{PREFIX}/{relative}.md", here)
        return f"]({target}{link['anchor'] or ''})"

    return _OUTSIDE.sub(relink, markdown)


_VERSION_NOTE = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?P<kind>versionadded|versionchanged|deprecated)::"
    r"[ \t]*(?P<version>\S+)[ \t]*$",
    re.MULTILINE,
)
_NOTE_TEXT = {
    "versionadded": "Added in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
}
# A paragraph that ends with "::", a blank line, then the indented example.
_LITERAL = re.compile(r"::\n\n(?P<block>(?:(?:[ \t]+\S[^\n]*)?\n)*(?:[ \t]+\S[^\n]*))")


def markdown_docstring(text: str) -> str:
    """The docstring with its reStructuredText habits written as Markdown."""
    text = _VERSION_NOTE.sub(
        lambda note: f"{note['indent']}*{_NOTE_TEXT[note['kind']]} {note['version']}.*", text
    )

    def fenced(literal: re.Match[str]) -> str:
        code = textwrap.dedent(literal["block"]).strip("\n")
        return f":\n\n```python\n{code}\n```"

    return _LITERAL.sub(fenced, text)


class RestructuredTextBits(griffe.Extension):
    """Each docstring, as griffe reads it, written as Markdown (see `markdown_docstring`)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of each object griffe finds."""
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
