"""ContextStore: scopes, isolation, immutability, async and generators."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import random
import threading

import pytest

import threadline as tl


class TestScope:
    def test_get_is_none_outside_any_scope(self, store: tl.ContextStore) -> None:
        """A store that was never entered has no value."""
        assert store.get() is None

    def test_scope_sets_and_restores(self, store: tl.ContextStore) -> None:
        """Inside the block the value is current; after it the store is empty again."""
        with store.scope(request_id="r1", user_id=42) as value:
            assert {"request_id": "r1", "user_id": 42} == value
            assert value == store.get()
        assert store.get() is None

    def test_scope_takes_a_mapping_and_keywords(self, store: tl.ContextStore) -> None:
        """A positional mapping and keywords combine; keywords win."""
        with store.scope({"a": 1, "b": 2}, b=3):
            assert {"a": 1, "b": 3} == store.get()

    def test_inner_scope_replaces(self, store: tl.ContextStore) -> None:
        """A nested scope hides the outer value whole and gives it back at its end."""
        with store.scope(a=1, b=2):
            with store.scope(c=3):
                assert {"c": 3} == store.get()
            assert {"a": 1, "b": 2} == store.get()

    def test_merge_adds_to_outer(self, store: tl.ContextStore) -> None:
        """merge keeps the outer keys, overrides the ones it names, and ends with its block."""
        with store.scope(a=1, b=2):
            with store.merge(b=20, c=3):
                assert {"a": 1, "b": 20, "c": 3} == store.get()
            assert {"a": 1, "b": 2} == store.get()

    def test_merge_outside_scope_is_scope(self, store: tl.ContextStore) -> None:
        """Without an outer value, merge simply sets its own."""
        with store.merge(a=1):
            assert {"a": 1} == store.get()

    def test_merge_reads_outer_value_at_entry(self, store: tl.ContextStore) -> None:
        """A merge made before an enclosing scope merges with the value current at entry."""
        merge = store.merge(b=2)
        with store.scope(a=1), merge:
            assert {"a": 1, "b": 2} == store.get()

    def test_exception_restores_outer_state(self, store: tl.ContextStore) -> None:
        """An exception leaving nested scopes leaves the outer value intact."""
        with store.scope(a=1):
            with pytest.raises(RuntimeError), store.merge(b=2), store.scope(c=3):
                raise RuntimeError("boom")
            assert {"a": 1} == store.get()
        assert store.get() is None

    def test_scope_cannot_be_entered_twice(self, store: tl.ContextStore) -> None:
        """Re-entering an entered scope is a clear error, not a corrupted stack."""
        scope = store.scope(a=1)
        with scope, pytest.raises(RuntimeError, match="already entered"), scope:
            pass

    def test_bad_values_are_clear_errors(self, store: tl.ContextStore) -> None:
        """Non-mapping values and non-string keys are rejected with a TypeError."""
        with pytest.raises(TypeError, match="must be a mapping"):
            store.scope(["a"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="keys must be non-empty str"):
            store.scope({1: "a"})  # type: ignore[dict-item]


class TestImmutability:
    def test_value_cannot_be_changed(self, store: tl.ContextStore) -> None:
        """Every mutating operation raises a TypeError that says how to change the value."""
        with store.scope(a=1):
            value = store.get()
            assert {"a": 1} == value
            assert value is not None  # for the type checker
            with pytest.raises(TypeError, match=r"immutable.*merge"):
                value["a"] = 2  # type: ignore[index]
            with pytest.raises(TypeError, match="immutable"):
                del value["a"]  # type: ignore[attr-defined]
            with pytest.raises(TypeError, match="immutable"):
                value.update(b=2)  # type: ignore[attr-defined]
            with pytest.raises(TypeError, match="immutable"):
                value.pop("a")  # type: ignore[attr-defined]
            assert {"a": 1} == store.get()

    def test_nested_values_are_frozen(self, store: tl.ContextStore) -> None:
        """Lists become tuples and dicts become frozen mappings, so nothing inside can change."""
        source = {"tags": ["x"], "meta": {"k": [1]}}
        with store.scope(source) as value:
            assert {"tags": ("x",), "meta": {"k": (1,)}} == value
            assert value is not None  # for the type checker
            source["tags"].append("y")  # the caller's own object stays its own
            assert ("x",) == value["tags"]
            assert (1,) == value["meta"]["k"]
            with pytest.raises(TypeError):
                value["meta"]["k"] = 2

    def test_store_name_in_error(self) -> None:
        """The error names the store whose value was touched."""
        named = tl.ContextStore("immutability-named")
        with named.scope(a=1) as value, pytest.raises(TypeError, match="immutability-named"):
            value["a"] = 3  # type: ignore[index]


class TestStores:
    def test_stores_are_independent(self, store: tl.ContextStore) -> None:
        """Two stores never see each other's values."""
        other = tl.ContextStore(store.name + "-other")
        with store.scope(a=1):
            assert other.get() is None
            with other.scope(a=2):
                assert {"a": 1} == store.get()
                assert {"a": 2} == other.get()

    def test_duplicate_name_is_an_error(self, store: tl.ContextStore) -> None:
        """A second store with a taken name is refused, naming it."""
        with pytest.raises(ValueError, match=f"{store.name!r} already exists"):
            tl.ContextStore(store.name)

    @pytest.mark.parametrize("name", ["", "a.b", "with space", "x" * 65, None])
    def test_invalid_name_is_an_error(self, name: object) -> None:
        """Names that could not name members on the wire are refused."""
        with pytest.raises(ValueError, match="name"):
            tl.ContextStore(name)  # type: ignore[arg-type]

    def test_library_store(self) -> None:
        """threadline's own store is called 'request'."""
        assert "request" == tl.request.name


