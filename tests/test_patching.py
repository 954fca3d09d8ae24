"""The patch registry: instrument() and the loss detector, in any order, undone exactly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import multiprocessing.pool
import multiprocessing.process
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import wrapt
from opentelemetry.instrumentation.threading import ThreadingInstrumentor

import threadline as tl
from tests import instrument_jobs as jobs
from threadline import lost
from threadline._patching import registry, stdlib
from threadline._patching.stdlib import _POOL_METHODS, INSTRUMENTED_ATTRIBUTE

PATCHED = [
    (concurrent.futures.ThreadPoolExecutor, "submit"),
    (concurrent.futures.ProcessPoolExecutor, "submit"),
    (threading.Thread, "start"),
    (threading.Thread, "run"),
    (threading.Timer, "start"),
    (threading.Timer, "run"),
    (multiprocessing.process.BaseProcess, "start"),
    *((multiprocessing.pool.Pool, name) for name in _POOL_METHODS),
    (subprocess.Popen, "__init__"),
    (queue.Queue, "_put"),
    (queue.Queue, "_get"),
    (asyncio.Queue, "_put"),
    (asyncio.Queue, "_get"),
    (logging, "_logRecordFactory"),
]
STEPS: dict[str, Callable[[], object]] = {
    "instrument": tl.instrument,
    "uninstrument": tl.uninstrument,
    "enable": lambda: lost.enable(log=False),
    "disable": lost.disable,
    "otel.instrument": lambda: ThreadingInstrumentor().instrument(),
    "otel.uninstrument": lambda: ThreadingInstrumentor().uninstrument(),
}
SWITCHED = {
    "uninstrument": "instrument",
    "disable": "enable",
    "otel.uninstrument": "otel.instrument",
}
"""Which step each undoing step switches off."""
THREADLINE = [("instrument", "uninstrument"), ("enable", "disable")]
WITH_OPENTELEMETRY = [*THREADLINE, ("otel.instrument", "otel.uninstrument")]


def attributes() -> dict[tuple[Any, str], object]:
    """What each patched owner holds under each name (None: nothing of its own)."""
    return {(owner, name): vars(owner).get(name) for owner, name in PATCHED}


def orders(pairs: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """Every order of the calls in which each pair's first comes before its second."""
    steps = [step for pair in pairs for step in pair]
    return [
        order
        for order in itertools.permutations(steps)
        if all(order.index(on) < order.index(off) for on, off in pairs)
    ]


def observe() -> tuple[str, list[str]]:
    """What a plain pool's job sees in a scope, and the causes the detector reports meanwhile."""
    lost.clear()
    items: queue.Queue[str] = queue.Queue()
    with concurrent.futures.ThreadPoolExecutor(1) as pool, tl.request.scope(request_id="seen"):
        seen = pool.submit(jobs.request_id).result()
        items.put("work")
    items.get()  # taken outside the request that put it
    return seen, sorted(report.cause for report in lost.reports())


def expected(on: set[str]) -> tuple[str, list[str]]:
    """What `observe` finds with the steps *on* switched on."""
    causes = []
    if "enable" in on:
        causes.append("queue.consumer")
        if on.isdisjoint({"instrument", "otel.instrument"}):  # both carry the context
            causes.append("executor.submit")
    carried = not on.isdisjoint({"instrument", "otel.instrument"})
    return ("seen" if carried else "-"), sorted(causes)


def expected_layers(on: set[str]) -> tuple[str, ...]:
    """The registry's layers on a patched attribute with the steps *on* switched on."""
    return tuple(
        layer for step, layer in [("instrument", "instrument"), ("enable", "lost")] if step in on
    )


def run_steps(order: tuple[str, ...]) -> None:
    """Run *order*, checking after each step what a plain pool and the detector do."""
    on: set[str] = set()
    for step in order:
        STEPS[step]()
        on ^= {SWITCHED.get(step, step)}
        assert expected(on) == observe(), step
        assert expected_layers(on) == registry.layers(
            concurrent.futures.ThreadPoolExecutor, "submit"
        )


