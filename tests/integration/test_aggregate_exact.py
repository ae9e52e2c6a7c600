"""The aggregation job on the Bigtable emulator, run in-process on the shared local SparkSession:
every user-hour (and every other row it writes) equals the ledger aggregated with DuckDB, however
the events were split across runs, duplicated, reordered or late."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from conftest import cleanup_resources, make_config
from support.ledger import assert_contents, duplicates_of, expected_contents, make_ledger, read_contents, write_spool

from common import clients, jobstate, rowkeys, spool, store
from common.config import Config
from common.spool import SpoolSchemaError
from jobs.aggregate import job


def run(spark: Any, cfg: Config, rebuild: bool = False) -> job.RunSummary:
    return job.run_once(spark, cfg, rebuild=rebuild, say=lambda line: None)


@pytest.fixture
def other_table(cfg: Config, tmp_path: Path) -> Any:
    """A second config reading the same spool into a table of its own."""
    config = make_config(tmp_path, spool_dir=cfg.spool_dir)
    yield config
    cleanup_resources(config)


def test_one_run_matches_the_ledger_for_every_user_hour(spark: Any, cfg: Config) -> None:
    ledger = make_ledger("one", 1500, hours=8)
    write_spool(cfg, ledger, files=3)
    summary = run(spark, cfg)
    assert (summary.run_id, summary.files, summary.rows, summary.rows_written) == (1, 3, 1500, 1500)
    assert (summary.duplicates_dropped, summary.already_counted, summary.late_rows, summary.failures) == (0, 0, 0, 0)
    expected = expected_contents(ledger, cfg.late_horizon_hours)
    assert summary.buckets_written == len(expected.buckets)
    table = clients.bigtable_table(cfg)
    assert_contents(read_contents(table), expected)
    status = jobstate.read_job_status(table)
    assert status is not None and status["last_run"] == 1 and status["pending"] is None
    assert status["last_summary"]["rows_written"] == 1500
    assert jobstate.spool_backlog(cfg, table) == 0


def test_a_run_without_analytics_counts_everything_but_categories_and_sketches(spark: Any, cfg: Config) -> None:
    # The benchmark's run (--no-analytics): every other row as the ledger says, no dcfcat or dcfkll.
    ledger = make_ledger("bare", 600, hours=4)
    write_spool(cfg, ledger, files=1)
    summary = job.run_once(spark, cfg, say=lambda line: None, analytics=False)
    assert (summary.rows_written, summary.category_rows_written, summary.sketches_written) == (600, 0, 0)
    assert "no categories or sketches written" in summary.line()
    expected = expected_contents(ledger, cfg.late_horizon_hours)
    assert expected.user_categories and expected.hour_categories
    table = clients.bigtable_table(cfg)
    bare = dataclasses.replace(expected, user_categories={}, hour_categories={}, minute_categories={})
    assert_contents(read_contents(table), bare)
    assert store.dump_table(table, (store.CAT, store.KLL)) == {}
    status = jobstate.read_job_status(table)
    assert status is not None and status["last_summary"]["analytics"] is False


def test_three_runs_over_three_slices_equal_one_run_over_all(spark: Any, cfg: Config, other_table: Config) -> None:
    # The slices overlap in time: each covers hours the others cover too.
    slices = [make_ledger(f"slice{i}", 400, first_hour=i * 2, hours=6, seed=i) for i in range(3)]
    for index, ledger in enumerate(slices):
        write_spool(cfg, ledger, files=2, seed=index)
        assert jobstate.spool_backlog(cfg, clients.ensure_table(cfg)) == 2
        summary = run(spark, cfg)
        assert (summary.run_id, summary.rows, summary.rows_written) == (index + 1, 400, 400)
    everything = pd.concat(slices, ignore_index=True)
    expected = expected_contents(everything, cfg.late_horizon_hours)
    incremental = read_contents(clients.bigtable_table(cfg))
    assert_contents(incremental, expected)

    summary = run(spark, other_table)
    assert (summary.run_id, summary.files, summary.rows) == (1, 6, 1200)
    assert store.dump_table(clients.bigtable_table(other_table)) == store.dump_table(clients.bigtable_table(cfg))


def test_a_backlog_larger_than_a_run_is_counted_oldest_first_in_slices(
    spark: Any, cfg: Config, other_table: Config
) -> None:
    # Seven files, some copies of others' transactions in later files; a run takes at most three.
    ledger = make_ledger("backlog", 700, hours=6)
    paths = write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 0.1, seed=3, delay=timedelta(minutes=1))]), 7)
    capped = dataclasses.replace(cfg, job_max_files_per_run=3)
    oldest_first = sorted(str(p.relative_to(cfg.spool_dir)) for p in paths)
    taken = []
    for run_id, files, left in ((1, 3, 4), (2, 3, 1), (3, 1, 0)):
        summary = run(spark, capped)
        assert (summary.run_id, summary.files, summary.files_left) == (run_id, files, left)
        processed = sorted(jobstate.processed_among(clients.bigtable_table(cfg), oldest_first))
        taken.append(processed)
    assert taken == [oldest_first[:3], oldest_first[:6], oldest_first]  # the oldest files first
    assert run(spark, capped).run_id == 0  # nothing left
    assert_contents(read_contents(clients.bigtable_table(cfg)), expected_contents(ledger, cfg.late_horizon_hours))

    # One run over all seven files into another table writes the same numbers.
    summary = run(spark, other_table)
    assert (summary.files, summary.files_left) == (7, 0)
    assert_contents(
        read_contents(clients.bigtable_table(other_table)), expected_contents(ledger, cfg.late_horizon_hours)
    )


def test_duplicates_reordering_and_late_events_are_counted_exactly(spark: Any, cfg: Config) -> None:
    horizon = timedelta(hours=cfg.late_horizon_hours)
    first = make_ledger("early", 600, first_hour=0, hours=6)
    # Run 1: the first events, some of them twice in different files, all shuffled.
    write_spool(cfg, pd.concat([first, duplicates_of(first, 0.2, seed=1, delay=timedelta(minutes=3))]), files=3)
    summary = run(spark, cfg)
    assert (summary.rows, summary.duplicates_dropped, summary.rows_written) == (720, 120, 600)

    # Run 2: redeliveries of run 1's events (a third copy of some), events late but within the
    # horizon that fall into run 1's hours, and events published beyond the horizon.
    within = make_ledger("within", 200, first_hour=2, hours=4, publish_lag=horizon - timedelta(hours=1))
    beyond = make_ledger("beyond", 50, first_hour=0, hours=6, publish_lag=horizon + timedelta(minutes=1))
    again = duplicates_of(first, 0.3, seed=2, delay=timedelta(hours=5))
    batch = pd.concat([within, beyond, again, duplicates_of(within, 0.5, seed=3, delay=timedelta(seconds=1))])
    paths = write_spool(cfg, batch, files=4, seed=7)
    summary = run(spark, cfg)
    assert summary.rows == 200 + 50 + 180 + 100
    assert summary.duplicates_dropped == 100  # within this run's own files
    assert summary.already_counted == 180  # copies of transactions run 1 counted
    assert summary.late_rows == 50
    assert summary.rows_written == 200

    ledger = pd.concat([first, within, beyond], ignore_index=True)
    expected = expected_contents(ledger, cfg.late_horizon_hours)
    assert len(expected.transactions) == 800  # the 50 beyond the horizon are not folded in
    assert_contents(read_contents(clients.bigtable_table(cfg)), expected)
    assert all(p.exists() for p in paths)  # late rows stay in the spool
    status = jobstate.read_job_status(clients.bigtable_table(cfg))
    assert status is not None and status["last_summary"]["late_rows"] == 50
    # Each late row is recorded for the API's late list, with its own values.
    late = store.read_late(clients.bigtable_table(cfg), *rowkeys.late_range(0, 10**16 - 1))
    assert {(r["transaction_id"], r["user_id"], r["amount_minor"], r["run"]) for r in late} == {
        (t, u, a, 2)
        for t, u, a in zip(beyond["transaction_id"], beyond["user_id"], beyond["amount_minor"], strict=True)
    }


def test_rerun_and_rebuild_leave_the_table_identical(spark: Any, cfg: Config) -> None:
    ledger = make_ledger("rebuild", 500, hours=5)
    write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 0.1, seed=4, delay=timedelta(minutes=1))]), files=2)
    run(spark, cfg)
    write_spool(cfg, make_ledger("rebuild2", 300, first_hour=3, hours=4), files=2)
    run(spark, cfg)
    table = clients.bigtable_table(cfg)
    before = store.dump_table(table)

    summary = run(spark, cfg)
    assert (summary.run_id, summary.files, summary.rows_written) == (0, 0, 0)  # nothing new: nothing done
    assert store.dump_table(table) == before

    summary = run(spark, cfg, rebuild=True)
    assert (summary.run_id, summary.files, summary.rows, summary.rows_written) == (1, 4, 850, 800)
    assert store.dump_table(table) == before
    assert jobstate.read_job_status(table)["last_run"] == 1  # type: ignore[index]


def test_a_run_reads_only_new_files_and_looks_up_only_its_own_ids(spark: Any, cfg: Config) -> None:
    run(spark, cfg)  # an empty spool is not an error
    history = make_ledger("history", 1000, first_hour=0, hours=10)
    write_spool(cfg, history, files=4)
    assert run(spark, cfg).looked_up == 0  # an empty table: nothing to look up

    fresh = make_ledger("fresh", 120, first_hour=20, hours=2)
    write_spool(cfg, fresh, files=1)
    summary = run(spark, cfg)
    # One id index read per new id, whatever the history holds: the cost follows the new data.
    assert (summary.files, summary.rows, summary.looked_up, summary.rows_written) == (1, 120, 120, 120)

    overlapping = make_ledger("overlap", 150, first_hour=8, hours=4)
    write_spool(cfg, pd.concat([overlapping, history.iloc[:30]]), files=1)
    summary = run(spark, cfg)
    assert (summary.files, summary.rows, summary.looked_up, summary.already_counted) == (1, 180, 180, 30)
    everything = pd.concat([history, fresh, overlapping])
    assert_contents(read_contents(clients.bigtable_table(cfg)), expected_contents(everything, cfg.late_horizon_hours))


def test_a_spool_file_without_a_column_is_named_and_the_run_is_not_recorded(spark: Any, cfg: Config) -> None:
    ledger = make_ledger("good", 50)
    write_spool(cfg, ledger, files=1)
    bad = pa.table({"transaction_id": ["x1"], "user_id": ["u1"], "amount": [12.5]})
    bad_path = spool.write_atomic(bad, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS))
    with pytest.raises(
        SpoolSchemaError, match=f"'amount_minor' is missing or null in 1 rows, e.g. in .*{bad_path.name}"
    ):
        run(spark, cfg)
    table = clients.bigtable_table(cfg)
    assert store.dump_table(table) == {}
    assert jobstate.pending_run(jobstate.read_job_status(table)) is None

    bad_path.rename(bad_path.with_name("_" + bad_path.name))  # moved aside: the next run goes ahead
    assert run(spark, cfg).run_id == 1
    assert_contents(read_contents(table), expected_contents(ledger, cfg.late_horizon_hours))


def test_a_spool_file_with_a_column_of_another_type_is_named(spark: Any, cfg: Config) -> None:
    write_spool(cfg, make_ledger("typed", 20), files=1)
    frame = make_ledger("float", 3).assign(amount_minor=lambda f: f["amount_minor"] / 100)
    spool.write_atomic(
        pa.Table.from_pandas(frame, preserve_index=False), spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS)
    )
    with pytest.raises(SpoolSchemaError, match="'amount_minor' must be bigint, got double in transactions/"):
        run(spark, cfg)
    status = jobstate.read_job_status(clients.bigtable_table(cfg))
    assert status is not None  # only the failure is recorded: no run, pending or finished
    assert (status["last_run"], status["pending"], status["failed_runs_total"]) == (0, None, 1)
    assert "'amount_minor' must be bigint" in status["last_failure"]["error"]


def test_a_table_with_data_but_no_job_state_is_refused(spark: Any, cfg: Config) -> None:
    ledger = make_ledger("stateless", 40)
    write_spool(cfg, ledger, files=1)
    run(spark, cfg)
    table = clients.bigtable_table(cfg)
    table.mutate_rows([_delete(table, b"~job")])
    with pytest.raises(jobstate.JobStateError, match="--rebuild"):
        run(spark, cfg)
    # The refusal is recorded as a failed run, and that record does not pass for job state.
    assert (jobstate.read_job_status(table) or {}).get("failed_runs_total") == 1
    with pytest.raises(jobstate.JobStateError, match="--rebuild"):
        run(spark, cfg)
    run(spark, cfg, rebuild=True)
    assert_contents(read_contents(table), expected_contents(ledger, cfg.late_horizon_hours))


def _delete(table: Any, key: bytes) -> Any:
    row = table.direct_row(key)
    row.delete()
    return row


def _age(path: Path, days: float) -> None:
    """Set a folder's modification time `days` back, as if nothing had been added to it since."""
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


