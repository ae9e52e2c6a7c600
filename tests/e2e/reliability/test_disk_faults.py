"""A spool directory that fills up, then goes read-only, under a running spooler.

The spool lives on a tmpfs of a few hundred kilobytes mounted for this test (root only: mounting
needs it, and root ignores file permissions, so read-only means a read-only mount). The spooler
must keep running, say in one line what is wrong, leave no temp file behind, ack nothing that is not
in a complete file, and write everything once it is given space (or write access) again. A restart
on the full disk must not leave a temp file either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tally import TALLY

from common.config import Config
from reliability.pipeline import (
    Background,
    Emission,
    command,
    emit,
    read_ledger,
    recent_window,
    spool_rows,
    wait_for,
    write_config,
)

SMALL = "192k"  # room for a few spool files of 1,000 transactions, not for 12,000
ROOMY = "64m"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of SMALL bytes at tmp_path/spool, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the disk-fault test mounts a small tmpfs for its spool, which needs root")
    mount_point = tmp_path / "spool"
    mount_point.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={SMALL},mode=0755", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def temp_files(spool_dir: Path) -> list[Path]:
    return [p for p in spool_dir.rglob("*") if p.name.endswith(".tmp")]


def spooled_ids(spool_dir: str) -> set[str]:
    return set(spool_rows(spool_dir)["transaction_id"])


def test_a_full_then_read_only_spool_dir_is_waited_out_without_loss_or_temp_files(
    cfg: Config, tmp_path: Path, small_spool: Path
) -> None:
    config = write_config(
        cfg,
        tmp_path,
        spool_dir=str(small_spool),
        spool_roll_messages=1000,
        spool_roll_seconds=1.0,
        outage_backoff_max_seconds=2.0,
        outage_report_seconds=4.0,
    )
    start, end = recent_window(hours=20)
    first = Emission(31, 200, start, end, 12_000)
    emit(config, first, tmp_path / "ledger-1.csv")
    spooler_argv = command("jobs.spooler", config, "--quiet")

    # 1. The disk fills up: one line naming it, the spooler keeps running, no temp file stays.
    with Background(spooler_argv, tmp_path / "spooler-1.log") as spooler:
        wait_for(
            lambda: "spool_dir is full" in spooler.output(), "the spooler to report a full spool_dir", 120, spooler
        )
        TALLY.disk_fault("spool_dir full")
        time.sleep(8)  # a few retries
        assert spooler.running()
        assert temp_files(small_spool) == []
        full_lines = [line for line in spooler.output().splitlines() if "spool_dir is full" in line]
        assert 1 <= len(full_lines) <= 4, full_lines  # one line every outage_report_seconds, not one per retry
        assert "Traceback" not in spooler.output()
        # Stopped while full: what it could not write is left unacked, and it says so.
        spooler.signal_group(signal.SIGTERM)
        assert spooler.wait(timeout=120) == 1
    assert "could not be written to the spool (spool_dir is full" in spooler.output(), spooler.output()[-2000:]
    assert temp_files(small_spool) == []
    written_before = spooled_ids(str(small_spool))
    assert 0 < len(written_before) < first.limit

    # 2. Restarted on the still-full disk: no new temp file; given space, it writes the rest.
    with Background(spooler_argv, tmp_path / "spooler-2.log") as spooler:
        wait_for(
            lambda: "spool_dir is full" in spooler.output(), "the restarted spooler to see the full disk", 120, spooler
        )
        TALLY.disk_fault("restart on a full spool_dir")
        assert temp_files(small_spool) == []
        _mount("-o", f"remount,size={ROOMY}", str(small_spool))
        wait_for(lambda: "spool_dir writable again" in spooler.output(), "the spooler to write again", 120, spooler)
        ledger_1 = read_ledger(tmp_path / "ledger-1.csv")
        wait_for(
            lambda: spooled_ids(str(small_spool)) >= set(ledger_1["transaction_id"]),
            "every transaction of the first run in the spool",
            180,
            spooler,
        )

        # 3. The file system goes read-only while new transactions arrive.
        _mount("-o", "remount,ro", str(small_spool))
        TALLY.disk_fault("spool_dir read-only")
        second = Emission(32, 40, start, end, 3_000)
        emit(config, second, tmp_path / "ledger-2.csv")
        wait_for(lambda: "spool_dir is read-only" in spooler.output(), "the spooler to report read-only", 120, spooler)
        time.sleep(5)
        assert spooler.running()
        _mount("-o", "remount,rw", str(small_spool))
        ledger = read_ledger(tmp_path / "ledger-1.csv", tmp_path / "ledger-2.csv")
        wait_for(
            lambda: spooled_ids(str(small_spool)) >= set(ledger["transaction_id"]),
            "every transaction of both runs in the spool",
            180,
            spooler,
        )
        spooler.signal_group(signal.SIGTERM)
        assert spooler.wait(timeout=120) == 0, spooler.output()[-3000:]
    output = spooler.output()
    assert "Traceback" not in output, output[-3000:]
    assert temp_files(small_spool) == []

    # Nothing lost, nothing made up; each spooled row carries the ledger's amount.
    spooled = spool_rows(str(small_spool))
    assert set(spooled["transaction_id"]) == set(ledger["transaction_id"])
    merged = ledger.merge(spooled.drop_duplicates("transaction_id"), on="transaction_id", suffixes=("", "_spool"))
    assert len(merged) == len(ledger)
    assert (merged["amount_minor"] == merged["amount_minor_spool"]).all()
    assert (merged["user_id"] == merged["user_id_spool"]).all()
    TALLY.checked("spool rows after disk faults", len(ledger), len(ledger) - len(merged))
