"""Money as integer minor units of its currency, never summed across currencies.

Each ISO 4217 currency has a minor-unit exponent: 1 USD = 100 cents (2), 1 JPY has no minor unit
(0), 1 BHD = 1000 fils (3). The exponents and the list of known codes come from the Unicode CLDR
data that Babel maintains, not from a table of our own. Amounts enter as decimal strings and leave
as decimal strings with exactly the currency's number of places: "1000" JPY, "10.00" USD,
"1.234" BHD.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal

from babel import numbers as _cldr

CURRENCY_CODE = re.compile(r"[A-Z]{3}")
# A plain decimal: optional sign, 1-40 digits, optional fraction of 1-40 digits. ASCII only, bounded,
# so it is checked before any conversion and costs the same whatever arrives. Leading zeros of the
# whole part and trailing zeros of the fraction carry no value and are dropped before the checks.
_DECIMAL = re.compile(r"([+-]?)([0-9]{1,40})(?:\.([0-9]{1,40}))?", re.ASCII)
MAX_WHOLE_DIGITS = 18


class AmountError(ValueError):
    """An amount that is not a plain decimal, or has more places than its currency allows."""


class TooManyPlaces(AmountError):
    """A plain decimal with more significant places than its currency has (10.5 JPY, 1.001 USD)."""

    def __init__(self, text: str, currency: str, places: int) -> None:
        super().__init__(f"{text[:40]!r} has more than {places} decimal places, the most {currency} allows")
        self.currency, self.places = currency, places


class AmountTooLarge(AmountError):
    """A plain decimal whose whole part has more than MAX_WHOLE_DIGITS significant digits."""


class UnknownCurrency(ValueError):
    """A currency code that is not an ISO 4217 code known to CLDR."""


@functools.lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    """Every ISO 4217 code CLDR knows (current and historic)."""
    return frozenset(_cldr.list_currencies())


def is_currency(code: object) -> bool:
    return isinstance(code, str) and CURRENCY_CODE.fullmatch(code) is not None and code in known_currencies()


@functools.lru_cache(maxsize=512)
def exponent(currency: str) -> int:
    """The number of minor-unit digits of an ISO 4217 currency (JPY 0, USD 2, BHD 3)."""
    if not is_currency(currency):
        raise UnknownCurrency(f"unknown ISO 4217 currency code {str(currency)[:20]!r}")
    return int(_cldr.get_currency_precision(currency))


def exponents() -> dict[str, int]:
    """Every known currency's exponent, as plain values (for a Spark expression)."""
    return {code: exponent(code) for code in sorted(known_currencies())}


def to_minor(amount: str | Decimal | int, currency: str) -> int:
    """A decimal amount in `currency` as integer minor units: ("12.34", "USD") -> 1234,
    ("1000", "JPY") -> 1000, ("1.234", "BHD") -> 1234, ("012.3400", "USD") -> 1234. The one
    decimal-to-minor-units conversion.

    Raises, all AmountError: AmountError when it is not a plain decimal, TooManyPlaces when it has
    more significant places than the currency has, AmountTooLarge past MAX_WHOLE_DIGITS whole digits
    (checked in that order); UnknownCurrency for an unknown code."""
    places = exponent(currency)
    text = amount if isinstance(amount, str) else format(amount, "f") if isinstance(amount, Decimal) else str(amount)
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise AmountError(f"not a plain decimal amount: {text[:40]!r}")
    sign, whole, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    if len(fraction) > places:
        raise TooManyPlaces(text, currency, places)
    whole = whole.lstrip("0") or "0"
    if len(whole) > MAX_WHOLE_DIGITS:
        raise AmountTooLarge(f"{text[:40]!r} has more than {MAX_WHOLE_DIGITS} whole digits")
    units: int = int(whole) * 10**places + (int(fraction.ljust(places, "0")) if places else 0)
    return -units if sign == "-" else units


@functools.lru_cache(maxsize=1024)
def floor_to_minor(major: Decimal, currency: str) -> int:
    """A bound in major units (any number of places) as whole minor units of `currency`, rounded
    toward zero: (Decimal("1000000"), "BHD") -> 1000000000, (Decimal("9.99"), "JPY") -> 9."""
    return int(major.scaleb(exponent(currency)))


def format_minor(units: int, currency: str) -> str:
    """Integer minor units as a decimal string with the currency's places: (-5, "USD") -> "-0.05"."""
    places = exponent(currency)
    sign = "-" if units < 0 else ""
    if not places:
        return f"{sign}{abs(int(units))}"
    whole, frac = divmod(abs(int(units)), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def minor_to_decimal(units: int, currency: str) -> Decimal:
    """Integer minor units as an exact Decimal with the currency's places."""
    return Decimal(format_minor(units, currency))


def rescale(units: int, from_places: int, currency: str) -> int | None:
    """Minor units recorded with `from_places` decimals, in the currency's own exponent, or None when
    they cannot be held exactly (e.g. 1050 hundredths of a JPY). For spool files written before
    amounts were kept per currency, which held every amount in hundredths."""
    places = exponent(currency)
    # int ** int is typed Any (a negative power gives a float); these powers are never negative.
    if places >= from_places:
        scale: int = 10 ** (places - from_places)
        return units * scale
    step: int = 10 ** (from_places - places)
    return units // step if units % step == 0 else None
