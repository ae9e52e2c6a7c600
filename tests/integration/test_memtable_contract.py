"""The in-memory table (tests/support/memtable.py) against the Bigtable emulator: the same writes
and reads, through common.store and webapp.queries, give identical results on both, so the unit
tests that use it cannot drift from what Bigtable does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support.memtable import MemoryTable

from common import clients, rowkeys, store
from common.config import Config
from webapp import queries

HOUR_S = 1_773_543_600  # 2026-03-15T03:00:00Z
HOUR_US = 3_600_000_000
T0 = HOUR_S * 1_000_000


def write_everything(table: Any) -> dict[str, Any]:
    """The same writes on either table; returns what each writer reported."""
    out: dict[str, Any] = {}
    txns = [
        ("u1", T0 + 10, "t-a", 100, "USD"),
        ("u1", T0 + HOUR_US - 1, "t-b", 250, "JPY"),
        ("u1", T0 + HOUR_US, "t-c", -40, "USD"),  # on the hour
        ("u1", T0 + HOUR_US, "t-0", 7, "BHD"),  # same microsecond, smaller id
        ("u1", T0 + 3 * HOUR_US + 5, "t-d", 999, "USD"),
        ("u10", T0 + 20, "x-a", 5000, "USD"),  # a user whose id starts with another's
        ("u2", T0 + 30, "y-a", 1, "EUR"),
    ]
    rows = [
        (rowkeys.transaction_key(u, ev, tid), store.transaction_cells(units, cur, "grocery", str(ev), 1))
        for u, ev, tid, units, cur in txns
    ]
    out["transactions"] = store.write_cell_rows(table, rows)
    # DirectRow writes, and a newer value over an older one
    out["users"] = store.write_rows(
        table, [store.user_directory_row(table, rowkeys.user_directory_key(u)) for u in ("u1", "u10", "u2")]
    )
    out["overwrite"] = store.write_rows(
        table, [store.transaction_row(table, rowkeys.transaction_key("u2", T0 + 30, "y-a"), 2, "EUR", "fuel", "x", 2)]
    )
    # counters: applied once per run, added across runs
    hours = {
        rowkeys.hour_bucket_key("u1", HOUR_S): {
            **store.counter_cells("USD", 100, 1),
            **store.counter_cells("JPY", 250, 1),
        },
        rowkeys.hour_bucket_key("u1", HOUR_S + 3600): {
            **store.counter_cells("USD", -40, 1),
            **store.counter_cells("BHD", 7, 1),
        },
        rowkeys.hour_bucket_key("u10", HOUR_S): store.counter_cells("USD", 5000, 1),
    }
    out["hours-1"] = store.apply_counter_deltas(table, store.HOUR, hours, 1)
    out["hours-1-again"] = store.apply_counter_deltas(table, store.HOUR, hours, 1)
    later = {rowkeys.hour_bucket_key("u1", HOUR_S + 3 * 3600): store.counter_cells("USD", 999, 1)}
    out["hours-2"] = store.apply_counter_deltas(table, store.HOUR, {**later, **hours}, 2)
    minutes = {rowkeys.minute_key(HOUR_S + 60 * m): store.counter_cells("USD", 10 * m, m) for m in (0, 1, 5, 59, 61)}
    out["minutes"] = store.apply_counter_deltas(table, store.MINUTE, minutes, 1)
    top = {
        rowkeys.hour_bucket_key("u1", HOUR_S + 7200): {**store.counter_cells("USD", 100, 1), b"BHD:sum": 7},
        rowkeys.hour_bucket_key("u10", HOUR_S + 7200): store.counter_cells("USD", -40, 2),
    }
    out["top"] = store.apply_bucket_deltas(table, top, 3)
    out["top blocks"] = store.apply_bucket_deltas(table, store.block_deltas(top), 3, store.BLOCK)
    out["top-moved"] = store.apply_bucket_deltas(table, {k: {b"USD:sum": 5} for k in top}, 4)
    out["top-again"] = store.apply_bucket_deltas(table, {k: {b"USD:sum": 5} for k in top}, 4)
    out["top index"] = store.read_top_index(
        table, [rowkeys.top_index_range(s, "USD", HOUR_S + 7200, -100, 106) for s in range(rowkeys.TOP_SHARDS)]
    )
    versions = {f"t-{c}": store.Version("u1", 100, "USD", T0 + 10, T0 + 11, f"m-{c}") for c in "abc"}
    index = [(rowkeys.id_index_key(tid), store.id_index_cells(v, 1)) for tid, v in versions.items()]
    conflicts = [
        (
            rowkeys.conflict_key(run, tid, f"m-{tid}-{run}"),
            store.conflict_cells(tid, versions["t-a"], store.Version("u9", 1, "JPY", T0, 0, f"m-{tid}-{run}"), run),
        )
        for run, tid in ((1, "t-a"), (1, "t-b"), (2, "t-c"), (40, "t-a"))
    ]
    late = [
        (
            rowkeys.late_key(T0 + i * 1_000_000, f"late-{i}"),
            store.late_cells(
                store.Version("u1", i, "USD", T0 - HOUR_US, T0 + i * 1_000_000),
                "2026-03-15T02:00:00Z",
                f"2026-03-15T03:00:0{i}Z",  # T0 + i seconds
                1,
            ),
        )
        for i in range(5)
    ]
    out["index, conflicts, late"] = store.write_cell_rows(table, [*index, *conflicts, *late])
    out["job"] = store.write_cells(table, rowkeys.JOB_KEY, store.META, {b"last_run": b"2", b"pending": b""})
    out["markers"] = store.write_rows(table, [store.marker_row(table, rowkeys.processed_file_key("dt=x/a"), 3)])
    return {name: _plain(result) for name, result in out.items()}  # failures as their keys


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [f.key if isinstance(f, store.RowFailure) else f for f in value]
    return value


def u1(start_us: int, end_us: int) -> tuple[bytes, bytes]:
    return rowkeys.transaction_range("u1", start_us, end_us)


READS: dict[str, Callable[[Any], Any]] = {
    "dump": lambda t: store.dump_table(t),
    "dump with bookkeeping": lambda t: store.dump_table(t, store.FAMILIES),
    "transactions of u1": lambda t: store.read_transactions(t, *rowkeys.user_range("u1")),
    "transactions, limit 2": lambda t: store.read_transactions(t, *rowkeys.user_range("u1"), limit=2),
    "transactions, end left out": lambda t: store.read_transactions(t, *u1(T0 + 10, T0 + HOUR_US)),
    "transactions, empty range": lambda t: store.read_transactions(t, *u1(T0 + 11, T0 + 11)),
    "transactions in ranges": lambda t: store.read_transactions_in(
        t, [u1(T0, T0 + 11), u1(T0 + HOUR_US - 1, T0 + HOUR_US + 1), u1(T0 + HOUR_US, T0 + 4 * HOUR_US)]
    ),
    "counters at keys": lambda t: store.read_counters_at(
        t, store.HOUR, [rowkeys.hour_bucket_key("u1", HOUR_S + 3600 * h) for h in range(5)]
    ),
    "counter rows": lambda t: store.read_counter_rows(t, store.HOUR, b"\x00", b"\xff"),
    "counter rows, limit 1": lambda t: store.read_counter_rows(t, store.MINUTE, b"\x00", b"\xff", limit=1),
    "keys per family": lambda t: {f: store.read_keys(t, f, b"\x00", b"\xff") for f in store.FAMILIES},
    "keys, limit 2": lambda t: store.read_keys(t, store.LIST, b"", b"\xff", limit=2),
    "rows at": lambda t: store.read_rows_at(
        t, [rowkeys.JOB_KEY, b"u1#none", rowkeys.top_index_key("u1", "USD", HOUR_S + 7200, 105)], store.TOP
    ),
    "top hours": lambda t: [store.read_top_hours(t, c, 0, HOUR_S + 5 * 3600) for c in ("USD", "BHD", "EUR")],
    "row cells": lambda t: store.read_row_cells(t, rowkeys.JOB_KEY, store.META),
    "missing row cells": lambda t: store.read_row_cells(t, b"~nothing", store.META),
    "run markers": lambda t: store.read_run_markers(
        t, [rowkeys.hour_bucket_key("u1", HOUR_S), rowkeys.processed_file_key("dt=x/a"), b"~none"]
    ),
    "id index": lambda t: store.read_id_index(t, [rowkeys.id_index_key(x) for x in ("t-a", "t-b", "t-z")]),
    "late": lambda t: store.read_late(t, *rowkeys.late_range(T0 + 1_000_000, T0 + 4_000_000)),
    "late, limit 2": lambda t: store.read_late(t, *rowkeys.late_range(T0, T0 + HOUR_US), limit=2),
    "conflicts": lambda t: store.read_conflicts(t, *rowkeys.conflict_range()),
    "conflicts of runs 1-2": lambda t: store.read_conflicts(t, *rowkeys.conflict_range(1, 2)),
    # the web app's queries over them
    "pages": lambda t: [queries.transactions_page(t, "u1", T0, T0 + 4 * HOUR_US, limit) for limit in (1, 2, 5, 10)],
    "sums": lambda t: [
        queries.exact_sum(t, "u1", T0 + a, T0 + b)
        for a, b in ((0, 4 * HOUR_US), (5, HOUR_US + 1), (HOUR_US, HOUR_US), (11, 3 * HOUR_US + 6))
    ],
    "hourly": lambda t: queries.hourly(t, "u1", T0 + 5, T0 + 4 * HOUR_US - 5),
    "top": lambda t: [queries.top_users(t, T0 + HOUR_US + 5, h, 5, c) for h in (1, 2) for c in ("USD", "BHD")],
    "per minute": lambda t: queries.per_minute(t, T0 + 61 * 60_000_000, 62),
    "late pages": lambda t: [queries.late_page(t, T0, T0 + HOUR_US, n) for n in (1, 3, 5)],
    "latest conflicts": lambda t: [queries.latest_conflicts(t, last, n) for last, n in ((40, 10), (40, 2), (2, 10))],
    "users": lambda t: [queries.user_ids(t, p, n) for p, n in (("u1", 10), ("u", 2), ("", 10), ("z", 5))],
}
EMPTY = {"transactions, empty range", "missing row cells"}


@pytest.fixture(scope="module")
def both(emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from conftest import cleanup_resources, make_config

    cfg: Config = make_config(tmp_path_factory.mktemp("contract"))
    real = clients.ensure_table(cfg)
    memory = MemoryTable()
    written = (write_everything(real), write_everything(memory))
    yield real, memory, written
    cleanup_resources(cfg)


def test_the_same_writes_report_the_same_results(both: Any) -> None:
    _, _, (on_bigtable, in_memory) = both
    assert in_memory == on_bigtable
    assert all(value == [] for name, value in in_memory.items() if not name.startswith(("hours", "minutes", "top")))


@pytest.mark.parametrize("name", list(READS))
def test_the_same_reads_give_the_same_answers(both: Any, name: str) -> None:
    real, memory, _ = both
    on_bigtable = READS[name](real)
    if name not in EMPTY:  # a read that finds nothing on both proves little
        assert on_bigtable, f"{name}: nothing read, so nothing compared"
    assert READS[name](memory) == on_bigtable


def test_a_range_that_ends_before_it_starts_is_refused_by_both(both: Any) -> None:
    real, memory, _ = both
    for table in (real, memory):
        with pytest.raises(ValueError, match="start_key must be less than or equal to end_key"):
            store.read_transactions(table, b"u1#2", b"u1#1")


def test_a_write_to_a_family_the_table_lacks_fails_for_that_row_only(both: Any) -> None:
    real, memory, _ = both
    rows = [(b"~bad#1", [("nofamily", b"q", b"v")]), (b"~good#1", [(store.META, b"q", b"v")])]
    failed = [[f.key for f in store.write_cell_rows(t, rows)] for t in (real, memory)]
    assert failed[0] == failed[1] == [b"~bad#1"]
    found = [store.read_rows_at(t, [b"~bad#1", b"~good#1"], store.META) for t in (real, memory)]
    assert found[0] == found[1] == {b"~good#1": {b"q": b"v"}}
