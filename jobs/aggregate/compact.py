"""Compaction: many small processed spool files merged into few, without changing any number.

In the live mode the spooler rolls a file every second or so: 86,400 files a day in one dt= folder,
which every run lists and looks up. Compaction keeps that bounded. After a successful run, under
the job's lock, the processed files of each listed folder whose last change is older than
compact_after_seconds are merged, when there are at least compact_min_files of them, into files of
at most spool_roll_messages rows (same schema version only). Each merged file is

  1. written atomically beside its members (named after the first one, so it sorts with them),
  2. marked processed by the last run in the table,
  3. then its members are deleted, and their processed-file rows forgotten.

A crash between any two steps leaves every row in the spool at least once and the numbers exact:
a merged file not yet marked processed is read by the next run, which finds every id already
counted in the id index and drops it; members not yet deleted are merged again later, and a
`--rebuild` that reads a row twice counts it once (one row per transaction id). Only a local spool
is compacted (the job cannot read a gs:// one here); dead letters are left as they are.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common import jobstate, spool
from common.config import Config

MERGED_MARK = "-merged-"  # in a merged file's name: never merged again


@dataclass
class Compaction:
    """What one compaction did."""

    merged_files: int = 0  # files written
    members: int = 0  # small files they replaced
    rows: int = 0

    def line(self) -> str:
        return f"compact: {self.members:,} processed spool files merged into {self.merged_files:,} ({self.rows:,} rows)"


def merged_name(first_member: str) -> str:
    """The merged file's spool-relative path: beside the first member, sorting next to it."""
    stem = first_member.removesuffix(".parquet")
    return f"{stem}{MERGED_MARK}{secrets.token_hex(4)}.parquet"


def candidates(root: Path, processed: list[str], older_than_s: float, now: float) -> dict[str, list[str]]:
    """Processed files (spool-relative) not merged before and unchanged for `older_than_s`, by folder."""
    by_folder: dict[str, list[str]] = {}
    for relative in sorted(processed):
        if MERGED_MARK in relative:
            continue
        try:
            age = now - (root / relative).stat().st_mtime
        except FileNotFoundError:
            continue
        if age >= older_than_s:
            by_folder.setdefault(spool.folder_of(relative), []).append(relative)
    return by_folder


def groups(root: Path, members: list[str], max_rows: int) -> list[list[tuple[str, int]]]:
    """Members (in name order) split into runs of one schema holding at most max_rows rows each."""
    out: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    schema: pa.Schema | None = None
    rows = 0
    for relative in members:
        meta = pq.read_metadata(root / relative)
        file_schema = meta.schema.to_arrow_schema()
        if current and (rows + meta.num_rows > max_rows or not file_schema.equals(schema)):
            out.append(current)
            current, rows = [], 0
        current.append((relative, meta.num_rows))
        schema, rows = file_schema, rows + meta.num_rows
    if current:
        out.append(current)
    return out


def compact(cfg: Config, table: Any, say: Callable[[str], None] = print, now: float | None = None) -> Compaction:
    """Merge the spool's small processed files (see the module docstring); returns what it did."""
    done = Compaction()
    if not spool.is_local(cfg.spool_dir):
        return done
    status = jobstate.read_job_status(table) or {}
    if status.get("pending") or not status.get("last_run"):
        return done  # only between runs, and only once some run has processed files
    root = spool.local_path(cfg.spool_dir)
    files, _ = spool.list_spool(cfg.spool_dir, spool.TRANSACTIONS, jobstate.closed_folders(table))
    processed = sorted(jobstate.processed_among(table, files))
    by_folder = candidates(root, processed, cfg.compact_after_seconds, time.time() if now is None else now)
    for members in by_folder.values():
        if len(members) < cfg.compact_min_files:
            continue
        for group in groups(root, members, cfg.spool_roll_messages):
            if len(group) < 2:
                continue
            names = [name for name, _ in group]
            merged = pa.concat_tables([pq.read_table(root / name) for name in names])
            target = merged_name(names[0])
            spool.write_atomic(merged, root / target)
            jobstate.mark_processed(table, target, int(status["last_run"]))
            for name in names:
                (root / name).unlink(missing_ok=True)
            spool.fsync_dir((root / target).parent)
            jobstate.forget_processed(table, names)
            done.merged_files += 1
            done.members += len(names)
            done.rows += merged.num_rows
    if done.members:
        say(done.line())
    return done
