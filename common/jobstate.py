"""The aggregation job's bookkeeping rows, kept in the Bigtable table itself (family dcfmeta).

Part of the table's layout: the job (jobs/aggregate) writes them, the web app reads them (/health,
/conflicts, the response cache), so they live here and not in either stage.

    ~job            last_run          id of the last finished run (runs are numbered 1, 2, 3...)
                    pending           JSON {"run_id", "files", "listed_at"} of a run that started and
                                      has not finished, or "" when none
                    last_finished_at  RFC 3339
                    last_summary      JSON counts of the last finished run
                    conflicts_total   conflicting copies found by all finished runs
                    lease             "<holder>|<expiry, epoch µs>" of the running job (jobs/aggregate/lease.py)
    ~file#<path>    run               the run that processed this spool file (path relative to spool_dir)
    ~run#<id>       summary           JSON counts of that run
    ~dir#<folder>   mtime             the modification time (epoch ms) a spool folder under
                                      transactions/ had when every file in it was processed

The listing rule: a run lists the folder names under transactions/ with their modification times
(one call) and lists the files of every folder except those closed with the same modification
time they have now. Adding or renaming a file into a folder changes its time, so a file that lands
late in an old folder (a lagging copy, a host whose clock is behind) reopens it: no complete file
is ever skipped, whatever its folder is called and whatever either clock says, while closed folders
cost nothing. A folder is closed only once it is older than CLOSE_MARGIN at listing time, so a
rename in the same clock tick as the listing cannot hide. Where folders carry no modification time
(object stores), every folder is listed.

State lives beside the data so a table that comes back empty is rebuilt from the whole spool by
the next run. This module does not import PySpark.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common import rowkeys, spool, store
from common.config import Config
from common.timeutil import format_rfc3339

LAST_RUN = b"last_run"
PENDING = b"pending"
FINISHED_AT = b"last_finished_at"
SUMMARY = b"last_summary"
CONFLICTS_TOTAL = b"conflicts_total"
LEASE = b"lease"  # written by jobs/aggregate/lease.py
RUN_SUMMARY = b"summary"
MTIME = b"mtime"
CLOSE_MARGIN_MS = 60_000


class JobStateError(RuntimeError):
    """The job's bookkeeping in Bigtable is unreadable, inconsistent or could not be written."""


@dataclass(frozen=True)
class PendingRun:
    """A run that has listed its files and not finished yet."""

    run_id: int
    files: list[str] = field(default_factory=list)
    listed_at: str = ""
    close_folders: dict[str, int] = field(default_factory=dict)  # folder -> mtime (ms) to record as closed


# --- spool listing rules (shared by the job's Hadoop listing and the backlog count) ----------


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


