"""threadline's carrier as an OpenTelemetry `TextMapPropagator`.

Set it as the global propagator and every OpenTelemetry instrumentation that
injects or extracts context (HTTP clients and servers, messaging) carries the
stores too, with threadline's strict parsing::

    from opentelemetry.propagate import set_global_textmap
    from threadline.propagation import ThreadlinePropagator
    set_global_textmap(ThreadlinePropagator())

or, with no code, ``OTEL_PROPAGATORS=threadline``. `EnvironmentGetter` and
`EnvironmentSetter` carry any propagator's fields in environment variables.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._wire.environment import EnvironmentGetter as EnvironmentGetter
from ._wire.environment import EnvironmentSetter as EnvironmentSetter
from ._wire.textmap import ThreadlinePropagator as ThreadlinePropagator

__all__ = ["EnvironmentGetter", "EnvironmentSetter", "ThreadlinePropagator"]
