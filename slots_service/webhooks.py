"""The webhook sender: every event of the feed POSTed to SLOTS_WEBHOOK_URL at least once, in
feed order, signed, retried with backoff; its cursor kept in Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging

import httpx
import msgspec

from . import metrics
from .db import connection, queries
from .events import feed, parse_cursor
from .runtime import Runtime

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver_webhooks(rt: Runtime, stop: asyncio.Event) -> None:
    """POST every event to SLOTS_WEBHOOK_URL at least once, in feed order, with backoff."""
    url, secret = rt.settings.webhook_url, rt.settings.webhook_secret.get()
    backoff = 1.0
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            try:
                async with connection(rt.pool) as conn:
                    row = await conn.fetchrow(queries["webhook_cursor_get"])
                cursor = f"{row['cursor_xid']}.{row['id']}" if row else None
                batch = await feed(rt, cursor, 100)
                for event_cursor, event in batch:
                    body = _encode(event)
                    response = await client.post(
                        url,
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Slots-Signature": signature(secret, body),
                            "X-Slots-Event-Id": event.id,
                        },
                    )
                    response.raise_for_status()
                    metrics.webhook_deliveries.labels("ok").inc()
                    metrics.webhook_delivered(event.occurred_at, await rt.clock.now())
                    xid, event_id = parse_cursor(event_cursor)
                    async with connection(rt.pool) as conn:
                        await conn.execute(queries["webhook_cursor_set"], xid, event_id)
                backoff = 1.0
                if not batch:
                    metrics.webhook_lag.set(0)
                    await _sleep(stop, 1.0)
            except Exception as exc:
                metrics.webhook_deliveries.labels("error").inc()
                log.warning(
                    "webhook delivery failed (%s), retrying in %.0fs", type(exc).__name__, backoff
                )
                await _sleep(stop, backoff)
                backoff = min(backoff * 2, 60.0)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
