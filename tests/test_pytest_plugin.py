"""The pytest plugin as users run it: pytest itself (pytester), the plugin by entry point."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

LEAKY = """
import concurrent.futures
import threading

import pytest
import threadline as tl


def job():
    return tl.request.get()


@pytest.mark.threadline_no_lost_context
def test_leaky_pool():
    with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="r"):
        pool.submit(job).result()  # LEAK-POOL


def test_leaky_thread(threadline_lost_context):
    with tl.request.scope(request_id="r"):
        thread = threading.Thread(target=job)
        thread.start()  # LEAK-THREAD
    thread.join()


@pytest.mark.threadline_no_lost_context
def test_clean():
    with tl.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="r"):
        assert "r" == pool.submit(job).result()["request_id"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(job).result()  # no scope: nothing to lose


def test_unmarked_leak_is_not_checked():
    with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="r"):
        pool.submit(job).result()
"""

BOUND = """
import concurrent.futures
import threading

import pytest
import threadline as tl

seen = []


def job(*_):
    seen.append(tl.request.get()["request_id"])


@pytest.mark.threadline_no_lost_context
def test_bound_targets():
    with tl.request.scope(request_id="b"):
        snap = tl.snapshot()
        threads = [
            threading.Thread(target=tl.bind(job)),
            threading.Thread(target=snap.run, args=(job,)),
            threading.Thread(target=tl.bind(job), args=(1,)),
        ]
        for thread in threads:
            thread.start()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(tl.bind(job)).result()
            pool.submit(snap.run, job).result()
    for thread in threads:
        thread.join()
    assert ["b"] * 5 == seen
"""

SPANS = """
from opentelemetry import trace
import threadline as tl


def test_first(threadline_spans):
    with trace.get_tracer("t").start_as_current_span("outer"):
        with tl.ThreadPoolExecutor(1) as pool:
            pool.submit(int).result()
    assert ["thread int", "outer"] == [s.name for s in threadline_spans.finished()]
    assert threadline_spans.named("outer").context.span_id == (
        threadline_spans.named("thread int").parent.span_id
    )


def test_second_sees_only_its_own(threadline_spans):
    with trace.get_tracer("t").start_as_current_span("second"):
        pass
    assert ["second"] == [s.name for s in threadline_spans.finished()]
"""


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def line_of(source: str, mark: str) -> int:
    return next(n for n, line in enumerate(source.splitlines(), 1) if mark in line)


def test_leaky_test_fails_naming_the_location(pytester: pytest.Pytester) -> None:
    """A marked test that loses context fails, with file:line and cause; clean ones pass."""
    path = pytester.makepyfile(test_leaks=LEAKY)
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=2, failed=2)
    written = path.read_text()
    pool_line, thread_line = line_of(written, "LEAK-POOL"), line_of(written, "LEAK-THREAD")
    result.stdout.fnmatch_lines(
        [
            "*threadline: context was lost in this test:*",
            f"*{path}:{pool_line}: executor.submit: *plain ThreadPoolExecutor.submit*",
        ]
    )
    result.stdout.fnmatch_lines([f"*{path}:{thread_line}: thread.start: a plain Thread*"])


def test_spans_fixture_gives_the_tests_spans(pytester: pytest.Pytester) -> None:
    """threadline_spans holds the spans of its own test, parents included, and no other's."""
    pytester.makepyfile(test_spans=SPANS)
    pytester.runpytest().assert_outcomes(passed=2)


def test_spans_fixture_sets_a_provider_where_none_is(pytester: pytest.Pytester) -> None:
    """In a fresh process (no provider set yet), the fixture sets an SDK one."""
    pytester.makepyfile(test_spans=SPANS)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_leaky_in_a_fresh_process(pytester: pytest.Pytester) -> None:
    """The plugin loads by its entry point in a fresh pytest too, off until asked."""
    pytester.makepyfile(test_leaks=LEAKY)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2, failed=2)


def test_bound_targets_are_no_loss(pytester: pytest.Pytester) -> None:
    """A Thread or a submit given bind's result or a Snapshot's run keeps the context: no report."""
    pytester.makepyfile(test_bound=BOUND)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


INSTRUMENTED = """
import concurrent.futures

import pytest
import threadline as tl


def job():
    return tl.request.get()["request_id"]


def test_instrument():
    tl.instrument()


@pytest.mark.threadline_no_lost_context
def test_marked():
    with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="m"):
        assert "m" == pool.submit(job).result()


def test_still_instrumented():
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="n"):
            assert "n" == pool.submit(job).result()
    finally:
        tl.uninstrument()
"""


def test_the_marker_leaves_instrument_on(pytester: pytest.Pytester) -> None:
    """The marker's detector, switched off after its test, leaves instrument()'s patches on."""
    pytester.makepyfile(test_instrumented=INSTRUMENTED)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=3)
