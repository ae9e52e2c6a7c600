"""Money: integer cents in, decimal strings with two places out, never a float."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.money import AmountError, cents_to_decimal, format_cents, to_cents


@pytest.mark.parametrize(
    ("cents", "text"), [(0, "0.00"), (5, "0.05"), (-5, "-0.05"), (123456, "1234.56"), (-100, "-1.00")]
)
def test_format_cents(cents: int, text: str) -> None:
    assert format_cents(cents) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_cents_round_trip_through_text(cents: int) -> None:
    assert to_cents(format_cents(cents)) == cents
    assert cents_to_decimal(cents) == Decimal(format_cents(cents))


@pytest.mark.parametrize("bad", ["1.001", "NaN", "Infinity", "abc", ""])
def test_to_cents_refuses_inexact_or_non_numbers(bad: str) -> None:
    with pytest.raises(AmountError):
        to_cents(bad)
