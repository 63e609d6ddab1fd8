"""create_app(settings) -> Litestar: routes, plugins, lifespan. No business rules."""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)
from prometheus_client import CONTENT_TYPE_LATEST

from . import availability, drain, fast_booking, metrics, openapi, problems, routes
from .auth import Keys
from .bodies import StrictRequest
from .config import Settings
from .db import queries
from .jobs import Scheduler
from .logs import log_request
from .models import Ready
from .runtime import Runtime

log = logging.getLogger(__name__)


@get("/healthz", tags=["operations"], include_in_schema=True)
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@get("/readyz", tags=["operations"])
async def readyz(state: State) -> Response[Ready]:
    """200 when Postgres answers; Redis down is only `degraded`, a Redis that may evict the
    gate's counters (SLOTS_REDIS_ALLOW_EVICTION) `evicting`."""
    rt: Runtime = state.rt
    postgres = "ok"
    if state.shutting_down or drain.draining(rt.settings):
        postgres = "shutting_down"
    else:
        try:
            await rt.pool.fetchval(queries["ping"], timeout=2)
        except Exception:
            postgres = "unreachable"
    redis = "degraded"
    if await rt.counters.ping():
        policy = await rt.counters.eviction_policy()
        redis = "ok" if policy in (None, "noeviction") else "evicting"
    status = 200 if postgres == "ok" else 503
    headers = {"Retry-After": "2"} if status == 503 else None
    return Response(Ready(postgres=postgres, redis=redis), status_code=status, headers=headers)


