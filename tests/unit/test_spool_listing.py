"""The spool's one listing rule (common.spool.list_complete) on a local spool and on a listing that
carries no modification times, as an object store gives."""

from __future__ import annotations

import os
from pathlib import Path

from common import spool


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _set_mtime(folder: Path, mtime_ms: int) -> None:
    os.utime(folder, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))


def test_only_complete_parquet_files_are_listed_relative_and_sorted(tmp_path: Path) -> None:
    tx = tmp_path / "transactions"
    _touch(tx / "dt=2026-11-30" / "part-b.parquet")
    _touch(tx / "dt=2026-11-29" / "part-a.parquet")
    _touch(tx / "dt=2026-11-30" / ".part-c.parquet.tmp")
    _touch(tx / "dt=2026-11-30" / "_SUCCESS")
    _touch(tx / "dt=2026-11-30" / "_partial.parquet")
    _touch(tx / "dt=2026-11-30" / "notes.txt")
    _touch(tx / "dt=2026-11-30" / "_temporary" / "part-x.parquet")
    _touch(tx / "_staging" / "part-y.parquet")
    _touch(tx / "loose.parquet")
    _touch(tmp_path / "dead-letter" / "dt=2026-11-30" / "part-d.parquet")

    files, folders = spool.list_spool(str(tmp_path), spool.TRANSACTIONS)

    assert files == [
        "transactions/dt=2026-11-29/part-a.parquet",
        "transactions/dt=2026-11-30/part-b.parquet",
        "transactions/loose.parquet",
    ]
    assert sorted(folders) == ["dt=2026-11-29", "dt=2026-11-30"]  # hidden folders are no spool folders
    assert spool.list_spool(str(tmp_path), spool.DEAD_LETTER)[0] == ["dead-letter/dt=2026-11-30/part-d.parquet"]


def test_a_missing_spool_lists_nothing(tmp_path: Path) -> None:
    assert spool.list_spool(str(tmp_path / "absent"), spool.TRANSACTIONS) == ([], {})
    assert spool.list_files(str(tmp_path / "absent"), spool.DEAD_LETTER) == []


def test_a_closed_folder_is_skipped_until_its_modification_time_changes(tmp_path: Path) -> None:
    old = tmp_path / "transactions" / "dt=2026-01-01"
    _touch(old / "part-1.parquet")
    _touch(tmp_path / "transactions" / "dt=2026-11-30" / "part-2.parquet")
    _set_mtime(old, 1_767_225_600_000)  # 2026-01-01T00:00:00Z

    files, folders = spool.list_spool(f"file://{tmp_path}", spool.TRANSACTIONS)
    assert folders["dt=2026-01-01"] == 1_767_225_600_000
    assert len(files) == 2

    closed = {"dt=2026-01-01": 1_767_225_600_000}
    assert spool.list_spool(str(tmp_path), spool.TRANSACTIONS, closed)[0] == [
        "transactions/dt=2026-11-30/part-2.parquet"
    ]
    _touch(old / "part-3.parquet")  # a late file reopens the folder
    _set_mtime(old, 1_767_225_660_000)
    assert spool.list_spool(str(tmp_path), spool.TRANSACTIONS, closed)[0] == [
        "transactions/dt=2026-01-01/part-1.parquet",
        "transactions/dt=2026-01-01/part-3.parquet",
        "transactions/dt=2026-11-30/part-2.parquet",
    ]


def test_folders_without_a_modification_time_are_always_listed() -> None:
    tree = {
        "bucket/spool/transactions": [
            spool.Entry("bucket/spool/transactions/dt=2026-11-30", True, 0),
            spool.Entry("bucket/spool/transactions/dt=2026-11-29", True, 5),
        ],
        "bucket/spool/transactions/dt=2026-11-30": [
            spool.Entry("bucket/spool/transactions/dt=2026-11-30/part-1.parquet", False, 0)
        ],
        "bucket/spool/transactions/dt=2026-11-29": [
            spool.Entry("bucket/spool/transactions/dt=2026-11-29/part-0.parquet", False, 0)
        ],
    }
    listed: list[str] = []

    def list_dir(directory: str) -> list[spool.Entry]:
        listed.append(directory)
        return tree.get(directory, [])

    closed = {"dt=2026-11-30": 0, "dt=2026-11-29": 5}
    files, folders = spool.list_complete(list_dir, "bucket/spool/", spool.TRANSACTIONS, closed)
    assert files == ["transactions/dt=2026-11-30/part-1.parquet"]
    assert folders == {"dt=2026-11-30": 0, "dt=2026-11-29": 5}
    assert listed == ["bucket/spool/transactions", "bucket/spool/transactions/dt=2026-11-30"]


def test_list_files_gives_local_paths_oldest_name_first(tmp_path: Path) -> None:
    later = _touch(tmp_path / "dead-letter" / "dt=2026-11-29" / "part-20261129T2359Z-b.parquet")
    earlier = _touch(tmp_path / "dead-letter" / "dt=2026-11-30" / "part-20261129T0000Z-a.parquet")
    _touch(tmp_path / "dead-letter" / "dt=2026-11-30" / ".part-20261130T0000Z-c.parquet.tmp")
    assert spool.list_files(str(tmp_path), spool.DEAD_LETTER) == [earlier, later]


def test_only_old_folders_with_every_file_processed_close() -> None:
    now_ms = 10_000_000
    folders = {"dt=a": now_ms - spool.CLOSE_MARGIN_MS, "dt=b": now_ms - spool.CLOSE_MARGIN_MS + 1, "dt=c": 1}
    files = ["transactions/dt=a/p1.parquet", "transactions/dt=b/p2.parquet", "transactions/dt=c/p3.parquet"]
    assert spool.folders_to_close(folders, files, set(files), now_ms) == {"dt=a": now_ms - 60_000, "dt=c": 1}
    assert spool.folders_to_close(folders, files, {files[0], files[1]}, now_ms) == {"dt=a": now_ms - 60_000}
    assert spool.folders_to_close({"dt=z": 0}, [], set(), now_ms) == {}
