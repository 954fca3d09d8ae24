"""Request ids, user ids and trace ids on every log record.

`ContextFilter` adds the fields to records; `JSONFormatter` writes one JSON
object per line; `install` adds the fields to every record the process makes.
All three work from `logging.config.dictConfig`. A record made outside any
scope or span gets the placeholder (``"-"``), never an exception.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._core.checks import require_names
from ._core.context import Context, context_of_error, get_current
from ._core.safe import safe_value
from ._core.stores import ContextStore, registered_stores, request
from ._core.text import escape_controls, escape_json_line
from ._telemetry.spans import current_trace_ids

__all__ = ["FIELDS", "PLACEHOLDER", "ContextFilter", "JSONFormatter", "install", "uninstall"]

PLACEHOLDER = "-"
FIELDS = ("request_id", "user_id", "trace_id", "span_id")
"""The record attributes threadline sets: two from `threadline.request`, two from the span."""

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    *FIELDS,
}


_SCALARS = frozenset({int, float, bool})


def _store(store: ContextStore | str) -> ContextStore:
    if isinstance(store, ContextStore):
        return store
    if not isinstance(store, str):
        raise TypeError(f"store takes a ContextStore or its name, got {store!r:.80}")
    found = registered_stores().get(store)
    if found is None:
        raise ValueError(f"no ContextStore named {store!r} exists in this process")
    return found


class ContextFilter(logging.Filter):
    """A filter that sets ``request_id``, ``user_id``, ``trace_id`` and ``span_id`` on records.

    Attach it to a handler or logger (in dictConfig: ``{"()":
    "threadline.logging.ContextFilter"}``). It runs in the thread that logs,
    so attach it where that is true: not to a handler behind a
    `~logging.handlers.QueueListener`. It never drops a record.

    Args:
        store: the store (or its name) to read ``request_id`` and ``user_id`` from.
        keys: further store keys to set on records, with the placeholder when
            absent (a list: one ``str`` is a TypeError). They are set also on
            records that have the other fields already (`install` set them),
            unless the record has that attribute of its own.
        placeholder: the value of a field with nothing to show.

    Raises:
        TypeError: an option of the wrong type, named.
        ValueError: *store* names no store of this process.
    """

    def __init__(
        self,
        name: str = "",
        *,
        store: ContextStore | str = request,
        keys: Sequence[str] = (),
        placeholder: str = PLACEHOLDER,
    ) -> None:
        super().__init__(name)
        self._store = _store(store)
        self._extra = require_names("keys", keys, "store keys")
        self._keys = ("request_id", "user_id", *self._extra)
        self._placeholder = _placeholder(placeholder)
        self._last: tuple[weakref.ref[Context], dict[str, Any]] | None = None

    @property
    def store_name(self) -> str:
        """The name of the store the fields come from."""
        return self._store.name

    @property
    def placeholder(self) -> str:
        """The value of a field with nothing to show."""
        return self._placeholder

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the fields on *record* (keeping any it already has) and keep it."""
        if record.__dict__.get("trace_id") is None:  # getattr's miss raises inside: slower
            self.enrich(record)
        elif self._extra:  # made with the fields already (install): add this filter's keys
            missing = [key for key in self._extra if key not in record.__dict__]
            self._set(record.__dict__, missing)
        return True

    def enrich(self, record: logging.LogRecord) -> None:
        """Set the fields on *record* from the current context.

        String values that hold a character that is not printable (CR, LF,
        other controls) are escaped as `repr` escapes them: a value that came
        in as baggage never forges a log line. A record of an exception that
        escaped a request (logged by the server after the request's context
        was gone) gets that request's fields.
        """
        context = None
        if record.exc_info and self._store.get() is None:  # logged after its request was over
            context = context_of_error(record.exc_info[1])
        if context is None:
            record.__dict__.update(self._current_fields())
        else:
            record.__dict__.update(self._fields_of(context))

    def _current_fields(self) -> dict[str, Any]:
        """The fields of the current context, kept for the next record while it stays current.

        A context never changes (a scope makes a new one), so every record of
        one request step has the same fields: made once, copied from then on.
        """
        current = get_current()
        last = self._last
        if last is not None and last[0]() is current:
            return last[1]
        fields = self._fields_of(current)
        try:  # noqa: SIM105 - weakly (the context is not kept alive for it), no with: every line
            self._last = (weakref.ref(current), fields)
        except TypeError:  # (a context that takes no weak reference: not kept)
            pass
        return fields

    def _fields_of(self, context: Context) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        self._set(fields, self._keys, context)
        placeholder = self._placeholder
        fields["trace_id"], fields["span_id"] = current_trace_ids(context) or (
            placeholder,
            placeholder,
        )
        return fields

    def _set(
        self, target: dict[str, Any], keys: Sequence[str], context: Context | None = None
    ) -> None:
        values = self._store.get(context)
        placeholder = self._placeholder
        for key in keys:
            value = values.get(key) if values is not None else None
            if value is None:
                value = placeholder
            elif type(value) is str:
                if not value.isprintable():  # may have come in as baggage
                    value = escape_controls(value)  # never a raw control char
            elif type(value) in _SCALARS:  # (a user id): no walk through the ABCs below
                pass
            elif isinstance(value, (Mapping, list, tuple)):
                value = safe_value(value)  # its strings escaped too, at any depth
            target[key] = value


