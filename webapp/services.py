"""The app's long-lived handles: config, clock, the Bigtable table and the Pub/Sub publisher.

One `Services` per app, stored in `app.extensions["txn"]`. The table and publisher are built on
first use (so a gunicorn worker builds its own after the fork) and then shared by its threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app

from common import bigtable_private, clients
from common.config import Config
from webapp.cache import WholeHourCache
from webapp.freshness import FreshnessTracker

READ_TIMEOUT_S = 5.0  # a whole request's Bigtable reads; past it the API answers 503
ATTEMPT_TIMEOUT_S = 2.0


class Services:
    """`table`, when given, is used instead of the Bigtable table the config names."""

    def __init__(self, cfg: Config, clock: Callable[[], datetime], table: Any = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.read_timeout_s = READ_TIMEOUT_S
        self._lock = threading.Lock()
        self._table: Any = table
        self._publisher: Any = None
        self._dead_letter_cache: tuple[tuple[tuple[str, int], ...], int] | None = None
        self.whole_hours = WholeHourCache()
        self.freshness = FreshnessTracker()

    def table(self) -> Any:
        """The Bigtable table handle, built once. Reads retry for at most read_timeout_s."""
        with self._lock:
            if self._table is None:
                table = clients.bigtable_table(self.cfg)
                # The client's defaults retry an unreachable server for ten minutes; a page must
                # answer 503 well before a person gives up on it.
                bigtable_private.bound_read_timeouts(table, self.read_timeout_s, ATTEMPT_TIMEOUT_S)
                self._table = table
            return self._table

    def publisher(self) -> Any:
        """The Pub/Sub publisher client, built once."""
        with self._lock:
            if self._publisher is None:
                self._publisher = clients.publisher_client(self.cfg)
            return self._publisher

    def dead_letter_count(self, files: list[Path], count: Callable[[list[Path]], int]) -> int:
        """Rows in the dead-letter files, recounted only when the file list changes."""
        signature = tuple((str(p), p.stat().st_size) for p in files)
        with self._lock:
            if self._dead_letter_cache and self._dead_letter_cache[0] == signature:
                return self._dead_letter_cache[1]
        total = count(files)
        with self._lock:
            self._dead_letter_cache = (signature, total)
        return total


def services() -> Services:
    """The current app's Services."""
    found: Services = current_app.extensions["txn"]
    return found


def get_table() -> Any:
    """The current app's Bigtable table handle."""
    return services().table()


def now() -> datetime:
    """The current app's clock (aware UTC)."""
    return services().clock()
