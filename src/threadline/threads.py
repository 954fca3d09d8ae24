"""Threads and thread pools that carry the submitter's context into the work.

`ThreadPoolExecutor` and `Thread` are drop-in replacements of the standard
library's: each ``submit`` or ``start`` captures the caller's context (every
store, the span, every `contextvars` variable), the work runs in it, and the
pool thread keeps nothing of it afterwards. `run_in_executor` is
``loop.run_in_executor`` with the same promise. ``import threadline`` offers
the same three names::

    with tl.ThreadPoolExecutor() as pool:
        pool.submit(work).result()

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._boundary.threads import Thread as Thread
from ._boundary.threads import ThreadPoolExecutor as ThreadPoolExecutor
from ._boundary.threads import run_in_executor as run_in_executor

__all__ = ["Thread", "ThreadPoolExecutor", "run_in_executor"]
