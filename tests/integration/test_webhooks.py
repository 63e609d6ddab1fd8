"""Webhooks: every event POSTed at least once, in feed order, signed; a failing receiver is
retried until it answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime

import msgspec

from slots_service import booking, leaving
from slots_service.config import Settings
from slots_service.models import BookingIn, CancelIn, PersonIn
from tests.conftest import OFFICE_ID, SERVICE_ID
from tests.integration.helpers import WebhookReceiver, prepare_catalog, webhook_sender

NOW = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
SECRET = "webhook-secret"


async def test_events_are_delivered_signed_and_retried(settings: Settings) -> None:
    receiver = WebhookReceiver(fail_first=1)
    async with webhook_sender(settings, receiver, SECRET) as rt:
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
        await leaving.cancel(rt, created["id"], CancelIn(by="person", reason="x"), NOW)
        for _ in range(200):  # the sender polls; the first attempt fails and is retried
            if len(receiver.received) >= 2:
                break
            await asyncio.sleep(0.05)
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
