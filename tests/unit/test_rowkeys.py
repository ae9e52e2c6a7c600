"""Row keys: round trips, time order within a user, and no key of one user inside another's range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import rowkeys

user_ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", min_size=1, max_size=64
)
transaction_ids = st.text(alphabet="abcdefABCDEF0123456789_.:-", min_size=1, max_size=128)
micros = st.integers(min_value=0, max_value=10**16 - 1)


@given(user_ids, micros, transaction_ids)
def test_transaction_key_round_trips(user_id: str, event_us: int, transaction_id: str) -> None:
    key = rowkeys.transaction_key(user_id, event_us, transaction_id)
    assert rowkeys.parse_transaction_key(key) == (user_id, event_us, transaction_id)


@given(user_ids, st.integers(min_value=0, max_value=2_700_000))
def test_hour_bucket_key_round_trips(user_id: str, hours: int) -> None:
    key = rowkeys.hour_bucket_key(user_id, hours * 3600)
    assert rowkeys.parse_hour_bucket_key(key) == (user_id, hours * 3600)


@given(user_ids, micros, micros, transaction_ids, transaction_ids)
def test_keys_sort_in_time_order_within_a_user(user_id: str, a: int, b: int, ta: str, tb: str) -> None:
    ka, kb = rowkeys.transaction_key(user_id, a, ta), rowkeys.transaction_key(user_id, b, tb)
    if a < b:
        assert ka < kb
    elif a > b:
        assert ka > kb


@given(user_ids, user_ids, micros, transaction_ids)
def test_no_key_of_one_user_lies_in_another_users_range(user_a: str, user_b: str, event_us: int, tx: str) -> None:
    start, end = rowkeys.user_range(user_a)
    inside = start <= rowkeys.transaction_key(user_b, event_us, tx) < end
    hour_inside = start <= rowkeys.hour_bucket_key(user_b, event_us // 3_600_000_000 * 3600) < end
    assert inside == (user_a == user_b)
    assert hour_inside == (user_a == user_b)


@given(user_ids, micros, micros, micros, transaction_ids)
def test_transaction_range_holds_exactly_the_times_in_it(user_id: str, lo: int, hi: int, t: int, tx: str) -> None:
    start, end = rowkeys.transaction_range(user_id, lo, hi)
    assert (start <= rowkeys.transaction_key(user_id, t, tx) < end) == (lo <= t < hi)


def test_u1_range_excludes_u10() -> None:
    start, end = rowkeys.user_range("u1")
    assert start <= rowkeys.hour_bucket_key("u1", 3600) < end
    assert not start <= rowkeys.hour_bucket_key("u10", 3600) < end
    assert not start <= rowkeys.transaction_key("u1.", 5, "x") < end


@pytest.mark.parametrize("bad", ["", "u#1", "~root", "a" * 65, "ü", "u 1", None])
def test_bad_user_ids_are_refused(bad: object) -> None:
    with pytest.raises(rowkeys.RowKeyError, match="user_id"):
        rowkeys.user_prefix(bad)  # type: ignore[arg-type]


def test_global_rows_sort_after_every_user_row() -> None:
    last_user = rowkeys.transaction_key("z" * 64, 10**16 - 1, "f" * 128)
    for key in (
        rowkeys.minute_key(0),
        rowkeys.top_index_key("a", "USD", 0, 5),
        rowkeys.user_directory_key("a"),
        rowkeys.JOB_KEY,
    ):
        assert key > last_user
        assert rowkeys.parse_minute_key(rowkeys.minute_key(120)) == 120


def test_hour_bucket_key_refuses_a_time_inside_the_hour() -> None:
    with pytest.raises(rowkeys.RowKeyError, match="whole hour"):
        rowkeys.hour_bucket_key("u1", 3601)


def test_the_id_index_key_depends_on_the_id_alone_and_parses_back() -> None:
    key = rowkeys.id_index_key("tx-42")
    assert key == rowkeys.id_index_key("tx-42")
    assert key.startswith(b"~id#") and key.endswith(b"#tx-42") and len(key) == len(b"~id#") + 4 + 1 + len(b"tx-42")
    assert rowkeys.parse_id_index_key(key) == "tx-42"
    low, high = rowkeys.id_index_range()
    assert all(low <= rowkeys.id_index_key(f"t{i}") < high for i in range(200))
    # The hash prefix spreads a sequence of ids over the key space instead of one tablet.
    assert len({rowkeys.id_index_key(f"t{i}")[4:6] for i in range(200)}) > 50
    with pytest.raises(rowkeys.RowKeyError):
        rowkeys.id_index_key("bad id")


def test_late_rows_sort_by_publish_time_and_ranges_select_them() -> None:
    keys = [rowkeys.late_key(us, "t") for us in (5, 1_000_000, 10**15)]
    assert keys == sorted(keys)
    low, high = rowkeys.late_range(1_000_000, 10**15)
    assert [low <= k < high for k in keys] == [False, True, False]


def test_conflict_rows_of_a_run_fall_in_its_range() -> None:
    key = rowkeys.conflict_key(7, "tx-1", "m-9")
    assert rowkeys.conflict_range(7, 8)[0] <= key < rowkeys.conflict_range(7, 8)[1]
    assert not rowkeys.conflict_range(8, 9)[0] <= key < rowkeys.conflict_range(8, 9)[1]


def test_the_time_index_reads_newest_first_and_its_ranges_hold_exactly_the_range() -> None:
    events = [0, 1, 59_999_999, 60_000_000, 10**15, 10**16 - 1]
    keys = sorted(rowkeys.time_index_key(ev, f"t{ev}", "u1") for ev in events)
    by_salt: dict[bytes, list[int]] = {}
    for key in keys:
        by_salt.setdefault(key[: len(rowkeys.TIME_PREFIX) + 1], []).append(rowkeys.parse_time_index_key(key)[1])
    assert all(times == sorted(times, reverse=True) for times in by_salt.values())
    for start, end in [(0, 1), (0, 10**16), (1, 60_000_000), (59_999_999, 60_000_001), (10**15, 10**16)]:
        found = {
            rowkeys.parse_time_index_key(k)[1]
            for k in keys
            for low, high in rowkeys.time_index_ranges(start, end)
            if low <= k < high
        }
        assert found == {ev for ev in events if start <= ev < end}, (start, end)