@pytest.fixture(autouse=True)
def _unpatched() -> Iterator[None]:
    """Every test starts and ends with the standard library as it was."""
    before = attributes()
    yield
    while lost.is_enabled():
        lost.disable()
    tl.uninstrument()
    ThreadingInstrumentor().uninstrument()
    lost.clear()
    # OpenTelemetry's unwrap leaves Timer with attributes of its own (its residue, not ours)
    for owner, name in [(threading.Timer, "start"), (threading.Timer, "run")]:
        if before[owner, name] is None and name in owner.__dict__:
            delattr(owner, name)
    assert before == attributes()


class TestInterleaving:
    def test_disable_keeps_instrument_on(self) -> None:
        """enable, instrument, disable: the plain pool still carries the context."""
        lost.enable(log=False)
        tl.instrument()
        lost.disable()
        assert ("seen", []) == observe()
        assert ("instrument",) == registry.layers(concurrent.futures.ThreadPoolExecutor, "submit")

    def test_disable_after_uninstrument_puts_back_the_originals(self) -> None:
        """instrument, enable, uninstrument, disable: every attribute is the original again."""
        before = attributes()
        tl.instrument()
        lost.enable(log=False)
        tl.uninstrument()
        lost.disable()
        assert before == attributes()

    @pytest.mark.parametrize("order", orders(THREADLINE), ids="-".join)
    def test_every_order(self, order: tuple[str, ...]) -> None:
        """In any order each step leaves exactly what is on, and at the end the originals."""
        before = attributes()
        run_steps(order)
        assert before == attributes()

    def test_nested_enable_keeps_one_layer(self) -> None:
        """enable twice around instrument(): one detector layer, gone with the last disable."""
        lost.enable(log=False)
        tl.instrument()
        lost.enable(log=False)
        lost.disable()
        assert ("instrument", "lost") == registry.layers(threading.Thread, "start")
        lost.disable()
        assert ("instrument",) == registry.layers(threading.Thread, "start")


class TestBesideOpenTelemetry:
    @pytest.mark.parametrize("order", orders(WITH_OPENTELEMETRY), ids="-".join)
    def test_every_order_with_its_threading_instrumentation(self, order: tuple[str, ...]) -> None:
        """With OpenTelemetry's wrapt proxy too, in any order: each undo takes out only its own."""
        before = attributes()
        run_steps(order)
        after = attributes()
        for owner, name in PATCHED:
            if owner is not threading.Timer:
                assert before[owner, name] is after[owner, name], name

    @pytest.mark.parametrize(
        "order",
        list(itertools.permutations(["enable", "otel.instrument", "instrument"])),
        ids="-".join,
    )
    def test_threadline_goes_under_the_proxy(self, order: tuple[str, ...]) -> None:
        """Whoever came first, the class holds OpenTelemetry's proxy over threadline's layers."""
        original = concurrent.futures.ThreadPoolExecutor.__dict__["submit"]
        for step in order:
            STEPS[step]()
        submit = concurrent.futures.ThreadPoolExecutor.__dict__["submit"]
        assert isinstance(submit, wrapt.FunctionWrapper)
        watch = submit.__wrapped__
        assert not hasattr(watch, INSTRUMENTED_ATTRIBUTE)  # the detector's, outside
        assert getattr(watch.__wrapped__, INSTRUMENTED_ATTRIBUTE) is True
        assert original is watch.__wrapped__.__wrapped__


