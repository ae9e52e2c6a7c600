"""The aggregation job's bookkeeping, kept in the Bigtable table itself (family dcfmeta).

    ~job            last_run          id of the last finished run (runs are numbered 1, 2, 3...)
                    pending           JSON {"run_id", "files", "listed_at"} of a run that started and
                                      has not finished, or "" when none
                    last_finished_at  RFC 3339
                    last_summary      JSON counts of the last finished run
                    scan_from         YYYY-MM-DD: spool dt= directories older than this are complete
                                      and fully processed, so a run no longer lists them
    ~file#<path>    run               the run that processed this spool file (path relative to spool_dir)
    ~run#<id>       summary           JSON counts of that run

State lives beside the data so a table that comes back empty is rebuilt from the whole spool by
the next run. This module does not import PySpark: the web app's /health reads it too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from common import rowkeys, spool, store
from common.config import Config
from common.timeutil import format_rfc3339, parse_rfc3339

LAST_RUN = b"last_run"
PENDING = b"pending"
FINISHED_AT = b"last_finished_at"
SUMMARY = b"last_summary"
SCAN_FROM = b"scan_from"
RUN_SUMMARY = b"summary"
# A spool file is named when its write starts and appears when it completes; a day covers any
# writer still finishing (and clock skew), so directories older than that are closed.
SCAN_MARGIN = timedelta(days=1)


class JobStateError(RuntimeError):
    """The job's bookkeeping in Bigtable is unreadable, inconsistent or could not be written."""


@dataclass(frozen=True)
class PendingRun:
    """A run that has listed its files and not finished yet."""

    run_id: int
    files: list[str] = field(default_factory=list)
    listed_at: str = ""


# --- spool listing rules (shared by the job's Hadoop listing and the backlog count) ----------


def is_complete_file(relative_path: str) -> bool:
    """True for a finished Parquet file: no path part starts with '.' or '_' (temp or marker files)."""
    parts = relative_path.split("/")
    return relative_path.endswith(".parquet") and not any(p.startswith((".", "_")) for p in parts)


def dir_in_window(dir_name: str, scan_from: str | None) -> bool:
    """Whether a directory directly under transactions/ still needs listing; only dt=YYYY-MM-DD
    directories older than scan_from are skipped."""
    if not scan_from or not dir_name.startswith("dt="):
        return True
    return dir_name[3:] >= scan_from


def next_scan_from(listed_at: datetime) -> str:
    """The scan_from a run that listed the spool at `listed_at` and finished may record."""
    return (listed_at - SCAN_MARGIN).strftime("%Y-%m-%d")


def list_spool_files(spool_dir: str, scan_from: str | None = None) -> list[str]:
    """Complete transaction files (spool-relative paths, sorted) through pyarrow's filesystems.

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
    top = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    for info in top:
        name = info.path.rsplit("/", 1)[-1]
        if info.type == pafs.FileType.Directory:
            if not dir_in_window(name, scan_from) or name.startswith((".", "_")):
                continue
            inner = filesystem.get_file_info(pafs.FileSelector(info.path, recursive=True))
            found.extend(i.path for i in inner if i.type == pafs.FileType.File)
        elif info.type == pafs.FileType.File:
            found.append(info.path)
    relative = (p[len(base) + 1 :] for p in found)
    return sorted(p for p in relative if is_complete_file(p))


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
    """The ~job row as a dict (last_run, pending, last_finished_at, last_summary, scan_from), or
    None when the job has never run against this table."""
    cells = store.read_row_cells(table, rowkeys.JOB_KEY, store.META)
    if not cells:
        return None
    pending = _decode_json(cells, PENDING)
    return {
        "last_run": int(cells.get(LAST_RUN, b"0") or b"0"),
        "pending": pending,
        "last_finished_at": cells.get(FINISHED_AT, b"").decode() or None,
        "last_summary": _decode_json(cells, SUMMARY),
        "scan_from": cells.get(SCAN_FROM, b"").decode() or None,
    }


def pending_run(status: dict[str, Any] | None) -> PendingRun | None:
    """The unfinished run recorded in a job status, if any."""
    pending = (status or {}).get("pending")
    if not pending:
        return None
    try:
        return PendingRun(int(pending["run_id"]), [str(f) for f in pending["files"]], str(pending.get("listed_at", "")))
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


def spool_backlog(cfg: Config, table: Any) -> int:
    """Complete spool files the next run would process: listed the way the job lists them and not
    yet marked processed. Raises OSError when the spool cannot be listed."""
    status = read_job_status(table)
    scan_from = (status or {}).get("scan_from")
    files = list_spool_files(cfg.spool_dir, scan_from)
    return len(files) - len(processed_among(table, files))


# --- writes -----------------------------------------------------------------------------------


def _write_job_cells(table: Any, cells: dict[bytes, bytes]) -> None:
    failures = store.write_cells(table, rowkeys.JOB_KEY, store.META, cells)
    if failures:
        raise JobStateError(f"could not write the job state row: {failures[0].message}")


def begin_run(table: Any, status: dict[str, Any] | None, files: list[str], listed_at: datetime) -> PendingRun:
    """Record a new run (last_run + 1) with its files as pending, before any data is touched."""
    run = PendingRun((status or {}).get("last_run", 0) + 1, sorted(files), format_rfc3339(listed_at))
    payload = {"run_id": run.run_id, "files": run.files, "listed_at": run.listed_at}
    _write_job_cells(table, {PENDING: json.dumps(payload).encode()})
    return run


def abandon_run(table: Any, run: PendingRun) -> None:
    """Forget a pending run that wrote no data (its files failed the schema check), so moving the
    bad file aside unblocks the next run. Its id is used again by the next run."""
    _write_job_cells(table, {PENDING: b""})


def finish_run(table: Any, run: PendingRun, summary: dict[str, Any], finished_at: datetime) -> None:
    """Mark the run's files processed, then clear pending and record the run as the last one.

    Files first: a crash between the two leaves the run pending, and resuming it changes nothing."""
    rows = [store.marker_row(table, rowkeys.processed_file_key(f), run.run_id) for f in run.files]
    failures = store.write_rows(table, rows)
    if failures:
        raise JobStateError(f"could not mark {len(failures)} spool files processed, e.g. {failures[0].key!r}")
    text = json.dumps(summary, sort_keys=True).encode()
    failures = store.write_cells(table, rowkeys.run_key(run.run_id), store.META, {RUN_SUMMARY: text})
    if failures:
        raise JobStateError(f"could not write the summary of run {run.run_id}: {failures[0].message}")
    cells = {
        LAST_RUN: str(run.run_id).encode(),
        PENDING: b"",
        FINISHED_AT: format_rfc3339(finished_at).encode(),
        SUMMARY: text,
    }
    if run.listed_at:
        cells[SCAN_FROM] = next_scan_from(parse_rfc3339(run.listed_at)).encode()
    _write_job_cells(table, cells)
