"""A make-up workday opens a weekend day with a weekday's hours; withdrawing it closes the day
again and cancels what was booked there, as the office's doing."""

import httpx

from tests.conftest import OFFICE_ID, SERVICE_ID, booking_body

SATURDAY = "2026-11-28"


async def open_days(client: httpx.AsyncClient) -> list[str]:
    response = await client.get(
        f"/v1/offices/{OFFICE_ID}/availability", params={"service": SERVICE_ID}
    )
    assert response.status_code == 200
    return [d["date"] for d in response.json()["days"]]


async def test_withdrawing_a_make_up_workday_closes_the_day(catalog: httpx.AsyncClient) -> None:
    assert SATURDAY not in await open_days(catalog)
    mark = {"kind": "workday", "as": "mon", "name": "调休"}
    assert (await catalog.put(f"/v1/calendar/{SATURDAY}", json=mark)).status_code == 200
    assert SATURDAY in await open_days(catalog)
    booked = await catalog.post("/v1/bookings", json=booking_body(date=SATURDAY))
    assert booked.status_code == 201

    assert (await catalog.delete(f"/v1/calendar/{SATURDAY}")).status_code == 204
    assert SATURDAY not in await open_days(catalog)
    after = (await catalog.get(f"/v1/bookings/{booked.json()['id']}")).json()
    assert (after["status"], after["cancelled_by"]) == ("cancelled", "office")
    again = await catalog.post("/v1/bookings", json=booking_body(date=SATURDAY))
    assert again.json()["code"] == "not_bookable"
    # marking it again reopens the very same windows
    assert (await catalog.put(f"/v1/calendar/{SATURDAY}", json=mark)).status_code == 200
    assert SATURDAY in await open_days(catalog)
