"""webapp/queries.py's hour logic on the in-memory table: whole hours from the dcfbhour counters,
partial hours at either edge from the transaction rows, every currency on its own. The rows and the
expected totals below are written out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.memtable import MemoryTable

from common import rowkeys, store
from webapp import queries
from webapp.queries import Totals

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 3, 15, hour, minute, second, micro, tzinfo=UTC)


# (user, event time, transaction id, amount in minor units, currency)
ROWS = [
    ("alice", at(4, 10), "a1", 1000, "USD"),
    ("alice", at(4, 59, 59, 999_999), "a2", 2222, "USD"),  # the last microsecond of the 04:00 hour
    ("alice", at(5), "a3", 1111, "USD"),  # exactly on the hour
    ("alice", at(5), "same-b", 5, "USD"),  # three ids at one microsecond
    ("alice", at(5), "same-a", -7, "USD"),
    ("alice", at(5, 0, 0, 1), "a6", 3333, "USD"),
    ("alice", at(5, 30), "a7", 500, "JPY"),
    ("alice", at(6, 15), "a8", 400, "USD"),
    ("alice", at(6, 45), "a9", 1234, "BHD"),
    ("alice", at(7), "a10", 50, "USD"),  # on the next hour
    ("alice2", at(5, 20), "b1", 9999, "USD"),  # a user whose id starts with another's
]
# The dcfbhour counters of those rows, added up by hand: (user, hour start, currency) -> (sum, count)
HOURS = {
    ("alice", at(4), "USD"): (3222, 2),
    ("alice", at(5), "USD"): (4442, 4),
    ("alice", at(5), "JPY"): (500, 1),
    ("alice", at(6), "USD"): (400, 1),
    ("alice", at(6), "BHD"): (1234, 1),
    ("alice", at(7), "USD"): (50, 1),
    ("alice2", at(5), "USD"): (9999, 1),
}


def put_transactions(table: MemoryTable, rows: list[tuple[str, datetime, str, int, str]]) -> None:
    cells = [
        (
            rowkeys.transaction_key(user, us(when), tid),
            store.transaction_cells(amount, currency, "grocery", when.isoformat(), 1),
        )
        for user, when, tid, amount, currency in rows
    ]
    assert store.write_cell_rows(table, cells) == []


def put_hours(table: MemoryTable, hours: dict[tuple[str, datetime, str], tuple[int, int]]) -> None:
    for (user, hour, currency), (total, count) in hours.items():
        key = rowkeys.hour_bucket_key(user, us(hour) // 1_000_000)
        cells = {f"{currency}:sum".encode(): str(total).encode(), f"{currency}:count".encode(): str(count).encode()}
        assert store.write_cells(table, key, store.HOUR, cells) == []


@pytest.fixture(scope="module")
def table() -> MemoryTable:
    memory = MemoryTable()
    put_transactions(memory, ROWS)
    put_hours(memory, HOURS)
    return memory


def totals(**per_currency: tuple[int, int]) -> Totals:
    return Totals(tuple(sorted((currency, total, count) for currency, (total, count) in per_currency.items())))


SUMS = [
    ("whole hours only", at(4), at(8), totals(USD=(8114, 8), JPY=(500, 1), BHD=(1234, 1))),
    ("partial hours at both ends", at(4, 30), at(6, 30), totals(USD=(7064, 6), JPY=(500, 1))),
    ("inside one hour", at(5), at(5, 0, 0, 1), totals(USD=(1109, 3))),
    ("across one boundary by a microsecond", at(4, 59, 59, 999_999), at(5, 0, 0, 1), totals(USD=(3331, 4))),
    ("from on the edge", at(5), at(6, 30), totals(USD=(4842, 5), JPY=(500, 1))),
    ("to on the edge", at(4, 30), at(5), totals(USD=(2222, 1))),
    ("the end is left out", at(6), at(7), totals(USD=(400, 1), BHD=(1234, 1))),
    ("an hour with nothing in it", at(9), at(10), Totals()),
    ("empty range", at(5), at(5), Totals()),
    ("reversed range", at(6), at(5), Totals()),
]


@pytest.mark.parametrize(("label", "start", "end", "expected"), SUMS, ids=[s[0] for s in SUMS])
def test_exact_sum_counts_every_microsecond_of_the_range_once(
    table: MemoryTable, label: str, start: datetime, end: datetime, expected: Totals
) -> None:
    assert queries.exact_sum(table, "alice", us(start), us(end)) == expected


def test_a_user_never_sees_the_rows_of_a_user_whose_id_starts_with_theirs(table: MemoryTable) -> None:
    assert queries.exact_sum(table, "alice2", us(at(4)), us(at(8))) == totals(USD=(9999, 1))
    assert queries.exact_sum(table, "alice2", us(at(5, 10)), us(at(5, 30))) == totals(USD=(9999, 1))
    assert queries.exact_sum(table, "alic", us(at(4)), us(at(8))) == Totals()


def test_whole_hours_come_from_the_counters_and_partial_hours_from_the_rows() -> None:
    """A counter that disagrees with its hour's rows shows which one each part of a range reads."""
    memory = MemoryTable()
    put_transactions(memory, [("carol", at(5, 10), "c1", 30, "USD")])
    put_hours(memory, {("carol", at(5), "USD"): (999, 9)})
    assert queries.exact_sum(memory, "carol", us(at(5)), us(at(6))) == totals(USD=(999, 9))
    assert queries.exact_sum(memory, "carol", us(at(5)), us(at(5, 30))) == totals(USD=(30, 1))
    assert queries.exact_sum(memory, "carol", us(at(4, 30)), us(at(6, 30))) == totals(USD=(999, 9))


