"""Time in one place: UTC, timezone-aware, RFC 3339 on the wire, epoch microseconds inside."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

# Time units, in the two resolutions the code works in: epoch microseconds inside (spool, row keys,
# transforms) and epoch seconds in row keys' hour and minute starts.
SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
MINUTE_S = 60
HOUR_S = 60 * MINUTE_S
DAY_S = 24 * HOUR_S
WEEK_S = 7 * DAY_S

_DURATION = re.compile(r"^\s*([+-]?)(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": MINUTE_S, "h": HOUR_S, "d": DAY_S, "w": WEEK_S}
_EPOCH = re.compile(r"^\s*-?\d{1,12}(\.\d{1,6})?\s*$")


class TimeFormatError(ValueError):
    """A time or duration that cannot be understood."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "5m", "-48h", "2d", "1w" into a timedelta (sign kept)."""
    match = _DURATION.match(str(text))
    if not match:
        raise TimeFormatError(f"not a duration like 30s, 5m, 48h or 2d: {text!r}")
    sign, number, unit = match.groups()
    seconds = float(number) * _UNIT_SECONDS[unit]
    try:
        return timedelta(seconds=-seconds if sign == "-" else seconds)
    except OverflowError as exc:
        raise TimeFormatError(f"duration out of range: {text!r}") from exc


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries its offset; return it in UTC. Naive times are refused."""
    if not isinstance(text, str) or not text.strip():
        raise TimeFormatError(f"not an RFC 3339 timestamp: {text!r}")
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise TimeFormatError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if value.tzinfo is None:
        raise TimeFormatError(f"timestamp has no UTC offset: {text!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise TimeFormatError(f"timestamp out of range: {text!r}") from exc


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Parse a user-facing time: relative ("-1h", "-30m", "0m", "now"), ISO-8601 (with or without
    offset; without means UTC) or epoch seconds. Returns an aware UTC datetime."""
    now = now or utcnow()
    raw = str(text).strip()
    if raw.lower() == "now":
        return now
    if _DURATION.match(raw):
        try:
            return now + parse_duration(raw)
        except OverflowError as exc:
            raise TimeFormatError(f"relative time out of range: {text!r}") from exc
    if _EPOCH.match(raw):
        try:
            return datetime.fromtimestamp(float(raw), UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise TimeFormatError(f"epoch seconds out of range: {text!r}") from exc
    try:
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError as exc:
        raise TimeFormatError(f"not a time: {text!r} (use -1h, -30m, ISO-8601 or epoch seconds)") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # an offset that pushes year 1 or 9999 past the calendar's end
        raise TimeFormatError(f"time out of range: {text!r}") from exc


def format_rfc3339(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a Z suffix (microseconds only when non-zero)."""
    if value.tzinfo is None:
        raise TimeFormatError("refusing to format a naive datetime")
    value = value.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(spec)


def to_epoch_us(value: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch (exact, no float)."""
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * DAY_S + delta.seconds) * SECOND_US + delta.microseconds


def from_epoch_us(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))


def floor_to(value: datetime, step: timedelta) -> datetime:
    """Round an aware datetime down to a multiple of step since the epoch (hour, minute...)."""
    step_us = int(step.total_seconds() * SECOND_US)
    micros = to_epoch_us(value)
    return from_epoch_us(micros - micros % step_us)


def format_rfc3339_column(times: Any) -> list[str]:
    """A pyarrow timestamp array formatted value by value exactly as format_rfc3339 does, in one
    vectorised pass (bulk writers format millions of event times)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.strftime(times.cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    formatted: list[str] = pc.replace_substring(text, ".000000Z", "Z").to_pylist()  # whole seconds: no fraction
    return formatted
