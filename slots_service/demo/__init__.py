"""Demo offices and services from the Shenzhen guides, loaded by `slots-service dev`."""

from __future__ import annotations

from importlib import resources
from typing import Any

import msgspec

from ..models import OfficeIn, ServiceIn
from ..runtime import Runtime


async def load(rt: Runtime) -> tuple[int, int]:
    """Create or replace the demo catalog; returns (services, offices)."""
    data: dict[str, Any] = msgspec.json.decode(
        resources.files(__package__).joinpath("catalog.json").read_bytes()
    )
    now = await rt.clock.now()
    for service_id, body in data["services"].items():
        await rt.catalog.put_service(service_id, msgspec.convert(body, ServiceIn), now)
    for office_id, body in data["offices"].items():
        await rt.catalog.put_office(office_id, msgspec.convert(body, OfficeIn), now)
    return len(data["services"]), len(data["offices"])