def test_the_whole_hours_function_is_asked_only_for_whole_hours(table: MemoryTable) -> None:
    asked: list[tuple[int, int]] = []

    def whole_hours(tbl: object, user: str, first_us: int, end_us: int) -> Totals:
        asked.append((first_us, end_us))
        return queries.whole_hour_total(tbl, user, first_us, end_us)

    result = queries.exact_sum(table, "alice", us(at(4, 30)), us(at(7, 15)), whole_hours)
    assert asked == [(us(at(5)), us(at(7)))]
    assert result == totals(USD=(7114, 7), JPY=(500, 1), BHD=(1234, 1))
    asked.clear()
    queries.exact_sum(table, "alice", us(at(4, 10)), us(at(4, 50)), whole_hours)
    assert asked == []  # inside one hour: rows only


@pytest.mark.parametrize(
    ("start", "end", "whole", "edges"),
    [
        (at(4), at(8), (at(4), at(8)), []),
        (at(4, 30), at(6, 30), (at(5), at(6)), [(at(4, 30), at(5)), (at(6), at(6, 30))]),
        (at(4, 30), at(5, 30), None, [(at(4, 30), at(5, 30))]),
        (at(4, 30), at(4, 40), None, [(at(4, 30), at(4, 40))]),
        (at(5), at(5, 0, 0, 1), None, [(at(5), at(5, 0, 0, 1))]),
        (at(4, 59), at(6), (at(5), at(6)), [(at(4, 59), at(5))]),
        (at(5), at(5), None, []),
    ],
)
def test_a_range_splits_into_whole_hours_and_partial_edges(
    start: datetime,
    end: datetime,
    whole: tuple[datetime, datetime] | None,
    edges: list[tuple[datetime, datetime]],
) -> None:
    expected_whole = (us(whole[0]), us(whole[1])) if whole else None
    assert queries.split_hours(us(start), us(end)) == (expected_whole, [(us(a), us(b)) for a, b in edges])


