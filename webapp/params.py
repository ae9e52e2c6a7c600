"""Query parameters: each one parsed, bounded, and refused by name (BadParameter -> 400)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from common.message import USER_ID
from common.money import is_currency
from common.timeutil import TimeFormatError, format_rfc3339, parse_time, to_epoch_us
from webapp.errors import BadParameter

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # row keys hold times up to year 2286
_DIGITS = re.compile(r"[0-9]{1,9}")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{0,64}")
TIME_FORMS = "a time such as -1h, -30m, 0m, now, 2026-01-01T00:00:00Z or epoch seconds"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def start_us(self) -> int:
        return to_epoch_us(self.start)

    @property
    def end_us(self) -> int:
        return to_epoch_us(self.end)

    def as_json(self) -> dict[str, str]:
        return {"from": format_rfc3339(self.start), "to": format_rfc3339(self.end)}


def user_id(value: Any) -> str:
    """A user id from the path or query, or BadParameter('user_id')."""
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        raise BadParameter("user_id", f"must match [A-Za-z0-9_.-]{{1,64}}, got {str(value)[:80]!r}")
    return value


def required_user_id(args: Any) -> str:
    value = args.get("user_id")
    if value is None:
        raise BadParameter("user_id", "is required")
    return user_id(value)


def time_value(name: str, raw: str, now: datetime) -> datetime:
    """One time parameter in any accepted form, as aware UTC, or BadParameter(name)."""
    try:
        value = parse_time(raw, now=now)
    except (TimeFormatError, OverflowError, ValueError):
        raise BadParameter(name, f"expected {TIME_FORMS}, got {raw[:80]!r}") from None
    if not EARLIEST <= value < LATEST:
        raise BadParameter(name, f"must lie between 1970-01-01 and 2200-01-01, got {raw[:80]!r}")
    return value


def time_range(args: Any, now: datetime, max_span: timedelta, default_from: str = "-1h") -> TimeRange:
    """`from` (default `default_from`) and `to` (default now): from <= to, at most max_span apart."""
    start = time_value("from", args.get("from") or default_from, now)
    end = time_value("to", args.get("to") or "now", now)
    if start > end:
        raise BadParameter("from", f"{format_rfc3339(start)} is after 'to' {format_rfc3339(end)}")
    if end - start > max_span:
        raise BadParameter("from", f"the range from 'from' to 'to' may span at most {_span(max_span)}")
    return TimeRange(start, end)


def int_arg(args: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter in [low, high], `default` when absent."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadParameter(name, f"must be an integer from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


def currency(args: Any, default: str) -> str:
    """The `currency` parameter: an ISO 4217 code CLDR knows (USD, EUR, JPY...), `default` when absent."""
    raw = args.get("currency")
    if raw is None or raw == "":
        return default
    if not is_currency(raw):
        raise BadParameter("currency", f"must be an ISO 4217 currency code such as USD, EUR or JPY, got {raw[:20]!r}")
    return str(raw)


def user_prefix(args: Any) -> str:
    raw = args.get("prefix") or ""
    if not _PREFIX.fullmatch(raw):
        raise BadParameter("prefix", f"must match [A-Za-z0-9_.-]{{0,64}}, got {raw[:80]!r}")
    return str(raw)


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} days"
    return f"{int(span.total_seconds() // 3600)} hours"