@get("/metrics", tags=["operations"], media_type=CONTENT_TYPE_LATEST)
async def metrics_text(state: State) -> Response[bytes]:
    """Prometheus text exposition: every worker's counts under `serve` (multiprocess mode)."""
    rt: Runtime | None = getattr(state, "rt", None)
    if rt is not None:
        metrics.observe_pool(rt.pool)
    # Set the header itself: Litestar would append a second charset to a text/* media type,
    # and Prometheus refuses to parse such a Content-Type.
    return Response(
        metrics.exposition(),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


_REQUEST_ID = re.compile(r"[!-~](?:[ -~]{0,126}[!-~])?")
# The booking a response is about: its path names it, or a created booking's body starts so.
_BOOKING_BODY = re.compile(rb'\{"id":"([A-Za-z0-9_-]{1,64})"')
_BOOKING_ROUTES = frozenset({"/v1/bookings"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is 1-128 printable characters, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # 128 random bits as 32 hex digits, a quarter of uuid4's cost


def latency_middleware(app: ASGIApp) -> ASGIApp:
    """Every HTTP request: its latency observed by route template and status, X-Request-ID
    answered, one JSON line logged (logs.log_request)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        marks = cast(dict[str, Any], scope)
        if scope["type"] != ScopeType.HTTP or _OBSERVED in marks:
            await app(scope, receive, send)  # observed already: `booking_entry` handed it on
            return
        marks[_OBSERVED] = True
        started = time.perf_counter()
        status = 500
        rid = request_id(scope)
        booking_id: str | None = None
        observed = False

        def observe() -> None:
            """Count the request once, before its last byte leaves: a caller who has the
            answer finds it counted in the next scrape."""
            nonlocal observed, booking_id
            if observed:
                return
            observed = True
            route = scope.get("path_template") or "unmatched"
            method = str(scope.get("method", "GET"))
            elapsed = time.perf_counter() - started
            metrics.http_latency_of(method, route, status).observe(elapsed)
            if booking_id is None and route.startswith("/v1/bookings/{booking_id"):
                booking_id = str((scope.get("path_params") or {}).get("booking_id", "")) or None
            if method not in _READS and (status < 400 or status >= 500):
                availability.changed()  # it may have moved seats: read back at once
            log_request(method, route, status, elapsed, rid, booking_id)
            rt: Runtime | None = getattr(scope["app"].state, "rt", None)
            if rt is not None:
                metrics.observe_pool_soon(rt.pool)

        # An availability read: answered from the bytes of an identical fresh one, if any
        # (availability.encoded), else its answer's bytes are kept for the next.
        key = _availability_key(scope)
        kept_bytes: tuple[list[tuple[bytes, bytes]], list[bytes]] | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, booking_id
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if kept_bytes is not None and status == 200:
                    kept_bytes[0].extend(headers)
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                if kept_bytes is not None:
                    kept_bytes[1].append(message.get("body", b""))
                if (
                    booking_id is None
                    and status < 300
                    and scope.get("path_template") in _BOOKING_ROUTES
                ):
                    found = _BOOKING_BODY.match(message.get("body", b"")[:96])
                    booking_id = found.group(1).decode() if found else None
                if not message.get("more_body", False):
                    observe()
            await send(message)

        rt: Runtime | None = getattr(scope["app"].state, "rt", None)
        if key is None or rt is None:
            try:
                if rt is not None and rt.settings.booking_fast_path and fast_booking.handles(scope):
                    await fast_booking.answer(app, scope, receive, send_wrapper)
                else:
                    await app(scope, receive, send_wrapper)
            finally:
                observe()  # no answer was sent (the client went away, or a fault)
            return
        version = rt.catalog.version
        try:
            body = availability.encoded(key, await rt.clock.now(), rt.catalog)
        except Exception:  # the clock's store is down: the route answers as it does
            body = None
        if body is not None:
            scope["path_template"] = _AVAILABILITY_ROUTE
            headers = availability.encoded_headers(key)
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 200,
                "headers": headers,
            }
            ending: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": body,
                "more_body": False,
            }
            try:
                await send_wrapper(start)
                await send_wrapper(ending)
            finally:
                observe()
            return
        kept_bytes = ([], [])
        given = availability.serving.set([])
        try:
            await app(scope, receive, send_wrapper)
            answers = availability.serving.get()
            if status == 200 and answers is not None and len(answers) == 1:
                headers, chunks = kept_bytes
                body = b"".join(chunks)
                availability.keep_encoded(key, answers[0], rt.catalog, version, headers, body)
        finally:
            availability.serving.reset(given)
            observe()

    return middleware


_OBSERVED = "slots.observed"  # in a request's scope: latency_middleware has it


def booking_entry(app: Litestar) -> None:
    """POST /v1/bookings, the crowd's request, answered before Litestar's router and exception
    middleware (~10 µs of a core per request, a bare app measured with and without them): a
    request to exactly that path goes to `latency_middleware` and the route's fast path
    (fast_booking.py) as if routed there, and whatever the fast path does not answer itself
    goes to Litestar whole, routed as any request. Every other request goes to Litestar."""
    routed = app.asgi_handler
    handler = next(
        h
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path == fast_booking.ROUTE
        for h in route.route_handlers
        if isinstance(h, HTTPRouteHandler) and "POST" in h.http_methods
    )

    async def fast(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await fast_booking.answer(routed, scope, receive, sending)
        except Exception as exc:  # as Litestar's exception middleware answers it
            if started:
                raise
            await problems.unexpected(exc)(scope, receive, send)

    observed = latency_middleware(fast)

    async def entry(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == ScopeType.HTTP
            and scope["method"] == "POST"
            and scope["path"] == fast_booking.ROUTE
            and not scope.get("root_path")
        ):
            rt: Runtime | None = getattr(app.state, "rt", None)
            if rt is not None and rt.settings.booking_fast_path:
                scope["path_template"] = fast_booking.ROUTE
                scope["path_params"] = {}
                scope["route_handler"] = handler
                await observed(scope, receive, send)
                return
        await routed(scope, receive, send)

    app.asgi_handler = entry


_AVAILABILITY_ROUTE = "/v1/offices/{office_id}/availability"
_AVAILABILITY_PATH = re.compile(r"/v1/offices/[^/]+/availability")


def _availability_key(scope: Scope) -> tuple[str, bytes, bytes] | None:
    """(path, query string, Authorization) of a GET of an office's availability, else None."""
    if scope.get("method") != "GET" or not _AVAILABILITY_PATH.fullmatch(scope["path"]):
        return None
    authorization = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value
            break
    return scope["path"], scope.get("query_string", b""), authorization


def create_app(settings: Settings) -> Litestar:
    if not settings.database_url:
        raise ValueError("DATABASE_URL is required")
    if not settings.pii_key:
        raise ValueError("SLOTS_PII_KEY is required (identity numbers are stored as HMACs)")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = await Runtime.start(settings)
        app.state.rt = rt
        app.state.api_keys = Keys(settings.api_keys)
        app.state.shutting_down = False
        scheduler = Scheduler(rt) if settings.scheduler_in_process else None
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            app.state.shutting_down = True
            if scheduler is not None:
                await scheduler.stop()
            await rt.close()

    openapi_config = OpenAPIConfig(
        title="slots-service",
        version="1.0.0",
        description="Bookable seats of government service offices. See API.md.",
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="API key")
            }
        ),
        security=[{"bearer": []}],
        path="/schema",
    )
    app = Litestar(
        route_handlers=[healthz, readyz, metrics_text, *routes.handlers],
        dependencies=routes.dependencies,
        exception_handlers=problems.handlers,
        request_class=StrictRequest,
        lifespan=[lifespan],
        middleware=[latency_middleware],
        openapi_config=openapi_config,
        request_max_body_size=64 * 1024,
        debug=False,
        logging_config=None,
    )
    openapi.refine(app.openapi_schema)
    booking_entry(app)
    return app


def asgi_app() -> Any:
    """Factory for granian (`slots_service.app:asgi_app`): settings from the environment."""
    from .config import load_settings
    from .logs import configure

    settings = load_settings()
    configure(settings.log_level, settings.log_format, settings.access_log)
    app = create_app(settings)
    # What the imports and the app made so far lives as long as the process: frozen, it is left
    # out of the collector's passes. Its oldest generation's pass over all of it was a pause of
    # ~25 ms every few seconds under load (bench flash p99 35 -> 10 ms, book 50 -> 32 ms).
    gc.collect()
    gc.freeze()
    # A request's objects are freed by their counts; the collector is there for cycles. At the
    # default 700 allocations a pass it ran several times a request, each pass promoting what
    # the requests in flight hold, to be scanned again in the older generations. 5 000: book
    # 4 % more bookings/s, flash's p99 unchanged (20 000: the same gain, flash p99 doubled).
    gc.set_threshold(5_000, 10, 10)
    # granian's threads hand each request, body and answer to the event loop's thread under
    # the GIL, and a thread that asks for it waits up to the switch interval while the loop
    # runs Python. 1 ms instead of 5: sixteen alternating pairs, hot 4 026 -> 4 412 bookings/s
    # (means; higher in 11), book, flash and crowd within noise (0.5 and 0.1 ms: book less).
    sys.setswitchinterval(0.001)
    return app
