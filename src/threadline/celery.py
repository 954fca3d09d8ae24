"""Celery: the request's context (stores, trace, baggage) in task messages, restored by workers.

`setup` connects Celery's signals: each publish writes the carrier into the
message headers, in the configured formats (the message may reach a consumer
that is not threadline), under a PRODUCER span; each execution restores the
context strictly from those headers, under a CONSUMER span that is a child of
the publisher's. Beside OpenTelemetry's Celery instrumentation, its spans are
continued, never doubled.

.. versionadded:: 0.1
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from celery import Celery, signals
from celery.exceptions import TimeLimitExceeded
from celery.utils.dispatch import Signal
from opentelemetry.propagators.textmap import Getter, default_setter
from opentelemetry.trace import Link, SpanKind, get_current_span, set_span_in_context

from ._boundary.far_side import configure_like_parent, flush_tracing
from ._core.context import Context, attach, get_current, restore, span_in
from ._core.drops import record_drop
from ._telemetry.spans import (
    INSTRUMENTATION_NAME,
    is_recording,
    provider_set,
    record_error,
    start_boundary_span,
)
from ._wire.carrier import FIELD_LIMITS, TRACEPARENT, extract_context, inject_span
from ._wire.formats import configured_formats, extract_formats, inject_formats

if TYPE_CHECKING:
    from celery import Task
    from opentelemetry.trace import Span

__all__ = ["BOUNDARY", "RETRY_OF_HEADER", "setup"]

BOUNDARY = "celery"
"""The ``threadline.boundary`` attribute of Celery's PRODUCER and CONSUMER spans."""

RETRY_OF_HEADER = "threadline_retry_of"
"""The message header that names, as a traceparent, the execution a retry follows."""

_STATE = "_threadline"  # the attribute of a task's request that holds its execution's state
_CONTRIB = "opentelemetry.instrumentation.celery"
_MAX_OPEN_PUBLISHES = 10_000
_publishing: dict[str, Span] = {}
# The main process of a prefork worker, by task id: to report a task that its time limit killed.
_received: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def setup(app: Celery) -> None:
    """Carry the context through every task *app*'s processes publish and execute.

    Call it where the app is made, so that the publishers and the workers
    (each prefork child too) run it. A task published inside a scope carries
    the stores, the trace and the baggage; the worker restores exactly that
    around the task, and nothing of it afterwards. Malformed, oversized or
    non-text carrier headers are dropped whole, counted and reported, and the
    task runs without them. A store value that cannot cross is counted as
    ``baggage.outbound_invalid`` and the task goes without baggage (a Celery
    signal cannot raise into ``apply_async``). Workers flush their spans
    before a prefork child exits and at worker shutdown. Calling it again
    changes nothing.
    """
    del app  # Celery's signals are process-wide; the app is the caller's anchor
    for hook, receiver in _RECEIVERS:
        hook.connect(receiver, weak=False, dispatch_uid=f"threadline.{receiver.__name__}")


# --------------------------------------------------------------------------- publish


def _before_publish(
    sender: str | None = None,
    headers: dict[str, Any] | None = None,
    routing_key: str | None = None,
    **_: Any,
) -> None:
    if not isinstance(headers, dict):  # protocol 1 has no message headers of its own
        return
    task_id, name = headers.get("id"), headers.get("task") or sender or "unknown"
    context = get_current()
    span = None
    if _contrib_after_us(signals.before_task_publish, _before_publish):
        pass  # its PRODUCER span comes next: no second one
    elif _foreign_span(context, "PRODUCER") is None and is_recording():
        span = start_boundary_span(
            BOUNDARY,
            f"send {name}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes("send", name, task_id, routing_key),
        )
        context = set_span_in_context(span, context)
    inject_formats(headers, default_setter, context, configured_formats())
    _note_retry(headers, task_id)
    if span is not None and isinstance(task_id, str):
        if len(_publishing) >= _MAX_OPEN_PUBLISHES:  # publishes that failed never came back
            _publishing.pop(next(iter(_publishing))).end()
        _publishing[task_id] = span


def _after_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    task_id = headers.get("id") if isinstance(headers, dict) else None
    span = _publishing.pop(task_id, None) if isinstance(task_id, str) else None
    if span is not None:
        span.end()


