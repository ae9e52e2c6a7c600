"""Money as integer cents. Amounts enter as decimal strings and leave as decimal strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")


class AmountError(ValueError):
    """An amount that is not a finite decimal with at most two places."""


def to_cents(amount: Decimal | str | int) -> int:
    """Convert a decimal amount ("12.34", Decimal("12.3")) to integer cents, refusing sub-cent values."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except InvalidOperation as exc:
        raise AmountError(f"not a decimal number: {amount!r}") from exc
    if not value.is_finite():
        raise AmountError(f"not a finite number: {amount!r}")
    if value != value.quantize(CENT):
        raise AmountError(f"more than two decimal places: {amount!r}")
    return int(value.scaleb(2))


def format_cents(cents: int) -> str:
    """Format integer cents as a decimal string with exactly two places: -5 -> "-0.05"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}.{frac:02d}"


def cents_to_decimal(cents: int) -> Decimal:
    """Integer cents as an exact Decimal with two places."""
    return Decimal(int(cents)).scaleb(-2).quantize(CENT)
