"""The export process: ``python -m threadline._telemetry.export_child ANSWERS FILE NAME ...``.

Started by `export_pipe.PipeSpanExporter` for one application process. It
makes the exporters *NAME* ... as `exporters.configured_exporters` named
them in the application (``file`` writing to *FILE*, an absolute path),
reads frames from stdin (`span_wire`), exports or flushes, and answers each
on the descriptor *ANSWERS*. It reads none of threadline's settings: the
application checked them and hands it what it needs on its command line.
The exporters read their own (``OTEL_EXPORTER_OTLP_*``) from its
environment, which is the application's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value
from opentelemetry.sdk.trace.export import SpanExportResult

from .exporters import export_to_each, flush_each, new_exporter
from .span_wire import OK, READY, read_frame, rebuild

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    """Serve one application process: export each batch it sends, answer each with the result."""
    # It ends when its application closes the pipe, after the last batch: a
    # Ctrl-C or a SIGTERM sent to a whole group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(int(argv[0]), "wb")
    try:
        made = [new_exporter(name, Path(argv[1])) for name in argv[2:]]
    except Exception as exc:  # noqa: BLE001 - said to the application, which exports itself
        answers.write(f"{type(exc).__name__}: {exc}".encode(errors="replace").replace(b"\n", b" "))
        answers.write(b"\n")
        answers.flush()
        return 1
    exporters = [exporter for exporter in made if exporter is not None]
    attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # the exporters' own calls trace nothing
    try:
        answers.write(READY)
        answers.flush()
        while (message := read_frame(sys.stdin.buffer)) is not None:
            kind, body = message
            if kind == "spans":
                ok = export_to_each(exporters, rebuild(body)) is SpanExportResult.SUCCESS
            else:
                ok = flush_each(exporters, body)
            answers.write(OK if ok else b"failed\n")
            answers.flush()
    except OSError:  # the application is gone: nothing to answer
        pass
    finally:
        for exporter in exporters:
            with contextlib.suppress(Exception):
                exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