def _note_retry(headers: dict[str, Any], task_id: object) -> None:
    """A task retrying itself: name its execution's span, for the next one's link."""
    from celery import current_task  # noqa: PLC0415 - a proxy, read at publish time

    request = getattr(current_task, "request", None)
    state = getattr(request, _STATE, None)
    if state is not None and getattr(request, "id", None) == task_id:
        span_context = get_current_span(state.context).get_span_context()
        if span_context.is_valid:
            inject_span(lambda _, value: headers.__setitem__(RETRY_OF_HEADER, value), span_context)


def _attributes(operation: str, name: str, task_id: object, destination: object) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "celery",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "celery.task_name": name,
    }
    if isinstance(task_id, str):
        attributes["messaging.message.id"] = task_id
    if isinstance(destination, str) and destination:
        attributes["messaging.destination.name"] = destination
    return attributes


# --------------------------------------------------------------------------- execute


class _Execution:
    """What one execution attached: its context, the token to undo it, its own span if any."""

    __slots__ = ("context", "span", "started", "token")

    def __init__(self, context: Context, token: Token[Context], span: Span | None) -> None:
        self.context, self.token, self.span = context, token, span
        self.started = time.monotonic()


class _RequestHeaders(Getter[Any]):
    """Reads a task request's message headers: text only, threadline's fields within limits."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            return None
        if not isinstance(value, str):
            record_drop(f"{key}.not_text", f"a {type(value).__name__} in the {key} header")
            return None
        limit = FIELD_LIMITS.get(key)
        if limit is not None and len(value) > limit:
            record_drop(f"{key}.too_large", f"{len(value)} characters in the {key} header")
            return None
        return [value]

    def keys(self, carrier: Any) -> list[str]:
        return []


_headers = _RequestHeaders()


def _prerun(task: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    if request.is_eager:  # run in the caller's own context
        context = get_current()
    else:
        context = extract_formats(request, _headers, configured_formats())
    outer = _foreign_span(get_current(), "CONSUMER")
    span = None
    if outer is not None:
        context = set_span_in_context(outer, context)
    elif not _contrib_after_us(signals.task_prerun, _prerun) and _records(context):
        delivery = getattr(request, "delivery_info", None) or {}
        span = start_boundary_span(
            BOUNDARY,
            f"process {task.name}",
            kind=SpanKind.CONSUMER,
            attributes=_attributes("process", task.name, task_id, delivery.get("routing_key")),
            context=context,
            links=_retry_link(request),
        )
        context = set_span_in_context(span, context)
    setattr(request, _STATE, _Execution(context, attach(context), span))


def _records(context: Context) -> bool:
    """Whether a child of the span in *context* would be recorded (`is_recording`, for any)."""
    span = span_in(context)
    if span is None:
        return False
    if span.is_recording():
        return True
    span_context = span.get_span_context()
    return bool(span_context.is_valid and span_context.trace_flags.sampled) and provider_set()


def _retry_link(request: Any) -> list[Link] | None:
    value = getattr(request, RETRY_OF_HEADER, None)
    if not isinstance(value, str) or int(getattr(request, "retries", 0) or 0) < 1:
        return None
    # the same strict decoder as the carrier's traceparent; a bad one is dropped and counted
    linked = get_current_span(extract_context(lambda f: (value,) if f == TRACEPARENT else ()))
    span_context = linked.get_span_context()
    return [Link(span_context)] if span_context.is_valid else None


def _failure(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    state = getattr(getattr(sender, "request", None), _STATE, None)
    if state is not None and state.span is not None and exception is not None:
        record_error(state.span, exception)
    elif isinstance(exception, TimeLimitExceeded) and sender is not None and task_id:
        _report_killed(sender, task_id, exception)


def _retry(sender: Task | None = None, reason: object = None, **_: Any) -> None:
    state = getattr(getattr(sender, "request", None), _STATE, None)
    if state is not None and state.span is not None:
        state.span.set_attribute("celery.retry", True)
        if isinstance(reason, BaseException):
            record_error(state.span, reason)


def _postrun(task: Task | None = None, state: object = "", **_: Any) -> None:
    request = getattr(task, "request", None)
    execution: _Execution | None = getattr(request, _STATE, None)
    if execution is None:
        return
    delattr(request, _STATE)
    if execution.span is not None and state is None:
        # No outcome: the task was cut short, by the SystemExit a prefork child's
        # SIGTERM handler raises (a hard time limit, a cold shutdown).
        if _hard_limit_passed(task, request, execution.started):
            pass  # the main process reports it (`_report_killed`): one span, not two
        else:
            cut = sys.exc_info()[1]
            record_error(execution.span, cut if cut is not None else SystemExit())
            execution.span.end()
    elif execution.span is not None:
        execution.span.end()
    # Another instrumentation's receiver may have put back the context from before
    # both of ours already: then that is the right one to leave.
    if get_current() is execution.context:
        restore(execution.token)


def _hard_limit_passed(task: Any, request: Any, started: float) -> bool:
    """Whether the execution has run for its hard time limit, if it has one."""
    limits = getattr(request, "timelimit", None)
    hard = limits[0] if isinstance(limits, (list, tuple)) and limits else None
    hard = hard or getattr(task, "time_limit", None) or task.app.conf.task_time_limit
    if not isinstance(hard, (int, float)):
        return False
    return time.monotonic() - started >= hard


# --------------------------------------------------------------------------- time limits


def _received_request(request: Any = None, **_: Any) -> None:
    task_id = getattr(request, "id", None)
    if isinstance(task_id, str):
        _received[task_id] = request


def _report_killed(task: Task, task_id: str, error: BaseException) -> None:
    """The prefork child that ran the task was killed: its CONSUMER span is made here, failed."""
    # Celery (5.5+) sends task_failure twice for a hard time limit: report it once
    request = _received.pop(task_id, None)
    headers = getattr(request, "request_dict", None)
    if not isinstance(headers, Mapping):
        return
    context = extract_formats(_Headers(headers), _headers, configured_formats())
    if not _records(context):
        return
    started = getattr(request, "time_start", None)
    span = start_boundary_span(
        BOUNDARY,
        f"process {task.name}",
        kind=SpanKind.CONSUMER,
        attributes=_attributes(
            "process", task.name, task_id, (headers.get("delivery_info") or {}).get("routing_key")
        ),
        context=context,
        start_time=int(started * 1e9) if isinstance(started, float) else None,
    )
    record_error(span, error)
    span.end()


class _Headers:
    """A request dict read as attributes, as a task's request reads its headers."""

    def __init__(self, headers: Mapping[str, Any]) -> None:
        self._headers = headers

    def __getattr__(self, name: str) -> Any:
        return self._headers.get(name)


