"""After real aggregation runs (Spark, the Bigtable emulator), the web app's /metrics exports what
each run did: the counts equal what this test wrote to the spool (rows, duplicate copies, late
rows), the time of the last success moves on every successful run (one with nothing new too), and
a failed run is counted with its time while the last success stays where it was."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.ledger import duplicates_of, make_ledger, write_spool

from common import spool
from common.config import Config
from common.spool import SpoolSchemaError
from jobs.aggregate import job
from webapp import create_app
from webapp import metrics as web_metrics

ROOT = Path(__file__).resolve().parents[2]


def job_metrics(cfg: Config) -> dict[str, float]:
    """The unlabelled txn_job_* samples of a fresh app's /metrics."""
    response = create_app(cfg).test_client().get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
        if sample.name.startswith("txn_job_") and not sample.labels
    }


def run(spark: Any, cfg: Config) -> None:
    job.run_once(spark, cfg, say=lambda line: None)


def test_job_runs_are_exported_with_their_counts_success_time_and_failures(
    spark: Any, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_metrics, "JOB_CACHE_SECONDS", 0.0)
    ledger = make_ledger("jm", 240, hours=4)
    copies = duplicates_of(ledger, 0.125, seed=3, delay=timedelta(minutes=2))  # 30 copies
    late = make_ledger("jmlate", 9, first_hour=5, hours=1, publish_lag=timedelta(hours=cfg.late_horizon_hours + 1))
    write_spool(cfg, pd.concat([ledger, copies, late], ignore_index=True), files=3)

    started = datetime.now(UTC).timestamp()
    run(spark, cfg)
    ended = datetime.now(UTC).timestamp()
    first = job_metrics(cfg)
    assert first["txn_job_state_up"] == 1
    assert started <= first["txn_job_last_success_timestamp_seconds"] <= ended
    assert 0 < first["txn_job_last_run_duration_seconds"] <= ended - started
    assert first["txn_job_last_success_duration_seconds"] == pytest.approx(
        first["txn_job_last_run_duration_seconds"], abs=0.001
    )
    counts = {name: first[f"txn_job_last_run_{name}"] for name in ("id", "files", "rows", "duplicates", "late_rows")}
    assert counts == {"id": 1, "files": 3, "rows": 240 + 30 + 9, "duplicates": 30, "late_rows": 9}
    assert first["txn_job_last_run_rows_written"] == 240  # the late rows are kept in the spool, not counted
    assert (first["txn_job_last_run_conflicts"], first["txn_job_last_run_failures"]) == (0, 0)
    assert (first["txn_job_runs_finished_total"], first["txn_job_failed_runs_total"]) == (1, 0)
    assert (first["txn_job_last_failure_timestamp_seconds"], first["txn_job_run_pending"]) == (0, 0)

    # A spool file of the wrong type: the run fails, is counted, and the last success stays.
    frame = make_ledger("jmfloat", 3).assign(amount_minor=lambda f: f["amount_minor"] / 100)
    bad = spool.write_atomic(
        pa.Table.from_pandas(frame, preserve_index=False), spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS)
    )
    before_failure = datetime.now(UTC).timestamp()
    with pytest.raises(SpoolSchemaError):
        run(spark, cfg)
    failed = job_metrics(cfg)
    assert failed["txn_job_failed_runs_total"] == 1
    assert before_failure <= failed["txn_job_last_failure_timestamp_seconds"] <= datetime.now(UTC).timestamp()
    assert failed["txn_job_last_success_timestamp_seconds"] == first["txn_job_last_success_timestamp_seconds"]
    assert failed["txn_job_runs_finished_total"] == 1

    # The bad file moved aside, a run with nothing new succeeds: the success time moves on, the
    # last run's counts stay those of the run that had work.
    bad.unlink()
    before_quiet = datetime.now(UTC).timestamp()
    run(spark, cfg)
    quiet = job_metrics(cfg)
    assert quiet["txn_job_last_success_timestamp_seconds"] >= before_quiet
    assert (quiet["txn_job_runs_finished_total"], quiet["txn_job_failed_runs_total"]) == (1, 1)
    assert quiet["txn_job_last_run_rows"] == 240 + 30 + 9


def test_the_job_command_logs_only_json_lines_with_log_format_json(cfg: Config, tmp_path: Path) -> None:
    write_spool(cfg, make_ledger("jmcli", 50, hours=2), files=2)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.aggregate",
            "--config",
            str(config),
            "--master",
            "local[1]",
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]  # each one JSON
    assert all(line["process"] == "aggregate" and line["time"].endswith("Z") for line in lines)
    assert "spark" in {line["logger"] for line in lines}  # the JVM's own lines, wrapped
    ours = [line for line in lines if line["logger"] == "aggregate"]
    assert all(line["level"] == "info" for line in ours), ours
    assert ours[-1]["message"].startswith("run 1: 2 files, 50 rows, 0 duplicates dropped")
