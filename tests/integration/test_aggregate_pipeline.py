"""The whole batch path: the emitter and spooler commands (emitter with its ledger) -> Pub/Sub emulator
-> spool -> aggregation job -> Bigtable emulator, read back and compared with the emitter's ledger
aggregated independently with DuckDB, for every user-hour, to the cent."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from support.ledger import assert_contents, expected_contents, read_contents, to_frame

from common import clients, spool
from common.config import Config
from jobs.aggregate import job

ROOT = Path(__file__).resolve().parents[2]


def command(module: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def ledger_frame(path: Path) -> pd.DataFrame:
    """The emitter's ledger CSV as spool-shaped rows (published at their event time: none is late)."""
    raw = pd.read_csv(path, dtype=str)
    event_time = pd.to_datetime(raw["event_time"], utc=True, format="ISO8601")
    return to_frame(
        pd.DataFrame(
            {
                "transaction_id": raw["transaction_id"],
                "user_id": raw["user_id"],
                "amount_minor": [int(Decimal(a).scaleb(2)) for a in raw["amount"]],
                "currency": "USD",
                "merchant_category": "",  # the ledger does not record it
                "event_time": event_time,
                "publish_time": event_time,
                "message_id": raw["transaction_id"],
            }
        )
    )


def test_emitter_to_spooler_to_job_matches_the_ledger_for_every_user_hour(
    spark: Any, cfg: Config, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**cfg.to_dict(), "spool_roll_messages": 400}))
    ledger_path = tmp_path / "ledger.csv"
    emitted = command(
        "emitter",
        config,
        *("--users", "12", "--seed", "11", "--start", "-40h", "--end", "now", "--limit", "1500"),
        *("--ledger", str(ledger_path), "--quiet"),
    )
    assert "published 1500 transactions, 0 failed" in emitted.stderr
    command("jobs.spooler", config, "--until-idle", "2", "--quiet")
    assert len(spool.list_files(cfg.spool_dir, spool.TRANSACTIONS)) >= 2

    # The job's command line is exercised elsewhere; here it runs on the shared session.
    summary = job.run_once(spark, cfg, say=lambda line: None)
    assert (summary.run_id, summary.late_rows, summary.rows_written, summary.failures) == (1, 0, 1500, 0)
    ledger = ledger_frame(ledger_path)
    assert len(ledger) == 1500
    expected = expected_contents(ledger, cfg.late_horizon_hours)
    assert_contents(read_contents(clients.bigtable_table(cfg)), expected, categories=False)  # not in the ledger
