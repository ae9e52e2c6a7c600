"""What the API asks of Bigtable: exact sums, hourly totals, newest-first pages of transactions,
top spenders, per-minute activity and the user directory. Keys come from common.rowkeys, cells
from common.store; money stays integer minor units, kept apart per currency (Totals), and times
epoch microseconds here.

Newest-first pages cannot use a reversed scan: the classic client offers none and the emulator
answers UNIMPLEMENTED. So a page reads time windows backwards from its upper bound, each a forward
scan with a row cap. A window is sized from the density of the one before it; one that hits the
cap is narrowed from the rows the capped scan returned; the page token carries the window size on
to the next page. One page never reads the whole range.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from common import rowkeys, store
from common.store import StoredTransaction
from common.timeutil import HOUR_S, HOUR_US, MINUTE_S, SECOND_US, parse_rfc3339, to_epoch_us

MIN_WINDOW_US = SECOND_US
INITIAL_WINDOW_US = 6 * HOUR_US  # a typical card holder spends a few times an hour
WINDOW_ROW_CAP = 2000  # one backward-window scan returns at most this many rows (fewer for small pages)
MAX_WINDOW_US = 100 * 366 * 24 * HOUR_US
_TOKEN = re.compile(r"([A-Za-z0-9_-]{4,400})\.([0-9]{1,18})")
_KEY_TOKEN = re.compile(r"[A-Za-z0-9_-]{4,400}")
CONFLICT_ROW_CAP = 1000  # one conflict scan returns at most this many rows


class PageTokenError(ValueError):
    """A page token that is malformed or belongs to another user or range."""


@dataclass(frozen=True)
class Totals:
    """Sums in integer minor units and transaction counts, kept apart per currency.

    `parts` holds (currency, sum in minor units, count) sorted by currency, one entry per currency
    present. Adding two Totals merges them currency by currency; no sum ever crosses currencies."""

    parts: tuple[tuple[str, int, int], ...] = ()

    @classmethod
    def of(cls, currency: str, sum_minor: int, count: int) -> Totals:
        """One currency's sum and count."""
        return cls(((currency, int(sum_minor), int(count)),))

    @classmethod
    def from_counter_cells(cls, cells: dict[bytes, int]) -> Totals:
        """A counter row's cells (`<CUR>:sum`, `<CUR>:count`) as Totals."""
        return cls(tuple(sorted((cur, total, count) for cur, (total, count) in store.per_currency(cells).items())))

    @classmethod
    def merge(cls, many: Iterable[Totals]) -> Totals:
        """The sum of many Totals, currency by currency."""
        merged: dict[str, list[int]] = {}
        for totals in many:
            for cur, total, count in totals.parts:
                pair = merged.setdefault(cur, [0, 0])
                pair[0] += total
                pair[1] += count
        return cls(tuple(sorted((cur, pair[0], pair[1]) for cur, pair in merged.items())))

    def __add__(self, other: Totals) -> Totals:
        if not other.parts:
            return self
        if not self.parts:
            return other
        return Totals.merge((self, other))

    def currency(self, currency: str) -> tuple[int, int]:
        """(sum in minor units, count) in one currency; (0, 0) when none."""
        for cur, total, count in self.parts:
            if cur == currency:
                return total, count
        return 0, 0

    @property
    def currencies(self) -> list[str]:
        return [cur for cur, _, _ in self.parts]

    @property
    def count(self) -> int:
        """Transactions in every currency (a count, never a sum of money)."""
        return sum(count for _, _, count in self.parts)