def test_a_file_that_lands_late_in_an_old_folder_is_shown_and_counted_by_the_next_run(spark: Any, cfg: Config) -> None:
    today = datetime.now(UTC)
    old_day = today - timedelta(days=5)
    older = make_ledger("older", 40, hours=2)
    frame = pa.Table.from_pandas(older, schema=spool.TRANSACTION_SCHEMA, preserve_index=False)
    first = spool.write_atomic(frame, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS, old_day))
    _age(first.parent, 5)
    later = make_ledger("later", 60, first_hour=4, hours=2)
    write_spool(cfg, later, files=2)
    table = clients.ensure_table(cfg)
    assert jobstate.spool_backlog(cfg, table) == 3
    run(spark, cfg)  # processes everything and closes the five-day-old folder
    assert jobstate.closed_folders(table) == {first.parent.name: int(first.parent.stat().st_mtime_ns // 1_000_000)}
    assert jobstate.spool_backlog(cfg, table) == 0
    assert run(spark, cfg).run_id == 0  # nothing new

    late = make_ledger("late", 25, first_hour=1, hours=1)
    late_frame = pa.Table.from_pandas(late, schema=spool.TRANSACTION_SCHEMA, preserve_index=False)
    placed = spool.write_atomic(late_frame, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS, old_day))
    assert placed.parent == first.parent
    assert jobstate.spool_backlog(cfg, table) == 1  # /health's backlog shows it until a run takes it
    summary = run(spark, cfg)
    assert (summary.files, summary.rows_written) == (1, 25)
    assert jobstate.spool_backlog(cfg, table) == 0
    everything = pd.concat([older, later, late])
    assert_contents(read_contents(table), expected_contents(everything, cfg.late_horizon_hours))


def test_a_closed_folder_whose_modification_time_is_unchanged_is_not_listed_again(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    frame = pa.Table.from_pandas(make_ledger("closed", 5), schema=spool.TRANSACTION_SCHEMA, preserve_index=False)
    old = spool.write_atomic(
        frame, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS, datetime(2026, 1, 1, tzinfo=UTC))
    )
    recent = spool.write_atomic(frame, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS))
    spool.write_atomic(frame, old.with_name("_partial.parquet"))  # not a complete file
    _age(old.parent, 30)
    mtime = int(old.parent.stat().st_mtime_ns // 1_000_000)
    files, folders = spool.list_spool(cfg.spool_dir, spool.TRANSACTIONS)
    assert files == sorted(p.relative_to(cfg.spool_dir).as_posix() for p in (old, recent))
    now_ms = int(time.time() * 1000)
    # Every file processed: only the folder older than the margin closes; today's stays open.
    assert spool.folders_to_close(folders, files, set(files), now_ms) == {old.parent.name: mtime}
    assert spool.folders_to_close(folders, files, {files[1]}, now_ms) == {}
    jobstate.close_folders(table, {old.parent.name: mtime})
    # Closed with its current modification time: skipped, so listing costs nothing for it.
    assert spool.list_spool(cfg.spool_dir, spool.TRANSACTIONS, jobstate.closed_folders(table))[0] == [files[1]]
    # A file renamed into it changes the folder's time: listed again.
    spool.write_atomic(frame, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS, datetime(2026, 1, 1, tzinfo=UTC)))
    assert len(spool.list_spool(cfg.spool_dir, spool.TRANSACTIONS, jobstate.closed_folders(table))[0]) == 3


