"""SIGKILL the aggregation job in the middle of its Bigtable writes, twice, then run it again: the
table ends exactly equal to the ledger. The job runs as `python -m jobs.aggregate` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from support.ledger import assert_contents, duplicates_of, expected_contents, make_ledger, read_contents, write_spool
from support.quantiles import ExactAmounts, stored_sketch_stats

from common import clients, jobstate, store
from common.config import Config

ROOT = Path(__file__).resolve().parents[2]
# One core, small Arrow batches and uncoalesced shuffle partitions: many short write batches, one
# at a time, with a pause after each, so there is a moment when some but not all rows are written.
SLOW = [
    "--master",
    "local[1]",
    "--conf",
    "spark.sql.execution.arrow.maxRecordsPerBatch=100",
    "--conf",
    "spark.sql.adaptive.coalescePartitions.enabled=false",
]


def config_file(cfg: Config, tmp_path: Path) -> Path:
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def start_job(config: Path, *flags: str, pause: float = 0.0) -> subprocess.Popen[str]:
    """The job as a subprocess, sleeping `pause` seconds after each written batch (its kill point)."""
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config), *flags, "--pause-after-batch", str(pause)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes the JVM and Python workers too
    )


def kill_when(proc: subprocess.Popen[str], condition: Callable[[], bool], timeout: float = 180) -> None:
    """SIGKILL the job's whole process group as soon as `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the job ended before the kill point:\n{proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the kill point never came")
        time.sleep(0.05)
    kill_group(proc)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the job's process group, reap the job and close the pipe of its output."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def rows_of(table: Any, family: str) -> int:
    return len(store.read_keys(table, family, b"\x00", b"\xff"))


def test_sigkill_during_the_bigtable_writes_then_a_new_run_is_exact(cfg: Config, tmp_path: Path) -> None:
    ledger = make_ledger("crash", 600, hours=8)
    write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 0.1, seed=5, delay=timedelta(minutes=2))]), files=3)
    expected = expected_contents(ledger, cfg.late_horizon_hours)
    config = config_file(cfg, tmp_path)
    table = clients.ensure_table(cfg)

    # 1: killed once some, but not all, transaction rows are in Bigtable.
    proc = start_job(config, *SLOW, pause=0.3)
    kill_when(proc, lambda: 0 < rows_of(table, store.LIST) < 600)
    assert rows_of(table, store.HOUR) == 0
    status = jobstate.read_job_status(table)
    assert status is not None and status["pending"]["run_id"] == 1 and status["last_run"] == 0

    # 2: the same run, resumed, killed once some, but not all, hour buckets have been added to.
    proc = start_job(config, *SLOW, pause=0.3)
    kill_when(proc, lambda: 0 < rows_of(table, store.HOUR) < len(expected.buckets))
    assert jobstate.pending_run(jobstate.read_job_status(table)) is not None

    # 3: run again to the end.
    result = subprocess.run(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming run 1" in result.stderr
    assert "run 1 (resumed): 3 files, 660 rows, 60 duplicates dropped" in result.stderr
    assert_contents(read_contents(table), expected)
    status = jobstate.read_job_status(table)
    assert status is not None and status["last_run"] == 1 and status["pending"] is None
    # The amount sketches, merged in the same Spark job as the counters, were merged once each.
    assert stored_sketch_stats(table) == ExactAmounts(ledger, cfg.late_horizon_hours).hour_stats()


def test_two_hosts_with_their_own_spool_copies_and_locks_never_run_at_once_on_one_table(
    cfg: Config, tmp_path: Path
) -> None:
    """Host A and host B share only the table: B's lock file is beside its own copy of the spool."""
    import dataclasses
    import shutil

    ledger = make_ledger("hosts", 400, hours=6)
    write_spool(cfg, ledger, files=2)
    host_a = dataclasses.replace(cfg, job_lease_seconds=6.0)
    copy = tmp_path / "host-b-spool"
    shutil.copytree(cfg.spool_dir, copy)
    host_b = dataclasses.replace(host_a, spool_dir=str(copy))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_a, config_b = config_file(host_a, tmp_path / "a"), config_file(host_b, tmp_path / "b")
    table = clients.ensure_table(cfg)

    proc = start_job(config_a, *SLOW, pause=0.3)
    deadline = time.monotonic() + 180
    while rows_of(table, store.LIST) == 0:
        assert proc.poll() is None and time.monotonic() < deadline, "host A never started writing"
        time.sleep(0.1)
    other = subprocess.run(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config_b)], cwd=ROOT, capture_output=True, text=True
    )
    assert other.returncode == 75, other.stderr[-2000:]
    assert "holds the job's lease" in other.stderr
    kill_group(proc)  # host A dies mid-run, holding the lease

    started = time.monotonic()
    taken = subprocess.run(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config_b), "--wait"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    # A's process is gone (and on this machine that is known at once); on another host B would
    # wait for the lease to expire (tests/integration/test_lease.py).
    assert "resuming run 1" in taken.stderr
    assert time.monotonic() - started < 300
    assert_contents(read_contents(table), expected_contents(ledger, cfg.late_horizon_hours))
