"""Shared set-up for integration tests that drive the rules without HTTP."""

from __future__ import annotations

from datetime import datetime

import msgspec

from slots_service.clock import TestClock
from slots_service.models import OfficeIn, ServiceIn
from slots_service.runtime import Runtime
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