class TestRecordFactory:
    def test_a_factory_set_over_the_detectors_stays(self) -> None:
        """A factory the application sets over the detector's stays; the one under it is idle."""
        original = logging.getLogRecordFactory()
        lost.enable(log=False)
        watch = logging.getLogRecordFactory()
        made: list[logging.LogRecord] = []

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            made.append(watch(*args, **kwargs))
            return made[-1]

        logging.setLogRecordFactory(factory)
        try:
            lost.disable()
            assert factory is logging.getLogRecordFactory()
            lost.enable(log=False)  # counting again, through the application's factory
            lost.disable()
            for request_id in ["r1", None]:  # one site, with a request id and without
                with tl.request.scope(request_id=request_id):
                    logging.getLogRecordFactory()("tests.patching", 20, __file__, 1, "m", (), None)
            ours = [record for record in made if record.name == "tests.patching"]
            assert (2, []) == (len(ours), lost.reports())
        finally:
            logging.setLogRecordFactory(original)

    def test_enable_after_the_applications_factory(self) -> None:
        """The detector goes over the factory found, and puts that very one back."""
        original = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return original(*args, **kwargs)

        logging.setLogRecordFactory(factory)
        try:
            lost.enable(log=False)
            assert factory is not logging.getLogRecordFactory()
            assert ("lost",) == registry.layers(logging, "_logRecordFactory")
            lost.disable()
            assert factory is logging.getLogRecordFactory()
        finally:
            logging.setLogRecordFactory(original)


class Owner:
    """A class to patch in the registry's own tests."""

    def method(self) -> list[str]:
        return ["original"]


def layer(tag: str, on: set[str]) -> registry.Patch:
    """A patch of ``Owner.method`` that adds *tag* to the result while *tag* is in *on*."""

    def wrap(inner: Callable[[Any], list[str]]) -> Callable[[Any], list[str]]:
        def method(self: Any) -> list[str]:
            return [tag, *inner(self)] if tag in on else inner(self)

        return method

    return registry.Patch(Owner, "method", wrap)


