"""The Parquet spool: its schemas, its layout, and the one atomic file writer.

Layout under spool_dir (dt is the UTC date the file was written):
    transactions/dt=YYYY-MM-DD/part-<UTC time>-<host>-<pid>-<tag>-<n>.parquet   valid transactions
    dead-letter/dt=YYYY-MM-DD/part-<UTC time>-<host>-<pid>-<tag>-<n>.parquet    rejected messages
Names sort by write time, and no two writers ever make the same one (see WriterName), so any number
of spoolers, on one host or many, can share one spool. Files of older versions, named
part-<UTC time>-<random>.parquet, are read the same way: nothing but the rules below reads a name.

spool_dir is a local path or a gs://bucket/prefix URI (common/gcs.py). A local file appears only
once complete: written to a hidden temp name, fsynced, renamed, and the directory fsynced. An object
in Cloud Storage is uploaded whole and appears when its upload is finalized. Readers skip names
starting with '.' or '_'.

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
import itertools
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from common import gcs

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


class WriterName:
    """What makes a spool file name unique to the writer that made it: its host, its process id, a
    random tag drawn when it is made, and a count of the names it has given. Host and pid keep
    apart the spoolers running at one moment; the tag keeps apart a process and a later one that
    got the same pid and host (a restart, a container where every spooler is pid 1); the count
    keeps apart two files of one writer in the same microsecond, with no help from chance."""

    def __init__(self, host: str | None = None, pid: int | None = None, tag: str | None = None) -> None:
        raw_host = socket.gethostname() if host is None else host
        self.host = re.sub(r"[^A-Za-z0-9]+", "-", raw_host).strip("-")[:40] or "host"
        self.pid = os.getpid() if pid is None else pid
        self.tag = secrets.token_hex(4) if tag is None else tag
        self._count = itertools.count(1)  # next() is atomic: threads may share a writer

    def file_name(self, now: datetime) -> str:
        """The next name: part-<UTC time>-<host>-<pid>-<tag>-<n>.parquet, sorting by time first."""
        return f"part-{now:%Y%m%dT%H%M%S%f}Z-{self.host}-{self.pid}-{self.tag}-{next(self._count)}.parquet"


_process_writer: WriterName | None = None


def process_writer() -> WriterName:
    """This process's WriterName (a forked child makes its own: its pid differs)."""
    global _process_writer
    if _process_writer is None or _process_writer.pid != os.getpid():
        _process_writer = WriterName()
    return _process_writer


def new_file_name(kind: str, now: datetime | None = None, writer: WriterName | None = None) -> str:
    """A fresh spool-relative path for `kind` (TRANSACTIONS or DEAD_LETTER): kind/dt=.../part-...."""
    now = now or datetime.now(UTC)
    return f"{kind}/dt={now:%Y-%m-%d}/{(writer or process_writer()).file_name(now)}"


def new_file_path(spool_dir: str, kind: str, now: datetime | None = None, writer: WriterName | None = None) -> Path:
    """A fresh, time-sortable file path for `kind` in a local spool."""
    return local_path(spool_dir) / new_file_name(kind, now, writer)


def write_file(table: pa.Table, spool_dir: str, relative: str) -> str:
    """Write `table` as the spool file `relative` (from new_file_name) in the local or gs:// spool
    at spool_dir, complete and durable, or not at all; return where it is. Raises OSError."""
    if gcs.is_gcs(spool_dir):
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return gcs.write_object(gcs.filesystem(), f"{gcs.object_base(spool_dir)}/{relative}", sink.getvalue())
    return str(write_atomic(table, local_path(spool_dir) / relative))


def fsync_dir(directory: Path) -> None:
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
        fsync_dir(folder.parent)


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
    fsync_dir(path.parent)
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


def _object_lister(filesystem: Any) -> Lister:
    """A Lister over an object store, which has names, not folders: one recursive listing (paged
    by the client) per folder asked for outside those already listed, its names grouped into what
    lies directly inside each folder asked for. A folder's time is unknown (0): every one is listed."""
    listed: dict[str, list[Any]] = {}

    def below(directory: str) -> list[Any]:
        for top, infos in listed.items():
            if directory == top or directory.startswith(top + "/"):
                return [i for i in infos if i.path.startswith(directory + "/")]
        selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
        listed[directory] = [i for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File]
        return listed[directory]

    def list_dir(directory: str) -> list[Entry]:
        directory = directory.rstrip("/")
        entries: dict[str, Entry] = {}
        for info in below(directory):
            head, inside, _ = info.path[len(directory) + 1 :].partition("/")
            if inside:
                entries.setdefault(head, Entry(f"{directory}/{head}", True, 0))
            else:
                entries[head] = Entry(info.path, False, int(info.mtime_ns // 1_000_000) if info.mtime_ns else 0)
        return list(entries.values())

    return list_dir


def filesystem(spool_dir: str) -> tuple[Any, str]:
    """(pyarrow filesystem, base path in it) of a spool: a local path, a gs:// URI (common/gcs.py),
    or another URI pyarrow knows (hdfs://)."""
    if is_local(spool_dir):
        return pafs.LocalFileSystem(), os.path.abspath(local_path(spool_dir))
    if gcs.is_gcs(spool_dir):
        return gcs.filesystem(), gcs.object_base(spool_dir)
    found, base = pafs.FileSystem.from_uri(spool_dir)
    return found, str(base)


def list_spool(spool_dir: str, kind: str, closed: dict[str, int] | None = None) -> tuple[list[str], dict[str, int]]:
    """list_complete through pyarrow's filesystems (see `filesystem`); an object store's names are
    grouped into folders by _object_lister. Raises OSError when the spool cannot be listed."""
    found, base = filesystem(spool_dir)
    lister = _object_lister(found) if gcs.is_gcs(spool_dir) else _pyarrow_lister(found)
    return list_complete(lister, base, kind, closed)


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
