"""How fresh the served numbers are, for /health and /metrics.

- The newest counted transaction: the newest publish_time in the newest spool file a finished run
  processed (file names sort by write time; the time comes from the file's Parquet footer), and its
  age. The lookup reads only the processed-file keys past the last one found, in the newest folder.
- The last run: when the job last finished a run (one with nothing new to do included), and how
  long ago.
- The backlog: the spool files the next run would process (the job's own listing rule and
  processed-file rows, common/jobstate.py) and their rows, from their footers. A file's facts never
  change once it is complete, so each footer is read once; at most MAX_FOOTERS_PER_CALL are read
  per call, and past that `backlog_rows` counts the files read so far (`backlog_rows_partial`).
Footers are read on a local spool only; elsewhere the row figures are None.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common import jobstate, spool
from common.config import Config
from common.timeutil import format_rfc3339

MAX_FOOTERS_PER_CALL = 2000


@dataclass(frozen=True)
class Freshness:
    newest_counted_publish_time: datetime | None
    last_run_finished_at: datetime | None
    backlog_files: int
    backlog_rows: int | None
    backlog_rows_partial: bool

    def as_json(self, now: datetime) -> dict[str, Any]:
        """The figures, with the ages in seconds at `now` (None where a time is unknown)."""

        def age(when: datetime | None) -> float | None:
            return round(max(0.0, (now - when).total_seconds()), 3) if when else None

        def text(when: datetime | None) -> str | None:
            return format_rfc3339(when) if when else None

        return {
            "newest_counted_publish_time": text(self.newest_counted_publish_time),
            "newest_counted_age_seconds": age(self.newest_counted_publish_time),
            "last_run_finished_at": text(self.last_run_finished_at),
            "since_last_run_seconds": age(self.last_run_finished_at),
            "backlog_files": self.backlog_files,
            "backlog_rows": self.backlog_rows,
            "backlog_rows_partial": self.backlog_rows_partial,
        }


def _last_run_finished(status: dict[str, Any] | None) -> datetime | None:
    """The later of the last run that counted something and the last that succeeded with nothing new."""
    times = [(status or {}).get(key) for key in ("last_finished_at", "last_success_at")]
    parsed = [datetime.fromisoformat(t) for t in times if t]
    return max(parsed) if parsed else None


class FreshnessTracker:
    """One app's footer cache and newest processed file, shared by its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._footers: dict[str, tuple[int, datetime | None]] = {}
        self._newest_file = ""

    def _footer(self, cfg: Config, relative: str) -> tuple[int, datetime | None]:
        with self._lock:
            known = self._footers.get(relative)
        if known is None:
            known = spool.footer_facts(spool.local_path(cfg.spool_dir) / relative)
            with self._lock:
                self._footers[relative] = known
        return known

    def measure(self, cfg: Config, table: Any, status: dict[str, Any] | None) -> Freshness:
        """The figures now, for the job status `status` (common.jobstate.read_job_status). Raises
        OSError when the spool cannot be listed and what a Bigtable read raises."""
        backlog, folders = jobstate.unprocessed_files(cfg, table)
        with self._lock:
            after = self._newest_file
        newest_file = jobstate.newest_processed_file(table, list(folders), after)
        local = spool.is_local(cfg.spool_dir)
        newest_publish = None
        rows: int | None = None
        partial = False
        if local:
            if newest_file:
                newest_publish = self._footer(cfg, newest_file)[1]
            with self._lock:
                unread = [f for f in backlog if f not in self._footers]
            for relative in unread[:MAX_FOOTERS_PER_CALL]:
                self._footer(cfg, relative)
            partial = len(unread) > MAX_FOOTERS_PER_CALL
            with self._lock:
                rows = sum(self._footers[f][0] for f in backlog if f in self._footers)
                # Keep only what the next call can use: the backlog's footers and the newest file's.
                keep = set(backlog) | {newest_file or ""}
                self._footers = {f: facts for f, facts in self._footers.items() if f in keep}
        with self._lock:
            self._newest_file = newest_file or ""
        return Freshness(newest_publish, _last_run_finished(status), len(backlog), rows, partial)
