"""Writing the tools' text: any terminal encoding, counts in words, notes on stderr."""

from __future__ import annotations

import sys
from typing import TextIO

from .._core.text import count as count
from .._core.text import escape_controls


def write(text: str, stream: TextIO | None = None) -> None:
    r"""Write *text* to *stream* (standard output): a character its encoding lacks is escaped.

    On an ASCII terminal (``PYTHONIOENCODING=ascii``, ``LANG=C`` on old
    systems) ``café ☕`` is written ``caf\xe9 \u2615``, never an error.
    """
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        text = text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: ASCII is safe in any
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    stream.write(text)


def unicode_ok(stream: TextIO | None = None) -> bool:
    """Whether *stream* (standard output) writes Unicode, so block characters can be drawn."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or ""
    return "utf" in encoding.lower()


def note(command: str, text: str) -> None:
    """A line on stderr for the user, not the output: what was skipped while reading."""
    if text:
        write(f"threadline {command}: {escape_controls(text)}\n", sys.stderr)
