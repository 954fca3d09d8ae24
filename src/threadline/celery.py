"""Celery: the request's context (stores, trace, baggage) in task messages, restored by workers.

`setup` connects Celery's signals to the messaging core (`threadline._messaging`):
each publish writes the carrier into the message headers under a PRODUCER
span; each execution runs in the context read strictly from them, under a
CONSUMER span that is a child of the publisher's. What stays here is what
only Celery has: its signals, eager tasks, retries, time limits, prefork
children and worker shutdown. Beside OpenTelemetry's Celery instrumentation,
its spans are continued, never doubled.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import celery
import kombu
from celery import Celery, signals
from celery.exceptions import TimeLimitExceeded, WorkerLostError
from celery.utils.dispatch import Signal
from opentelemetry.trace import get_current_span

from ._boundary.coexistence import contrib_after, contrib_loaded, is_contrib
from ._boundary.far_side import configure_like_parent, flush_tracing
from ._core import lifecycle
from ._core.context import get_current
from ._core.drops import record_drop
from ._messaging import headers as _headers
from ._messaging.consume import Processing, report_processing
from ._messaging.publish import Unacked, publish
from ._messaging.semconv import Operation

if TYPE_CHECKING:
    from celery import Task
    from opentelemetry.trace import SpanContext

__all__ = ["BOUNDARY", "RETRY_OF_HEADER", "setup"]

BOUNDARY = "celery"
"""The ``threadline.boundary`` attribute of Celery's PRODUCER and CONSUMER spans."""

RETRY_OF_HEADER = _headers.RETRY_OF_HEADER
"""The message header that names, as a traceparent, the execution a retry follows."""

_STATE = "_threadline"  # the attribute of a task's request that holds its execution's state
_publishing = Unacked()
# The task ids each thread is sending right now (inside `send_task`): failed if the send raises.
_sending = threading.local()
_SENDS_ENDED = "_threadline_ends_failed_publishes"
# The main process of a prefork worker, by task id: to report a task whose child was killed
# (its hard time limit, SIGKILL from the OOM killer).
_received: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
# Frames of these are passed over when hooks name the line that published a task.
_LIBRARIES = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (celery, kombu))


def setup(app: Celery) -> None:
    """Carry the context through every task *app*'s processes publish and execute.

    Call it where the app is made, so that the publishers and the workers
    (each prefork child too) run it. A task published inside a scope carries
    the stores, the trace and the baggage; the worker restores exactly that
    around the task, and nothing of it afterwards. Malformed, oversized or
    non-text carrier headers are dropped whole, counted and reported, and the
    task runs without them. A store value that cannot cross is counted as
    ``baggage.outbound_invalid`` and the task goes without baggage (a Celery
    signal cannot raise into ``apply_async``). Each publish and each
    execution is a lifecycle-hook resource (``message.publish``,
    ``message.process``). Workers flush their spans before a prefork child
    exits and at worker shutdown. A publish that fails (the broker is down)
    ends its PRODUCER span failed; a task whose prefork child was killed
    (a hard time limit, an OOM kill) has its CONSUMER span made, failed, in
    the worker's main process. Calling it again changes nothing.
    """
    for hook, receiver in _RECEIVERS:
        hook.connect(receiver, weak=False, dispatch_uid=f"threadline.{receiver.__name__}")
    # Celery signals no failed publish: the send raises out of `send_task`, where every
    # publish of the app (delay, apply_async, canvas, retries) goes through.
    send_task = app.send_task
    if not getattr(send_task, _SENDS_ENDED, False):
        app.send_task = _ending_failed_publishes(send_task)


def _ending_failed_publishes(send_task: Any) -> Any:
    @functools.wraps(send_task)
    def send(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_sending, "ids", None)
        sent: list[object] = []
        _sending.ids = sent
        try:
            return send_task(*args, **kwargs)
        except BaseException as error:
            for task_id in sent:
                _publishing.fail(task_id, error)
            raise
        finally:
            _sending.ids = outer

    setattr(send, _SENDS_ENDED, True)
    return send


def _operation(name: str, task_id: object, delivery: object) -> Operation:
    """A task's names; *delivery*: its routing key, or the delivery info that holds it."""
    queue = delivery.get("routing_key") if isinstance(delivery, dict) else delivery
    return Operation(
        BOUNDARY,
        queue if isinstance(queue, str) else None,
        task_id if isinstance(task_id, str) else None,
        target=name,
        attributes={"celery.task_name": name},
    )


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
    handoff = publish(
        headers,
        functools.partial(_operation, name, task_id, routing_key),  # made if a span is
        other_makes_it=_contrib_after_us(signals.before_task_publish, _before_publish),
        retry_of=_retry_of(task_id),
        where=_publisher_line,
    )
    _publishing.add(task_id, handoff)
    sending = getattr(_sending, "ids", None)
    if sending is not None:
        sending.append(task_id)


def _after_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    _publishing.ack(headers.get("id") if isinstance(headers, dict) else None)


def _retry_of(task_id: object) -> SpanContext | None:
    """A task retrying itself: its execution's span, for the next attempt's link."""
    processing = _processing(celery.current_task)  # a proxy, read at publish time
    if processing is None or celery.current_task.request.id != task_id:
        return None
    return get_current_span(processing.context).get_span_context()


def _publisher_line() -> str:
    return lifecycle.location(1, skip=_LIBRARIES)