def test_hourly_lists_every_overlapping_hour_with_the_part_inside_the_range(table: MemoryTable) -> None:
    hours = queries.hourly(table, "alice", us(at(4, 30)), us(at(7)))
    assert hours == [
        (us(at(4)) // 1_000_000, totals(USD=(2222, 1))),
        (us(at(5)) // 1_000_000, totals(USD=(4442, 4), JPY=(500, 1))),
        (us(at(6)) // 1_000_000, totals(USD=(400, 1), BHD=(1234, 1))),
    ]
    assert Totals.merge(t for _, t in hours) == queries.exact_sum(table, "alice", us(at(4, 30)), us(at(7)))


def test_hourly_gives_empty_hours_as_zero_and_an_empty_range_no_hours(table: MemoryTable) -> None:
    assert queries.hourly(table, "alice", us(at(8)), us(at(9, 30))) == [
        (us(at(8)) // 1_000_000, Totals()),
        (us(at(9)) // 1_000_000, Totals()),
    ]
    assert queries.hourly(table, "alice", us(at(4, 30)), us(at(4, 40))) == [(us(at(4)) // 1_000_000, Totals())]
    assert queries.hourly(table, "alice", us(at(5)), us(at(5))) == []


def test_totals_add_up_per_currency_and_never_across() -> None:
    usd, jpy = Totals.of("USD", 1050, 2), Totals.of("JPY", 1050, 1)
    both = usd + jpy + Totals.of("USD", -50, 1)
    assert both.parts == (("JPY", 1050, 1), ("USD", 1000, 3))
    assert both.currency("USD") == (1000, 3) and both.currency("JPY") == (1050, 1)
    assert both.currency("EUR") == (0, 0)
    assert both.currencies == ["JPY", "USD"] and both.count == 4
    assert Totals() + both == both + Totals() == both
    cells = {b"USD:sum": 1000, b"USD:count": 3, b"JPY:sum": 1050, b"JPY:count": 1}
    assert Totals.from_counter_cells(cells) == both


# --- everyone: the top-spender index and the per-minute rows ------------------------------------


def seed_top(memory: MemoryTable, top: dict[datetime, dict[str, int]]) -> None:
    """Hour buckets (and so the top-spender index) holding, per hour, "CUR:user" -> that sum."""
    deltas: dict[bytes, dict[bytes, int]] = {}
    for hour, cells in top.items():
        for name, total in cells.items():
            currency, user = name.split(":")
            key = rowkeys.hour_bucket_key(user, us(hour) // 1_000_000)
            deltas.setdefault(key, {}).update(store.counter_cells(currency, total, 1))
    assert store.apply_bucket_deltas(memory, deltas, 1)[3] == []
    assert store.apply_bucket_deltas(memory, store.block_deltas(deltas), 1, store.BLOCK)[3] == []


@pytest.fixture(scope="module")
def everyone() -> MemoryTable:
    memory = MemoryTable()
    top = {
        at(3): {"USD:zed": 1_000_000},  # outside every window asked below
        at(4): {"USD:alice": 3222, "USD:bob": 100},
        at(5): {"USD:alice": 4442, "USD:bob": 9999, "JPY:alice": 500, "USD:dora": 4542},
        at(6): {"USD:carol": 5, "USD:dora": 3000},
        at(7): {"USD:erin": 1_000_000},  # the hour after the current one
    }
    seed_top(memory, top)
    minutes = {at(5, 59): (70, 2), at(6, 1): (30, 1), at(6, 3): (11, 1)}
    for minute, (total, count) in minutes.items():
        key = rowkeys.minute_key(us(minute) // 1_000_000)
        cells = {
            b"USD:sum": str(total).encode(),
            b"USD:count": str(count).encode(),
            b"JPY:sum": b"9",
            b"JPY:count": b"1",
        }
        assert store.write_cells(memory, key, store.MINUTE, cells) == []
    return memory


NOW = at(6, 2, 30)


@pytest.mark.parametrize(
    ("hours", "n", "currency", "expected"),
    [
        (1, 10, "USD", [("dora", 3000), ("carol", 5)]),
        (2, 10, "USD", [("bob", 9999), ("dora", 7542), ("alice", 4442), ("carol", 5)]),
        (3, 2, "USD", [("bob", 10099), ("alice", 7664)]),
        (3, 10, "JPY", [("alice", 500)]),
        (3, 10, "EUR", []),
    ],
)
def test_top_users_rank_the_current_and_earlier_hours_in_one_currency(
    everyone: MemoryTable, hours: int, n: int, currency: str, expected: list[tuple[str, int]]
) -> None:
    assert queries.top_users(everyone, us(NOW), hours, n, currency) == expected


def test_top_users_break_ties_by_user_id() -> None:
    memory = MemoryTable()
    seed_top(memory, {at(6): {"USD:zoe": 50, "USD:amy": 50, "USD:max": 60}})
    assert queries.top_users(memory, us(NOW), 1, 3, "USD") == [("max", 60), ("amy", 50), ("zoe", 50)]


def test_per_minute_lists_every_minute_oldest_first_with_empty_ones(everyone: MemoryTable) -> None:
    rows = queries.per_minute(everyone, us(NOW), 4)
    assert rows == [
        (us(at(5, 59)) // 1_000_000, totals(USD=(70, 2), JPY=(9, 1))),
        (us(at(6, 0)) // 1_000_000, Totals()),
        (us(at(6, 1)) // 1_000_000, totals(USD=(30, 1), JPY=(9, 1))),
        (us(at(6, 2)) // 1_000_000, Totals()),
    ]
    assert [minute for minute, _ in queries.per_minute(everyone, us(NOW), 1)] == [us(at(6, 2)) // 1_000_000]
