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
from collections.abc import Mapping, MutableMapping

from opentelemetry.propagators.textmap import Getter, Setter

from .._core.context import Context, get_current
from .._core.snapshot import Snapshot
from .carrier import FIELDS, require_carrier
from .formats import configured_formats, extract_formats, inject_formats

__all__ = [
    "ENV_NAMES",
    "EnvironmentGetter",
    "EnvironmentSetter",
    "carrier_names",
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


def carrier_names() -> set[str]:
    """Every variable name the carrier may write: threadline's and the configured formats'."""
    return set(ENV_NAMES.values()) | {env_name(field) for field in configured_formats().fields()}


_SETTER = EnvironmentSetter()
_GETTER = EnvironmentGetter()


def inject_env(env: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the context into *env*: ``TRACEPARENT``, ``TRACESTATE``, ``BAGGAGE`` (with the stores).

    With ``OTEL_PROPAGATORS`` configured, exactly those formats go, under their
    normalised names (b3's ``X_B3_TRACEID``, …). Fields the context does not
    produce are removed from *env*, so a child never inherits a stale trace
    from this process's own environment.

    Raises:
        TypeError: a store value cannot cross a process boundary; the message
            names the store and the key; or *env* is not a mutable mapping.
    """
    require_carrier(env, "pop", "inject_env()")
    ctx = get_current() if context is None else context
    for name in carrier_names():
        env.pop(name, None)
    inject_formats(env, _SETTER, ctx, configured_formats(), strict=True)


def extract_env(env: Mapping[str, str] | None = None, context: Context | None = None) -> Snapshot:
    """Return the context in *env* (default: ``os.environ``), as `extract` does for a dict.

    Never raises for what the environment holds: invalid fields are dropped
    whole, counted and reported. With ``OTEL_PROPAGATORS`` configured, those
    formats are read. An *env* that is not a mapping is a `TypeError`.
    """
    source = os.environ if env is None else env
    require_carrier(source, "get", "extract_env()")
    return Snapshot(extract_formats(source, _GETTER, configured_formats(), context))
