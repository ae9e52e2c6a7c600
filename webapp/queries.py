"""What the API asks of Bigtable: exact sums, hourly totals, newest-first pages of transactions,
top spenders, per-minute activity and the user directory. Keys come from common.rowkeys, cells
from common.store; money stays integer cents and times epoch microseconds here.

Bigtable (and its emulator) cannot scan backwards through the classic client, so a newest-first
page reads time windows backwards from its upper bound: each window is a bounded forward scan,
sized from the density of the window before it, so one page never reads the whole range.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from common import rowkeys, store
from common.rowkeys import HOUR_US
from common.store import StoredTransaction

HOUR_S = 3600
MINUTE_S = 60
MIN_WINDOW_US = 1_000_000
INITIAL_WINDOW_US = HOUR_US
WINDOW_ROW_CAP = 2000  # one backward-window scan returns at most this many rows
_TOKEN = re.compile(r"[A-Za-z0-9_-]{4,400}")


class PageTokenError(ValueError):
    """A page token that is malformed or belongs to another user."""


@dataclass(frozen=True)
class Totals:
    sum_cents: int = 0
    count: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.sum_cents + other.sum_cents, self.count + other.count)


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


def hour_totals(table: Any, user_id: str, start_us: int, end_us: int) -> dict[int, Totals]:
    """Per hour start (epoch s), the user's total over [start_us, end_us). Whole hours come from
    the dcfbhour counters, the partial hours at either edge from the dcflist rows."""
    totals: dict[int, Totals] = defaultdict(Totals)
    first_whole, last_whole = _ceil(start_us, HOUR_US), end_us - end_us % HOUR_US
    if first_whole < last_whole:
        low, high = rowkeys.hour_bucket_range(user_id, first_whole // 1_000_000, last_whole // 1_000_000)
        for key, cells in store.read_counter_rows(table, store.HOUR, low, high):
            _, hour_s = rowkeys.parse_hour_bucket_key(key)
            totals[hour_s] += Totals(cells.get(store.SUM, 0), cells.get(store.COUNT, 0))
        edges = [(start_us, first_whole), (last_whole, end_us)]
    else:
        edges = [(start_us, end_us)]
    for low_us, high_us in edges:
        if low_us >= high_us:
            continue
        for txn in store.read_transactions(table, *rowkeys.transaction_range(user_id, low_us, high_us)):
            _, event_us, _ = rowkeys.parse_transaction_key(txn.key)
            totals[rowkeys.hour_start_us(event_us) // 1_000_000] += Totals(txn.amount_cents, 1)
    return dict(totals)


def exact_sum(table: Any, user_id: str, start_us: int, end_us: int) -> Totals:
    """The user's sum and count over [start_us, end_us), exact to the microsecond."""
    return sum(hour_totals(table, user_id, start_us, end_us).values(), Totals())


def hourly(table: Any, user_id: str, start_us: int, end_us: int) -> list[tuple[int, Totals]]:
    """Every hour that overlaps [start_us, end_us), oldest first, with the total of the part inside
    the range (zero when none), so the hours add up to exact_sum over the same range."""
    if start_us >= end_us:
        return []
    totals = hour_totals(table, user_id, start_us, end_us)
    first = rowkeys.hour_start_us(start_us) // 1_000_000
    return [(hour, totals.get(hour, Totals())) for hour in range(first, _ceil(end_us, HOUR_US) // 1_000_000, HOUR_S)]


def transactions_page(
    table: Any, user_id: str, start_us: int, end_us: int, limit: int, before_key: bytes | None = None
) -> tuple[list[StoredTransaction], bytes | None]:
    """Up to `limit` of the user's transactions in [start_us, end_us), newest first, below
    `before_key` when given. Returns them and the key to continue below, or None at the end."""
    floor_key, upper_key = rowkeys.transaction_range(user_id, start_us, end_us)
    high_us = end_us
    if before_key is not None and before_key < upper_key:
        upper_key = before_key
        high_us = min(end_us, rowkeys.parse_transaction_key(before_key)[1] + 1)
    found: list[StoredTransaction] = []
    window = INITIAL_WINDOW_US
    while len(found) <= limit and upper_key > floor_key:
        low_us = max(start_us, high_us - window)
        low_key = rowkeys.transaction_range(user_id, low_us, high_us)[0]
        capped = window > MIN_WINDOW_US
        rows = store.read_transactions(table, low_key, upper_key, limit=WINDOW_ROW_CAP if capped else None)
        if capped and len(rows) >= WINDOW_ROW_CAP:
            window = max(MIN_WINDOW_US, window // 8)  # too dense: a narrower slice nearer the top
            continue
        found.extend(reversed(rows))
        upper_key, high_us = low_key, low_us
        wanted = limit + 1 - len(found)
        if not rows:
            window *= 4
        elif wanted > 0:
            window = max(MIN_WINDOW_US, min(window * 4, window * wanted * 2 // len(rows)))
    page = found[:limit]
    return page, (page[-1].key if len(found) > limit else None)


def encode_page_token(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_page_token(token: str, user_id: str) -> bytes:
    """The row key inside a page token, which must be one of `user_id`'s transaction keys."""
    if not _TOKEN.fullmatch(token):
        raise PageTokenError("not a page token from this API")
    try:
        key = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        owner, _, _ = rowkeys.parse_transaction_key(key)
    except (binascii.Error, ValueError):
        raise PageTokenError("not a page token from this API") from None
    if owner != user_id:
        raise PageTokenError("belongs to another query")
    return key


def top_users(table: Any, now_us: int, hours: int, n: int) -> list[tuple[str, int]]:
    """The n users with the highest total over the current hour and the hours-1 before it,
    highest first (ties by user id)."""
    current = rowkeys.hour_start_us(now_us) // 1_000_000
    start = current - (hours - 1) * HOUR_S
    totals: Counter[str] = Counter()
    for _, cells in store.read_counter_rows(
        table, store.TOP, rowkeys.top_hour_key(start), rowkeys.top_hour_key(current + HOUR_S)
    ):
        for qualifier, cents in cells.items():
            totals[qualifier.decode()] += cents
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:n]


def per_minute(table: Any, now_us: int, minutes: int) -> list[tuple[int, Totals]]:
    """All users' total per minute over the current minute and the minutes-1 before it, oldest
    first, zero for minutes without data."""
    current = rowkeys.minute_start_us(now_us) // 1_000_000
    start = current - (minutes - 1) * MINUTE_S
    found = {
        rowkeys.parse_minute_key(key): Totals(cells.get(store.SUM, 0), cells.get(store.COUNT, 0))
        for key, cells in store.read_counter_rows(
            table, store.MINUTE, rowkeys.minute_key(start), rowkeys.minute_key(current + MINUTE_S)
        )
    }
    return [(minute, found.get(minute, Totals())) for minute in range(start, current + MINUTE_S, MINUTE_S)]


def user_ids(table: Any, prefix: str, limit: int) -> list[str]:
    """Up to `limit` user ids from the directory that start with `prefix`, in order."""
    keys = store.read_keys(table, store.USER, *rowkeys.user_directory_range(prefix), limit=limit)
    return [rowkeys.parse_user_directory_key(key) for key in keys]
