"""Functions and classes that run in child processes in tests/test_instrument.py (importable)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import threadline as tl


def write_request_id(path: str) -> None:
    """Write the request id the child sees ("-" for none) to *path*."""
    value = tl.request.get()
    Path(path).write_text(value["request_id"] if value else "-")


def request_id(_: object = None) -> str:
    value = tl.request.get()
    return str(value["request_id"]) if value else "-"


class Writer(multiprocessing.Process):
    """A plain multiprocessing.Process subclass that overrides run()."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def run(self) -> None:
        write_request_id(self.path)
