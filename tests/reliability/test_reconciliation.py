"""Reconciliation: several emitter seeds through the real pipeline (emitter with its ledger -> Pub/Sub
-> spooler -> Parquet spool -> aggregation job -> Bigtable), and after each seed every user-hour,
every transaction row, minute and top-spender cell equals the ledger aggregated with DuckDB, and
every /sum over random, not hour-aligned ranges equals the ledger to the cent.

The seeds go into one table one after another, so later seeds land in buckets earlier runs wrote
(the job's look-up path), and one `--every` job process counts them all (one JVM for the test).
"""

from __future__ import annotations

import signal
from pathlib import Path

from common import clients
from common.config import Config
from reliability.conftest import Scale
from reliability.pipeline import (
    Background,
    Emission,
    all_counted,
    check_sums,
    command,
    emit,
    read_ledger,
    recent_window,
    reconcile,
    run,
    wait_for,
    write_config,
)


def test_every_user_hour_and_every_random_sum_equal_the_ledger_for_each_seed(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    # Refunds too: amounts from -20.00 to 150.00.
    config = write_config(cfg, tmp_path, spool_roll_messages=5_000, amount_min="-20.00", amount_max="150.00")
    table = clients.ensure_table(cfg)
    start, end = recent_window(hours=40)
    users = max(50, scale.events // 200)  # about 270 transactions per user in 40 hours: the limit cuts
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
    finally:
        job.proc.send_signal(signal.SIGTERM)  # stops after the run in progress
        code = job.wait(timeout=300)
    assert code == 0, job.output()[-4000:]
    assert "0 late rows" in job.output() and " 0 failures" in job.output()
