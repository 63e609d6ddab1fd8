"""POST /v1/bookings answers the same with its fast path (fast_booking.py) as through the
Litestar route alone: the same requests, in the same order, against two fresh services, one with
SLOTS_BOOKING_FAST_PATH on and one with it off, give the same statuses, headers and bodies (the
random appointment numbers aside). And the fast path really answered the ordinary requests,
while the unusual ones went to the route."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import msgspec
import pytest
from litestar import Litestar

from slots_service import fast_booking, routes
from slots_service.app import create_app
from slots_service.devservers import DevServers
from tests.conftest import (
    ADMIN_KEY,
    NOW,
    OFFICE,
    OFFICE_ID,
    READER_KEY,
    SERVICE,
    SERVICE_ID,
    TUESDAY,
    WRITER_KEY,
    booking_body,
    fresh_database,
    make_settings,
    person,
    set_clock,
)

_ID = re.compile(rb'"(id|booking_id)":"[A-Za-z0-9_-]+"')


@asynccontextmanager
async def service(servers: DevServers, redis_db: int, fast: bool) -> AsyncIterator[Litestar]:
    """A started app of its own (database and Redis database) with the small catalog at NOW,
    in this event loop."""
    redis_url = servers.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    async with fresh_database(servers) as database_url:
        app = create_app(make_settings(database_url, redis_url, booking_fast_path=fast))
        async with app.lifespan():
            transport = httpx.ASGITransport(app=cast(Any, app))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://testserver.local",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ) as client:
                await set_clock(client, NOW)
                assert (await client.put(f"/v1/services/{SERVICE_ID}", json=SERVICE)).is_success
                assert (await client.put(f"/v1/offices/{OFFICE_ID}", json=OFFICE)).is_success
            yield app


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


async def asgi_post(
    app: Any,
    headers: list[tuple[bytes, bytes]],
    parts: list[bytes] | None,
    path: str = "/v1/bookings",
) -> Answer:
    """One POST straight into the app's ASGI callable, as a server hands it on: these exact
    headers (repeats kept), the body in these parts (None: the client leaves after the first),
    then what the app sent back (the random request id left out)."""
    scope = _scope(headers, path)
    messages: list[dict[str, Any]] = []
    if parts is None:
        messages = [{"type": "http.request", "body": b"{", "more_body": True}]
        messages.append({"type": "http.disconnect"})
    else:
        for i, part in enumerate(parts):
            more = i < len(parts) - 1
            messages.append({"type": "http.request", "body": part, "more_body": more})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    kept = [(k, v) for k, v in start["headers"] if k != b"x-request-id"]
    return start["status"], kept, b"".join(m.get("body", b"") for m in bodies)


def _scope(headers: list[tuple[bytes, bytes]], path: str = "/v1/bookings") -> dict[str, Any]:
    """A POST's scope as a server hands it to the app, with these headers after Host."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver.local"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
        "state": {},
    }


