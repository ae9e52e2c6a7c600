"""What the API asks of Bigtable about merchant categories and about everyone at once: totals per
category (one card holder or all), everyone's totals per hour or minute, and the latest
transactions of all card holders. Money stays integer minor units, kept apart per currency.

Every answer is exact for any [start, end). One card holder's whole hours come from the job's
user-hour category rows, the partial hours at either edge from the transaction rows (as /sum does).
For everyone, a range is cut into whole hours (the ~cathour rows), then whole minutes at the edges
(the ~catmin rows), then the seconds left at either edge, read from the time index, which holds
every transaction ordered by event time: at most two minutes of it, whatever the range.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from common import rowkeys, store
from common.store import StoredTransaction
from common.timeutil import HOUR_S, HOUR_US, MINUTE_US, SECOND_US
from webapp.cache import Memo, no_memo
from webapp.queries import Totals, split_hours

# (currency, category) -> [sum in minor units, count]
ByCategory = dict[tuple[str, str], list[int]]
# ((currency, category, sum, count), ...): whole hours' totals as the cache keeps them (never changed)
Frozen = tuple[tuple[str, str, int, int], ...]
# (start of the stretch in epoch microseconds, currency, category, sum in minor units, count)
Piece = tuple[int, str, str, int, int]

_ALL_KEYS = {HOUR_US: rowkeys.category_all_hour_key, MINUTE_US: rowkeys.category_all_minute_key}


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


def _add(into: ByCategory, currency: str, category: str, sum_minor: int, count: int) -> None:
    pair = into.setdefault((currency, category), [0, 0])
    pair[0] += sum_minor
    pair[1] += count


def ranked(by_category: ByCategory) -> list[tuple[str, str, int, int]]:
    """[(category, currency, sum, count)], currency by currency (code order), the highest sum first
    within one (ties by category): sums in different currencies are never compared."""
    rows = [(category, currency, pair[0], pair[1]) for (currency, category), pair in by_category.items()]
    return sorted(rows, key=lambda row: (row[1], -row[2], row[0]))


# --- one card holder --------------------------------------------------------------------------


def _frozen(by_category: ByCategory) -> Frozen:
    return tuple((currency, category, total, count) for (currency, category), (total, count) in by_category.items())


def _user_whole_hours(table: Any, user_id: str, first_us: int, end_us: int) -> Frozen:
    out: ByCategory = {}
    keys = [rowkeys.category_hour_key(user_id, h) for h in range(first_us // SECOND_US, end_us // SECOND_US, HOUR_S)]
    for cells in store.read_counters_at(table, store.CAT, keys).values():
        for (currency, category), (total, count) in store.per_category(cells).items():
            _add(out, currency, category, total, count)
    return _frozen(out)


def user_categories(table: Any, user_id: str, start_us: int, end_us: int, memo: Memo = no_memo) -> ByCategory:
    """The user's sum and count per (currency, category) over [start_us, end_us), exact. The whole
    hours' totals go through `memo` (the app's WholeHourCache)."""
    out: ByCategory = {}
    whole, edges = split_hours(start_us, end_us)
    if whole:
        totals = memo(table, ("categories", user_id, *whole), lambda: _user_whole_hours(table, user_id, *whole))
        for currency, category, total, count in totals:
            _add(out, currency, category, total, count)
    ranges = [rowkeys.transaction_range(user_id, low, high) for low, high in edges]
    for txn in store.read_transactions_in(table, ranges):
        _add(out, txn.currency, txn.category, txn.amount_minor, 1)
    return out


# --- everyone ---------------------------------------------------------------------------------


def everyone_pieces(table: Any, start_us: int, end_us: int, coarsest_us: int = HOUR_US) -> Iterator[Piece]:
    """Every user's totals over [start_us, end_us) as pieces that never straddle a step of
    `coarsest_us` (an hour or a minute): whole steps from the category counters, then finer steps
    at the edges, then single transactions from the time index for what is left."""
    steps = [step for step in (HOUR_US, MINUTE_US) if step <= coarsest_us]
    yield from _pieces(table, start_us, end_us, steps)


def _pieces(table: Any, low: int, high: int, steps: list[int]) -> Iterator[Piece]:
    if low >= high:
        return
    if not steps:
        for row in store.read_time_index(table, rowkeys.time_index_ranges(low, high)):
            _, event_us, _ = rowkeys.parse_time_index_key(row.key)
            yield event_us, row.currency, row.category, row.amount_minor, 1
        return
    step, finer = steps[0], steps[1:]
    first, last = _ceil(low, step), high - high % step
    if first >= last:
        yield from _pieces(table, low, high, finer)
        return
    key = _ALL_KEYS[step]
    for row_key, cells in store.read_counter_rows(table, store.CAT, key(first // SECOND_US), key(last // SECOND_US)):
        at = rowkeys.parse_category_all_key(row_key) * SECOND_US
        for (currency, category), (total, count) in store.per_category(cells).items():
            yield at, currency, category, total, count
    yield from _pieces(table, low, first, finer)
    yield from _pieces(table, last, high, finer)


def _everyone_whole_hours(table: Any, first_us: int, end_us: int) -> Frozen:
    out: ByCategory = {}
    for _, currency, category, total, count in _pieces(table, first_us, end_us, [HOUR_US]):
        _add(out, currency, category, total, count)
    return _frozen(out)


def everyone_categories(table: Any, start_us: int, end_us: int, memo: Memo = no_memo) -> ByCategory:
    """Every user's sum and count per (currency, category) over [start_us, end_us), exact. The whole
    hours' totals go through `memo` (the app's WholeHourCache); the edges are cut finer."""
    out: ByCategory = {}
    first, last = _ceil(start_us, HOUR_US), end_us - end_us % HOUR_US
    if first >= last:
        pieces = everyone_pieces(table, start_us, end_us)
    else:
        whole = memo(table, ("categories", None, first, last), lambda: _everyone_whole_hours(table, first, last))
        for currency, category, total, count in whole:
            _add(out, currency, category, total, count)
        edges = (_pieces(table, start_us, first, [MINUTE_US]), _pieces(table, last, end_us, [MINUTE_US]))
        pieces = itertools.chain(*edges)
    for _, currency, category, total, count in pieces:
        _add(out, currency, category, total, count)
    return out


def everyone_totals(table: Any, start_us: int, end_us: int, step_us: int) -> list[tuple[int, Totals]]:
    """Every hour (step_us = HOUR_US) or minute (MINUTE_US) that overlaps [start_us, end_us), oldest
    first (epoch seconds), with every user's totals per currency over the part inside the range;
    zero where none, so the steps add up to the range's exact total."""
    if start_us >= end_us:
        return []
    sums: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for at, currency, _, total, count in everyone_pieces(table, start_us, end_us, step_us):
        pair = sums[at - at % step_us].setdefault(currency, [0, 0])
        pair[0] += total
        pair[1] += count
    step_s = step_us // SECOND_US
    first = (start_us - start_us % step_us) // SECOND_US
    return [
        (at, Totals(tuple(sorted((cur, p[0], p[1]) for cur, p in sums.get(at * SECOND_US, {}).items()))))
        for at in range(first, _ceil(end_us, step_us) // SECOND_US, step_s)
    ]


def latest(table: Any, start_us: int, end_us: int, n: int) -> list[StoredTransaction]:
    """The n newest transactions of every user with event time in [start_us, end_us), newest first
    (ties by user id, then transaction id). Reads at most n rows from the head of each salt of the
    time index, never the table."""
    rows = store.read_time_index(table, rowkeys.time_index_ranges(start_us, end_us), limit=n)
    found = []
    for row in rows:
        user_id, event_us, transaction_id = rowkeys.parse_time_index_key(row.key)
        found.append((-event_us, user_id, transaction_id, row))
    return [
        StoredTransaction(
            rowkeys.transaction_key(user_id, -neg_us, tid), row.amount_minor, row.currency, row.category, ""
        )
        for neg_us, user_id, tid, row in heapq.nsmallest(n, found, key=lambda item: item[:3])
    ]
