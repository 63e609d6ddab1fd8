"""Webhooks: every event POSTed at least once, in feed order, signed; a failing receiver is
retried until it answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime

import msgspec

from slots_service import booking
from slots_service.config import Secret, Settings
from slots_service.devservers import free_port
from slots_service.models import BookingIn, CancelIn, PersonIn
from slots_service.runtime import Runtime
from slots_service.webhooks import deliver_webhooks
from tests.conftest import OFFICE_ID, SERVICE_ID
from tests.integration.helpers import prepare_catalog

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
SECRET = "webhook-secret"


class Receiver:
    """A minimal HTTP/1.1 endpoint on loopback that records bodies; fails the first N."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answered = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.answered += 1
                status = (
                    b"503 Service Unavailable" if self.answered <= self.fail_first else b"200 OK"
                )
                if status.startswith(b"200"):
                    self.received.append((headers, body))
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_events_are_delivered_signed_and_retried(settings: Settings) -> None:
    port = free_port()
    receiver = Receiver(fail_first=1)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port)
    rt = await Runtime.start(
        replace(
            settings,
            webhook_url=f"http://127.0.0.1:{port}/hook",
            webhook_secret=Secret(SECRET),
        )
    )
    stop = asyncio.Event()
    sender = asyncio.create_task(deliver_webhooks(rt, stop))
    try:
        await prepare_catalog(rt, NOW)
        body = BookingIn(
            office_id=OFFICE_ID,
            service_id=SERVICE_ID,
            date=datetime(2026, 11, 25).date(),
            start="09:00",
            person=PersonIn(
                id_type="passport", id_number="W12345678", name="W", phone="+8613811112222"
            ),
        )
        created = msgspec.to_builtins(await booking.book(rt, body, NOW, None))
        await booking.cancel(rt, created["id"], CancelIn(by="person", reason="x"), NOW)
        for _ in range(200):  # the sender polls; the first attempt fails and is retried
            if len(receiver.received) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await sender
        await rt.close()
        server.close()
        await server.wait_closed()
    assert receiver.answered >= 3  # one refusal, then both events
    assert [json.loads(b)["type"] for _, b in receiver.received] == [
        "booking.created",
        "booking.cancelled",
    ]
    for headers, raw in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-slots-signature"] == expected
        assert json.loads(raw)["booking"]["id"] == created["id"]
        assert b"W12345678" not in raw
