"""The Bigtable cell layout on the real emulator: exactly-once counters, family-filtered reads."""

from __future__ import annotations

from common import clients, rowkeys, store
from common.config import Config


def test_counter_deltas_apply_once_per_run_and_add_across_runs(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    key = rowkeys.hour_bucket_key("u1", 1_763_697_600)
    usd = store.counter_cells("USD", 1250, 2)
    assert store.apply_counter_deltas(table, store.HOUR, {key: usd}, run_id=1)[:2] == (1, 0)
    # The same run again (a retry after a crash) changes nothing.
    assert store.apply_counter_deltas(table, store.HOUR, {key: usd}, run_id=1)[:2] == (0, 1)
    both = {**store.counter_cells("USD", -300, 1), **store.counter_cells("JPY", 1000, 1)}
    store.apply_counter_deltas(table, store.HOUR, {key: both}, run_id=2)
    rows = store.read_counter_rows(table, store.HOUR, *rowkeys.user_range("u1"))
    assert rows == [(key, {b"USD:sum": 950, b"USD:count": 3, b"JPY:sum": 1000, b"JPY:count": 1})]
    assert store.per_currency(rows[0][1]) == {"USD": (950, 3), "JPY": (1000, 1)}
    assert store.read_run_markers(table, [key, b"u2#0000000000"]) == {key: 2}


def test_reads_of_one_family_never_return_the_other_shape_of_row(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    hour = 1_763_697_600
    tx_key = rowkeys.transaction_key("u1", hour * 1_000_000 + 5, "t1")
    other_user = rowkeys.transaction_key("u10", hour * 1_000_000 + 5, "t2")
    rows = [
        store.transaction_row(table, tx_key, 1999, "USD", "grocery", "2025-11-21T04:00:00.000005Z", 1),
        store.transaction_row(table, other_user, 5, "USD", "grocery", "2025-11-21T04:00:00.000005Z", 1),
    ]
    assert store.write_rows(table, rows) == []
    store.apply_counter_deltas(
        table, store.HOUR, {rowkeys.hour_bucket_key("u1", hour): store.counter_cells("USD", 1999, 1)}, 1
    )
    listed = store.read_transactions(table, *rowkeys.user_range("u1"))
    assert [(t.key, t.amount_minor, t.category) for t in listed] == [(tx_key, 1999, "grocery")]
    buckets = store.read_counter_rows(table, store.HOUR, *rowkeys.user_range("u1"))
    assert [k for k, _ in buckets] == [rowkeys.hour_bucket_key("u1", hour)]
    dump = store.dump_table(table)
    assert set(dump) == {tx_key, other_user, rowkeys.hour_bucket_key("u1", hour)}
    assert all("dcfmeta" not in families for families in dump.values())
