"""The web app's whole-hour cache follows the job's runs as recorded in the table's ~job row: a
finished run's totals are remembered until the next run finishes, and nothing is remembered while a
run is pending. The runs are recorded with the job's own bookkeeping (common/jobstate.py) in an
in-memory table; their rows and counters are written out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.memtable import MemoryTable

from common import jobstate, rowkeys, sketches, store
from common.config import from_dict
from webapp import create_app

NOW = datetime(2026, 3, 15, 10, 20, 30, 250_000, tzinfo=UTC)
OLD = datetime(2026, 3, 5, 10, 20, 30, 250_000, tzinfo=UTC)  # ten days before NOW
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def hour_key(when: datetime) -> bytes:
    return rowkeys.hour_bucket_key("carol", us(when.replace(minute=0, second=0, microsecond=0)) // 1_000_000)


def record_run(
    table: MemoryTable, rows: list[tuple[str, datetime, int]], hours: dict[bytes, tuple[int, int]]
) -> jobstate.PendingRun:
    """Begin a run, write carol's rows (id, event time, cents) and the hour counters given, and
    leave the run pending."""
    run = jobstate.begin_run(table, jobstate.read_job_status(table), [], NOW)
    cells = [
        (
            rowkeys.transaction_key("carol", us(when), tid),
            store.transaction_cells(cents, "USD", "fuel", "x", run.run_id),
        )
        for tid, when, cents in rows
    ]
    assert store.write_cell_rows(table, cells) == []
    deltas = {key: store.counter_cells("USD", total, count) for key, (total, count) in hours.items()}
    assert store.apply_counter_deltas(table, store.HOUR, deltas, run.run_id)[2] == []
    return run


def test_cached_sums_follow_each_job_run_and_bypass_a_pending_one() -> None:
    table = MemoryTable()
    run = record_run(
        table,
        [("a", OLD, 1000), ("b", NOW - timedelta(seconds=1), 250)],
        {hour_key(OLD): (1000, 1), hour_key(NOW): (250, 1)},
    )
    jobstate.finish_run(table, run, {"conflicts": 0}, NOW)
    app = create_app(from_dict({"project_id": "test-project"}), clock=lambda: NOW, table=table)
    client = app.test_client()
    cache = app.extensions["txn"].whole_hours
    cache.tag_ttl_s = 0  # re-read the ~job row on every request

    def total() -> tuple[str, int]:
        body = client.get("/api/v1/users/carol/sum", query_string={"from": "-30d", "to": "now"}).get_json()
        return body["sum"], body["count"]

    assert total() == ("12.50", 2)
    assert total() == ("12.50", 2)
    assert (cache.misses, cache.hits) == (1, 1)

    run = record_run(table, [("c", OLD + timedelta(hours=3), 5)], {hour_key(OLD + timedelta(hours=3)): (5, 1)})
    jobstate.finish_run(table, run, {"conflicts": 0}, NOW)
    assert total() == ("12.55", 3)
    assert cache.misses == 2

    # A run that has begun and not finished: its counter writes show at once, nothing is cached.
    record_run(table, [], {hour_key(OLD): (7, 1)})
    assert total() == ("12.62", 4)
    assert total() == ("12.62", 4)
    assert (cache.misses, cache.hits) == (2, 1)


def test_cached_categories_and_percentiles_follow_each_job_run() -> None:
    table = MemoryTable()
    hour = us(OLD.replace(minute=0, second=0, microsecond=0)) // 1_000_000

    def record(amounts: list[int]) -> None:
        """One finished run adding carol's `amounts` (USD cents, fuel) to the hour of OLD."""
        run = jobstate.begin_run(table, jobstate.read_job_status(table), [], NOW)
        counters = {rowkeys.category_hour_key("carol", hour): {b"USD:fuel:sum": sum(amounts), b"USD:fuel:count": 2}}
        assert store.apply_counter_deltas(table, store.CAT, counters, run.run_id)[2] == []
        blob = bytes(sketches.merged([], amounts).serialize())
        cells = {rowkeys.user_sketch_key("carol", hour): {b"USD": blob}}
        assert store.merge_cells_once(table, store.KLL, cells, sketches.merge_bytes, run.run_id)[2] == []
        jobstate.finish_run(table, run, {"conflicts": 0}, NOW)

    record([100, 300])
    app = create_app(from_dict({"project_id": "test-project"}), clock=lambda: NOW, table=table)
    client = app.test_client()
    cache = app.extensions["txn"].whole_hours
    cache.tag_ttl_s = 0
    span = {"from": "-30d", "to": "now"}

    def answers() -> tuple[list[tuple[str, int]], list[str | None], int]:
        categories = client.get("/api/v1/users/carol/categories", query_string=span).get_json()
        body = client.get("/api/v1/users/carol/percentiles", query_string={**span, "q": "0,1"}).get_json()
        (usd,) = body["by_currency"]
        return [(c["sum"], c["count"]) for c in categories], [q["value"] for q in usd["quantiles"]], usd["count"]

    assert answers() == ([("4.00", 2)], ["1.00", "3.00"], 2)
    assert answers() == ([("4.00", 2)], ["1.00", "3.00"], 2)
    assert (cache.misses, cache.hits) == (2, 2)  # one entry per route, each read once

    record([50, 900])  # a later run in the same hours: both answers change at once
    assert answers() == ([("13.50", 4)], ["0.50", "9.00"], 4)
    assert (cache.misses, cache.hits) == (4, 2)
