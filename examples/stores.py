"""Context stores: scope, merge, run, exit, snapshot and bind (docs/stores.md)."""

from __future__ import annotations

import asyncio

import threadline as tl

jobs = tl.ContextStore("jobs")  # your own store, next to threadline's tl.request


async def handler() -> str:
    await asyncio.sleep(0)
    value = tl.request.get()
    assert value is not None
    return f"handled {value['request_id']}"


@tl.bind
def pages():  # type: ignore[no-untyped-def]
    """A bound generator: its scopes stay inside it."""
    with jobs.scope(page=1):
        yield jobs.get()


async def main() -> None:
    with tl.request.scope(request_id="r1", user_id=42):
        print("scope:", dict(tl.request.get() or {}))
        with tl.request.merge(tenant="acme"):
            print("merge:", dict(tl.request.get() or {}))
        with jobs.scope(job="reindex"):
            print("two stores:", dict(tl.request.get() or {}), dict(jobs.get() or {}))
        print("exit:", tl.request.exit(tl.request.get))
        snap = tl.snapshot()
    print("after the block:", tl.request.get())
    print("snapshot.run:", snap.run(lambda: dict(tl.request.get() or {})))
    print("run, async:", await tl.request.run({"request_id": "r2"}, handler))
    try:
        (snap.run(tl.request.get) or {})["user_id"] = 7  # type: ignore[index]
    except TypeError as exc:
        print("immutable:", exc)
    print("bound generator:", [dict(page) for page in pages()], "outside:", jobs.get())


if __name__ == "__main__":
    asyncio.run(main())