def _key(key: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {key}".encode())


def _json(body: Any, *headers: tuple[bytes, bytes], key: str | None = ADMIN_KEY) -> Step:
    """A POST of this JSON body with a Content-Length, in one part."""
    content = msgspec.json.encode(body)
    return _send([_key(key)] if key else [], headers, [content], length=True)


def _send(
    auth: list[tuple[bytes, bytes]],
    headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
    parts: list[bytes] | None,
    length: bool,
    path: str = "/v1/bookings",
) -> Step:
    size = sum(map(len, parts or [b"{"]))
    framing = [(b"content-length", str(size).encode())] if length else []
    given = [*auth, (b"content-type", b"application/json"), *framing, *headers]
    return lambda app: asgi_post(app, given, parts, path)


Step = Callable[[Any], Awaitable[Answer]]


def _thirds(body: Any) -> list[bytes]:
    content = msgspec.json.encode(body)
    third = len(content) // 3
    return [content[:third], content[third : 2 * third], content[2 * third :]]


_others = itertools.count(9_100_000)


def _body(**changes: Any) -> dict[str, Any]:
    """A booking of a person of its own, with these members changed."""
    return {**booking_body(person(next(_others))), **changes}


ALICE = person(9_000_001)
BOB = person(9_000_002)
CAROL = person(9_000_003)
DAVE = person(9_000_004)
ERIN = person(9_000_005)

IDEM = b"idempotency-key"
ADMIN = [_key(ADMIN_KEY)]
# (what, how it is sent, answered by the fast path itself)
STEPS: list[tuple[str, Step, bool]] = [
    ("a booking", _json(booking_body(ALICE), key=WRITER_KEY), True),
    ("the same person again", _json(booking_body(ALICE), key=WRITER_KEY), True),
    ("with a key", _json(booking_body(BOB), (IDEM, b"k-1")), True),
    ("the key again", _json(booking_body(BOB), (IDEM, b"k-1")), True),
    ("the key, another body", _json(booking_body(CAROL), (IDEM, b"k-1")), True),
    ("a key too long", _json(booking_body(CAROL), (IDEM, b"k" * 300)), True),
    ("a key of bytes not UTF-8", _json(booking_body(CAROL), (IDEM, b"k-\xff\xfe")), True),
    ("no key", _json(booking_body(CAROL), key=None), True),
    ("a reader's key", _json(booking_body(CAROL), key=READER_KEY), True),
    ("an unknown office", _json(_body(office_id="nowhere")), True),
    ("a day not open", _json(booking_body(CAROL, date="2027-06-01")), True),
    ("a party too big", _json(booking_body(CAROL, party_size=9)), True),
    ("3.0 seats is 3", _json(booking_body(DAVE, party_size=1.0)), True),
    (
        "trailing slash",
        _send(ADMIN, [], [msgspec.json.encode(booking_body(ERIN))], True, "/v1/bookings/"),
        True,
    ),
    (
        "the body in three parts",
        _send(ADMIN, [], _thirds(booking_body(person(9_000_006), date=TUESDAY)), True),
        True,
    ),
    ("seats as text", _json(_body(party_size="2")), False),
    ("no such member", _json(_body(unknown=1)), False),
    ("malformed JSON", _send(ADMIN, [], [b'{"office_id": '], True), False),
    ("an empty body", _send(ADMIN, [], [b""], True), False),
    ("a JSON list", _json([1, 2]), False),
    ("a body over the limit", _send(ADMIN, [], [b"{" + b" " * 70_000 + b"}"], True), False),
    (
        "no Content-Length (chunked)",
        _send(ADMIN, [], _thirds(booking_body(person(9_000_007), date=TUESDAY)), False),
        False,
    ),
    ("a disconnect in the body", _send(ADMIN, [], None, True), False),
    (
        "a Content-Length that is not a number",
        _send(ADMIN, [(b"content-length", b"1e3")], [b"{}"], False),
        False,
    ),
    (
        "two Authorization headers",
        _send(
            [*ADMIN, _key("x")], [], [msgspec.json.encode(booking_body(person(9_000_008)))], True
        ),
        False,
    ),
    (
        "two Idempotency-Keys",
        _send(
            ADMIN,
            [(IDEM, b"k-2"), (IDEM, b"k-3")],
            [msgspec.json.encode(booking_body(person(9_000_009), date=TUESDAY))],
            True,
        ),
        False,
    ),
]
# Then the window is filled: the crowd's answer.
FILL = [booking_body(person(9_200_000 + n)) for n in range(5)]


def _normal(answer: Answer) -> Answer:
    status, headers, body = answer
    return status, headers, _ID.sub(rb'"\1":"ID"', body)


async def test_the_fast_path_answers_as_the_route_does(
    servers: DevServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = 0
    made = routes.make_booking

    async def counted(*args: Any) -> Any:
        nonlocal answered
        answered += 1
        return await made(*args)

    monkeypatch.setattr(fast_booking, "make_booking", counted)
    async with (
        service(servers, 1, fast=True) as fast,
        service(servers, 2, fast=False) as route,
    ):
        statuses = set()
        for what, send, by_fast_path in STEPS:
            before = answered
            got = _normal(await send(fast))
            expected = _normal(await send(route))
            assert got == expected, what
            statuses.add(got[0])
            # Refused before the body is read (401, 403), or else answered by make_booking:
            # the fast path called it for exactly the requests it kept, whatever their answer.
            if by_fast_path and got[0] not in (401, 403):
                assert answered == before + 1, what
            else:
                assert answered == before, what
        for body in FILL:
            got = _normal(await _json(body)(fast))
            assert got == _normal(await _json(body)(route))
            statuses.add(got[0])
    # The steps covered every kind of answer the comparison is about.
    assert {201, 400, 401, 403, 404, 409, 413, 500} <= statuses, statuses


async def test_a_body_complete_by_its_length_is_answered_without_its_ending_message(
    servers: DevServers,
) -> None:
    """granian gives a body as its bytes with `more_body`, then an empty message that ends it:
    once the Content-Length's bytes are in, the booking is answered without asking for that
    one (a round trip through the server and the event loop)."""
    content = msgspec.json.encode(_body())
    length = (b"content-length", str(len(content)).encode())
    scope = _scope([_key(ADMIN_KEY), (b"content-type", b"application/json"), length])
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": content, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with service(servers, 3, fast=True) as app:
        await cast(Any, app)(scope, receive, send)
    assert sent[0]["status"] == 201
    assert asked == 1
