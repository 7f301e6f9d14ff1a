"""The application factory: settings, store and tokens in; a FastAPI app out.

The app owns no connection of its own: the caller opens the store (chDB or a server,
`cloud.store.open_store`) and closes it after the server stopped, so tests, `ringtail
cloud api` and `ringtail cloud run` (writer and API in one process on chDB) share one code
path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram

from cloud.api.deps import QueryStore
from cloud.api.routes import audit, devices, health, lineage, live, ops, readings
from cloud.api.settings import ApiSettings
from cloud.store import Store, StoreError

log = logging.getLogger("ringtail.cloud.api")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def create_app(settings: ApiSettings, store: Store, tokens: dict[str, str]) -> FastAPI:
    """`tokens` maps each accepted bearer secret to its name (settings.resolve_tokens)."""
    if not tokens:
        # No token would make every data endpoint unreachable, never open; refuse instead.
        raise ValueError("create_app needs at least one token")
    app = FastAPI(
        title="Ringtail",
        summary="Sensor readings, device registry, lineage and health over ClickHouse",
        version="1",
        # operationIds come from each route's `operation_id`: stable names for generators.
        generate_unique_id_function=lambda route: route.operation_id or route.name,
    )
    app.state.settings = settings
    app.state.store = QueryStore(store)
    app.state.tokens = dict(tokens)
    app.state.registry = registry = CollectorRegistry()
    routers = (devices, readings, lineage, health, audit, ops, live)
    for r in (m.router for m in routers):
        app.include_router(r)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("%s %s: database error: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "database unavailable"}, status_code=503)

    app.add_middleware(_Metrics, registry=registry)
    return app


class _Metrics:
    """Requests and latency per route name, method and status (pure ASGI: no per-request
    task or body buffering). Labels use the route's name, never the path, so cardinality
    stays at the number of routes whatever clients send."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "ringtail_api_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "ringtail_api_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = 500  # unless a response starts: an exception escaping the app is a 500

        async def send_status(message: Any) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            # FastAPI puts the matched APIRoute in the scope; its name is the function's.
            route = getattr(scope.get("route"), "name", "unmatched")
            self.latency.labels(route).observe(time.perf_counter() - t0)
            self.requests.labels(route, scope["method"], str(code)).inc()


def wait_for_store(
    open_store: Callable[[], Store], deadline_s: float, retry_s: float = 0.5
) -> Store:
    """Open the store and run `SELECT 1`, retrying until `deadline_s` has passed; the last
    StoreError is raised then. Startup waits for ClickHouse rather than crash-looping."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            store = open_store()
        except StoreError as e:
            if time.monotonic() >= end:
                raise
            log.warning("waiting for ClickHouse: %s", e)
            time.sleep(retry_s)
            continue
        try:
            store.query("SELECT 1")
            return store
        except StoreError as e:
            store.close()
            if time.monotonic() >= end:
                raise
            log.warning("waiting for ClickHouse: %s", e)
            time.sleep(retry_s)