class TestRegistry:
    @pytest.fixture(autouse=True)
    def _owner_as_it_was(self) -> Iterator[None]:
        original = Owner.__dict__["method"]
        yield
        for name in registry.ORDER:
            registry.remove(name, registry.Patch(Owner, "method", lambda inner: inner))
        Owner.method = original  # type: ignore[method-assign]

    def test_layers_go_in_the_fixed_order(self) -> None:
        """Whichever is added first, "lost" wraps "instrument", which wraps the original."""
        on = {"instrument", "lost"}
        registry.add("lost", layer("lost", on))
        assert ["lost", "original"] == Owner().method()
        registry.add("instrument", layer("instrument", on))
        assert ["lost", "instrument", "original"] == Owner().method()
        assert ("instrument", "lost") == registry.layers(Owner, "method")

    @pytest.mark.parametrize(
        "order", orders([("+instrument", "-instrument"), ("+lost", "-lost")]), ids="".join
    )
    def test_any_interleaving_ends_with_the_original(self, order: tuple[str, ...]) -> None:
        """Each add and remove rebuilds the chain from the original; none left: the original."""
        original = Owner.__dict__["method"]
        on: set[str] = set()
        for step in order:
            name = step[1:]
            if step[0] == "+":
                on.add(name)
                registry.add(name, layer(name, on))
            else:
                registry.remove(name, layer(name, on))
                on.discard(name)
            assert [n for n in ("lost", "instrument") if n in on] + ["original"] == Owner().method()
        assert original is Owner.__dict__["method"]
        assert () == registry.layers(Owner, "method")

    def test_a_subclass_copy_is_patched_and_restored(self) -> None:
        """A subclass entry holding the same function follows; one with its own code is left."""
        original = Owner.__dict__["method"]

        class Copy(Owner):
            method = Owner.method

        class Own(Owner):
            def method(self) -> list[str]:
                return ["own", *super().method()]

        own = Own.__dict__["method"]
        registry.add("instrument", layer("instrument", {"instrument"}))
        assert Copy.__dict__["method"] is Owner.__dict__["method"]
        assert ["own", "instrument", "original"] == Own().method()
        registry.remove("instrument")
        assert (original, original, own) == (
            Owner.__dict__["method"],
            Copy.__dict__["method"],
            Own.__dict__["method"],
        )

    @pytest.mark.parametrize("proxy_first", [True, False])
    def test_layers_go_under_a_wrapt_proxy(self, proxy_first: bool) -> None:
        """A wrapt proxy stays outermost; taking the layers out leaves it over the original."""
        original = Owner.__dict__["method"]
        on = {"instrument", "lost"}

        def proxied(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> list[str]:
            return ["proxy", *wrapped(*args, **kwargs)]

        if proxy_first:
            wrapt.wrap_function_wrapper(Owner, "method", proxied)
        registry.add("lost", layer("lost", on))
        if not proxy_first:
            wrapt.wrap_function_wrapper(Owner, "method", proxied)
        registry.add("instrument", layer("instrument", on))
        proxy = Owner.__dict__["method"]
        assert ["proxy", "lost", "instrument", "original"] == Owner().method()
        registry.remove("lost")
        registry.remove("instrument")
        assert proxy is Owner.__dict__["method"]
        assert original is proxy.__wrapped__

    def test_the_proxys_undo_then_ours(self) -> None:
        """The proxy's owner unwraps first (puts back what it wrapped); then ours: the original."""
        original = Owner.__dict__["method"]
        registry.add("instrument", layer("instrument", {"instrument"}))
        wrapt.wrap_function_wrapper(Owner, "method", lambda w, i, a, k: w(*a, **k))
        registry.add("lost", layer("lost", {"instrument", "lost"}))
        Owner.method = Owner.__dict__["method"].__wrapped__  # type: ignore[method-assign]  # as OpenTelemetry's unwrap
        assert ["lost", "instrument", "original"] == Owner().method()
        registry.remove("instrument")
        registry.remove("lost")
        assert original is Owner.__dict__["method"]

    def test_a_plain_function_over_the_chain_stays(self) -> None:
        """Someone's plain function over a layer stays; the chain under it passes through."""
        on = {"instrument"}
        registry.add("instrument", layer("instrument", on))
        kept = Owner.method

        def plain(self: Owner) -> list[str]:
            return ["plain", *kept(self)]

        Owner.method = plain  # type: ignore[method-assign]
        on.add("lost")
        registry.add("lost", layer("lost", on))  # goes over what the owner holds now
        assert ["lost", "plain", "instrument", "original"] == Owner().method()
        registry.remove("lost", layer("lost", on))
        on.clear()
        registry.remove("instrument")
        assert plain is Owner.__dict__["method"]
        assert ["plain", "original"] == Owner().method()

    def test_a_layer_under_a_plain_function_comes_back_once(self) -> None:
        """Taken out under someone's function and added again: its old wrapper works, no second."""
        on = {"instrument"}
        registry.add("instrument", layer("instrument", on))
        kept = Owner.method

        def plain(self: Owner) -> list[str]:
            return ["plain", *kept(self)]

        Owner.method = plain  # type: ignore[method-assign]
        registry.remove("instrument")
        on.clear()
        assert ["plain", "original"] == Owner().method()
        on.add("instrument")
        registry.add("instrument", layer("instrument", on))
        assert ["plain", "instrument", "original"] == Owner().method()
        assert ("instrument",) == registry.layers(Owner, "method")
        on.add("lost")
        registry.add("lost", layer("lost", on))
        assert ["lost", "plain", "instrument", "original"] == Owner().method()

    def test_our_wrapper_put_back_is_taken_out(self) -> None:
        """The function over the chain undone (ours put back in its place): the original again."""
        original = Owner.__dict__["method"]
        on = {"instrument"}
        registry.add("instrument", layer("instrument", on))
        kept = Owner.method

        def plain(self: Owner) -> list[str]:
            return ["plain", *kept(self)]

        Owner.method = plain  # type: ignore[method-assign]
        registry.remove("instrument")
        on.clear()
        Owner.method = kept  # type: ignore[method-assign]  # its patch undone
        on.add("instrument")
        registry.add("instrument", layer("instrument", on))
        assert ["instrument", "original"] == Owner().method()
        on.clear()
        registry.remove("instrument")
        assert original is Owner.__dict__["method"]

    def test_a_module_global(self) -> None:
        """A module's global (the log record factory) is patched and put back the same way."""
        factory = logging.getLogRecordFactory()

        def wrap(inner: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
            def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = inner(*args, **kwargs)
                record.tagged = True
                return record

            return tagged

        patch = registry.Patch(logging, "_logRecordFactory", wrap)
        registry.add("instrument", patch)
        try:
            assert logging.makeLogRecord({}).tagged is True  # type: ignore[attr-defined]
            assert logging.getLogRecordFactory() is not factory
        finally:
            registry.remove("instrument", patch)
        assert factory is logging.getLogRecordFactory()

    def test_an_unknown_or_repeated_layer_changes_nothing(self) -> None:
        """A layer not in ORDER, or one already on, is a ValueError and nothing moves."""
        original = Owner.__dict__["method"]
        with pytest.raises(ValueError, match="unknown layer 'other'"):
            registry.add("other", layer("other", set()))
        registry.add("instrument", layer("instrument", {"instrument"}))
        patched = Owner.__dict__["method"]
        with pytest.raises(ValueError, match="already"):
            registry.add("instrument", layer("instrument", {"instrument"}))
        assert patched is Owner.__dict__["method"]
        registry.remove("instrument")
        assert original is Owner.__dict__["method"]

    def test_a_wrap_that_raises_adds_nothing(self) -> None:
        """When one patch's wrap raises, the layer is taken off the ones already done."""
        original = Owner.__dict__["method"]
        Owner.other = Owner.method  # type: ignore[attr-defined]

        def broken(inner: Any) -> Any:
            raise RuntimeError("no")

        try:
            with pytest.raises(RuntimeError):
                registry.add(
                    "instrument",
                    layer("instrument", {"instrument"}),
                    registry.Patch(Owner, "other", broken),
                )
            assert original is Owner.__dict__["method"]
            assert () == registry.layers(Owner, "method")
        finally:
            del Owner.other  # type: ignore[attr-defined]

    def test_concurrent_adds_and_removes(self) -> None:
        """Many threads adding and removing both layers at once: the original at the end."""
        original = Owner.__dict__["method"]
        barrier = threading.Barrier(4)
        names = ["instrument", "lost"]

        def toggle(name: str) -> None:
            barrier.wait()
            for _ in range(100):
                with contextlib.suppress(ValueError):  # its other thread added it first
                    registry.add(name, layer(name, set()))
                registry.remove(name)

        threads = [threading.Thread(target=toggle, args=(names[i % 2],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert original is Owner.__dict__["method"]


class _Client:
    """Stands for an integration's client class, which `instrument()` may cover too."""

    def send(self) -> str:
        return "sent"


class TestIntegrationPatches:
    """`register_patches`: an integration's patches come and go with `instrument()`."""

    @pytest.fixture(autouse=True)
    def _no_providers_left(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(stdlib, "_providers", [])

    @staticmethod
    def provider() -> list[registry.Patch]:
        def wrap(inner: Callable[[_Client], str]) -> Callable[[_Client], str]:
            return lambda client: "traced " + inner(client)

        return [registry.Patch(_Client, "send", wrap)]

    def test_instrument_applies_them_and_uninstrument_takes_them_out(self) -> None:
        """A registered provider's patch is on while instrumented; after, the original."""
        original = _Client.__dict__["send"]
        stdlib.register_patches(self.provider)
        tl.instrument()
        try:
            assert "traced sent" == _Client().send()
        finally:
            tl.uninstrument()
        assert _Client.__dict__["send"] is original

    def test_registered_while_instrumented_applies_at_once(self) -> None:
        """A provider registered after `instrument()` patches at once, and only once."""
        tl.instrument()
        try:
            stdlib.register_patches(self.provider)
            stdlib.register_patches(self.provider)
            assert "traced sent" == _Client().send()
        finally:
            tl.uninstrument()
        assert "sent" == _Client().send()
