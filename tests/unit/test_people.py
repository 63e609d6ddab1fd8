"""Identity: HMAC and masking; nothing in clear."""

import pytest

from slots_service.models import normalise_id_number
from slots_service.people import identity_hmac, mask, phone_hmac


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("M92839408", "M9****408"),
        ("440301199001011234", "44*************234"),
        ("ABCDEF", "AB*DEF"),
    ],
)
def test_mask_keeps_first_two_and_last_three(number: str, masked: str) -> None:
    assert mask(number) == masked


def test_short_numbers_are_still_masked() -> None:
    assert mask("AB12") == "A***"
    assert mask("AB123") == "A****"


def test_hmac_depends_on_key_type_and_number() -> None:
    a = identity_hmac("k" * 32, "passport", "M92839408")
    assert a == identity_hmac("k" * 32, "passport", "M92839408")
    assert a != identity_hmac("j" * 32, "passport", "M92839408")
    assert a != identity_hmac("k" * 32, "cn_id", "M92839408")
    assert b"M92839408" not in a
    assert phone_hmac("k" * 32, "+8613926150414") != phone_hmac("k" * 32, "+8613926150415")


def test_id_numbers_are_normalised() -> None:
    assert normalise_id_number(" m928 39408 ") == "M92839408"
    for bad in ("M9-2839408", "abc", "X" * 33, ""):
        with pytest.raises(ValueError, match="4-32"):
            normalise_id_number(bad)


def test_hmacs_are_the_stored_ones() -> None:
    """HMAC-SHA256 of `id:<type>:<number>` and `phone:<phone>` under the PII key: people
    already stored are found by exactly these bytes (known answers, computed with hmac.new)."""
    assert identity_hmac("k" * 32, "passport", "M92839408").hex() == (
        "765fd52dbd02194eed9738797a7f38c2a58344576ee8bd00d0a608687f3013cd"
    )
    assert phone_hmac("k" * 32, "+8613900000000").hex() == (
        "ad8c70bab9ed6ae29b45d63eb1719f09a451ebae6be3e96d8707b8c51f3fb548"
    )