class JSONFormatter(logging.Formatter):
    """Format each record as one JSON object: time, level, logger, message and the fields.

    Records that did not pass a `ContextFilter` get the fields from the
    current context here. Attributes given through ``extra=`` are kept. A
    mapping (a store value, a dict) is a JSON object, a list or tuple an
    array; other values JSON cannot hold are written as their ``str``. Every
    character that is not printable is a JSON escape, at any depth: one
    record is always one line.
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Any = "%",
        validate: bool = True,
        *,
        store: ContextStore | str = request,
        placeholder: str = PLACEHOLDER,
    ) -> None:
        super().__init__(fmt, datefmt, style, validate)
        self._filter = ContextFilter(store=store, placeholder=placeholder)

    def format(self, record: logging.LogRecord) -> str:
        """Return *record* as a JSON line."""
        self._filter.filter(record)
        data: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            data[field] = getattr(record, field)
        data.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        )
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes C0 controls itself, but leaves DEL, C1 controls,
        # line separators and lone surrogates raw.
        try:
            text = json.dumps(data, default=_json_value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):  # a key JSON cannot hold, a cycle, NaN: said as text
            text = json.dumps(_jsonable(data, 0), default=str, ensure_ascii=False)
        return escape_json_line(text)


def _json_value(value: object) -> object:
    """What JSON cannot hold as it is: a mapping (a store value) as an object, else its str."""
    return dict(value) if isinstance(value, Mapping) else str(value)


_MAX_DEPTH = 32


def _jsonable(value: object, depth: int) -> object:
    """*value* with only what JSON holds: str keys, objects and arrays up to `_MAX_DEPTH` deep."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity: "nan", "inf"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {
            key if isinstance(key, str) else str(key): _jsonable(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, depth + 1) for item in value]
    return str(value)


def _placeholder(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"placeholder takes a str, got {value!r:.80}")
    return value


def _iso_time(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


_installed: tuple[Callable[..., logging.LogRecord], ContextFilter] | None = None
_install_lock = threading.Lock()


def _new_install_lock() -> None:
    # a thread of the parent may have held it at the fork
    global _install_lock  # noqa: PLW0603 - the child's own
    _install_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_install_lock)


def install(*, store: ContextStore | str = request, placeholder: str = PLACEHOLDER) -> None:
    """Set the fields on every record the process makes, whatever handler it goes to.

    Wraps the log record factory (`logging.setLogRecordFactory`), so records
    get their ids where they are made, also those later handled on another
    thread. Calling it again replaces the settings; `uninstall` undoes it.

    It holds in threadline's worker processes too (`threadline.processes`,
    `threadline.ProcessPoolExecutor`). A forked worker has the parent's
    logging as it is. A spawn or forkserver worker whose logging the
    ``initializer=`` did not set up sends its records, with their ids, to the
    parent, whose handlers write them as their own; it logs from the lowest
    level the parent's loggers had when the pool was made.
    """
    _install_over(None, store, placeholder)


