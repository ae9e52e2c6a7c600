"""The benchmark harness's parts that run processes or read the emulator: the command's flag errors,
the RSS sampler, failing commands, and the bucket reads the end-to-end stage relies on (the pure
parts are in tests/unit/test_bench.py). No timing is asserted anywhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import api_load, pipeline, procs
from common import clients
from common.config import Config

ROOT = Path(__file__).resolve().parents[2]


def test_bad_flag_is_one_line_and_exit_code_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--stages", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --stages must be a comma-separated list of publish, spool, hostile, aggregate, job, writer, "
        "incremental, e2e, drain, api, holders, cluster, costs, soak, freshness, got 'nope'"
    ]


def test_peak_rss_counts_the_children_of_the_process(tmp_path: Path) -> None:
    # A parent holding little starts a child that holds 200 MB: the tree's peak must include it.
    child = "b = bytearray(200 * 1024 * 1024); import time; time.sleep(1.5)"
    parent = textwrap.dedent(f"""
        import subprocess, sys
        subprocess.run([sys.executable, "-c", {child!r}], check=True)
    """)
    done = procs.run([sys.executable, "-c", parent], tmp_path / "rss.log", timeout=60)
    assert done.returncode == 0
    assert done.peak_rss_bytes >= 200 * procs.MB


def test_failing_command_raises_with_its_last_lines(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with 3: boom"):
        procs.run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "fail.log")


def test_bucket_reads_return_every_seeded_user_hour(cfg: Config) -> None:
    end = datetime(2026, 3, 1, tzinfo=UTC)
    users = ["u0001", "u0002", "u0003"]
    ledger = api_load.synthetic_ledger(users, end - timedelta(hours=6), end, 3.0, seed=11, currencies=("USD", "JPY"))
    api_load.seed_table(clients.ensure_table(cfg), ledger)
    expected: dict[tuple[str, int, str], list[int]] = {}
    for row in ledger:
        hour = row.event_us // 3_600_000_000 * 3600
        total = expected.setdefault((row.user_id, hour, row.currency), [0, 0])
        total[0] += row.amount_minor
        total[1] += 1
    start_s = int((end - timedelta(hours=6)).timestamp())
    found = pipeline.read_all_buckets(cfg, start_s, int(end.timestamp()))
    assert found == {key: (total, count) for key, (total, count) in expected.items()}
