"""The environment-variable carrier, as OpenTelemetry's specification (Release Candidate) says.

A carrier field's variable name is normalised: ASCII letters upper-cased,
anything outside ``[A-Za-z0-9_]`` becomes ``_``, a leading digit gets a ``_``
in front, an empty name becomes ``_`` (``traceparent`` is ``TRACEPARENT``, b3's
``x-b3-traceid`` is ``X_B3_TRACEID``). Reading looks at normalised names only;
the values are opaque here, the propagator validates them. Nothing spawns a
process to propagate.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING

from opentelemetry.propagators.textmap import Getter, Setter

from ._carrier import FIELDS, extract_context, inject_context
from ._context import Context, get_current
from ._snapshot import Snapshot

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator

__all__ = [
    "ENV_NAMES",
    "EnvironmentGetter",
    "EnvironmentSetter",
    "carrier_names",
    "configured_propagator",
    "env_name",
    "extract_env",
    "inject_env",
]

_OUTSIDE_NAME = re.compile(r"[^A-Za-z0-9_]")
_NORMALISED = re.compile(r"[A-Z_][A-Z0-9_]*")


def env_name(field: str) -> str:
    """Return the environment-variable name of the carrier field *field*."""
    if not field:
        return "_"
    name = _OUTSIDE_NAME.sub("_", field).upper()
    return "_" + name if name[0].isdigit() else name


ENV_NAMES = {field: env_name(field) for field in FIELDS}
"""threadline's own fields: ``TRACEPARENT``, ``TRACESTATE``, ``BAGGAGE``."""


class EnvironmentGetter(Getter[Mapping[str, str]]):
    """An OpenTelemetry `Getter` that reads a carrier field from an environment mapping.

    ``propagator.extract(os.environ, getter=EnvironmentGetter())`` works with
    any propagator: the field name is normalised, the value returned as it is.

    .. versionadded:: 0.1
    """

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        """Return ``[value]`` of the variable for field *key*, or None when it is not set."""
        value = carrier.get(env_name(key))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        """Return the names in *carrier* that a normalised field name can be."""
        return [name for name in carrier if _NORMALISED.fullmatch(name)]


class EnvironmentSetter(Setter[MutableMapping[str, str]]):
    """An OpenTelemetry `Setter` that writes a carrier field into an environment mapping.

    ``propagator.inject(env, setter=EnvironmentSetter())`` then
    ``subprocess.run(cmd, env=env)``.

    .. versionadded:: 0.1
    """

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        """Set the variable for field *key* to *value*."""
        carrier[env_name(key)] = value


def configured_propagator() -> TextMapPropagator | None:
    """Return the application's global propagator when it sends more than threadline's fields.

    None when nothing but W3C Trace Context and Baggage is configured (the
    default, which threadline's own carrier already writes, stores included).
    ``opentelemetry.propagate`` is only consulted once something has loaded it
    or ``OTEL_PROPAGATORS`` is set, so a child pays nothing for it otherwise.
    """
    if "opentelemetry.propagate" not in sys.modules and not os.environ.get("OTEL_PROPAGATORS"):
        return None
    from opentelemetry.propagate import get_global_textmap  # noqa: PLC0415 - see above

    propagator = get_global_textmap()
    # threadline's own propagator, or W3C's two, write nothing the carrier does not
    return None if propagator.fields <= set(FIELDS) else propagator


def carrier_names(configured: TextMapPropagator | None) -> set[str]:
    """Every variable name the carrier may write: threadline's and *configured*'s."""
    names = set(ENV_NAMES.values())
    if configured is not None:
        names.update(env_name(field) for field in configured.fields)
    return names


_SETTER = EnvironmentSetter()
_GETTER = EnvironmentGetter()


def inject_env(env: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the context into *env*: ``TRACEPARENT``, ``TRACESTATE``, ``BAGGAGE`` (with the stores).

    Fields the context does not produce are removed from *env*, so a child
    never inherits a stale trace from this process's own environment. When
    the application configured other propagators (``OTEL_PROPAGATORS``, such as
    ``b3multi``), their fields are written too, under their normalised names.
    """
    ctx = get_current() if context is None else context
    configured = configured_propagator()
    for name in carrier_names(configured):
        env.pop(name, None)
    if configured is not None:
        configured.inject(env, ctx, _SETTER)
    inject_context(lambda field, value: env.__setitem__(ENV_NAMES[field], value), ctx)


def extract_env(env: Mapping[str, str] | None = None, context: Context | None = None) -> Snapshot:
    """Return the context in *env* (default: ``os.environ``), as `extract` does for a dict.

    Never raises for what the environment holds: invalid fields are dropped
    whole, counted and reported. A configured propagator's fields are read too
    and win for the trace.
    """
    source = os.environ if env is None else env

    def get(field: str) -> tuple[str, ...]:
        value = source.get(ENV_NAMES[field])
        return () if value is None else (value,)

    ctx = extract_context(get, context)
    configured = configured_propagator()
    if configured is not None:
        ctx = configured.extract(source, ctx, _GETTER)
    return Snapshot(ctx)
