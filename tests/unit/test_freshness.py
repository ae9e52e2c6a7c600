"""Freshness on an in-memory table and a local spool: the newest processed file's newest publish
time, the time since the last run, and the backlog in files and rows, as /metrics shows them.
Spool files are written with hand-picked publish times; the expected figures are written out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from support.memtable import MemoryTable

from common import jobstate, spool
from common.config import Config, from_dict
from webapp import create_app, freshness

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def write_file(cfg: Config, written: datetime, publish: list[datetime]) -> str:
    """A transaction file written at `written` with one row per publish time; its spool-relative path."""
    count = len(publish)
    table = pa.table(
        {
            "transaction_id": [f"t{written:%H%M%S}-{i}" for i in range(count)],
            "user_id": ["ann"] * count,
            "amount_minor": [100] * count,
            "currency": ["USD"] * count,
            "merchant_category": ["food"] * count,
            "event_time": pa.array(publish, pa.timestamp("us", tz="UTC")),
            "publish_time": pa.array(publish, pa.timestamp("us", tz="UTC")),
            "message_id": [f"m{i}" for i in range(count)],
        },
        schema=spool.TRANSACTION_SCHEMA,
    )
    path = spool.write_atomic(table, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS, written))
    return str(path.relative_to(spool.local_path(cfg.spool_dir)))


def at(minute: int, second: int = 0) -> datetime:
    return NOW - timedelta(minutes=minute, seconds=-second)


@pytest.fixture
def pipeline(tmp_path: Path) -> tuple[Config, MemoryTable]:
    """Two files processed by one run that finished at 11:58, a third and fourth waiting."""
    cfg = from_dict({"spool_dir": str(tmp_path / "spool"), "bigtable_emulator_host": "127.0.0.1:9"})
    table = MemoryTable()
    done = [
        write_file(cfg, at(10), [at(11), at(10, 30)]),
        write_file(cfg, at(5), [at(6), at(5, 40), at(5, 50)]),  # newest processed: 11:55:50
    ]
    write_file(cfg, at(1), [at(1, 10)] * 4)
    write_file(cfg, at(0), [at(0, 5)] * 5)
    run = jobstate.begin_run(table, None, done, at(4))
    jobstate.finish_run(table, run, {"run_id": 1, "rows": 5}, at(2))
    return cfg, table


def test_the_figures_follow_the_spool_and_the_jobs_rows(pipeline: tuple[Config, MemoryTable]) -> None:
    cfg, table = pipeline
    measured = freshness.FreshnessTracker().measure(cfg, table, jobstate.read_job_status(table))
    assert measured.as_json(NOW) == {
        "newest_counted_publish_time": "2026-03-15T11:55:50Z",
        "newest_counted_age_seconds": 250.0,
        "last_run_finished_at": "2026-03-15T11:58:00Z",
        "since_last_run_seconds": 120.0,
        "backlog_files": 2,
        "backlog_rows": 9,
        "backlog_rows_partial": False,
    }


def test_a_later_run_moves_the_newest_counted_transaction(pipeline: tuple[Config, MemoryTable]) -> None:
    cfg, table = pipeline
    tracker = freshness.FreshnessTracker()
    tracker.measure(cfg, table, jobstate.read_job_status(table))
    waiting, _ = jobstate.unprocessed_files(cfg, table)
    run = jobstate.begin_run(table, jobstate.read_job_status(table), waiting[:1], at(1))
    jobstate.finish_run(table, run, {"run_id": 2, "rows": 4}, at(0, 30))
    figures = tracker.measure(cfg, table, jobstate.read_job_status(table)).as_json(NOW)
    assert (figures["newest_counted_publish_time"], figures["backlog_files"], figures["backlog_rows"]) == (
        "2026-03-15T11:59:10Z",
        1,
        5,
    )


def test_past_the_footer_budget_the_rows_say_they_are_partial(
    pipeline: tuple[Config, MemoryTable], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, table = pipeline
    monkeypatch.setattr(freshness, "MAX_FOOTERS_PER_CALL", 1)
    tracker = freshness.FreshnessTracker()
    first = tracker.measure(cfg, table, None)
    assert (first.backlog_rows, first.backlog_rows_partial, first.last_run_finished_at) == (4, True, None)
    second = tracker.measure(cfg, table, None)  # the footers read before are kept
    assert (second.backlog_rows, second.backlog_rows_partial) == (9, False)


def test_metrics_carry_the_freshness_gauges(pipeline: tuple[Config, MemoryTable]) -> None:
    cfg, table = pipeline
    text = create_app(cfg, clock=lambda: NOW, table=table).test_client().get("/metrics").get_data(as_text=True)
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("txn_")}
    assert lines["txn_spool_backlog_files"] == 2
    assert lines["txn_spool_backlog_rows"] == 9
    assert lines["txn_freshness_newest_counted_age_seconds"] == 250
    assert lines["txn_freshness_since_last_run_seconds"] == 120
    assert lines["txn_freshness_newest_counted_publish_timestamp_seconds"] == at(5, 50).timestamp()