# --------------------------------------------------------------------------- execute


def _prerun(task: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    if task is None:
        return
    request = task.request
    eager = request.is_eager  # runs in the caller's own context
    processing = Processing(
        None if eager else vars(request),  # the message headers are the request's attributes
        functools.partial(_operation, task.name, task_id, request.delivery_info),
        context=get_current() if eager else None,
        retry=_retries(request) >= 1,
        other_makes_it=_contrib_after_us(signals.task_prerun, _prerun),
        where=_task_line(task) if lifecycle.active else None,
        # Another instrumentation's postrun may have put back the context from before
        # both already. Without one, the worker's context from before the task is put
        # back whatever the task left attached (a span it never detached).
        only_if_current=_contrib_restores(),
    )
    processing.begin()
    setattr(request, _STATE, (processing, time.monotonic()))


def _retries(request: Any) -> int:
    """The request's ``retries`` header; a value that is no count is dropped (counted), as 0."""
    retries = getattr(request, "retries", None)
    if retries is None:
        return 0
    if type(retries) is int and retries >= 0:
        return retries
    record_drop("retries.invalid", f"a task's retries header is not a count: {retries!r:.64}")
    return 0


def _contrib_restores() -> bool:
    """Whether OpenTelemetry's Celery receivers run here (they restore the context themselves)."""
    if not contrib_loaded("celery"):
        return False
    for _, receiver in signals.task_postrun.receivers:
        target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
        if is_contrib(target, "celery"):
            return True
    return False


def _processing(task: Task | None) -> Processing | None:
    """The processing of *task*'s current execution in this worker, if it began here."""
    execution = getattr(getattr(task, "request", None), _STATE, None)
    return execution[0] if execution is not None else None


def _task_line(task: Task) -> str:
    code = getattr(getattr(task.run, "__func__", task.run), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else task.name


def _failure(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    processing = _processing(sender)
    if processing is not None and processing.span is not None and exception is not None:
        processing.fail(exception)
    elif isinstance(exception, (TimeLimitExceeded, WorkerLostError)) and sender and task_id:
        _report_killed(sender, task_id, exception)


def _retry(sender: Task | None = None, reason: object = None, **_: Any) -> None:
    processing = _processing(sender)
    if processing is not None and processing.span is not None:
        processing.span.set_attribute("celery.retry", True)
        if isinstance(reason, BaseException):
            processing.fail(reason)


def _postrun(task: Task | None = None, state: object = "", **_: Any) -> None:
    request = getattr(task, "request", None)
    execution: tuple[Processing, float] | None = getattr(request, _STATE, None)
    if execution is None:
        return
    delattr(request, _STATE)
    processing, started = execution
    if processing.span is None or state is not None:
        processing.end()
    # No outcome: the task was cut short, by the SystemExit a prefork child's
    # SIGTERM handler raises (a hard time limit, a cold shutdown).
    elif _hard_limit_passed(task, request, started):
        processing.end(end_span=False)  # the main process reports it: one span, not two
    else:
        processing.end(sys.exc_info()[1] or SystemExit())


# --------------------------------------------------------------------------- time limits


def _hard_limit_passed(task: Any, request: Any, started: float) -> bool:
    """Whether the execution has run for its hard time limit, if it has one."""
    limits = getattr(request, "timelimit", None)
    hard = limits[0] if isinstance(limits, (list, tuple)) and limits else None
    hard = hard or getattr(task, "time_limit", None) or task.app.conf.task_time_limit
    if not isinstance(hard, (int, float)):
        return False
    return time.monotonic() - started >= hard


def _received_request(request: Any = None, **_: Any) -> None:
    task_id = getattr(request, "id", None)
    if isinstance(task_id, str):
        _received[task_id] = request


def _report_killed(task: Task, task_id: str, error: BaseException) -> None:
    """The prefork child that ran the task was killed: its CONSUMER span is made here, failed.

    A hard time limit (`TimeLimitExceeded`) or any other death (`WorkerLostError`);
    the span is a child of the message's PRODUCER span.
    """
    # Celery (5.5+) sends task_failure twice for a hard time limit: report it once
    request = _received.pop(task_id, None)
    headers = getattr(request, "request_dict", None)
    if not isinstance(headers, Mapping):
        return
    started = getattr(request, "time_start", None)
    start_time = int(started * 1e9) if isinstance(started, float) else None
    names = _operation(task.name, task_id, headers.get("delivery_info"))
    report_processing(headers, names, error, start_time)


# --------------------------------------------------------------------------- worker life


# A prefork child traces as the worker does. Told to stop (a cold shutdown, a hard
# time limit), it gets SIGTERM: billiard's handler raises SystemExit into the task,
# and the child's exit sends worker_process_shutdown, where it exports what it finished.
def _process_init(**_: Any) -> None:
    configure_like_parent()


def _flush(**_: Any) -> None:
    flush_tracing()


def _contrib_after_us(hook: Signal, ours: Any) -> bool:
    """Whether OpenTelemetry's receiver of *hook* runs after ours; ours then moves behind it."""
    if not contrib_after(ours, (receiver for _, receiver in hook.receivers), "celery"):
        return False
    hook.disconnect(ours, dispatch_uid=f"threadline.{ours.__name__}")
    hook.connect(ours, weak=False, dispatch_uid=f"threadline.{ours.__name__}")
    return True  # the order is fixed for the next message; this one gets its span only


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
