"""webapp/queries.py's paging on the in-memory table: transaction pages newest first under a limit
with page tokens, late rows by publish time, conflicts newest run first, the user directory. The
expected orders come from sorting the rows written here, never from the code under test."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.memtable import MemoryTable

from common import rowkeys, store
from webapp import queries
from webapp.queries import Cursor, PageTokenError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 15, 10, 20, 30, 250_000, tzinfo=UTC)


def us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def build_rows() -> list[tuple[str, int, str]]:
    """(user, event microsecond, transaction id) for users of very different densities."""
    rng = random.Random(20260315)
    rows: list[tuple[str, int, str]] = []
    # 'dense': 2,600 in the last half hour, more than one capped scan returns
    rows += [("dense", us(NOW - timedelta(minutes=30)) + i * 690_000 + 1, f"d{i:04d}") for i in range(2600)]
    # 'sparse': 60 spread over a year, so the scan window has to widen many times
    rows += [("sparse", us(NOW) - rng.randrange(1, 365 * 86_400 * 1_000_000), f"s{i:02d}") for i in range(60)]
    # 'gap': three long ago and five now, with nothing between
    rows += [("gap", us(NOW - timedelta(days=200, minutes=i)), f"old{i}") for i in range(3)]
    rows += [("gap", us(NOW - timedelta(seconds=i)), f"new{i}") for i in range(5)]
    # 'same': eight ids at one microsecond, two more a microsecond either side
    rows += [("same", us(NOW - timedelta(hours=1)), f"t{i}") for i in range(8)]
    rows += [("same", us(NOW - timedelta(hours=1)) - 1, "before"), ("same", us(NOW - timedelta(hours=1)) + 1, "after")]
    # 'u1' and 'u10': one id is the start of the other
    rows += [("u1", us(NOW - timedelta(minutes=i)), f"u1-{i}") for i in range(6)]
    rows += [("u10", us(NOW - timedelta(minutes=i, seconds=30)), f"u10-{i}") for i in range(6)]
    return rows


ROWS = build_rows()


@pytest.fixture(scope="module")
def table() -> MemoryTable:
    memory = MemoryTable()
    cells = [
        (
            rowkeys.transaction_key(user, event_us, tid),
            store.transaction_cells(100, "USD", "grocery", str(event_us), 1),
        )
        for user, event_us, tid in ROWS
    ]
    assert store.write_cell_rows(memory, cells) == []
    return memory


def newest_first(user: str, start_us: int, end_us: int) -> list[str]:
    """The ids of the user's rows in [start_us, end_us), newest first, ties by id descending (the
    order of the row keys read backwards)."""
    inside = [(event_us, tid) for u, event_us, tid in ROWS if u == user and start_us <= event_us < end_us]
    return [tid for _, tid in sorted(inside, reverse=True)]


def walk(table: Any, user: str, start_us: int, end_us: int, limit: int) -> list[list[str]]:
    """Every page of the range, following the cursors through their tokens."""
    pages: list[list[str]] = []
    cursor = None
    for _ in range(1000):
        page, after = queries.transactions_page(table, user, start_us, end_us, limit, cursor)
        pages.append([rowkeys.parse_transaction_key(t.key)[2] for t in page])
        if after is None:
            return pages
        cursor = queries.decode_page_token(queries.encode_page_token(after), user)
    raise AssertionError("the pages never ended")


WALKS = [
    ("dense", 500),
    ("dense", 97),
    ("gap", 1),
    ("sparse", 7),
    ("sparse", 60),
    ("gap", 4),
    ("same", 3),
    ("u1", 2),
    ("u10", 100),
]


@pytest.mark.parametrize(("user", "limit"), WALKS)
def test_pages_walk_the_range_newest_first_each_full_but_the_last(table: MemoryTable, user: str, limit: int) -> None:
    start_us, end_us = us(NOW - timedelta(days=400)), us(NOW + timedelta(hours=1))
    pages = walk(table, user, start_us, end_us, limit)
    expected = newest_first(user, start_us, end_us)
    assert [tid for page in pages for tid in page] == expected
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    assert len(pages) == -(-len(expected) // limit)


def test_the_range_includes_its_start_and_leaves_out_its_end(table: MemoryTable) -> None:
    moment = us(NOW - timedelta(hours=1))
    one_page = queries.transactions_page(table, "same", moment, moment + 1, 100)
    assert sorted(rowkeys.parse_transaction_key(t.key)[2] for t in one_page[0]) == [f"t{i}" for i in range(8)]
    assert one_page[1] is None
    assert [p for page in walk(table, "same", moment - 1, moment, 5) for p in page] == ["before"]
    assert walk(table, "same", moment, moment, 5) == [[]]


def test_a_range_with_exactly_limit_rows_is_one_page_and_one_more_is_two(table: MemoryTable) -> None:
    start_us, end_us = us(NOW - timedelta(days=400)), us(NOW + timedelta(hours=1))
    assert walk(table, "gap", start_us, end_us, 8) == [newest_first("gap", start_us, end_us)]
    assert [len(page) for page in walk(table, "gap", start_us, end_us, 7)] == [7, 1]


def test_a_user_without_rows_gets_one_empty_page(table: MemoryTable) -> None:
    assert queries.transactions_page(table, "nobody", 0, us(NOW), 10) == ([], None)
    assert queries.transactions_page(table, "u", 0, us(NOW), 10) == ([], None)  # 'u1' and 'u10' are not 'u'


def test_a_page_of_a_dense_user_reads_a_bounded_number_of_rows(table: MemoryTable) -> None:
    read = {"rows": 0}

    class Counting:
        def read_rows(self, **kwargs: Any) -> Any:
            for row in table.read_rows(**kwargs):
                read["rows"] += 1
                yield row

    page, after = queries.transactions_page(Counting(), "dense", us(NOW - timedelta(days=7)), us(NOW), 10)
    assert [rowkeys.parse_transaction_key(t.key)[2] for t in page] == [f"d{i:04d}" for i in range(2599, 2589, -1)]
    assert after is not None
    assert read["rows"] <= 400  # a capped probe of 200 rows, then a window sized from its density


def test_a_page_token_carries_the_cursor_and_only_for_its_user() -> None:
    cursor = Cursor(rowkeys.transaction_key("u1", us(NOW), "x-1"), 12_345_678)
    token = queries.encode_page_token(cursor)
    assert queries.decode_page_token(token, "u1") == cursor
    with pytest.raises(PageTokenError, match="another"):
        queries.decode_page_token(token, "u10")


@pytest.mark.parametrize("forged", ["", "not-a-token!", "AAAA", "AAAA.1", "x" * 500, "dTE.12", "dTEjMTIz.abc"])
def test_a_forged_page_token_is_refused(forged: str) -> None:
    with pytest.raises(PageTokenError):
        queries.decode_page_token(forged, "u1")


# --- late rows --------------------------------------------------------------------------------


LATE = [(f"late-{i}", us(NOW - timedelta(hours=30)) + i * 60_000_000) for i in range(7)]  # (id, publish time)


@pytest.fixture(scope="module")
def late_table() -> MemoryTable:
    memory = MemoryTable()
    rows = [
        (
            rowkeys.late_key(publish_us, tid),
            store.late_cells(
                store.Version("alice", 100 + i, "USD", publish_us - 86_400_000_000, publish_us),
                f"event-{i}",
                f"2026-03-14T04:{20 + i:02d}:30.25Z",
                3,
            ),
        )
        for i, (tid, publish_us) in enumerate(LATE)
    ]
    assert store.write_cell_rows(memory, rows) == []
    return memory


@pytest.mark.parametrize(("first", "end", "limit"), [(0, 7, 2), (0, 7, 7), (0, 7, 100), (2, 5, 1), (3, 3, 4)])
def test_late_rows_come_page_by_page_oldest_publish_time_first(
    late_table: MemoryTable, first: int, end: int, limit: int
) -> None:
    """[first, end) in LATE's order: the range starts at LATE[first]'s publish time, exactly, and
    ends at LATE[end]'s (left out)."""
    start_us = LATE[first][1]
    end_us = LATE[end][1] if end < len(LATE) else us(NOW)
    seen: list[str] = []
    from_key = None
    for _ in range(20):
        rows, from_key = queries.late_page(late_table, start_us, end_us, limit, from_key)
        assert len(rows) <= limit
        seen += [row["transaction_id"] for row in rows]
        if from_key is None:
            break
    assert seen == [tid for tid, _ in LATE[first:end]]


