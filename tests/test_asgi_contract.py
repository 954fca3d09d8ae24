"""The HTTP contract (tests/http_contract.py) for threadline.asgi, under real uvicorn and hypercorn.

Three arrangements a user writes: Starlette with ``app.add_middleware``
under uvicorn, FastAPI with ``setup(app)`` under uvicorn, and any ASGI app
wrapped in ``Middleware(app)`` under hypercorn.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import threadline.asgi as tla
from tests.asgi_servers import AsgiServe
from tests.http_contract import ServerContract, probe

EVERY = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"]


async def _items(request: Request) -> Response:
    return JSONResponse(probe())


async def _status(request: Request) -> Response:
    return Response(status_code=int(request.path_params["code"]))


async def _fail(request: Request) -> Response:
    raise RuntimeError("handler failed")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/items/{item_id}", _items, methods=EVERY),
            Route("/status/{code}", _status),
            Route("/fail", _fail),
        ]
    )


def fastapi_app(**options: Any) -> FastAPI:
    app = FastAPI(**options)

    @app.api_route("/items/{item_id}", methods=EVERY)
    async def items(item_id: str) -> Response:
        return JSONResponse(probe())

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        return Response(status_code=code)

    @app.get("/fail")
    async def fail() -> Response:
        raise RuntimeError("handler failed")

    return app


def header(scope: Any, name: str) -> str | None:
    key = name.lower().encode()
    for field, value in scope["headers"]:
        if field == key:
            return bytes(value).decode("latin-1")
    return None


class AsgiContract(ServerContract):
    logger_name = "threadline.asgi"

    @pytest.fixture(autouse=True)
    def _serve(self, asgi_serve: AsgiServe) -> None:
        self.serve = asgi_serve

    def header_of(self, request: Any, name: str) -> str | None:
        return header(request, name)


class TestStarletteUnderUvicorn(AsgiContract):
    async def start(self, **options: Any) -> str:
        app = starlette_app()
        app.add_middleware(tla.Middleware, **options)
        app.build_middleware_stack()  # Starlette makes its middleware when it first serves
        return await self.serve(app, "uvicorn")


class TestFastAPISetupUnderUvicorn(AsgiContract):
    """FastAPI's own SERVER span is off here (test_asgi.py holds threadline beside it)."""

    async def start(self, **options: Any) -> str:
        app = fastapi_app(telemetry={"tracing": False})
        tla.setup(app, **options)
        return await self.serve(app, "uvicorn")


class TestMiddlewareUnderHypercorn(AsgiContract):
    async def start(self, **options: Any) -> str:
        return await self.serve(tla.Middleware(starlette_app(), **options), "hypercorn")
