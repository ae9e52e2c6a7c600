"""Money in minor units per ISO 4217 currency, checked against hand-written values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.money import (
    AmountError,
    AmountTooLarge,
    TooManyPlaces,
    UnknownCurrency,
    exponent,
    floor_to_minor,
    format_minor,
    minor_to_decimal,
    rescale,
    to_minor,
)


@pytest.mark.parametrize(
    ("currency", "places"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3)]
)
def test_exponents_come_from_iso_4217(currency: str, places: int) -> None:
    assert exponent(currency) == places


@pytest.mark.parametrize("code", ["XYZ", "usd", "US", "USDD", "", "ÜSD"])
def test_unknown_codes_are_refused(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        exponent(code)


@pytest.mark.parametrize(
    ("units", "currency", "text"),
    [
        (1000, "JPY", "1000"),
        (1000, "USD", "10.00"),
        (1234, "BHD", "1.234"),
        (-5, "USD", "-0.05"),
        (-5, "BHD", "-0.005"),
        (0, "JPY", "0"),
        (7, "EUR", "0.07"),
    ],
)
def test_format_and_parse_round_trip(units: int, currency: str, text: str) -> None:
    assert format_minor(units, currency) == text
    assert to_minor(text, currency) == units
    assert minor_to_decimal(units, currency) == Decimal(text)


@pytest.mark.parametrize(
    ("text", "currency", "units"),
    [("12.3", "USD", 1230), ("12", "USD", 1200), ("12.30", "USD", 1230), ("5.00", "JPY", 5), ("+1.5", "BHD", 1500)],
)
def test_shorter_or_zero_padded_fractions_are_exact(text: str, currency: str, units: int) -> None:
    assert to_minor(text, currency) == units


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("10.5", "JPY"),
        ("1.001", "USD"),
        ("1.2345", "BHD"),
        ("1e3", "USD"),
        ("nan", "USD"),
        (" 1", "USD"),
        ("١٢", "USD"),
    ],
)
def test_more_places_than_the_currency_or_non_plain_decimals_are_refused(text: str, currency: str) -> None:
    with pytest.raises(AmountError):
        to_minor(text, currency)


@pytest.mark.parametrize(
    ("text", "currency", "units"),
    [
        ("0000000000000000000012.50", "USD", 1250),
        ("1.0000000000", "USD", 100),
        ("-000.0100", "BHD", -10),
        ("999999999999999999", "JPY", 999_999_999_999_999_999),
    ],
)
def test_leading_and_trailing_zeros_carry_no_value(text: str, currency: str, units: int) -> None:
    assert to_minor(text, currency) == units


def test_too_many_places_is_told_before_too_many_digits() -> None:
    with pytest.raises(TooManyPlaces) as places:
        to_minor("1" * 19 + ".001", "USD")
    assert places.value.places == 2
    assert "the most USD allows" in str(places.value)
    with pytest.raises(AmountTooLarge):
        to_minor("1" * 19 + ".00", "USD")
    with pytest.raises(AmountError, match="not a plain decimal"):
        to_minor("1" * 41, "USD")


@pytest.mark.parametrize(
    ("major", "currency", "units"),
    [("1000000", "USD", 100_000_000), ("1000000", "BHD", 1_000_000_000), ("9.99", "JPY", 9), ("0.0149", "USD", 1)],
)
def test_a_major_unit_bound_floors_to_whole_minor_units(major: str, currency: str, units: int) -> None:
    assert floor_to_minor(Decimal(major), currency) == units


def test_hundredths_are_rescaled_exactly_or_not_at_all() -> None:
    assert rescale(1234, 2, "USD") == 1234
    assert rescale(1234, 2, "BHD") == 12340
    assert rescale(100000, 2, "JPY") == 1000
    assert rescale(1050, 2, "JPY") is None