def _install_over(
    under: Callable[..., logging.LogRecord] | None,
    store: ContextStore | str = request,
    placeholder: str = PLACEHOLDER,
) -> None:
    """`install`, its factory over *under* (default: the current one), set in one step.

    For the bootstrap: its stand-in factory is replaced by threadline's over
    the one it stood in for, with no moment where another thread meets neither.
    """
    global _installed  # noqa: PLW0603 - the process has one record factory
    with _install_lock:
        if _installed:
            previous = _installed[0]
        else:
            previous = under if under is not None else logging.getLogRecordFactory()
        context_filter = ContextFilter(store=store, placeholder=placeholder)

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            context_filter.enrich(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = (previous, context_filter)
    from ._boundary.far_side import add_worker_setup  # noqa: PLC0415 - multiprocessing, only when used

    add_worker_setup(_worker_setup)


def uninstall() -> None:
    """Put back the record factory that `install` replaced."""
    global _installed  # noqa: PLW0603 - the process has one record factory
    with _install_lock:
        if _installed is not None:
            logging.setLogRecordFactory(_installed[0])
            _installed = None


def _worker_setup(start_method: str) -> Callable[[], None] | None:
    """In the parent, as a pool is made: the step that makes its workers log as this process."""
    installed = _installed
    if installed is None or start_method == "fork":  # a forked worker has it all already
        return None
    context_filter = installed[1]
    return functools.partial(
        _log_like_parent,
        context_filter.store_name,
        context_filter.placeholder,
        _lowest_level(),
        _parent_queue(start_method),
    )


def _lowest_level() -> int:
    loggers = logging.Logger.manager.loggerDict.values()
    levels = [logger.level for logger in loggers if isinstance(logger, logging.Logger)]
    return min([logging.getLogger().level, *(level for level in levels if level)])


def _log_like_parent(store: str, placeholder: str, level: int, queue: Any) -> None:
    from logging.handlers import QueueHandler  # noqa: PLC0415 - in workers only

    install(store=store if store in registered_stores() else request, placeholder=placeholder)
    root = logging.getLogger()
    # the initializer's own set-up, if any, stays as it is (the logs signal's handler is not one)
    if all(getattr(handler, "threadline_signal", False) for handler in root.handlers):
        root.addHandler(QueueHandler(queue))
        root.setLevel(level)


_queues: dict[str, Any] = {}
_queues_lock = threading.Lock()


def _parent_queue(start_method: str) -> Any:
    """The queue workers of *start_method* send records on; a thread hands them on here."""
    with _queues_lock:
        queue = _queues.get(start_method)
        if queue is None:
            import atexit  # noqa: PLC0415 - only once a pool needs it
            import multiprocessing  # noqa: PLC0415 - only once a pool needs it

            queue = multiprocessing.get_context(start_method).Queue()
            listener = threading.Thread(
                target=_hand_on, args=(queue,), name="threadline-worker-logs", daemon=True
            )
            listener.start()
            atexit.register(_stop_handing_on, queue, listener)
            _queues[start_method] = queue
        return queue


def _hand_on(queue: Any) -> None:
    while True:
        try:
            record = queue.get()
        except (EOFError, OSError):  # the queue was closed
            return
        if record is None:
            return
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _stop_handing_on(queue: Any, listener: threading.Thread) -> None:
    # Hand on what the workers sent before exit, waiting for it at most a second.
    try:
        queue.put(None)
    except RuntimeError:  # CPython 3.12.0/3.12.1 start no thread at exit (gh-113964)
        return
    listener.join(1.0)


def _forget_queues() -> None:
    _queues.clear()  # a forked child has no thread handing their records on


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_queues)
