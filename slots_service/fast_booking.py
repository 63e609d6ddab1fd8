"""POST /v1/bookings answered from the ASGI scope: the booking route's fast path.

A day's opening is a crowd sending this one request, and most of them get the same `slot_full`.
Litestar's per-request machinery around the handler (its Request and State objects, the guard
call, the kwargs model, the Response and its conversion) was about a sixth of the CPU of each
such answer, and more of a booking, and its router and exception middleware another ~10 µs. So
a request to exactly this path enters before them (`app.booking_entry`), and one that Litestar
routed here by another spelling comes from `latency_middleware` (app.py); both reach `answer`,
which does what the route does with the same parts:

- the caller by its key, and the route's scope (`auth.caller_in`, `auth.allow`), before the
  body is read: a stranger is refused without it;
- the body read from `receive`, decoded strictly into BookingIn (`bodies.strict`);
- `routes.make_booking`, the route's own work: the rules, the gate, Postgres;
- the answer sent by Litestar's ASGIResponse: 201 with the booking, or the refusal's kept
  bytes (`problems.Refusal`), or on a fault the 500 that `problems.on_unexpected` gives.

Everything it does not answer itself goes to `route` (Litestar's routing of it), exactly as
Litestar would have sent it there (whatever was read of the body is handed on again, message
by message): no Content-Length, or one over the body limit; one of the headers it reads given
twice; a body that is empty, malformed or of the wrong shape (the route answers those 400s in
its own words); a disconnect while reading. So the route stays the one definition of the
contract, and the OpenAPI document is the route's.
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress
from typing import Any, cast

from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.serialization import encode_json
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from . import errors, problems
from .auth import allow, caller_in
from .bodies import strict
from .models import BookingIn
from .routes import BOOKING_WRITERS, make_booking

ROUTE = "/v1/bookings"

_READ = (b"authorization", b"content-length", b"idempotency-key")


def handles(scope: Scope) -> bool:
    """Litestar routed this request to POST /v1/bookings."""
    return scope.get("method") == "POST" and scope.get("path_template") == ROUTE


async def answer(route: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a POST /v1/bookings as the route would, or hand it to `route` (the route's ASGI
    app, Litestar's handling of it)."""
    found = _headers(scope)
    length = _length(found.get(b"content-length")) if found is not None else None
    limit = cast(HTTPRouteHandler, scope["route_handler"]).resolve_request_max_body_size()
    if found is None or length is None or (limit is not None and length > limit):
        await route(scope, receive, send)
        return
    state = scope["app"].state
    try:
        caller = caller_in(state.api_keys, scope)
        allow(caller, BOOKING_WRITERS)
    except errors.DomainError as exc:
        await problems.refusal(exc).asgi(scope, receive, send)
        return
    read: list[ReceiveMessage] = []
    body = await _body(receive, read, length)
    data: BookingIn | None = None
    if body:
        with suppress(errors.InvalidRequest):  # the route answers it, in its own words
            data = strict(BookingIn, body)
    if data is None:
        await route(scope, _again(read, receive), send)
        return
    key = found.get(b"idempotency-key")
    try:  # a header's bytes read as Litestar reads them (Latin-1: any byte is a character)
        key_text = None if key is None else key.decode("latin-1")
        made = await make_booking(state.rt, caller, data, key_text)
    except Exception as exc:  # as Litestar's handler of the unexpected answers it
        await problems.unexpected(exc)(scope, receive, send)
        return
    if isinstance(made, problems.Refusal):
        await made.asgi(scope, receive, send)
        return
    created = ASGIResponse(body=encode_json(made), status_code=201, media_type=MediaType.JSON)
    await created(scope, receive, send)


def _headers(scope: Scope) -> dict[bytes, bytes] | None:
    """The headers this path reads, by their lower-case names; None when one is given twice."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            if name in found:
                return None
            found[name] = value
    return found


def _length(value: bytes | None) -> int | None:
    """A Content-Length of plain digits, else None."""
    if value is None or not value.isdigit() or len(value) > 12:
        return None
    return int(value)


async def _body(receive: Receive, read: list[ReceiveMessage], length: int) -> bytes | None:
    """The body of `length` bytes; None when it did not come so (a disconnect, more or less).
    Every message taken from `receive` is kept in `read`.

    Its last byte ends it: granian gives a body as its bytes with `more_body`, then an empty
    message that ends it, one more round trip through the server and the event loop (about
    a millisecond under load) for nothing the Content-Length did not say."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > length:
            return None
        chunks.append(chunk)
        if size == length or not message.get("more_body", False):
            break
    if size != length:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _again(read: list[ReceiveMessage], receive: Receive) -> Receive:
    """`receive` with the messages already taken from it given again first."""
    pending = deque(read)

    async def again() -> Any:
        if pending:
            return pending.popleft()
        return await receive()

    return again