def _ceil(value: int, step: int) -> int:
    return -(-value // step) * step


def split_hours(start_us: int, end_us: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """[start_us, end_us) as its whole hours [first, end) (None when it holds none) and the
    partial stretches at either edge."""
    first_whole, last_whole = _ceil(start_us, HOUR_US), end_us - end_us % HOUR_US
    if first_whole >= last_whole:
        return None, [(start_us, end_us)] if start_us < end_us else []
    edges = [(low, high) for low, high in ((start_us, first_whole), (last_whole, end_us)) if low < high]
    return (first_whole, last_whole), edges


def _hour_rows(table: Any, user_id: str, first_us: int, end_us: int) -> list[tuple[int, Totals]]:
    """The user's hour buckets in [first_us, end_us), read by key: a range scan from the first bucket
    to the last would also walk every transaction row sorted between them (a busy hour's thousands),
    which under load took past the read timeout (a 503 in the soak benchmark)."""
    keys = [
        rowkeys.hour_bucket_key(user_id, hour) for hour in range(first_us // SECOND_US, end_us // SECOND_US, HOUR_S)
    ]
    found = store.read_counters_at(table, store.HOUR, keys)
    return [
        (rowkeys.parse_hour_bucket_key(key)[1], Totals.from_counter_cells(found[key])) for key in keys if key in found
    ]


def _edge_rows(table: Any, user_id: str, edges: list[tuple[int, int]]) -> list[tuple[int, Totals]]:
    ranges = [rowkeys.transaction_range(user_id, low_us, high_us) for low_us, high_us in edges]
    found = []
    for txn in store.read_transactions_in(table, ranges):
        _, event_us, _ = rowkeys.parse_transaction_key(txn.key)
        found.append((rowkeys.hour_start_us(event_us) // SECOND_US, Totals.of(txn.currency, txn.amount_minor, 1)))
    return found


def whole_hour_total(table: Any, user_id: str, first_hour_us: int, end_hour_us: int) -> Totals:
    """The user's total over whole hours [first_hour_us, end_hour_us), from the dcfbhour counters."""
    return Totals.merge(totals for _, totals in _hour_rows(table, user_id, first_hour_us, end_hour_us))


def hour_totals(table: Any, user_id: str, start_us: int, end_us: int) -> dict[int, Totals]:
    """Per hour start (epoch s), the user's total over [start_us, end_us). Whole hours come from
    the dcfbhour counters, the partial hours at either edge from the dcflist rows."""
    whole, edges = split_hours(start_us, end_us)
    by_hour: dict[int, list[Totals]] = defaultdict(list)
    for hour, value in [*(_hour_rows(table, user_id, *whole) if whole else []), *_edge_rows(table, user_id, edges)]:
        by_hour[hour].append(value)
    return {hour: Totals.merge(values) for hour, values in by_hour.items()}


WholeHours = Callable[[Any, str, int, int], Totals]


def exact_sum(
    table: Any, user_id: str, start_us: int, end_us: int, whole_hours: WholeHours = whole_hour_total
) -> Totals:
    """The user's sum and count over [start_us, end_us), exact to the microsecond. `whole_hours`
    totals the whole hours (whole_hour_total, or a cache in front of it)."""
    whole, edges = split_hours(start_us, end_us)
    total = whole_hours(table, user_id, *whole) if whole else Totals()
    return Totals.merge([total, *(value for _, value in _edge_rows(table, user_id, edges))])


def hourly(table: Any, user_id: str, start_us: int, end_us: int) -> list[tuple[int, Totals]]:
    """Every hour that overlaps [start_us, end_us), oldest first, with the total of the part inside
    the range (zero when none), so the hours add up to exact_sum over the same range."""
    if start_us >= end_us:
        return []
    totals = hour_totals(table, user_id, start_us, end_us)
    first = rowkeys.hour_start_us(start_us) // SECOND_US
    return [(hour, totals.get(hour, Totals())) for hour in range(first, _ceil(end_us, HOUR_US) // SECOND_US, HOUR_S)]


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: below `key`, scanning back `window_us` at first (the window
    size that suited the page before, so a dense user is not probed again on every page)."""

    key: bytes
    window_us: int = INITIAL_WINDOW_US


def transactions_page(
    table: Any, user_id: str, start_us: int, end_us: int, limit: int, cursor: Cursor | None = None
) -> tuple[list[StoredTransaction], Cursor | None]:
    """Up to `limit` of the user's transactions in [start_us, end_us), newest first, below the
    cursor when given. Returns them and the cursor of the next page, or None at the end."""
    floor_key, upper_key = rowkeys.transaction_range(user_id, start_us, end_us)
    high_us = end_us
    window = INITIAL_WINDOW_US
    if cursor is not None:
        window = min(max(cursor.window_us, MIN_WINDOW_US), MAX_WINDOW_US)
        if cursor.key < upper_key:
            upper_key = cursor.key
            high_us = min(end_us, rowkeys.parse_transaction_key(cursor.key)[1] + 1)
    found: list[StoredTransaction] = []
    cap = min(WINDOW_ROW_CAP, max(200, 4 * (limit + 1)))
    last_good = window
    while len(found) <= limit and upper_key > floor_key:
        wanted = limit + 1 - len(found)
        low_us = max(start_us, high_us - window)
        low_key = rowkeys.transaction_range(user_id, low_us, high_us)[0]
        capped = window > MIN_WINDOW_US
        rows = store.read_transactions(table, low_key, upper_key, limit=cap if capped else None)
        if capped and len(rows) >= cap:
            # Too dense to read whole. The capped scan returned the window's oldest rows; the
            # time they span tells the density, and so the window that holds about twice `wanted`.
            first_us = rowkeys.parse_transaction_key(rows[0].key)[1]
            spanned = max(1, rowkeys.parse_transaction_key(rows[-1].key)[1] + 1 - first_us)
            window = max(MIN_WINDOW_US, min(window // 2, spanned * wanted * 2 // cap))
            continue
        found.extend(reversed(rows))
        upper_key, high_us = low_key, low_us
        if rows:
            last_good = window
        wanted = limit + 1 - len(found)
        if not rows:
            window = min(window * 4, MAX_WINDOW_US)
        elif wanted > 0:
            window = max(MIN_WINDOW_US, min(window * 4, window * wanted * 2 // len(rows), MAX_WINDOW_US))
    page = found[:limit]
    if len(found) <= limit:
        return page, None
    return page, Cursor(page[-1].key, last_good)


def encode_page_token(cursor: Cursor) -> str:
    """An opaque token: the cursor's key and window, URL-safe."""
    key = base64.urlsafe_b64encode(cursor.key).decode().rstrip("=")
    return f"{key}.{cursor.window_us}"


def decode_page_token(token: str, user_id: str) -> Cursor:
    """The cursor inside a page token, whose key must be one of `user_id`'s transaction keys."""
    match = _TOKEN.fullmatch(token)
    if not match:
        raise PageTokenError("not a page token from this API")
    encoded, window = match.groups()
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        owner, _, _ = rowkeys.parse_transaction_key(key)
    except (binascii.Error, ValueError):
        raise PageTokenError("not a page token from this API") from None
    if owner != user_id:
        raise PageTokenError("belongs to another query")
    return Cursor(key, int(window))


TOP_WANTED_ROWS = 64  # index rows one round of top_users aims to read, beyond 2n
TOP_CHECK_BATCH = 64  # card holders whose window total one exact read fetches


def window_lists(data_hours: Iterable[int], first_hour: int, current_hour: int) -> list[tuple[int, int]]:
    """The top-spender lists (span hours, start epoch s) that cover the window [first_hour,
    current_hour] (hour starts, epoch s): for each hour of the window that holds data (`data_hours`),
    the largest aligned block of rowkeys.TOP_SPANS that holds it and no data hour outside the window.
    Blocks of one span are aligned, and each span divides the next, so two such blocks are the same
    or apart: the lists never overlap, and every index row they hold is inside the window. Sorted."""
    hours = sorted(set(data_hours))
    inside = [hour for hour in hours if first_hour <= hour <= current_hour]
    outside = [hour for hour in hours if not first_hour <= hour <= current_hour]
    chosen: set[tuple[int, int]] = set()
    for hour in inside:
        for span in reversed(rowkeys.TOP_SPANS):
            start = rowkeys.block_start_s(hour, span)
            end = start + span * HOUR_S
            if span == 1 or not any(start <= other < end for other in outside):
                chosen.add((span, start))
                break
    return sorted(chosen)


@dataclass
class _TopList:
    """One list of the window as top_users reads it: its rows with sum >= level are read, down
    from `below` (None: from the top); `done` once every row is."""

    span: int
    start: int
    level: int
    step: int
    below: int | None = None
    done: bool = False

    def ranges(self, currency: str) -> list[tuple[bytes, bytes]]:
        at_least = self.level if self.level > 0 else None
        return [
            rowkeys.top_index_range(shard, currency, self.start, at_least, self.below, self.span)
            for shard in range(rowkeys.TOP_SHARDS)
        ]

    @property
    def slack(self) -> int:
        """The most an entry not read yet can add to a total: below the level, or 0 when absent."""
        return 0 if self.done else max(0, self.level - 1)


def _remaining_sums(
    table: Any, users: list[str], lists: list[_TopList], unread: dict[str, list[int]], currency: str
) -> dict[str, int]:
    """Each user's sums in `currency` over the lists (indexes into `lists`) whose index row of theirs
    was not read, from the counters (hour buckets for the hours, dcfblock for the blocks): point
    reads, one request per family."""
    keys: dict[str, list[tuple[str, bytes]]] = {}
    for user in users:
        keys[user] = [
            (store.HOUR, rowkeys.hour_bucket_key(user, lists[i].start))
            if lists[i].span == 1
            else (store.BLOCK, rowkeys.block_key(user, lists[i].span, lists[i].start))
            for i in unread[user]
        ]
    found: dict[bytes, dict[bytes, int]] = {}
    for family in (store.HOUR, store.BLOCK):
        wanted = [key for ks in keys.values() for fam, key in ks if fam == family]
        if wanted:
            found.update(store.read_counters_at(table, family, wanted))
    qualifier = store.counter_qualifier(currency, store.SUM)
    return {user: sum(found.get(key, {}).get(qualifier, 0) for _, key in ks) for user, ks in keys.items()}


def top_users(table: Any, now_us: int, hours: int, n: int, currency: str) -> list[tuple[str, int]]:
    """The n users with the highest total in `currency` (minor units) over the current hour and
    the hours-1 before it, highest first (ties by user id), among the users with a transaction in
    that currency there. Other currencies are not looked at. Exact.

    The window is a handful of lists (window_lists: aligned blocks of 1, 4, 16 or 64 hours holding
    no data outside the window; the hours with data are the index's ~tophours# markers), each a sorted list
    of user sums per shard in the top-spender index. This is the threshold algorithm with one
    threshold per list: each round reads, from every list and shard in one request, the index rows
    with level <= sum < the list's previous level, each list's level lowered by a step sized from
    how many rows it gave the round before. A user's total is at most what was read of it plus, for
    each list where it was not seen, that list's level - 1 (or 0: absent, or the list is read to the
    end); a user not seen at all at most the sum of those. Users that could still rank get their
    exact total (the index rows read, plus the counters of the other lists); the answer is final
    once the n-th exact total beats every bound. A list whose level reaches 0 is read to its end;
    once all are, the index gives every total."""
    current = rowkeys.hour_start_us(now_us) // SECOND_US
    first = current - (hours - 1) * HOUR_S
    widest = rowkeys.TOP_SPANS[-1]
    data = store.read_top_hours(
        table, currency, rowkeys.block_start_s(first, widest), rowkeys.block_start_s(current, widest) + widest * HOUR_S
    )
    lists: list[_TopList] = []
    for span, start in window_lists(data, first, current):
        probe = _TopList(span, start, 0, 1)
        head = store.read_top_index(table, probe.ranges(currency), limit=1)
        if head:  # the list's top in its first shard that holds rows: where reading starts
            lists.append(_TopList(span, start, head[0].sum_minor, max(1, abs(head[0].sum_minor) // 64)))
    if not lists:
        return []
    position = {(top.span, top.start): i for i, top in enumerate(lists)}
    seen: dict[str, int] = defaultdict(int)  # user -> sum of the index rows read
    seen_in: dict[str, set[int]] = defaultdict(set)  # user -> the lists their rows were read from
    exact: dict[str, int] = {}
    wanted = 2 * n + TOP_WANTED_ROWS
    while True:
        active = [top for top in lists if not top.done]
        rows = store.read_top_index(table, [r for top in active for r in top.ranges(currency)])
        found: Counter[int] = Counter()
        for entry in rows:
            i = position[(entry.span_hours, entry.start_s)]
            seen[entry.user_id] += entry.sum_minor
            seen_in[entry.user_id].add(i)
            found[i] += 1
        for top in active:
            top.done = top.level <= 0
        if all(top.done for top in lists):  # everything is read: the index gives every total
            return sorted(seen.items(), key=lambda item: (-item[1], item[0]))[:n]
        slack = [top.slack for top in lists]
        unseen_bound = sum(slack)
        bound: dict[str, int] = {}
        for user, total in seen.items():
            if user in exact:
                continue
            unread = [i for i in range(len(lists)) if i not in seen_in[user] and not lists[i].done]
            if unread:
                bound[user] = total + sum(slack[i] for i in unread)
            else:
                exact[user] = total  # every row of theirs is read (an absent row is 0)
        checks = 0
        while True:
            ranked = sorted(exact.items(), key=lambda item: (-item[1], item[0]))[:n]
            nth = ranked[-1][1] if len(ranked) == n else None
            open_users = [user for user in bound if user not in exact]
            if nth is not None and nth > unseen_bound and all(bound[user] < nth for user in open_users):
                return ranked
            if nth is not None and nth <= unseen_bound:
                break  # a user not seen yet could rank: read deeper
            candidates = sorted(
                (user for user in open_users if nth is None or bound[user] >= nth), key=lambda u: (-bound[u], u)
            )[:TOP_CHECK_BATCH]
            if not candidates or checks >= wanted:
                break
            others = {user: [i for i in range(len(lists)) if i not in seen_in[user]] for user in candidates}
            for user, rest in _remaining_sums(table, candidates, lists, others, currency).items():
                exact[user] = seen[user] + rest
            checks += len(candidates)
        # Each list's next level: about its share of `wanted` more rows, from its density this round.
        share = max(1, wanted // len(active))
        for i, top in enumerate(lists):
            if top.done:
                continue
            if top.below is not None:
                top.step = max(1, min(top.step * 2, top.step * share // max(1, found[i])))
            top.below, top.level = top.level, top.level - top.step


def per_minute(table: Any, now_us: int, minutes: int) -> list[tuple[int, Totals]]:
    """All users' totals per minute and currency over the current minute and the minutes-1 before
    it, oldest first, empty Totals for minutes without data."""
    current = rowkeys.minute_start_us(now_us) // SECOND_US
    start = current - (minutes - 1) * MINUTE_S
    found = {
        rowkeys.parse_minute_key(key): Totals.from_counter_cells(cells)
        for key, cells in store.read_counter_rows(
            table, store.MINUTE, rowkeys.minute_key(start), rowkeys.minute_key(current + MINUTE_S)
        )
    }
    return [(minute, found.get(minute, Totals())) for minute in range(start, current + MINUTE_S, MINUTE_S)]


def late_page(
    table: Any, start_us: int, end_us: int, limit: int, from_key: bytes | None = None
) -> tuple[list[dict[str, Any]], bytes | None]:
    """Up to `limit` rows the job set aside as late, published in [start_us, end_us), oldest
    publish time first, starting at `from_key` when given (a key from a previous page). Returns
    them (store.read_late's dicts) and the key the next page starts at, or None at the end."""
    low, high = rowkeys.late_range(start_us, end_us)
    if from_key is not None:
        if not low <= from_key < high:
            raise PageTokenError("belongs to another range")
        low = from_key
    rows = store.read_late(table, low, high, limit=limit + 1)
    if len(rows) <= limit:
        return rows, None
    after = rows[limit]
    return rows[:limit], rowkeys.late_key(to_epoch_us(parse_rfc3339(after["publish_time"])), after["transaction_id"])


def encode_key_token(key: bytes) -> str:
    """A row key as an opaque, URL-safe page token."""
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_key_token(token: str) -> bytes:
    """The row key inside a token from encode_key_token."""
    if not _KEY_TOKEN.fullmatch(token):
        raise PageTokenError("not a page token from this API")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise PageTokenError("not a page token from this API") from None


def latest_conflicts(table: Any, last_run: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` conflict rows (store.read_conflicts' dicts), those of the newest job run
    first. Reads runs backwards in windows that widen while they hold few rows (a window that
    fills CONFLICT_ROW_CAP is narrowed to its newer half), so a table with thousands of runs and
    few conflicts costs a handful of reads and a run with millions of them one capped read."""
    found: list[dict[str, Any]] = []
    high, width = last_run + 1, 1
    while high > 0 and len(found) < limit:
        low = max(0, high - width)
        rows = store.read_conflicts(table, *rowkeys.conflict_range(low, high), limit=CONFLICT_ROW_CAP)
        if len(rows) >= CONFLICT_ROW_CAP and high - low > 1:
            width = max(1, (high - low) // 2)
            continue
        found.extend(sorted(rows, key=lambda row: -int(row["run"])))
        high, width = low, width * 4
    return found[:limit]


def user_ids(table: Any, prefix: str, limit: int) -> list[str]:
    """Up to `limit` user ids from the directory that start with `prefix`, in order."""
    keys = store.read_keys(table, store.USER, *rowkeys.user_directory_range(prefix), limit=limit)
    return [rowkeys.parse_user_directory_key(key) for key in keys]
