"""`python -m jobs.aggregate` as a command: the lock, --wait, --every, a backlog in slices, and one-line
usage errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from support.ledger import assert_contents, expected_contents, make_ledger, read_contents, write_spool

from common import clients, jobstate
from common.config import Config
from jobs.aggregate.lock import run_lock

ROOT = Path(__file__).resolve().parents[2]


def config_file(cfg: Config, tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**cfg.to_dict(), **changes}))
    return path


def job(config: Path, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(config: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config), *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the job"
        time.sleep(0.2)


def test_a_second_run_while_one_holds_the_lock_exits_with_a_clear_message(cfg: Config, tmp_path: Path) -> None:
    config = config_file(cfg, tmp_path)
    with run_lock(cfg) as path:
        result = job(config)
    assert result.returncode == 75
    assert result.stderr.strip().splitlines() == [
        f"error: another aggregation run (pid {os.getpid()}) holds {path}; it will pick up new files too, "
        "or pass --wait to run after it"
    ]
    assert jobstate.read_job_status(clients.ensure_table(cfg)) is None


def test_every_with_wait_waits_for_the_lock_then_runs_on_schedule_until_sigterm(cfg: Config, tmp_path: Path) -> None:
    first, second = make_ledger("tick1", 60, hours=2), make_ledger("tick2", 70, first_hour=1, hours=2)
    write_spool(cfg, first, files=1)
    config = config_file(cfg, tmp_path)
    table = clients.ensure_table(cfg)
    with run_lock(cfg):
        proc = start(config, "--every", "1s", "--wait", "--master", "local[1]")
        try:
            time.sleep(3)
            assert proc.poll() is None  # waiting for the lock, not exited
            assert jobstate.read_job_status(table) is None  # and not running
        except BaseException:
            proc.kill()
            raise
    try:
        wait_for(lambda: (jobstate.read_job_status(table) or {}).get("last_run") == 1)
        write_spool(cfg, second, files=1)
        wait_for(lambda: (jobstate.read_job_status(table) or {}).get("last_run") == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: stopping after the current run" in err
    assert "run 1: 1 files, 60 rows" in err and "run 2: 1 files, 70 rows" in err
    expected = expected_contents(pd.concat([first, second]), cfg.late_horizon_hours)
    assert_contents(read_contents(table), expected)


def test_stream_counts_each_new_file_as_it_appears_and_says_nothing_while_idle(cfg: Config, tmp_path: Path) -> None:
    first, second = make_ledger("live1", 40, hours=1), make_ledger("live2", 50, first_hour=1, hours=1)
    config = config_file(cfg, tmp_path, stream_poll_seconds=0.5)
    table = clients.ensure_table(cfg)
    proc = start(config, "--stream", "--master", "local[1]")
    try:
        write_spool(cfg, first, files=1)
        wait_for(lambda: (jobstate.read_job_status(table) or {}).get("last_run") == 1)
        time.sleep(3)  # several polls that find nothing new
        assert proc.poll() is None
        write_spool(cfg, second, files=1)
        wait_for(lambda: (jobstate.read_job_status(table) or {}).get("last_run") == 2, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "run 1: 1 files, 40 rows" in err and "run 2: 1 files, 50 rows" in err
    assert "no new spool files" not in err
    expected = expected_contents(pd.concat([first, second]), cfg.late_horizon_hours)
    assert_contents(read_contents(table), expected)


def test_a_backlog_beyond_one_run_is_counted_in_back_to_back_runs_by_one_invocation_and_by_every(
    cfg: Config, tmp_path: Path
) -> None:
    ledger = make_ledger("slices", 500, hours=4)
    write_spool(cfg, ledger, files=5)
    config = config_file(cfg, tmp_path, job_max_files_per_run=2)
    table = clients.ensure_table(cfg)

    # One invocation: three runs, one after another, until nothing is left.
    result = job(config, "--master", "local[1]")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [line for line in result.stderr.splitlines() if line.startswith("run ")]
    assert [line.split(",")[0] for line in runs] == ["run 1: 2 files", "run 2: 2 files", "run 3: 1 files"], runs
    assert runs[0].endswith("; 3 new files left for the next run") and runs[1].endswith(
        "; 1 new files left for the next run"
    )
    assert_contents(read_contents(table), expected_contents(ledger, cfg.late_horizon_hours))

    # --every: the next slice at once, not after the period (an hour here).
    more = make_ledger("more", 300, first_hour=2, hours=4)
    write_spool(cfg, more, files=3)
    proc = start(config, "--every", "1h", "--master", "local[1]")
    try:
        wait_for(lambda: (jobstate.read_job_status(table) or {}).get("last_run") == 5, timeout=240)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "run 4: 2 files" in err and "run 5: 1 files" in err
    assert_contents(read_contents(table), expected_contents(pd.concat([ledger, more]), cfg.late_horizon_hours))


def test_bad_flags_and_config_values_get_one_line_and_exit_code_2(cfg: Config, tmp_path: Path) -> None:
    config = config_file(cfg, tmp_path)
    cases = [
        (["--every", "0s"], "error: --every must be a positive duration such as 30s, 5m or 1h, got '0s'"),
        (["--every", "soon"], "error: --every must be a positive duration such as 30s, 5m or 1h, got 'soon'"),
        (["--conf", "spark.executor.memory"], "error: --conf must be KEY=VALUE such as spark.executor.memory=2g"),
        (["--every", "5m", "--rebuild"], "error: --rebuild is a one-off; run it without --every"),
        (["--stream", "--every", "5m"], "error: --stream runs continuously: give it without --every or --rebuild"),
        (["--no-such-flag"], "error: unrecognized arguments: --no-such-flag"),
    ]
    for flags, message in cases:
        result = job(config, *flags, timeout=60)
        assert result.returncode == 2, flags
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    bad = config_file(cfg, tmp_path, late_horizon_hours=0)
    result = job(bad, timeout=60)
    assert result.returncode == 2
    assert "'late_horizon_hours' must be an integer >= 1, got 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
