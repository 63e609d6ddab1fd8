"""The bench's lottery scenario, its pure parts: the crowd, the bots' share, the tally of entry
answers, the verification of a draw from its public record, oversold, the last line."""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from typing import Any

from slots_service.bench.lottery import (
    Answer,
    CrowdShape,
    Drawn,
    label_of,
    metric_sum,
    oversold,
    rank_order,
    share,
    tally_entries,
    verify,
    with_figures,
)

SHAPE = CrowdShape(identities=20, bot_share=0.1, bot_repeats=5)


def test_the_crowd_sends_each_bot_its_repeats_and_each_human_one() -> None:
    order = SHAPE.order(random.Random(1))
    assert SHAPE.bots == 2
    assert len(order) == 2 * 5 + 18
    assert all(order.count(i) == (5 if i < 2 else 1) for i in range(20))
    assert order != sorted(order)  # one random order, bots among humans


def test_the_bots_share_is_of_the_seats_won() -> None:
    assert share([0, 1, 5, 6], SHAPE) == 0.5
    assert share([5, 6, 7, 8], SHAPE) == 0.0
    assert share([], SHAPE) is None
    assert share(iter([1, 7, 8, 9]), SHAPE) == 0.25


def _entered(shape: CrowdShape) -> list[Answer]:
    answers = [Answer(i, "201", f"E{i:03d}", 0.0) for i in range(shape.identities)]
    for i in range(shape.bots):
        answers += [Answer(i, "409 entry_exists", f"E{i:03d}", 0.0)] * (shape.bot_repeats - 1)
    return answers


def test_a_tally_of_one_entry_each_and_repeats_naming_it() -> None:
    tally = tally_entries(_entered(SHAPE), SHAPE)
    assert (tally.accepted, tally.repeats) == (20, 8)
    assert tally.one_each
    assert tally.same_entry
    assert tally.entry_of[3] == "E003"
    assert not tally.others


def test_a_repeat_naming_another_entry_or_a_second_entry_is_caught() -> None:
    wrong = [*_entered(SHAPE), Answer(0, "409 entry_exists", "E005", 0.0)]
    tally = tally_entries(wrong, SHAPE)
    assert tally.one_each
    assert not tally.same_entry
    assert tally.wrong_repeats == [Answer(0, "409 entry_exists", "E005", 0.0)]
    twice = tally_entries([*_entered(SHAPE), Answer(1, "201", "E999", 0.0)], SHAPE)
    assert not twice.one_each
    assert not twice.same_entry
    assert 1 not in twice.entry_of
    missing = tally_entries([a for a in _entered(SHAPE) if a.identity != 7], SHAPE)
    assert not missing.one_each
    other = tally_entries([*_entered(SHAPE), Answer(2, "500 internal_error", None, 0.0)], SHAPE)
    assert other.others == {"500 internal_error": 1}


def _draw(seed: bytes, entries: dict[str, Drawn], capacity: dict[str, int]) -> list[dict[str, Any]]:
    """The listing the rule gives: in HMAC order, the first choice with seats left."""
    left = dict(capacity)
    items = []
    for rank, entry_id in enumerate(rank_order(seed, entries), 1):
        entry = entries[entry_id]
        got = next((c for c in entry.choices if left[c] >= entry.party_size), None)
        if got:
            left[got] -= entry.party_size
        items.append(
            {"rank": rank, "entry_id": entry_id, "status": "won" if got else "lost", "start": got}
        )
    return items


def _example() -> tuple[bytes, dict[str, Drawn], dict[str, int]]:
    rng = random.Random(7)
    starts = ["09:00", "09:30", "10:00"]
    entries = {f"E{n:013d}": Drawn(tuple(rng.sample(starts, rng.randint(1, 3)))) for n in range(40)}
    return secrets.token_bytes(32), entries, dict.fromkeys(starts, 4)


