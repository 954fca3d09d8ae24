"""The live view of a service's requests in flight (docs/live.md).

An aiohttp service serves ``/orders/{order}``: each request starts a task, a
pool job, a child process and an outgoing call to ``/stock``, and waits.
While three such requests are in flight, the program draws them the way
``threadline top URL --once`` does, then lets them finish and checks that
nothing was left behind (`threadline.live.leaks`). It exits 1 if the view
did not show the three requests with what each made.

``--hold``: print the view's URL and keep the requests in flight until
standard input closes (how the docs' screenshots are taken).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
from aiohttp import web

import threadline as tl
import threadline.aiohttp as tla
import threadline.subprocess as tls
from threadline import live
from threadline.cli import main as threadline_command

release = asyncio.Event()


async def stock(request: web.Request) -> web.Response:
    await release.wait()
    return web.Response(text="in stock")


async def order(request: web.Request) -> web.Response:
    recount = asyncio.create_task(release.wait())  # a task
    child = tls.Popen(  # a child process
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    loop = asyncio.get_running_loop()
    with tl.ThreadPoolExecutor(1) as pool:
        job = loop.run_in_executor(pool, sum, range(1000))  # a pool job, done at once
        async with aiohttp.ClientSession(trace_configs=[tla.trace_config()]) as session:
            stock_url = f"{request.url.origin()}/stock"
            async with session.get(stock_url) as answer:  # an outgoing call
                await answer.text()
        await asyncio.gather(recount, job)
    assert child.stdin is not None
    child.stdin.close()
    await asyncio.to_thread(child.wait)
    return web.Response(text=f"order {request.match_info['order']} done")


async def main(hold: bool) -> int:
    app = web.Application()
    tla.setup(app)
    app.router.add_get("/orders/{order}", order)
    app.router.add_get("/stock", stock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    with live.serve() as view:  # the view of this process, on a free loopback port
        async with aiohttp.ClientSession() as client:
            calls = []
            for number in (1, 2, 3):
                headers = {"X-Request-ID": f"order-{number}"}
                calls.append(
                    asyncio.create_task(client.get(f"{url}/orders/{number}", headers=headers))
                )
                await asyncio.sleep(0.2)
            while sum(r["running"] for r in live.snapshot()["requests"]) < 9:  # type: ignore[union-attr]  # noqa: ASYNC110 - polling the view, as a person watching does
                await asyncio.sleep(0.05)

            if hold:
                print(view.url, flush=True)
                await asyncio.to_thread(sys.stdin.read)
            else:
                await asyncio.to_thread(threadline_command, ["top", view.url, "--once"])
            in_flight = live.snapshot()["requests"]

            release.set()
            for call in calls:
                async with await call as answer:
                    assert answer.status == 200, answer.status
        left = live.leaks()
    await runner.cleanup()

    orders = [r for r in in_flight if r["name"] == "GET /orders/{order}"]  # type: ignore[index]
    made = [{res["type"] for res in r["resources"]} for r in orders]  # type: ignore[index]
    expected = {"task", "subprocess", "thread.job", "http.client"}
    if [r["request_id"] for r in orders] != ["order-1", "order-2", "order-3"]:  # type: ignore[index]
        print("the view did not show the three orders, oldest first", file=sys.stderr)
        return 1
    if any(kinds != expected for kinds in made) or left:
        print(f"unexpected: {made} {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(hold="--hold" in sys.argv)))
