"""The benchmark harness's own parts: stage names, the result files, the data window and the
ledger's buckets. No timing is asserted anywhere."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench import pipeline, writer
from bench.__main__ import ON_REQUEST, STAGES, parse_stages
from bench.data import write_spool
from bench.results import compare, write_all
from common.cli import UsageError
from emitter.simulate import Population, simulate

ROOT = Path(__file__).resolve().parents[2]


def test_stages_run_in_pipeline_order_whatever_order_they_are_named_in() -> None:
    assert parse_stages("api, job,publish") == ["publish", "job", "api"]
    assert parse_stages(None) == [name for name in STAGES if name not in ON_REQUEST]


@pytest.mark.parametrize("text", ["nope", "job,nope", ","])
def test_unknown_stage_is_a_usage_error_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--stages must be a comma-separated list of publish, spool"):
        parse_stages(text)


def test_result_files_hold_every_record_with_the_issue_keys(tmp_path: Path) -> None:
    results = [
        compare("raw publisher (ceiling)", 20000.0, "msgs/s", None, "-", None),
        compare("emitter publish", 19000.0, "msgs/s", 20000.0, ">= 0.9 x raw publisher", True),
        compare("spooler (durable)", 12000.0, "msgs/s", 24000.0, ">= 0.8 x raw pull + ack", False, "a note"),
    ]
    write_all(results, tmp_path, quick=True, wall_seconds=90.0)
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in records] == ["raw publisher (ceiling)", "emitter publish", "spooler (durable)"]
    for record in records:
        assert {"name", "value", "unit", "ceiling", "ratio", "target", "meets"} <= set(record)
    assert records[1]["ratio"] == 0.95 and records[1]["meets"] is True
    assert records[2]["ratio"] == 0.5 and records[2]["meets"] is False
    assert records[0]["ratio"] is None
    report = (tmp_path / "RESULTS.md").read_text()
    assert "on 2 cores" in report or " cores" in report
    assert "| spooler (durable) | 12,000 | msgs/s | 24,000 | 0.50 | >= 0.8 x raw pull + ack | **no** |" in report
    assert "- spooler (durable): a note" in report
    assert (tmp_path / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_window_holds_the_events_and_stays_inside_the_late_horizon() -> None:
    events = 50_000
    end = datetime(2026, 3, 1, tzinfo=UTC)
    population = Population(
        pipeline.E2E_USERS, pipeline.E2E_MEAN_PERIOD_S, 60.0, 2000, 10000, "USD", 42
    )  # what the end-to-end stage's config gives the emitter
    start = end - timedelta(hours=pipeline.window_hours(events))
    assert sum(1 for _ in itertools.islice(simulate(population, start, end), events)) == events
    assert pipeline.window_hours(1_000_000) <= pipeline.MAX_WINDOW_HOURS < 72
    with pytest.raises(ValueError, match="need more than"):
        pipeline.window_hours(2_000_000)


def test_ledger_buckets_add_exact_minor_units_per_user_hour_and_currency(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(
        "transaction_id,user_id,amount,currency,event_time\n"
        "a,u0001,20.10,USD,2026-01-01T10:00:00Z\n"
        "b,u0001,0.20,USD,2026-01-01T10:59:59.999999Z\n"
        "c,u0001,5.00,USD,2026-01-01T11:00:00Z\n"
        "d,u0002,99.99,USD,2026-01-01T10:30:00.5Z\n"
        "e,u0001,1000,JPY,2026-01-01T10:10:00Z\n"
        "f,u0001,1.234,BHD,2026-01-01T10:20:00Z\n"
    )
    ten = int(datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp())
    assert pipeline.ledger_buckets(ledger) == {
        ("u0001", ten, "USD"): (2030, 2),
        ("u0001", ten, "JPY"): (1000, 1),
        ("u0001", ten, "BHD"): (1234, 1),
        ("u0001", ten + 3600, "USD"): (500, 1),
        ("u0002", ten, "USD"): (9999, 1),
    }


def test_writer_ratio_is_the_median_of_each_rounds_own_ratio() -> None:
    # Round by round 0.5, 0.25, 1.0: median 0.5; the ratio of the medians would be 400 / 1000 = 0.4.
    rates = {writer.WRITERS[0]: [1000.0, 4000.0, 400.0], "other": [500.0, 1000.0, 400.0]}
    assert writer.median_ratio(rates, "other") == 0.5


def test_writer_rows_have_the_jobs_cells_in_their_families() -> None:
    rows = writer.job_shaped_rows(10)
    assert len({key for key, _ in rows}) == 10
    families = [sorted({family for family, _, _ in cells}) for _, cells in rows]
    assert families[:5] == [["dcflist", "dcfmeta"]] * 2 + [["dcfid", "dcfmeta"]] * 2 + [["dcfbhour", "dcfmeta"]]
    assert [len(cells) for _, cells in rows[:5]] == [5, 5, 7, 7, 3]


def test_synthetic_spool_draws_categories_and_publishes_after_each_event_when_asked(tmp_path: Path) -> None:
    end = datetime(2026, 3, 1, tzinfo=UTC)
    lagged = write_spool(
        str(tmp_path / "a"),
        3000,
        users=5,
        hours=24 * 31,
        files=2,
        end=end,
        categories=("fuel", "grocery", "travel"),
        publish_lag_us=1_000_000,
    )
    rows = pq.read_table(lagged).to_pandas()
    assert len(rows) == 3000 and set(rows["merchant_category"]) == {"fuel", "grocery", "travel"}
    assert ((rows["publish_time"] - rows["event_time"]) == timedelta(seconds=1)).all()
    assert rows["event_time"].min() >= end - timedelta(days=31)
    plain = pq.read_table(write_spool(str(tmp_path / "b"), 100, files=1, end=end)).to_pandas()
    assert set(plain["merchant_category"]) == {"grocery"} and (plain["publish_time"] == end).all()
