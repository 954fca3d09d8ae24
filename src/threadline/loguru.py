"""Request, user, trace and span ids on every loguru record: a patched logger.

::

    from loguru import logger
    import threadline.loguru

    logger = threadline.loguru.patch(logger)
    logger.add(sys.stderr, format="{extra[request_id]} {extra[trace_id]} {message}")

Each record's ``extra`` gets ``request_id``, ``user_id`` (from
`threadline.request`), ``trace_id`` and ``span_id`` (the current span's,
lower-case hex), the names `threadline.logging.JSONFormatter` writes; with
``serialize=True`` they are under ``record.extra`` of each JSON line. They
are read where the call is made, so they hold for sinks added with
``enqueue=True`` (run by another thread or process) too. A key ``extra``
holds already (from ``bind``, ``contextualize``) is left as it is: the
caller's value wins. Strings are escaped as the standard-library fields are.
This module does not import loguru.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._core.stores import ContextStore, request
from ._telemetry.log_fields import PLACEHOLDER, ContextFields

if TYPE_CHECKING:
    from loguru import Logger, Record

__all__ = ["ContextPatcher", "patch"]


class ContextPatcher:
    """A loguru patcher that adds the context's fields to ``record["extra"]``.

    Made by `patch`; picklable, so a patched logger can be handed to a
    worker process (loguru's way to share an ``enqueue=True`` sink).
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: ContextFields) -> None:
        self._fields = fields

    def __call__(self, record: Record) -> None:
        """Add the fields to the record's ``extra``, keeping every key it has."""
        self._fields.fill(record["extra"])

    def __reduce__(self) -> tuple[Any, ...]:
        return ContextPatcher, (self._fields,)

    def __repr__(self) -> str:
        return f"threadline.loguru.ContextPatcher({self._fields!r})"


def patch(
    logger: Logger,
    *,
    store: ContextStore | str = request,
    keys: Sequence[str] = (),
    placeholder: str | None = PLACEHOLDER,
) -> Logger:
    """Return *logger* patched so every record it makes carries the context's fields.

    Loguru's ``logger.patch``: the logger given is left as it is, use the
    one returned (loguru's sinks are shared between them).

    Args:
        logger: a loguru logger (``from loguru import logger``), bound or not.
        store: the store (or its name) ``request_id``, ``user_id`` and *keys* come from.
        keys: further store keys to add.
        placeholder: the value of a field with nothing to show (default
            ``"-"``); None leaves such a field out.

    Raises:
        TypeError: *logger* is not a loguru logger, *keys* not a list of
            strings, or *placeholder* not a str or None.
        ValueError: *store* names no store of this process.
    """
    patch_method = getattr(logger, "patch", None)
    if not callable(patch_method):
        raise TypeError(f"threadline.loguru.patch needs a loguru logger, got {logger!r}")
    patched: Logger = patch_method(ContextPatcher(ContextFields(store, keys, placeholder)))
    return patched
