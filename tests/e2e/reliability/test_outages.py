"""Outages, on private routes and a private emulator (the shared emulators are never stopped):

- Pub/Sub unreachable while the emitter publishes: the connection refused, then stalled, each for a
  while mid-run; the emitter waits, retries with backoff and finishes; nothing is lost.
- Bigtable unreachable in the middle of a job run: a clear one-line error and a non-zero exit; a
  later run resumes and is exact.
- The Bigtable emulator restarted empty: `--rebuild` from the spool restores every number.

"Unreachable" is a TCP proxy in front of the emulator that stops accepting and resets its
connections (as a stopped server does) or holds every byte (as a partition does) and then comes
back. Stopping the emulator process itself would also wipe its memory, which the real services
never do; the empty restart is tested on its own, with a private Bigtable emulator.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from support.ledger import duplicates_of, make_ledger, write_spool
from support.scale import Scale
from support.tally import TALLY

from bench.proxy import OutageProxy
from common import clients, jobstate
from common.config import Config
from reliability.faults import SHARED_PUBSUB_PORT, PrivateBigtable
from reliability.pipeline import (
    Background,
    Emission,
    check_sums,
    command,
    read_ledger,
    recent_window,
    reconcile,
    run,
    service_env,
    spool_rows,
    wait_for,
    write_config,
)
from reliability.test_crashes import SLOW

BYTES_PER_MESSAGE = 250  # a published transaction on the wire, roughly


def test_pubsub_unreachable_while_emitting_the_emitter_retries_and_loses_nothing(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    proxy = OutageProxy(SHARED_PUBSUB_PORT)
    clients.ensure_subscription(cfg)
    config = write_config(cfg, tmp_path)
    start, end = recent_window(hours=40)
    events = 60_000 if scale.heavy else 20_000
    ledger_path = tmp_path / "ledger.csv"
    emission = Emission(17, events // 200, start, end, events)
    outages = [("refuse", 0.15), ("stall", 0.5)] + ([("refuse", 0.7), ("stall", 0.85)] if scale.heavy else [])
    try:
        with Background(
            command("emitter", config, *emission.args(ledger_path)),
            tmp_path / "emitter.log",
            env=service_env(pubsub=proxy.address),
        ) as emitter:
            for kind, fraction in outages:
                wait_for(
                    lambda: proxy.forwarded >= fraction * events * BYTES_PER_MESSAGE,  # noqa: B023
                    f"{fraction:.0%} of the messages to pass",
                    watch=emitter,
                )
                getattr(proxy, kind)()
                TALLY.fault(f"Pub/Sub {'refused' if kind == 'refuse' else 'stalled'} while emitting")
                time.sleep(scale.outage_seconds)
                assert emitter.running()  # waiting it out, not giving up
                proxy.restore()
            assert emitter.wait(timeout=300) == 0, emitter.output()
    finally:
        proxy.close()
    assert f"published {events} transactions, 0 failed" in emitter.output().strip().splitlines()[-1]

    run(command("jobs.spooler", config, "--until-idle", "3", "--quiet"))
    ledger = read_ledger(ledger_path)
    spooled = spool_rows(cfg.spool_dir)
    assert len(ledger) == events
    assert set(spooled["transaction_id"]) == set(ledger["transaction_id"])  # nothing lost, nothing made up
    merged = ledger.merge(spooled.drop_duplicates("transaction_id"), on="transaction_id", suffixes=("", "_spool"))
    assert (merged["amount_minor"] == merged["amount_minor_spool"]).all()
    assert (merged["user_id"] == merged["user_id_spool"]).all()
    print(f"{len(spooled) - len(ledger)} messages arrived twice (a publish retried after it had landed)")


@pytest.fixture
def private_bigtable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBigtable]:
    """A Bigtable emulator of this test's own; this process's Bigtable clients talk to it."""
    emulator = PrivateBigtable(tmp_path / "emulators")
    emulator.start()
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", emulator.address)
    yield emulator
    emulator.stop()


def test_bigtable_unreachable_mid_run_then_a_later_run_and_a_rebuild_after_an_empty_restart_are_exact(
    cfg: Config, tmp_path: Path, private_bigtable: PrivateBigtable, scale: Scale
) -> None:
    rng = random.Random(7)
    ledger = make_ledger("outage", 6_000 if scale.heavy else 2_500, hours=12)
    write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 0.05, seed=2, delay=pd.Timedelta(seconds=9))]), files=4)
    # A run that meets the refusal gives up within this, well within the test's own timeout.
    config = write_config(cfg, tmp_path, bigtable_timeout_seconds=15.0)
    proxy = OutageProxy(private_bigtable.port)
    table = clients.ensure_table(cfg)
    try:
        # 1. Cut Bigtable off at a random moment of the dcflist writes.
        with Background(
            command("jobs.aggregate", config, *SLOW, "--pause-after-batch", "0.2"),
            tmp_path / "job-1.log",
            env=service_env(bigtable=proxy.address),
        ) as job:
            wait_for(lambda: "lookup:" in job.output(), "the job to start writing", watch=job)
            time.sleep(rng.uniform(0.5, 3.0))
            proxy.refuse()
            TALLY.fault("Bigtable refused mid-run")
            code = job.wait(timeout=240)  # within the test's own timeout, so a hang shows the job's output
        output = job.output()
        assert code != 0, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        last = output.strip().splitlines()[-1]
        assert last.startswith("error:") and "Bigtable" in last, last
        status = jobstate.read_job_status(table)
        assert status is not None and status["pending"]["run_id"] == 1 and status["last_run"] == 0

        # 2. Bigtable is back: the next run resumes run 1 and is exact.
        proxy.restore()
        later = run(command("jobs.aggregate", config, "--master", "local[2]"), env=service_env(bigtable=proxy.address))
        assert "resuming run 1" in later.stderr and "run 1 (resumed)" in later.stderr, later.stderr[-3000:]
        reconcile(table, ledger, cfg.late_horizon_hours)
    finally:
        proxy.close()

    # 3. The emulator dies and comes back empty; --rebuild counts the whole spool again.
    private_bigtable.kill()
    private_bigtable.start()
    TALLY.fault("Bigtable emulator restarted empty")
    assert not clients.bigtable_client(cfg, admin=True).instance(cfg.instance_id).table(cfg.table_id).exists()
    rebuilt = run(command("jobs.aggregate", config, "--rebuild", "--master", "local[2]"))
    assert "run 1: 4 files" in rebuilt.stderr, rebuilt.stderr[-3000:]
    table = clients.bigtable_table(cfg)
    reconcile(table, ledger, cfg.late_horizon_hours)
    check_sums(cfg, ledger, scale.sum_ranges // 2, seed=11)
    assert len(spool_rows(cfg.spool_dir)) == len(ledger) + len(ledger) // 20