def test_a_draw_verifies_from_its_public_record() -> None:
    seed, entries, capacity = _example()
    listing = _draw(seed, entries, capacity)
    commitment = hashlib.sha256(seed).hexdigest()
    assert verify(seed.hex(), commitment, listing, entries, capacity) == []
    assert sum(1 for item in listing if item["status"] == "won") == 12


def test_a_wrong_seed_order_or_outcome_is_not_verified() -> None:
    seed, entries, capacity = _example()
    listing = _draw(seed, entries, capacity)
    commitment = hashlib.sha256(seed).hexdigest()
    other = secrets.token_bytes(32)
    assert verify(other.hex(), commitment, listing, entries, capacity)
    swapped = [dict(item) for item in listing]
    swapped[0]["entry_id"], swapped[1]["entry_id"] = listing[1]["entry_id"], listing[0]["entry_id"]
    found = verify(seed.hex(), commitment, swapped, entries, capacity)
    assert any("HMAC" in p for p in found)
    lost = next(i for i, item in enumerate(listing) if item["status"] == "lost")
    favoured = [dict(item) for item in listing]
    favoured[lost] |= {"status": "won", "start": entries[listing[lost]["entry_id"]].choices[0]}
    assert verify(seed.hex(), commitment, favoured, entries, capacity)
    assert verify(seed.hex(), commitment, listing[:-1], entries, capacity)


def test_an_entry_a_rule_refused_loses_without_taking_a_seat() -> None:
    seed, entries, capacity = _example()
    first = rank_order(seed, entries)[0]
    entries[first] = Drawn(entries[first].choices, 1, "active_booking_exists")
    rest = {k: v for k, v in entries.items() if k != first}
    listing = _draw(seed, rest, capacity)
    refused = {"rank": 0, "entry_id": first, "status": "lost", "start": None}
    listing = [
        {**item, "rank": n}
        for n, item in enumerate([refused, *listing], 1)  # the refused one ranks first
    ]
    commitment = hashlib.sha256(seed).hexdigest()
    assert verify(seed.hex(), commitment, listing, entries, capacity) == []


def test_oversold_counts_seats_beyond_capacity() -> None:
    full = {"capacity": 20, "booked": 20, "sold": 20}
    assert oversold([full, {"capacity": 20, "booked": 3, "sold": 3}]) == 0
    assert oversold([full, {"capacity": 20, "booked": 20, "sold": 22}]) == 2
    assert oversold([{"capacity": 5, "booked": 6, "sold": 5}]) == 1


def test_answers_are_labelled_with_the_id_they_name() -> None:
    assert label_of(201, b'{"id": "E1", "status": "entered"}') == ("201", "E1")
    problem = b'{"status": 409, "code": "entry_exists", "entry_id": "E1"}'
    assert label_of(409, problem) == ("409 entry_exists", "E1")
    booked = b'{"code": "active_booking_exists", "booking_id": "B1"}'
    assert label_of(409, booked) == ("409 active_booking_exists", "B1")
    assert label_of(502, b"bad gateway") == ("502", None)


def test_the_last_line_gets_the_lottery_key() -> None:
    line = '{"book": 1, "crowd": null}'
    figures = {"bots_share_lottery": 0.1, "oversold": 0}
    assert json.loads(with_figures(line, figures)) == {
        "book": 1,
        "crowd": None,
        "lottery": figures,
    }
    assert with_figures(line, None) == line


def test_the_draw_duration_is_read_from_the_exposition() -> None:
    text = (
        "# TYPE slots_draw_duration_seconds histogram\n"
        'slots_draw_duration_seconds_bucket{le="1.0"} 1.0\n'
        "slots_draw_duration_seconds_sum 0.62\n"
        "slots_draw_duration_seconds_count 1.0\n"
    )
    assert metric_sum(text, "slots_draw_duration_seconds") == (0.62, 1.0)
    assert metric_sum("", "slots_draw_duration_seconds") == (0.0, 0.0)
