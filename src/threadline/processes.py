"""Worker processes that carry the submitter's context: pools and processes.

The context (every store and the trace) is captured when work is handed over,
sent as the W3C carrier (text) over multiprocessing's IPC, restored around
the work in the worker, and dropped after it. Workers export their finished
spans before they exit. Works under the spawn, forkserver and fork start
methods::

    with tl.ProcessPoolExecutor() as pool:
        pool.submit(work, 1).result()

    ctx = threadline.processes.get_context("spawn")
    ctx.Process(target=work).start()
    with ctx.Pool(4) as pool:
        pool.map(work, range(10))

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._boundary import processes as _processes
from ._boundary.processes import ForkProcess as ForkProcess
from ._boundary.processes import ForkServerProcess as ForkServerProcess
from ._boundary.processes import Pool as Pool
from ._boundary.processes import Process as Process
from ._boundary.processes import ProcessPoolExecutor as ProcessPoolExecutor
from ._boundary.processes import SpawnProcess as SpawnProcess
from ._boundary.processes import ThreadlineContext as ThreadlineContext
from ._boundary.processes import get_context as get_context

__all__ = _processes.__all__
