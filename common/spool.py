"""The Parquet spool: its schemas, its layout, and the one atomic file writer.

Layout under spool_dir (dt is the UTC date the file was written):
    transactions/dt=YYYY-MM-DD/part-<UTC time>-<random>.parquet     valid transactions
    dead-letter/dt=YYYY-MM-DD/part-<UTC time>-<random>.parquet      rejected messages, with the reason
A file appears only once complete: written to a hidden temp name, fsynced, renamed, and the
directory fsynced. Readers skip names starting with '.' or '_'. Names sort by write time.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TRANSACTIONS = "transactions"
DEAD_LETTER = "dead-letter"

TRANSACTION_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("publish_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("message_id", pa.string(), nullable=False),
    ]
)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("message_id", pa.string()),
        pa.field("publish_time", pa.timestamp("us", tz="UTC")),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("payload", pa.binary()),
        pa.field("attributes", pa.string()),
    ]
)


def is_local(spool_dir: str) -> bool:
    return "://" not in spool_dir or spool_dir.startswith("file://")


def local_path(spool_dir: str) -> Path:
    return Path(spool_dir[len("file://") :] if spool_dir.startswith("file://") else spool_dir)


def new_file_path(spool_dir: str, kind: str, now: datetime | None = None) -> Path:
    """A fresh, time-sortable file name for `kind` (TRANSACTIONS or DEAD_LETTER)."""
    now = now or datetime.now(UTC)
    name = f"part-{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:12]}.parquet"
    return local_path(spool_dir) / kind / f"dt={now:%Y-%m-%d}" / name


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _make_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents, fsyncing the parent of each one created, so a
    new dt= folder (and the file renamed into it) survives a power cut."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile by another writer, which fsyncs its parent too
            continue
        _fsync_dir(folder.parent)


def write_atomic(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file so it is either absent or complete and durable at `path`. On any error
    (a full or read-only disk) the temp file is removed and the error raised; nothing is left."""
    _make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def list_files(spool_dir: str, kind: str) -> list[Path]:
    """Complete spool files of one kind on a local spool, oldest first."""
    base = local_path(spool_dir) / kind
    if not base.exists():
        return []
    files = [p for p in base.rglob("*.parquet") if not p.name.startswith((".", "_"))]
    return sorted(files, key=lambda p: (p.name, str(p)))


def count_rows(paths: Iterable[Path]) -> int:
    """Rows in the given Parquet files, from their footers only."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