# --------------------------------------------------------------------------- worker life


def _process_init(**_: Any) -> None:
    """A prefork child: trace as the worker does.

    A child told to stop (a cold shutdown, a hard time limit) gets SIGTERM;
    billiard's handler raises SystemExit into the task, and the child's exit
    then sends ``worker_process_shutdown``, where it exports what it finished.
    """
    configure_like_parent()


def _flush(**_: Any) -> None:
    flush_tracing()


# --------------------------------------------------------------------------- coexistence


def _foreign_span(context: Context, kind: str) -> Span | None:
    """Another instrumentation's recording span of *kind*, current in *context*: continue it."""
    span: Span | None = span_in(context)
    if span is None or not span.is_recording():
        return None
    span_kind = getattr(span, "kind", None)
    scope = getattr(getattr(span, "instrumentation_scope", None), "name", None)
    if span_kind is None or span_kind.name != kind or scope == INSTRUMENTATION_NAME:
        return None
    return span


def _contrib_after_us(hook: Signal, ours: Any) -> bool:
    """Whether OpenTelemetry's receiver of *hook* runs after ours; ours then moves behind it.

    Its receivers make the span and build the context afresh, so threadline's
    must come after them to continue that span and restore the stores on it.
    The order is fixed for the next message; this one gets its span only.
    """
    found = False
    for _, receiver in hook.receivers:
        target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
        if target is ours:
            found = True
        elif found and getattr(target, "__module__", "").startswith(_CONTRIB):
            hook.disconnect(ours, dispatch_uid=f"threadline.{ours.__name__}")
            hook.connect(ours, weak=False, dispatch_uid=f"threadline.{ours.__name__}")
            return True
    return False


_RECEIVERS = (
    (signals.before_task_publish, _before_publish),
    (signals.after_task_publish, _after_publish),
    (signals.task_received, _received_request),
    (signals.task_prerun, _prerun),
    (signals.task_failure, _failure),
    (signals.task_retry, _retry),
    (signals.task_postrun, _postrun),
    (signals.worker_process_init, _process_init),
    (signals.worker_process_shutdown, _flush),
    (signals.worker_shutdown, _flush),
)
