"""Reconciliation: several emitter seeds through the real pipeline (emitter with its ledger -> Pub/Sub
-> spooler -> Parquet spool -> aggregation job -> Bigtable), in several currencies, and after each
seed every user-hour, every transaction row, minute and top-spender cell (per currency) equals the
ledger aggregated with DuckDB, and every /sum over random, not hour-aligned ranges equals the ledger
to the last minor unit in every currency.

The seeds go into one table one after another, so later seeds land in buckets earlier runs wrote
(the job's look-up path), and one `--every` job process counts them all (one JVM for the test).
Then the first seed is sent again (true duplicates) along with copies of counted ids that carry
other content (conflicts): neither changes a number, and the conflicts are recorded and shown.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
from support.scale import Scale
from support.tally import TALLY

from common import clients, jobstate
from common.config import Config
from reliability.pipeline import (
    Background,
    Emission,
    all_counted,
    check_sums,
    command,
    emit,
    publish_copies,
    read_ledger,
    recent_window,
    reconcile,
    run,
    wait_for,
    write_config,
)
from webapp import create_app


def test_every_user_hour_and_every_random_sum_equal_the_ledger_for_each_seed(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    # Refunds too: amounts from -20.00 to 150.00, and the same in yen and Bahraini dinars.
    config = write_config(
        cfg,
        tmp_path,
        spool_roll_messages=5_000,
        amount_min="-20.00",
        amount_max="150.00",
        currency_mix={"USD": 0.6, "EUR": 0.2, "JPY": 0.15, "BHD": 0.05},
        currency_amounts={"EUR": ["-20.00", "150.00"], "JPY": ["-2000", "15000"], "BHD": ["-5.000", "50.000"]},
    )
    table = clients.ensure_table(cfg)
    start, end = recent_window(hours=40)
    users = max(50, scale.events // 150)  # about 200 transactions per user in 40 hours: the limit cuts
    job = Background(command("jobs.aggregate", config, "--every", "2s", "--master", "local[2]"), tmp_path / "job.log")
    ledgers: list[Path] = []
    try:
        for seed in scale.seeds:
            ledgers.append(tmp_path / f"ledger-{seed}.csv")
            emit(config, Emission(seed, users, start, end, scale.events), ledgers[-1])
            spooled = run(command("jobs.spooler", config, "--until-idle", "2", "--quiet")).stderr
            assert f"spooled {scale.events} transactions, dead-lettered 0" in spooled.splitlines()[-1], spooled

            wait_for(lambda: all_counted(cfg, table), f"the job to count seed {seed}", timeout=600, watch=job)
            ledger = read_ledger(*ledgers)
            assert len(ledger) == scale.events * len(ledgers)
            assert (ledger["amount_minor"] < 0).any()
            reconcile(table, ledger, cfg.late_horizon_hours)
            check_sums(cfg, ledger, scale.sum_ranges, seed)
        assert set(ledger["currency"]) == {"USD", "EUR", "JPY", "BHD"}

        # The first seed again (the same absolute window: the same ids, true duplicates), and copies
        # of counted ids with another amount, event time or user (conflicts): nothing changes.
        again = min(scale.events // 2, 5_000)  # the first of the same stream: the same ids and content
        emit(config, Emission(scale.seeds[0], users, start, end, again), tmp_path / "again.csv")
        picked = ledger.sample(n=30, random_state=1).reset_index(drop=True)
        altered = picked.copy()
        altered.loc[0:9, "amount_minor"] += 1
        altered.loc[10:19, "event_time"] += pd.Timedelta(seconds=31)
        altered.loc[20:29, "user_id"] = "someone-else"
        assert publish_copies(cfg, altered) == 30
        spooled = run(command("jobs.spooler", config, "--until-idle", "2", "--quiet")).stderr
        assert f"spooled {again + 30} transactions, dead-lettered 0" in spooled.splitlines()[-1], spooled
        wait_for(lambda: all_counted(cfg, table), "the job to count the copies", timeout=600, watch=job)
        reconcile(table, ledger, cfg.late_horizon_hours)
        check_sums(cfg, ledger, scale.sum_ranges // 2, scale.seeds[0] + 100)
        status = jobstate.read_job_status(table)
        assert status is not None and status["conflicts_total"] == 30
        health = create_app(cfg).test_client().get("/health").get_json()
        assert health["conflicts_total"] == 30, health
        TALLY.checked("conflicting copies recorded", 30, abs(30 - status["conflicts_total"]))
    finally:
        job.signal(signal.SIGTERM)  # stops after the run in progress
        code = job.wait(timeout=300)
    assert code == 0, job.output()[-4000:]
    assert "0 late rows" in job.output() and " 0 failures" in job.output()
