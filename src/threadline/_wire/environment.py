"""The environment-variable carrier, as OpenTelemetry's specification (Release Candidate) says.

A carrier field's variable name is normalised: ASCII letters upper-cased,
anything outside ``[A-Za-z0-9_]`` becomes ``_``, a leading digit gets a ``_``
in front, an empty name becomes ``_`` (``traceparent`` is ``TRACEPARENT``, b3's
``x-b3-traceid`` is ``X_B3_TRACEID``). Reading looks at normalised names only;
the values are opaque here, the propagator validates them. Nothing spawns a
process to propagate.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry.propagators.textmap import Getter, Setter

from .._core.context import Context, get_current
from .._core.snapshot import Snapshot
from .carrier import FIELDS, require_carrier
from .formats import configured_formats, extract_formats, inject_formats

__all__ = [
    "ENV_NAMES",
    "EnvironmentGetter",
    "EnvironmentSetter",
    "as_text",
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


class _BytesSetter(Setter[MutableMapping[bytes, bytes]]):
    """Writes a field as `EnvironmentSetter` does, in bytes (into ``os.environb`` or a copy)."""

    def set(self, carrier: MutableMapping[bytes, bytes], key: str, value: str) -> None:
        carrier[env_name(key).encode()] = os.fsencode(value)


_SETTER = EnvironmentSetter()
_BYTES_SETTER = _BytesSetter()
_GETTER = EnvironmentGetter()


def inject_env(
    env: MutableMapping[str, str] | MutableMapping[bytes, bytes], context: Context | None = None
) -> None:
    """Write the context into *env*: ``TRACEPARENT``, ``TRACESTATE``, ``BAGGAGE`` (with the stores).

    With ``OTEL_PROPAGATORS`` configured, exactly those formats go, under their
    normalised names (b3's ``X_B3_TRACEID``, …). Fields the context does not
    produce are removed from *env*, so a child never inherits a stale trace
    from this process's own environment. A bytes environment (``os.environb``
    or a copy of it) gets bytes names and values, its stale bytes fields removed.

    Raises:
        TypeError: a store value cannot cross a process boundary; the message
            names the store and the key; or *env* is not a mutable mapping.
    """
    require_carrier(env, "pop", "inject_env()")
    ctx = get_current() if context is None else context
    # os.environb, or a copy of it: the stale fields are bytes keys, and so are the new ones
    as_bytes = any(isinstance(name, bytes) for name in env)
    for name in carrier_names():
        _discard(env, name, name.encode()) if as_bytes else _discard(env, name)
    setter = _BYTES_SETTER if as_bytes else _SETTER
    inject_formats(env, setter, ctx, configured_formats(), strict=True)


def _discard(env: MutableMapping[Any, Any], *names: str | bytes) -> None:
    for name in names:
        with contextlib.suppress(TypeError):  # os.environb takes bytes names only
            env.pop(name, None)


def as_text(env: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of *env* with its bytes names and values decoded as ``os.environ`` decodes them."""
    if not any(isinstance(name, bytes) for name in env):
        return dict(env)
    return {
        os.fsdecode(name) if isinstance(name, bytes) else name: (
            os.fsdecode(value) if isinstance(value, bytes) else value
        )
        for name, value in env.items()
    }


def extract_env(
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None, context: Context | None = None
) -> Snapshot:
    """Return the context in *env* (default: ``os.environ``), as `extract` does for a dict.

    Never raises for what the environment holds: invalid fields are dropped
    whole, counted and reported. With ``OTEL_PROPAGATORS`` configured, those
    formats are read. An *env* that is not a mapping is a `TypeError`.
    """
    source = os.environ if env is None else env
    require_carrier(source, "get", "extract_env()")
    if source is not os.environ and any(isinstance(name, bytes) for name in source):
        source = as_text(source)  # os.environb, or a copy of it
    return Snapshot(extract_formats(source, _GETTER, configured_formats(), context))