class TestRunAndExit:
    def test_run_sync(self, store: tl.ContextStore) -> None:
        """run calls the function with the value current and returns its result."""
        assert ({"a": 1}, 5) == store.run({"a": 1}, lambda x: (store.get(), x), 5)
        assert store.get() is None

    async def test_run_async_function(self, store: tl.ContextStore) -> None:
        """await store.run(value, async_fn) sees the value inside async_fn, across awaits."""

        async def handler(delay: float) -> object:
            await asyncio.sleep(delay)
            return store.get()

        assert {"a": 1} == await store.run({"a": 1}, handler, 0)
        assert store.get() is None

    async def test_run_async_tasks_do_not_mix(self, store: tl.ContextStore) -> None:
        """Concurrent store.run calls of an async function each see their own value."""

        async def handler(i: int) -> list[object]:
            seen = []
            for _ in range(3):
                await asyncio.sleep(0)
                seen.append(store.get())
            return seen

        results = await asyncio.gather(*(store.run({"i": i}, handler, i) for i in range(50)))
        assert [[{"i": i}] * 3 for i in range(50)] == results

    def test_run_requires_mapping(self, store: tl.ContextStore) -> None:
        """Passing the function first (the Node order) is a clear error."""
        with pytest.raises(TypeError, match="mapping of values first"):
            store.run(print, {"a": 1})  # type: ignore[arg-type]

    def test_exit_runs_outside_the_store(self, store: tl.ContextStore) -> None:
        """exit runs the function with the store empty and gives the value back after."""
        with store.scope(a=1):
            assert store.exit(store.get) is None
            assert {"a": 1} == store.get()

    async def test_exit_async(self, store: tl.ContextStore) -> None:
        """exit works for async functions too."""

        async def read() -> object:
            await asyncio.sleep(0)
            return store.get()

        with store.scope(a=1):
            assert await store.exit(read) is None


class TestIsolation:
    async def test_thousands_of_tasks(self, store: tl.ContextStore) -> None:
        """Thousands of interleaving tasks each see only their own value after every await."""
        rng = random.Random(7)  # noqa: S311 - a repeatable interleaving, not a secret

        async def task(i: int) -> int:
            with store.scope(i=i):
                for _ in range(5):
                    await asyncio.sleep(rng.random() / 1000)
                    assert {"i": i} == store.get()
                    with store.merge(step=_):
                        await asyncio.sleep(0)
                        assert {"i": i, "step": _} == store.get()
            assert store.get() is None
            return i

        assert list(range(2000)) == await asyncio.gather(*(task(i) for i in range(2000)))

    async def test_child_task_inherits_but_cannot_leak(self, store: tl.ContextStore) -> None:
        """A task started in a scope sees it; its own scopes never reach the parent."""

        async def child() -> object:
            seen = store.get()
            with store.merge(child=True):
                await asyncio.sleep(0)
            return seen

        with store.scope(a=1):
            task = asyncio.create_task(child())
            with store.scope(b=2):
                await asyncio.sleep(0)
                assert {"b": 2} == store.get()
            assert {"a": 1} == await task

    def test_threads_do_not_share(self, store: tl.ContextStore) -> None:
        """Plain threads start empty: a store value is per thread of execution."""
        seen: list[object] = []
        with store.scope(a=1):
            thread = threading.Thread(target=lambda: seen.append(store.get()))
            thread.start()
            thread.join()
        assert [None] == seen


