"""Concurrency: the spool listed while files are renamed into place, and job runs listing and
reading the spool while the spooler is writing files into it (then a last run; exact). Two job
runs started at the same moment are in test_crashes.py (the last restart after the kills)."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
from support.ledger import make_ledger
from support.scale import Scale
from support.tally import TALLY

from common import clients, spool
from common.config import Config
from jobs.aggregate import extract
from reliability.pipeline import (
    Background,
    all_counted,
    check_sums,
    command,
    read_ledger,
    reconcile,
    wait_for,
    write_config,
)


def test_listing_the_spool_while_files_are_renamed_into_place_never_fails(
    spark: Any, cfg: Config, scale: Scale
) -> None:
    """The job lists through Hadoop's FileSystem API while the spooler's writer renames finished
    files into place: a temp file that disappears mid-listing must not fail the listing."""
    rows = pa.Table.from_pandas(make_ledger("churn", 20_000), schema=spool.TRANSACTION_SCHEMA, preserve_index=False)
    base = spool.local_path(cfg.spool_dir)
    started: list[str] = []  # named before its write begins
    written: list[str] = []  # complete: renamed into place
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set() and len(written) < 1_000:
            path = spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS)
            started.append(path.relative_to(base).as_posix())
            spool.write_atomic(rows, path)
            written.append(started[-1])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    listings, wanted = 0, 200 if scale.heavy else 30
    try:
        while listings < wanted and thread.is_alive():
            done_before = set(written)
            found = set(extract.list_spool_files(spark, cfg.spool_dir)[0])
            assert done_before <= found <= set(started)  # every complete file, and no temp file
            listings += 1
    finally:
        stop.set()
        thread.join()
    TALLY.fault("spool listings while files were renamed into place", listings)
    assert listings == wanted
    assert extract.list_spool_files(spark, cfg.spool_dir)[0] == sorted(written)


def test_runs_while_the_spooler_writes_files_then_a_last_run_count_everything_once(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    clients.ensure_subscription(cfg)
    # Small files, often: the spool changes under every listing and read the job makes.
    config = write_config(cfg, tmp_path, spool_roll_messages=100, spool_roll_seconds=0.5)
    table = clients.ensure_table(cfg)
    ledger_path = tmp_path / "ledger.csv"
    simulation = ("--live", "--speedup", "2400", "--users", "20", "--seed", "3")
    emitter = Background(
        command("emitter", config, *simulation, "--ledger", str(ledger_path), "--quiet"), tmp_path / "emitter.log"
    )
    spooler = Background(command("jobs.spooler", config, "--quiet"), tmp_path / "spooler.log")
    job = Background(command("jobs.aggregate", config, "--every", "1s", "--master", "local[1]"), tmp_path / "job.log")
    try:
        # Runs that listed and counted files while the spooler went on writing.
        wanted = 3 if scale.heavy else 1
        wait_for(
            lambda: (
                len(re.findall(r"^run \d+: [1-9]", job.output(), re.M)) >= wanted
                and emitter.running()
                and spooler.running()
            ),
            f"{wanted} job runs while the spooler writes",
            timeout=600,
            watch=job,
        )
        runs_while_writing = len(re.findall(r"^run \d+: [1-9]", job.output(), re.M))

        emitter.signal(signal.SIGTERM)
        assert emitter.wait(timeout=60) == 0, emitter.output()
        spooler.signal(signal.SIGTERM)  # writes and acks what it holds, then exits
        assert spooler.wait(timeout=60) == 0, spooler.output()
        wait_for(lambda: all_counted(cfg, table), "the job to count the last files", watch=job)
    finally:
        emitter.ensure_stopped()
        spooler.ensure_stopped()
        job.signal(signal.SIGTERM)
        code = job.wait(timeout=300)
    assert code == 0, job.output()[-4000:]
    TALLY.fault("job runs while the spooler wrote", runs_while_writing)
    assert len(re.findall(r"^run \d+: [1-9]", job.output(), re.M)) > runs_while_writing  # the last run
    assert "Traceback" not in job.output() and "error:" not in job.output()

    ledger = read_ledger(ledger_path)
    assert len(ledger) > 500
    reconcile(table, ledger, cfg.late_horizon_hours)
    check_sums(cfg, ledger, 50, seed=3)
