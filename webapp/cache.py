"""What whole hours add up to, remembered between requests for as long as their rows cannot change.

The hour rows (counters, category counters, amount sketches) change only while an aggregate job run
is applying them, and every run records itself in the table's ~job row: `pending` while it works,
then `last_run` and `last_finished_at`. So a value computed from whole hours while no run is pending
stays exact until that row changes, and is cached under (last_run, last_finished_at). While a run is
pending, or when the table has no ~job row (data written by other means), nothing is cached. The
~job row itself is re-read at most every `tag_ttl_s` (one second), so a finished run shows in the
answers within a second; until then they are the exact answers of the run before. A 30-day /sum,
/categories or /percentiles then reads the two partial edge hours instead of ~720 hour rows (and
merges no sketch but the cached one).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar, cast

from common.jobstate import read_job_status
from webapp.queries import Totals, whole_hour_total

RunTag = tuple[int, str]
T = TypeVar("T")


class Memo(Protocol):
    """WholeHourCache.remember, or no_memo: compute() for `what`, possibly remembered."""

    def __call__(self, table: Any, what: tuple[Hashable, ...], compute: Callable[[], T]) -> T: ...


def no_memo(table: Any, what: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """Nothing remembered: compute() every time (tests, the notebook, a caller without the app)."""
    return compute()


def run_tag(table: Any) -> RunTag | None:
    """The finished run the counters reflect, or None while a run is pending or none is recorded."""
    status = read_job_status(table)
    if not status or status.get("pending") or not status.get("last_run"):
        return None
    return int(status["last_run"]), str(status.get("last_finished_at") or "")


class WholeHourCache:
    """An LRU map (what, first hour, end hour, run tag) -> a value computed from those whole hours,
    safe across threads. Values are shared between requests: callers never change one."""

    def __init__(
        self, max_entries: int = 4096, tag_ttl_s: float = 1.0, tag_of: Callable[[Any], RunTag | None] = run_tag
    ) -> None:
        self.max_entries = max_entries
        self.tag_ttl_s = tag_ttl_s
        self._tag_of = tag_of
        self._tag: tuple[float, RunTag | None] | None = None
        self._entries: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def current_tag(self, table: Any) -> RunTag | None:
        """The run tag, read from the table at most every tag_ttl_s."""
        now = time.monotonic()
        with self._lock:
            if self._tag is not None and now - self._tag[0] < self.tag_ttl_s:
                return self._tag[1]
        tag = self._tag_of(table)
        with self._lock:
            self._tag = (now, tag)
        return tag

    def remember(self, table: Any, what: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
        """compute(), or the value it gave for `what` (a tuple naming the query and its whole
        hours) under the current run tag; computed afresh while a run is pending."""
        tag = self.current_tag(table)
        if tag is None:
            return compute()
        key = (*what, tag)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return cast(T, self._entries[key])
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def total(self, table: Any, user_id: str, first_hour_us: int, end_hour_us: int) -> Totals:
        """whole_hour_total(...) for [first_hour_us, end_hour_us), from memory when still exact."""
        return self.remember(
            table,
            ("sum", user_id, first_hour_us, end_hour_us),
            lambda: whole_hour_total(table, user_id, first_hour_us, end_hour_us),
        )
