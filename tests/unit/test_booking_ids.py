"""Booking ids: 14 symbols of the id alphabet, each drawn from the system's random source."""

from __future__ import annotations

from slots_service.booking import new_booking_id


def test_booking_ids_are_fourteen_symbols_of_the_alphabet() -> None:
    ids = {new_booking_id() for _ in range(5_000)}
    assert len(ids) == 5_000
    assert all(len(i) == 14 and set(i) <= set("23456789ABCDEFGHJKLMNPQRSTUVWXYZ") for i in ids)
