"""Shared set-up for integration tests that drive the rules without HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

import msgspec

from slots_service.clock import TestClock
from slots_service.config import Secret, Settings
from slots_service.devservers import free_port
from slots_service.models import OfficeIn, ServiceIn
from slots_service.runtime import Runtime
from slots_service.webhooks import deliver_webhooks
from tests.conftest import OFFICE, OFFICE_ID, SERVICE, SERVICE_ID


async def prepare_catalog(rt: Runtime, now: datetime) -> None:
    """The conftest office and service, the clock at `now`, the horizon opened and counted."""
    assert isinstance(rt.clock, TestClock)
    await rt.clock.set(now)
    await rt.catalog.put_service(SERVICE_ID, msgspec.convert(SERVICE, ServiceIn), now)
    office = await rt.catalog.put_office(OFFICE_ID, msgspec.convert(OFFICE, OfficeIn), now)
    await rt.days.ensure_horizon(office, now)
    from slots_service.jobs import reconcile

    await reconcile(rt, now)


class WebhookReceiver:
    """A loopback HTTP/1.1 endpoint for the webhook sender: answers 503 to the first
    `fail_first` requests, then 200, and keeps every body it accepted with its headers."""

    def __init__(self, fail_first: int = 0) -> None:
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


@contextlib.asynccontextmanager
async def webhook_sender(
    settings: Settings, receiver: WebhookReceiver, secret: str = ""
) -> AsyncIterator[Runtime]:
    """The scheduler's webhook sender, running in this loop against `receiver` on loopback;
    yields its runtime."""
    port = free_port()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port)
    rt = await Runtime.start(
        replace(
            settings, webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret=Secret(secret)
        )
    )
    stop = asyncio.Event()
    sender = asyncio.create_task(deliver_webhooks(rt, stop))
    try:
        yield rt
    finally:
        stop.set()
        await sender
        await rt.close()
        server.close()
        await server.wait_closed()
