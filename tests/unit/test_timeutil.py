"""Time parsing: relative, ISO-8601 with and without offset, epoch seconds; always aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.timeutil import (
    TimeFormatError,
    floor_to,
    format_rfc3339,
    from_epoch_us,
    parse_duration,
    parse_rfc3339,
    parse_time,
    to_epoch_us,
)

NOW = datetime(2026, 11, 21, 10, 30, 15, tzinfo=UTC)
aware = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1h", NOW - timedelta(hours=1)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("-2d", NOW - timedelta(days=2)),
        ("0m", NOW),
        ("now", NOW),
        ("2026-11-21T08:00:00Z", datetime(2026, 11, 21, 8, tzinfo=UTC)),
        ("2026-11-21T08:00:00", datetime(2026, 11, 21, 8, tzinfo=UTC)),
        ("2026-11-21T10:00:00+02:00", datetime(2026, 11, 21, 8, tzinfo=UTC)),
        ("1763712000", datetime(2025, 11, 21, 8, tzinfo=UTC)),
        ("1763712000.5", datetime(2025, 11, 21, 8, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_every_documented_form(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected
    assert parse_time(text, now=NOW).tzinfo is UTC


@pytest.mark.parametrize("text", ["", "yesterday", "-1x", "2026-13-01", "1e5", "--1h", "12:00"])
def test_parse_time_refuses_garbage_with_a_clear_error(text: str) -> None:
    with pytest.raises(TimeFormatError, match=r"not a time|out of range"):
        parse_time(text, now=NOW)


def test_rfc3339_requires_an_offset() -> None:
    with pytest.raises(TimeFormatError, match="offset"):
        parse_rfc3339("2026-11-21T08:00:00")
    assert parse_rfc3339("2026-11-21T09:00:00+01:00") == datetime(2026, 11, 21, 8, tzinfo=UTC)


@given(aware)
def test_rfc3339_round_trips(value: datetime) -> None:
    assert parse_rfc3339(format_rfc3339(value)) == value
    assert format_rfc3339(value).endswith("Z")


@given(aware)
def test_epoch_micros_round_trip(value: datetime) -> None:
    assert from_epoch_us(to_epoch_us(value)) == value


@given(aware, st.integers(min_value=-14, max_value=14))
def test_parse_time_of_any_offset_is_the_same_instant(value: datetime, hours: int) -> None:
    shifted = value.astimezone(timezone(timedelta(hours=hours)))
    assert parse_time(shifted.isoformat(), now=NOW) == value


def test_durations_and_flooring() -> None:
    assert parse_duration("5m") == timedelta(minutes=5)
    assert parse_duration("-48h") == timedelta(hours=-48)
    assert floor_to(NOW, timedelta(hours=1)) == datetime(2026, 11, 21, 10, tzinfo=UTC)
    with pytest.raises(TimeFormatError, match="duration"):
        parse_duration("five minutes")
