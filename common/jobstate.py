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
                    last_success_at   RFC 3339 end of the last run that succeeded, even one with
                                      nothing new to do (what "no successful run for 15 min" reads)
                    last_success_seconds  how long that run took
                    failed_runs_total runs that raised (a bad spool file, rows not written, a bug)
                    last_failed_at    RFC 3339 end of the last failed run
                    last_failure      JSON counts of that run, with "error": its one-line reason
                    layout            the table layout the runs wrote (TABLE_LAYOUT; absent: 1, the
                                      top-spender row per hour that held one column per card holder)
    ~file#<path>    run               the run that processed this spool file (path relative to spool_dir)
    ~run#<id>       summary           JSON counts of that run
                    finished_at       RFC 3339 end of that run (rows written before it was kept lack it)
    ~dir#<folder>   mtime             the modification time (epoch ms) a spool folder under
                                      transactions/ had when every file in it was processed

Closed folders follow the spool's listing rule (common/spool.py): a run skips a folder recorded
here while its modification time is the one recorded.

State lives beside the data so a table that comes back empty is rebuilt from the whole spool by
the next run. This module does not import PySpark.
"""

from __future__ import annotations

import json
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
SUCCESS_AT = b"last_success_at"
SUCCESS_SECONDS = b"last_success_seconds"
FAILED_RUNS = b"failed_runs_total"
FAILED_AT = b"last_failed_at"
FAILURE = b"last_failure"
RUN_SUMMARY = b"summary"
RUN_FINISHED_AT = b"finished_at"
MTIME = b"mtime"
LAYOUT = b"layout"
# 2: the top-spender index holds one row per user-hour-currency (~top#...); 3: also one per
# user-currency and aligned block of 4, 16 and 64 hours, with the block counters (dcfblock)
TABLE_LAYOUT = 3


class JobStateError(RuntimeError):
    """The job's bookkeeping in Bigtable is unreadable, inconsistent or could not be written."""


@dataclass(frozen=True)
class PendingRun:
    """A run that has listed its files and not finished yet."""

    run_id: int
    files: list[str] = field(default_factory=list)
    listed_at: str = ""
    close_folders: dict[str, int] = field(default_factory=dict)  # folder -> mtime (ms) to record as closed


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
    """The ~job row as a dict (last_run, pending, last_finished_at, last_summary, conflicts_total,
    last_success_at, last_success_seconds, failed_runs_total, last_failed_at, last_failure), or None
    when the job has never run against this table."""
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
        "last_success_at": cells.get(SUCCESS_AT, b"").decode() or None,
        "last_success_seconds": float(cells.get(SUCCESS_SECONDS, b"0") or b"0"),
        "failed_runs_total": int(cells.get(FAILED_RUNS, b"0") or b"0"),
        "last_failed_at": cells.get(FAILED_AT, b"").decode() or None,
        "last_failure": _decode_json(cells, FAILURE),
        "layout": int(cells.get(LAYOUT, b"1") or b"1"),
    }


@dataclass(frozen=True)
class FinishedRun:
    """One finished run as its ~run# row records it."""

    run_id: int
    finished_at: str | None  # RFC 3339; None for a row written before runs kept it
    summary: dict[str, Any]


def read_runs(table: Any, first: int, last: int) -> list[FinishedRun]:
    """The finished runs with ids in [first, last], oldest first, from their ~run# rows (one read);
    an id without a row (not finished, or the table was emptied since) is left out."""
    if last < first:
        return []
    keys = {rowkeys.run_key(run): run for run in range(max(1, first), last + 1)}
    found = store.read_rows_at(table, list(keys), store.META)
    runs = []
    for key, cells in sorted(found.items()):
        summary = _decode_json(cells, RUN_SUMMARY)
        if not isinstance(summary, dict):
            continue
        finished = cells.get(RUN_FINISHED_AT, b"").decode() or None
        runs.append(FinishedRun(keys[key], finished, summary))
    return runs


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


def unprocessed_files(cfg: Config, table: Any) -> tuple[list[str], dict[str, int]]:
    """Complete spool files (spool-relative paths, sorted) the next run would process: listed the
    way the job lists them (every folder not closed) and not yet marked processed; and every folder
    under transactions/ with its modification time. Raises OSError when the spool cannot be listed."""
    files, folders = spool.list_spool(cfg.spool_dir, spool.TRANSACTIONS, closed_folders(table))
    done = processed_among(table, files)
    return [f for f in files if f not in done], folders


