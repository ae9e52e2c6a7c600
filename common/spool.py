"""The Parquet spool: its schemas, its layout, and the one atomic file writer.

Layout under spool_dir (dt is the UTC date the file was written):
    transactions/dt=YYYY-MM-DD/part-<UTC time>-<random>.parquet     valid transactions
    dead-letter/dt=YYYY-MM-DD/part-<UTC time>-<random>.parquet      rejected messages, with the reason
A file appears only once complete: written to a hidden temp name, fsynced, renamed, and the
directory fsynced. Readers skip names starting with '.' or '_'. Names sort by write time.

The listing rule (list_complete, the one walk every reader uses): a listing reads the folder names
under transactions/ with their modification times (one call) and lists the files of every folder
except those closed with the same modification time they have now. Adding or renaming a file into
a folder changes its time, so a file that lands late in an old folder (a lagging copy, a host whose
clock is behind) reopens it: no complete file is ever skipped, whatever its folder is called and
whatever either clock says, while closed folders cost nothing. A folder is closed only once it is
older than CLOSE_MARGIN_MS at listing time, so a rename in the same clock tick as the listing cannot
hide. Where folders carry no modification time (object stores), every folder is listed. The job
records closed folders in its bookkeeping rows (common/jobstate.py).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

TRANSACTIONS = "transactions"
DEAD_LETTER = "dead-letter"
CLOSE_MARGIN_MS = 60_000

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

TRANSACTION_COLUMNS = tuple(TRANSACTION_SCHEMA.names)
# Spool files of schema version 1 held every amount in hundredths in this column, whatever the
# currency, where later files hold amount_minor (the job rescales them: jobs/aggregate/transforms.py).
LEGACY_AMOUNT_COLUMN = "amount_cents"


class SpoolSchemaError(ValueError):
    """Spool files whose columns are not the transaction schema; the message names the column."""


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


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One name in a spool folder, as a filesystem lists it."""

    path: str  # the full path, in the filesystem's own form
    is_dir: bool
    mtime_ms: int  # modification time, epoch ms; 0 when the filesystem does not say


# The entries directly inside one folder (full path in the filesystem's own form); [] when the
# folder does not exist. One per filesystem API: pyarrow's here, Hadoop's in jobs/aggregate/extract.py.
Lister = Callable[[str], list[Entry]]


def is_complete_file(relative_path: str) -> bool:
    """True for a finished Parquet file: no path part starts with '.' or '_' (temp or marker files)."""
    parts = relative_path.split("/")
    return relative_path.endswith(".parquet") and not any(p.startswith((".", "_")) for p in parts)


def folder_of(relative_path: str) -> str:
    """The folder under transactions/ a spool-relative path is in ("" for a file directly there)."""
    parts = relative_path.split("/")
    return parts[1] if len(parts) > 2 else ""


def folders_to_list(folders: dict[str, int], closed: dict[str, int]) -> list[str]:
    """The folders (name -> modification time, epoch ms) whose files must be listed: all but those
    closed with the very modification time they have now. A time of 0 (unknown) is never trusted."""
    return sorted(name for name, mtime in folders.items() if not (mtime > 0 and closed.get(name) == mtime))


def folders_to_close(
    folders: dict[str, int], files: list[str], processed: set[str], listed_at_ms: int
) -> dict[str, int]:
    """The listed folders to record as closed once the run that processes `files` minus `processed`
    finishes: every listed file in them is then processed, and they were last changed at least
    CLOSE_MARGIN_MS before the listing."""
    open_folders = {folder_of(f) for f in files if f not in processed}
    return {
        name: mtime
        for name, mtime in folders.items()
        if name and 0 < mtime <= listed_at_ms - CLOSE_MARGIN_MS and name not in open_folders
    }


def _files_below(list_dir: Lister, directory: str) -> list[str]:
    found: list[str] = []
    for entry in list_dir(directory):
        found.extend(_files_below(list_dir, entry.path) if entry.is_dir else [entry.path])
    return found


def list_complete(
    list_dir: Lister, base: str, kind: str, closed: dict[str, int] | None = None
) -> tuple[list[str], dict[str, int]]:
    """The listing rule, whatever the filesystem: complete files of `kind` under the spool at `base`
    (spool-relative paths, sorted) in the folders folders_to_list says to list given the `closed`
    ones, and every folder's modification time (epoch ms). Raises what `list_dir` raises."""
    base = base.rstrip("/")
    found: list[str] = []
    folders: dict[str, Entry] = {}
    for entry in list_dir(f"{base}/{kind}"):
        name = entry.path.rstrip("/").rsplit("/", 1)[-1]
        if not entry.is_dir:
            found.append(entry.path)
        elif not name.startswith((".", "_")):
            folders[name] = entry
    mtimes = {name: entry.mtime_ms for name, entry in folders.items()}
    for name in folders_to_list(mtimes, closed or {}):
        found.extend(_files_below(list_dir, folders[name].path))
    relative = (p[len(base) + 1 :] for p in found if p.startswith(base + "/"))
    return sorted(p for p in relative if is_complete_file(p)), mtimes


def _pyarrow_lister(filesystem: Any) -> Lister:
    def list_dir(directory: str) -> list[Entry]:
        infos = filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return [
            Entry(i.path, i.type == pafs.FileType.Directory, int(i.mtime_ns // 1_000_000) if i.mtime_ns else 0)
            for i in infos
            if i.type in (pafs.FileType.Directory, pafs.FileType.File)
        ]

    return list_dir


def list_spool(spool_dir: str, kind: str, closed: dict[str, int] | None = None) -> tuple[list[str], dict[str, int]]:
    """list_complete through pyarrow's filesystems: local paths and the URIs pyarrow knows (gs://,
    hdfs://). Raises OSError when the spool cannot be listed."""
    if is_local(spool_dir):
        filesystem: Any = pafs.LocalFileSystem()
        base = os.path.abspath(local_path(spool_dir))
    else:
        filesystem, base = pafs.FileSystem.from_uri(spool_dir)
    return list_complete(_pyarrow_lister(filesystem), base, kind, closed)


def list_files(spool_dir: str, kind: str) -> list[Path]:
    """Complete spool files of one kind on a local spool, oldest first (by file name)."""
    base = local_path(spool_dir)
    files = [base / relative for relative in list_spool(spool_dir, kind)[0]]
    return sorted(files, key=lambda p: (p.name, str(p)))


def count_rows(paths: Iterable[Path]) -> int:
    """Rows in the given Parquet files, from their footers only."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def footer_facts(path: Path) -> tuple[int, datetime | None]:
    """A transaction file's row count and newest publish_time (aware UTC; None for no rows), from
    its footer's statistics; the publish_time column is read only when a writer kept none."""
    metadata = pq.ParquetFile(path).metadata
    if metadata.num_rows == 0:
        return 0, None
    column = metadata.schema.to_arrow_schema().get_field_index("publish_time")
    newest: datetime | None = None
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            top = pc.max(pq.read_table(path, columns=["publish_time"]).column(0)).as_py()
            return metadata.num_rows, top.astimezone(UTC) if top else None
        top = stats.max
        if isinstance(top, datetime):
            top = top.astimezone(UTC) if top.tzinfo else top.replace(tzinfo=UTC)
            newest = top if newest is None or top > newest else newest
    return metadata.num_rows, newest