def list_spool_files(spool_dir: str, closed: dict[str, int] | None = None) -> tuple[list[str], dict[str, int]]:
    """Complete transaction files (spool-relative paths, sorted) under the folders the listing rule
    says to list, and every folder's modification time (epoch ms), through pyarrow's filesystems.

    Works for local paths and the URIs pyarrow knows (gs://, hdfs://); raises OSError when the
    spool cannot be listed."""
    from pyarrow import fs as pafs

    if spool.is_local(spool_dir):
        filesystem: Any = pafs.LocalFileSystem()
        base = os.path.abspath(spool.local_path(spool_dir))
    else:
        filesystem, base = pafs.FileSystem.from_uri(spool_dir)
    base = base.rstrip("/")
    root = f"{base}/{spool.TRANSACTIONS}"
    found: list[str] = []
    folders: dict[str, Any] = {}
    for info in filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        name = info.path.rsplit("/", 1)[-1]
        if info.type == pafs.FileType.Directory and not name.startswith((".", "_")):
            folders[name] = (info, int(info.mtime_ns // 1_000_000) if info.mtime_ns else 0)
        elif info.type == pafs.FileType.File:
            found.append(info.path)
    mtimes = {name: mtime for name, (_, mtime) in folders.items()}
    for name in folders_to_list(mtimes, closed or {}):
        inner = filesystem.get_file_info(pafs.FileSelector(folders[name][0].path, recursive=True))
        found.extend(i.path for i in inner if i.type == pafs.FileType.File)
    relative = (p[len(base) + 1 :] for p in found)
    return sorted(p for p in relative if is_complete_file(p)), mtimes


# --- reads ------------------------------------------------------------------------------------


def _decode_json(cells: dict[bytes, bytes], qualifier: bytes) -> Any:
    raw = cells.get(qualifier, b"")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise JobStateError(f"~job cell dcfmeta:{qualifier.decode()} is not JSON: {raw[:80]!r}") from None


def read_job_status(table: Any) -> dict[str, Any] | None:
    """The ~job row as a dict (last_run, pending, last_finished_at, last_summary, conflicts_total),
    or None when the job has never run against this table."""
    cells = store.read_row_cells(table, rowkeys.JOB_KEY, store.META)
    if not set(cells) - {LEASE}:  # a lease alone: some process claimed it, no run ever started
        return None
    pending = _decode_json(cells, PENDING)
    return {
        "last_run": int(cells.get(LAST_RUN, b"0") or b"0"),
        "pending": pending,
        "last_finished_at": cells.get(FINISHED_AT, b"").decode() or None,
        "last_summary": _decode_json(cells, SUMMARY),
        "conflicts_total": int(cells.get(CONFLICTS_TOTAL, b"0") or b"0"),
    }


def pending_run(status: dict[str, Any] | None) -> PendingRun | None:
    """The unfinished run recorded in a job status, if any."""
    pending = (status or {}).get("pending")
    if not pending:
        return None
    try:
        return PendingRun(
            int(pending["run_id"]),
            [str(f) for f in pending["files"]],
            str(pending.get("listed_at", "")),
            {str(k): int(v) for k, v in (pending.get("close_folders") or {}).items()},
        )
    except (KeyError, TypeError, ValueError):
        raise JobStateError(f"~job pending is not {{run_id, files}}: {str(pending)[:120]}") from None


def processed_files(table: Any, path_prefix: str = "") -> set[str]:
    """Spool-relative paths of the files some finished run has processed (optionally under a prefix)."""
    keys = store.read_keys(table, store.META, *rowkeys.processed_file_range(path_prefix))
    return {rowkeys.parse_processed_file_key(key) for key in keys}


def processed_among(table: Any, files: list[str]) -> set[str]:
    """Which of these spool files some finished run has processed; reads only their own rows, so the
    cost follows the files listed, not the history."""
    keys = {rowkeys.processed_file_key(f): f for f in files}
    return {keys[key] for key in store.read_run_markers(table, list(keys))}


def has_counted_data(table: Any) -> bool:
    """True when the table holds any hour bucket, i.e. some run has counted transactions into it."""
    return bool(store.read_keys(table, store.HOUR, b"\x00", b"\xff", limit=1))


def has_id_index(table: Any) -> bool:
    """True when some run has recorded a counted transaction id."""
    return bool(store.read_keys(table, store.ID, *rowkeys.id_index_range(), limit=1))


def closed_folders(table: Any) -> dict[str, int]:
    """The spool folders recorded as closed, with the modification time (epoch ms) they had then."""
    rows = store.read_counter_rows(table, store.META, *rowkeys.spool_dir_range())
    return {rowkeys.parse_spool_dir_key(key): cells.get(MTIME, 0) for key, cells in rows}


def spool_backlog(cfg: Config, table: Any) -> int:
    """Complete spool files the next run would process: listed the way the job lists them (every
    folder not closed) and not yet marked processed. Raises OSError when the spool cannot be listed."""
    files, _ = list_spool_files(cfg.spool_dir, closed_folders(table))
    return len(files) - len(processed_among(table, files))


# --- writes -----------------------------------------------------------------------------------


def _write_job_cells(table: Any, cells: dict[bytes, bytes]) -> None:
    failures = store.write_cells(table, rowkeys.JOB_KEY, store.META, cells)
    if failures:
        raise JobStateError(f"could not write the job state row: {failures[0].message}")


def begin_run(
    table: Any,
    status: dict[str, Any] | None,
    files: list[str],
    listed_at: datetime,
    close_folders: dict[str, int] | None = None,
) -> PendingRun:
    """Record a new run (last_run + 1) with its files (and the folders it closes when it finishes)
    as pending, before any data is touched."""
    run = PendingRun(
        (status or {}).get("last_run", 0) + 1, sorted(files), format_rfc3339(listed_at), dict(close_folders or {})
    )
    payload = {
        "run_id": run.run_id,
        "files": run.files,
        "listed_at": run.listed_at,
        "close_folders": run.close_folders,
    }
    _write_job_cells(table, {PENDING: json.dumps(payload).encode()})
    return run


def abandon_run(table: Any, run: PendingRun) -> None:
    """Forget a pending run that wrote no data (its files failed the schema check), so moving the
    bad file aside unblocks the next run. Its id is used again by the next run."""
    _write_job_cells(table, {PENDING: b""})


def close_folders(table: Any, folders: dict[str, int]) -> None:
    """Record spool folders (name -> modification time, epoch ms) as closed: every file in them is
    processed, so runs skip them until their modification time changes."""
    rows = [store.meta_cells_row(table, rowkeys.spool_dir_key(n), {MTIME: str(m).encode()}) for n, m in folders.items()]
    failures = store.write_rows(table, rows)
    if failures:
        raise JobStateError(f"could not record {len(failures)} spool folders as closed, e.g. {failures[0].key!r}")


def finish_run(
    table: Any, run: PendingRun, summary: dict[str, Any], finished_at: datetime, conflicts_before: int = 0
) -> None:
    """Mark the run's files processed, then clear pending and record the run as the last one.

    Files first: a crash between the two leaves the run pending, and resuming it changes nothing."""
    rows = [store.marker_row(table, rowkeys.processed_file_key(f), run.run_id) for f in run.files]
    failures = store.write_rows(table, rows)
    if failures:
        raise JobStateError(f"could not mark {len(failures)} spool files processed, e.g. {failures[0].key!r}")
    close_folders(table, run.close_folders)
    text = json.dumps(summary, sort_keys=True).encode()
    failures = store.write_cells(table, rowkeys.run_key(run.run_id), store.META, {RUN_SUMMARY: text})
    if failures:
        raise JobStateError(f"could not write the summary of run {run.run_id}: {failures[0].message}")
    cells = {
        LAST_RUN: str(run.run_id).encode(),
        PENDING: b"",
        FINISHED_AT: format_rfc3339(finished_at).encode(),
        SUMMARY: text,
        CONFLICTS_TOTAL: str(conflicts_before + int(summary.get("conflicts", 0))).encode(),
    }
    _write_job_cells(table, cells)