def spool_backlog(cfg: Config, table: Any) -> int:
    """How many complete spool files the next run would process (unprocessed_files)."""
    return len(unprocessed_files(cfg, table)[0])


def newest_processed_file(table: Any, folders: list[str], after: str = "") -> str | None:
    """The newest spool file (by name, which sorts by write time) some finished run processed,
    looking in the newest of `folders` (names under transactions/) that holds one; `after`, a file
    known to be processed, bounds the read to the rows past it in its own folder. Reads keys only."""
    for folder in sorted(folders, reverse=True):
        prefix = f"{spool.TRANSACTIONS}/{folder}/"
        start, end = rowkeys.processed_file_range(prefix)
        keys = (
            store.read_keys(table, store.META, rowkeys.processed_file_key(after), end)
            if after.startswith(prefix)
            else []
        )
        # Nothing from `after` on (a table emptied since): the whole folder.
        keys = keys or store.read_keys(table, store.META, start, end)
        if keys:
            return rowkeys.parse_processed_file_key(keys[-1])
    return None


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
    _write_job_cells(table, {PENDING: json.dumps(payload).encode(), LAYOUT: str(TABLE_LAYOUT).encode()})
    return run


def check_layout(status: dict[str, Any] | None, table_id: str) -> None:
    """Raise JobStateError (one line) when runs of another table layout wrote this table: its rows
    cannot be added to, only rebuilt. A table no run has started on has no layout yet."""
    if status is None or not (status["last_run"] or status["pending"]):
        return
    if status["layout"] != TABLE_LAYOUT:
        raise JobStateError(
            f"table {table_id} was written with table layout {status['layout']}, this job writes layout "
            f"{TABLE_LAYOUT} (the top-spender index); run txn-aggregate --rebuild to recount it"
        )


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


def mark_processed(table: Any, merged: str, run_id: int) -> None:
    """Record the spool file `merged` (compacted from files already processed) as processed by
    run `run_id`, before its members are deleted (see forget_processed)."""
    failures = store.write_rows(table, [store.marker_row(table, rowkeys.processed_file_key(merged), run_id)])
    if failures:
        raise JobStateError(f"could not mark the compacted file {merged} processed: {failures[0].message}")


def forget_processed(table: Any, files: list[str]) -> None:
    """Delete the processed-file rows of spool files that no longer exist (compacted away)."""
    failures = store.write_rows(table, [store.deleted_row(table, rowkeys.processed_file_key(f)) for f in files])
    if failures:
        raise JobStateError(f"could not forget {len(failures)} compacted spool files, e.g. {failures[0].key!r}")


def record_success(table: Any, finished_at: datetime, seconds: float) -> None:
    """Record that a run (one with nothing new to do included) succeeded at `finished_at`."""
    _write_job_cells(table, _success_cells(finished_at, seconds))


def _success_cells(finished_at: datetime, seconds: float) -> dict[bytes, bytes]:
    return {SUCCESS_AT: format_rfc3339(finished_at).encode(), SUCCESS_SECONDS: f"{seconds:.3f}".encode()}


def record_failure(table: Any, summary: dict[str, Any], error: str, failed_at: datetime) -> None:
    """Count a failed run and record its counts and one-line `error` as the last failure. The caller
    holds the run lock, so reading the count and writing it back races with no other run."""
    before = (read_job_status(table) or {}).get("failed_runs_total", 0)
    failure = json.dumps({**summary, "error": error[:500]}, sort_keys=True).encode()
    _write_job_cells(
        table,
        {FAILED_RUNS: str(before + 1).encode(), FAILED_AT: format_rfc3339(failed_at).encode(), FAILURE: failure},
    )


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
    run_cells = {RUN_SUMMARY: text, RUN_FINISHED_AT: format_rfc3339(finished_at).encode()}
    failures = store.write_cells(table, rowkeys.run_key(run.run_id), store.META, run_cells)
    if failures:
        raise JobStateError(f"could not write the summary of run {run.run_id}: {failures[0].message}")
    cells = {
        LAST_RUN: str(run.run_id).encode(),
        PENDING: b"",
        FINISHED_AT: format_rfc3339(finished_at).encode(),
        SUMMARY: text,
        CONFLICTS_TOTAL: str(conflicts_before + int(summary.get("conflicts", 0))).encode(),
        **_success_cells(finished_at, float(summary.get("seconds", 0.0))),
    }
    _write_job_cells(table, cells)