def _expected_top(ledger: pd.DataFrame, now: datetime, hours: int, n: int, currency: str) -> list[tuple[str, int]]:
    """The ranking /top-users must give, from the ledger with pandas (whole hours up to now's)."""
    current = now.replace(minute=0, second=0, microsecond=0)
    start, end = current - timedelta(hours=hours - 1), current + timedelta(hours=1)
    inside = ledger[(ledger["event_time"] >= start) & (ledger["event_time"] < end) & (ledger["currency"] == currency)]
    totals = inside.groupby("user_id")["amount_minor"].sum().reset_index()
    totals = totals.sort_values(["amount_minor", "user_id"], ascending=[False, True]).head(n)
    return [(str(u), int(s)) for u, s in zip(totals["user_id"], totals["amount_minor"], strict=True)]


def test_top_users_is_exact_for_random_windows_after_split_runs_and_a_rebuild(spark: Any, cfg: Config) -> None:
    import random

    from webapp import queries

    rng = random.Random(15)
    slices = [
        make_ledger(f"top{i}", 700, first_hour=i * 3, hours=8, seed=i, currencies=("USD", "JPY")) for i in range(3)
    ]
    for ledger in slices:  # many card holders, so the index has hundreds of rows per hour
        ledger["user_id"] = [f"h{rng.randrange(250)}" for _ in range(len(ledger))]
    for index, ledger in enumerate(slices):
        write_spool(cfg, ledger, files=1, seed=index)
        run(spark, cfg)
    everything = pd.concat(slices, ignore_index=True)
    table = clients.bigtable_table(cfg)
    assert_contents(read_contents(table), expected_contents(everything, cfg.late_horizon_hours))
    asks = [
        (rng.randint(1, 168), rng.choice([1, 5, 100]), rng.choice(["USD", "JPY", "EUR"]), rng.randrange(0, 16))
        for _ in range(10)
    ]
    for rebuilt in (False, True):
        if rebuilt:
            run(spark, cfg, rebuild=True)
        for hours, n, currency, at_hour in asks:
            now = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=at_hour, minutes=17)
            actual = queries.top_users(table, int(now.timestamp()) * 1_000_000, hours, n, currency)
            assert actual == _expected_top(everything, now, hours, n, currency), (hours, n, currency, at_hour, rebuilt)


def test_a_table_of_the_old_layout_is_refused_until_rebuilt(spark: Any, cfg: Config) -> None:
    ledger = make_ledger("layout", 60)
    write_spool(cfg, ledger, files=1)
    run(spark, cfg)
    table = clients.bigtable_table(cfg)
    assert store.write_cells(table, rowkeys.JOB_KEY, store.META, {jobstate.LAYOUT: b"1"}) == []
    with pytest.raises(jobstate.JobStateError, match=r"layout 1.*txn-aggregate --rebuild"):
        run(spark, cfg)
    run(spark, cfg, rebuild=True)
    assert (jobstate.read_job_status(table) or {})["layout"] == jobstate.TABLE_LAYOUT
    assert_contents(read_contents(table), expected_contents(ledger, cfg.late_horizon_hours))
