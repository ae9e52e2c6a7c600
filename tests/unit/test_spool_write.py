"""common.spool.write_atomic: a new dt= folder is made durable in its parent, and a failed write
leaves nothing behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common import spool


def _table() -> pa.Table:
    return pa.table({"transaction_id": ["t1", "t2"], "amount_minor": [100, -5]})


def test_each_new_folder_is_fsynced_in_its_parent_and_the_file_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if target.is_dir():
            synced.append(target)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    first = tmp_path / "spool" / "transactions" / "dt=2026-11-30" / "part-1.parquet"
    spool.write_atomic(_table(), first)
    # spool/, transactions/ and dt=.../ were created: each one's parent, then the file's folder.
    assert synced == [tmp_path, tmp_path / "spool", tmp_path / "spool" / "transactions", first.parent]

    synced.clear()
    spool.write_atomic(_table(), first.parent / "part-2.parquet")
    assert synced == [first.parent]  # no new folder: only the rename is made durable
    assert pq.read_table(first).num_rows == 2


def test_a_write_that_fails_leaves_no_temp_file_and_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    path = tmp_path / "transactions" / "dt=2026-11-30" / "part-1.parquet"
    with pytest.raises(OSError) as raised:
        spool.write_atomic(_table(), path)
    assert raised.value.errno == errno.ENOSPC
    assert list(path.parent.iterdir()) == []  # neither the file nor its temp
