"""The booking path end to end through the real app."""

import httpx

from tests.conftest import OFFICE_ID, WEDNESDAY, booking_body


async def test_book_then_read(catalog: httpx.AsyncClient) -> None:
    created = await catalog.post("/v1/bookings", json=booking_body())
    assert created.status_code == 201, created.text
    got = await catalog.get(f"/v1/bookings/{created.json()['id']}")
    assert got.json() == created.json()
    availability = await catalog.get(
        f"/v1/offices/{OFFICE_ID}/availability",
        params={"service": "residence-permit-first", "from": WEDNESDAY, "to": WEDNESDAY},
    )
    windows = availability.json()["days"][0]["windows"]
    assert windows[0] == {"start": "09:00", "end": "09:30", "capacity": 3, "remaining": 2}
