"""Subprocesses that carry the context in their environment, with a span for each child.

`child_env` builds a child's environment: the context under OpenTelemetry's
environment-carrier names (``TRACEPARENT``, ``TRACESTATE``, ``BAGGAGE``, the
stores inside the baggage) and the switch for threadline's automatic
bootstrap in Python children. `run` and `Popen` are the `subprocess`
functions with that environment and, when the caller's span records, a span
``"subprocess {program}"`` with the command, pid and exit code.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._boundary.subprocess import Popen as Popen
from ._boundary.subprocess import child_env as child_env
from ._boundary.subprocess import run as run
from ._core.settings import BOOTSTRAP_ENV as BOOTSTRAP_ENV

__all__ = ["BOOTSTRAP_ENV", "Popen", "child_env", "run"]