def test_a_late_page_key_from_another_range_is_refused(late_table: MemoryTable) -> None:
    _, after = queries.late_page(late_table, LATE[0][1], us(NOW), 2)
    assert after is not None
    with pytest.raises(PageTokenError):
        queries.late_page(late_table, LATE[4][1], us(NOW), 2, after)
    assert queries.decode_key_token(queries.encode_key_token(after)) == after


# --- conflicts and the user directory ----------------------------------------------------------


def conflict_rows(runs: dict[int, list[str]]) -> MemoryTable:
    memory = MemoryTable()
    rows = []
    for run, ids in runs.items():
        for tid in ids:
            counted = store.Version("carol", 100, "USD", 1, 2, f"{tid}-a")
            copy = store.Version("carol", 101, "USD", 1, 3, f"{tid}-b")
            rows.append(
                (rowkeys.conflict_key(run, tid, copy.message_id), store.conflict_cells(tid, counted, copy, run))
            )
    assert store.write_cell_rows(memory, rows) == []
    return memory


RUNS = {1: ["a", "b"], 3: ["c"], 4000: ["e", "d"]}


@pytest.mark.parametrize(
    ("last_run", "limit", "expected"),
    [
        (4000, 10, [(4000, "d"), (4000, "e"), (3, "c"), (1, "a"), (1, "b")]),
        (4000, 3, [(4000, "d"), (4000, "e"), (3, "c")]),
        (4005, 1, [(4000, "d")]),
        (3, 10, [(3, "c"), (1, "a"), (1, "b")]),
        (0, 10, []),
    ],
)
def test_conflicts_come_newest_run_first_up_to_the_limit(
    last_run: int, limit: int, expected: list[tuple[int, str]]
) -> None:
    rows = queries.latest_conflicts(conflict_rows(RUNS), last_run, limit)
    assert [(row["run"], row["transaction_id"]) for row in rows] == expected


def test_a_run_with_more_conflicts_than_one_read_holds_is_narrowed_not_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queries, "CONFLICT_ROW_CAP", 2)
    rows = queries.latest_conflicts(conflict_rows({1: ["a"], 2: ["b", "c"], 3: ["d", "e", "f"]}), 3, 4)
    assert [(row["run"], row["transaction_id"]) for row in rows] == [(3, "d"), (3, "e"), (2, "b"), (2, "c")]


def test_users_are_listed_by_prefix_in_order_up_to_the_limit() -> None:
    memory = MemoryTable()
    users = ["u10", "u1", "bob", "u2", "alice", "u1x"]
    assert (
        store.write_rows(memory, [store.user_directory_row(memory, rowkeys.user_directory_key(u)) for u in users]) == []
    )
    assert queries.user_ids(memory, "u1", 10) == ["u1", "u10", "u1x"]
    assert queries.user_ids(memory, "u1", 2) == ["u1", "u10"]
    assert queries.user_ids(memory, "", 3) == ["alice", "bob", "u1"]
    assert queries.user_ids(memory, "zz", 10) == []