def _generator(store: tl.ContextStore):  # type: ignore[no-untyped-def]
    with store.scope(gen=True):
        yield 1
        yield 2


async def _async_generator(store: tl.ContextStore):  # type: ignore[no-untyped-def]
    with store.scope(gen=True):
        yield 1
        await asyncio.sleep(0)
        yield 2


class TestGenerators:
    """Python runs a generator in the context of whoever resumes it (PEP 568 was deferred)."""

    def test_generator_closed_on_another_thread(
        self, store: tl.ContextStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Closing a suspended generator elsewhere raises nothing, logs nothing, changes nothing."""
        # The generator's value stays in the context that resumed it (as
        # documented), so run in a private one that later tests never see.
        contextvars.Context().run(self._close_elsewhere, store, caplog)

    def _close_elsewhere(self, store: tl.ContextStore, caplog: pytest.LogCaptureFixture) -> None:
        gen = _generator(store)
        assert 1 == next(gen)
        seen: list[object] = []

        def close() -> None:
            with store.scope(other=1):
                gen.close()
                seen.append(store.get())
            seen.append(store.get())

        with caplog.at_level(logging.DEBUG):
            thread = threading.Thread(target=close)
            thread.start()
            thread.join()
        assert [{"other": 1}, None] == seen
        assert not [r for r in caplog.records if "detach" in r.getMessage().lower()]

    def test_generator_scope_is_visible_between_items(self, store: tl.ContextStore) -> None:
        """A scope that spans a yield is visible to the consumer until the generator ends."""
        gen = _generator(store)
        next(gen)
        assert {"gen": True} == store.get()
        gen.close()
        assert store.get() is None

    def test_bound_generator_contains_its_scopes(self, store: tl.ContextStore) -> None:
        """tl.bind on a generator function keeps its scopes inside and its creation context."""
        with store.scope(outer=1):

            @tl.bind
            def items():  # type: ignore[no-untyped-def]
                yield store.get()
                with store.scope(inner=2):
                    yield store.get()
                    yield store.get()

            gen = items()
        with store.scope(consumer=3):
            assert {"outer": 1} == next(gen)
            assert {"inner": 2} == next(gen)
            assert {"consumer": 3} == store.get()
            gen.close()
            assert {"consumer": 3} == store.get()

    def test_bound_generator_send_throw_and_return(self, store: tl.ContextStore) -> None:
        """A bound generator keeps the generator protocol: send, throw and its return value."""

        @tl.bind
        def echo():  # type: ignore[no-untyped-def]
            received = yield "ready"
            try:
                yield f"got {received}"
            except KeyError:
                yield "caught"
            return "done"

        gen = echo()
        assert "ready" == next(gen)
        assert "got x" == gen.send("x")
        assert "caught" == gen.throw(KeyError("k"))
        with pytest.raises(StopIteration) as stop:
            next(gen)
        assert "done" == stop.value.value

    async def test_async_generator_closed_by_another_task(
        self, store: tl.ContextStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An async generator finalised by another task raises and logs nothing."""
        agen = _async_generator(store)
        with caplog.at_level(logging.DEBUG):
            assert 1 == await agen.__anext__()
            await asyncio.create_task(agen.aclose())
            del agen
            gc.collect()
            await asyncio.sleep(0)
        assert not [r for r in caplog.records if "detach" in r.getMessage().lower()]

    async def test_bound_async_generator_contains_its_scopes(self, store: tl.ContextStore) -> None:
        """tl.bind on an async generator function keeps its scopes away from the consumer."""
        with store.scope(outer=1):

            @tl.bind
            async def items():  # type: ignore[no-untyped-def]
                yield store.get()
                with store.scope(inner=2):
                    await asyncio.sleep(0)
                    yield store.get()
                    yield store.get()

        seen = []
        with store.scope(consumer=3):
            async for value in items():
                seen.append(value)
                assert {"consumer": 3} == store.get()
        assert [{"outer": 1}, {"inner": 2}, {"inner": 2}] == seen

    async def test_bound_async_generator_early_close(self, store: tl.ContextStore) -> None:
        """Breaking out of a bound async generator closes it inside its own context."""
        closed: list[object] = []

        @tl.bind
        async def items():  # type: ignore[no-untyped-def]
            with store.scope(inner=1):
                try:
                    yield 1
                    yield 2
                finally:
                    closed.append(store.get())

        gen = items()
        async for _ in gen:
            break
        await gen.aclose()
        assert [{"inner": 1}] == closed
        assert store.get() is None
