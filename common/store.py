"""The Bigtable cell layout, and the only code that reads or writes cells.

Row keys come from common.rowkeys. Every value is ASCII text so `cbt read` shows it as is.
  dcflist:amount_minor, dcflist:currency, dcflist:category, dcflist:event_time   (transaction rows)
  dcfbhour:<CUR>:sum, dcfbhour:<CUR>:count                                        (user-hour rows)
  dcfbmin:<CUR>:sum, dcfbmin:<CUR>:count                                          (global minute rows)
  dcfblock:<CUR>:sum, dcfblock:<CUR>:count                                        (user-block rows, 4/16/64 h)
  dcftop:sum = that user-hour's or user-block's sum in the row key's currency     (top-spender index rows)
  dcftop:seen = "1"                                                               (~tophours# marker rows)
  dcfcat:<CUR>:<category>:sum, dcfcat:<CUR>:<category>:count                      (category rows)
  dcftime:amount_minor, dcftime:currency, dcftime:category                        (time-index rows)
  dcfuser:seen = "1"                                                              (user directory)
  dcfkll:<CUR> = a KLL sketch of the amounts, binary (common.sketches)           (sketch rows)
  dcfid:user, amount_minor, currency, event_us, publish_us, message_id            (id index rows)
  dcfid:reason, transaction_id, counted, copy (JSON versions)                      (conflict rows)
  dcfmeta:run = the id of the job run that last wrote the row (bookkeeping, not data)

Money is in minor units of its currency (common.money); a counter qualifier names its currency
(e.g. "USD:sum", "JPY:count"), so no cell ever adds two currencies.

Counter rows are updated exactly once per job run: a row whose dcfmeta:run already equals the
run being applied is skipped, so a run that is interrupted and run again never counts twice.
Sketch rows are merged into once per run the same way (merge_cells_once). Every read asks for
one family and the newest cell only.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.bigtable import row_filters
from google.cloud.bigtable.row_set import RowSet

from common import bigtable_private, rowkeys

LIST, HOUR, MINUTE, TOP, USER, ID, META = "dcflist", "dcfbhour", "dcfbmin", "dcftop", "dcfuser", "dcfid", "dcfmeta"
CAT, TIME, KLL, BLOCK = "dcfcat", "dcftime", "dcfkll", "dcfblock"
FAMILIES = (LIST, HOUR, MINUTE, TOP, USER, ID, META, CAT, TIME, KLL, BLOCK)
RUN = b"run"
SUM = "sum"
COUNT = "count"
READ_CHUNK = 2000
WRITE_CHUNK = 5000
TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted, gexc.InternalServerError)
WRITE_TIMEOUT = 120.0
Cell = bigtable_private.Cell  # (family, qualifier, value)
DELETE_ROW = bigtable_private.DELETE_ROW  # a row's only cell: delete the row (write_cell_rows)


@dataclass(frozen=True)
class StoredTransaction:
    key: bytes
    amount_minor: int
    currency: str
    category: str
    event_time: str


@dataclass(frozen=True)
class Version:
    """What one copy of a transaction id says: the fields that make two copies the same transaction."""

    user_id: str
    amount_minor: int
    currency: str
    event_us: int
    publish_us: int = 0
    message_id: str = ""

    def same_transaction(self, other: Version) -> bool:
        return (self.user_id, self.amount_minor, self.currency, self.event_us) == (
            other.user_id,
            other.amount_minor,
            other.currency,
            other.event_us,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "event_us": self.event_us,
            "publish_us": self.publish_us,
            "message_id": self.message_id,
        }


@dataclass(frozen=True)
class RowFailure:
    key: bytes
    message: str


def _latest(family: str, qualifier: bytes | None = None) -> row_filters.RowFilter:
    parts: list[row_filters.RowFilter] = [row_filters.FamilyNameRegexFilter(family)]
    if qualifier is not None:
        parts.append(row_filters.ColumnQualifierRegexFilter(qualifier))
    parts.append(row_filters.CellsColumnLimitFilter(1))
    return row_filters.RowFilterChain(filters=parts)


def counter_qualifier(currency: str, what: str) -> bytes:
    """The qualifier of one currency's sum or count in a counter row: b"USD:sum", b"JPY:count"."""
    return f"{currency}:{what}".encode()


def counter_cells(currency: str, sum_minor: int, count: int) -> dict[bytes, int]:
    return {counter_qualifier(currency, SUM): int(sum_minor), counter_qualifier(currency, COUNT): int(count)}


def per_currency(cells: dict[bytes, int]) -> dict[str, tuple[int, int]]:
    """A counter row's cells as {currency: (sum in minor units, count)}."""
    out: dict[str, list[int]] = {}
    for qualifier, value in cells.items():
        currency, _, what = qualifier.decode().partition(":")
        if what in (SUM, COUNT):
            out.setdefault(currency, [0, 0])[0 if what == SUM else 1] = int(value)
    return {currency: (pair[0], pair[1]) for currency, pair in out.items()}


def category_qualifier(currency: str, category: str, what: str) -> bytes:
    """The qualifier of one currency and category's sum or count: b"USD:grocery:sum". Categories hold
    no ':' (common.message.CATEGORY), so the parts split back apart."""
    return f"{currency}:{category}:{what}".encode()


def category_cells(currency: str, category: str, sum_minor: int, count: int) -> dict[bytes, int]:
    return {
        category_qualifier(currency, category, SUM): int(sum_minor),
        category_qualifier(currency, category, COUNT): int(count),
    }


def per_category(cells: dict[bytes, int]) -> dict[tuple[str, str], tuple[int, int]]:
    """A category row's cells as {(currency, category): (sum in minor units, count)}."""
    out: dict[tuple[str, str], list[int]] = {}
    for qualifier, value in cells.items():
        currency, category, what = qualifier.decode().split(":", 2)
        if what in (SUM, COUNT):
            out.setdefault((currency, category), [0, 0])[0 if what == SUM else 1] = int(value)
    return {key: (pair[0], pair[1]) for key, pair in out.items()}


def _cells(row: Any, family: str) -> dict[bytes, bytes]:
    return {q: cells[0].value for q, cells in row.cells.get(family, {}).items() if cells}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- writes -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _repeated_cell(family: str, qualifier: bytes, value: str) -> Cell:
    # Currencies, categories and run ids repeat across millions of rows: encode each once.
    return (family, qualifier, value.encode())


def transaction_cells(amount_minor: int, currency: str, category: str, event_time: str, run_id: int) -> list[Cell]:
    """The cells of one transaction row, for write_cell_rows."""
    return [
        (LIST, b"amount_minor", str(int(amount_minor)).encode()),
        _repeated_cell(LIST, b"currency", currency),
        _repeated_cell(LIST, b"category", category),
        (LIST, b"event_time", event_time.encode()),
        _repeated_cell(META, RUN, str(run_id)),
    ]


def transaction_row(
    table: Any, key: bytes, amount_minor: int, currency: str, category: str, event_time: str, run_id: int
) -> Any:
    """The mutation that stores one transaction row."""
    row = table.direct_row(key)
    for family, qualifier, value in transaction_cells(amount_minor, currency, category, event_time, run_id):
        row.set_cell(family, qualifier, value)
    return row


def time_index_cells(amount_minor: int, currency: str, category: str, run_id: int) -> list[Cell]:
    """The cells of one time-index row (its key holds the user, event time and id)."""
    return [
        (TIME, b"amount_minor", str(int(amount_minor)).encode()),
        _repeated_cell(TIME, b"currency", currency),
        _repeated_cell(TIME, b"category", category),
        _repeated_cell(META, RUN, str(run_id)),
    ]


@dataclass(frozen=True)
class IndexedTransaction:
    """A time-index row: one transaction of any user."""

    key: bytes
    amount_minor: int
    currency: str
    category: str


def read_time_index(
    table: Any, ranges: Sequence[tuple[bytes, bytes]], limit: int | None = None
) -> list[IndexedTransaction]:
    """Time-index rows in [start, end) key ranges, each range read on its own (with at most `limit`
    rows when given), in key order within each range."""
    out: list[IndexedTransaction] = []
    for start_key, end_key in ranges:
        for row in table.read_rows(start_key=start_key, end_key=end_key, filter_=_latest(TIME), limit=limit or 0):
            cells = _cells(row, TIME)
            out.append(
                IndexedTransaction(
                    row.row_key,
                    int(cells[b"amount_minor"]),
                    cells.get(b"currency", b"USD").decode(),
                    cells.get(b"category", b"unknown").decode(),
                )
            )
    return out


def id_index_cells(version: Version, run_id: int) -> list[Cell]:
    """The cells of one id index row: the counted copy of the id and the run that counted it."""
    return [
        (ID, b"user", version.user_id.encode()),
        (ID, b"amount_minor", str(int(version.amount_minor)).encode()),
        _repeated_cell(ID, b"currency", version.currency),
        (ID, b"event_us", str(int(version.event_us)).encode()),
        (ID, b"publish_us", str(int(version.publish_us)).encode()),
        (ID, b"message_id", version.message_id.encode()),
        _repeated_cell(META, RUN, str(run_id)),
    ]


def conflict_cells(transaction_id: str, counted: Version, copy: Version, run_id: int) -> list[Cell]:
    """The cells of one conflict row: both versions, as JSON, with the reason."""
    return [
        (ID, b"reason", b"conflicting_duplicate"),
        (ID, b"transaction_id", transaction_id.encode()),
        (ID, b"counted", json.dumps(counted.to_json(), sort_keys=True).encode()),
        (ID, b"copy", json.dumps(copy.to_json(), sort_keys=True).encode()),
        _repeated_cell(META, RUN, str(run_id)),
    ]


def read_id_index(table: Any, keys: Sequence[bytes]) -> dict[bytes, tuple[int, Version]]:
    """For each id index key that exists: (the run that counted it, the counted version)."""
    found: dict[bytes, tuple[int, Version]] = {}
    both = row_filters.RowFilterChain(
        filters=[
            row_filters.RowFilterUnion(
                filters=[row_filters.FamilyNameRegexFilter(ID), row_filters.FamilyNameRegexFilter(META)]
            ),
            row_filters.CellsColumnLimitFilter(1),
        ]
    )
    for chunk in _chunks(sorted(set(keys)), READ_CHUNK):
        row_set = RowSet()
        for key in chunk:
            row_set.add_row_key(key)
        for row in table.read_rows(row_set=row_set, filter_=both):
            cells, run = _cells(row, ID), _cells(row, META).get(RUN)
            if run is None or b"user" not in cells:
                continue
            found[row.row_key] = (
                int(run),
                Version(
                    cells[b"user"].decode(),
                    int(cells[b"amount_minor"]),
                    cells[b"currency"].decode(),
                    int(cells[b"event_us"]),
                    int(cells.get(b"publish_us", b"0")),
                    cells.get(b"message_id", b"").decode(),
                ),
            )
    return found


def late_cells(version: Version, event_time: str, publish_time: str, run_id: int) -> list[Cell]:
    """The cells of one late row (a transaction set aside as published beyond the late horizon)."""
    return [
        (META, b"user", version.user_id.encode()),
        (META, b"amount_minor", str(int(version.amount_minor)).encode()),
        _repeated_cell(META, b"currency", version.currency),
        (META, b"event_time", event_time.encode()),
        (META, b"publish_time", publish_time.encode()),
        _repeated_cell(META, RUN, str(run_id)),
    ]


def read_late(table: Any, start_key: bytes, end_key: bytes, limit: int | None = None) -> list[dict[str, Any]]:
    """Late rows in [start_key, end_key), oldest publish time first: {transaction_id, user_id,
    amount_minor, currency, event_time, publish_time, run}."""
    rows = table.read_rows(start_key=start_key, end_key=end_key, filter_=_latest(META), limit=limit or 0)
    out = []
    for row in rows:
        cells = _cells(row, META)
        out.append(
            {
                "transaction_id": row.row_key.decode().split("#", 2)[2],
                "user_id": cells.get(b"user", b"").decode(),
                "amount_minor": int(cells.get(b"amount_minor", b"0")),
                "currency": cells.get(b"currency", b"").decode(),
                "event_time": cells.get(b"event_time", b"").decode(),
                "publish_time": cells.get(b"publish_time", b"").decode(),
                "run": int(cells.get(RUN, b"0")),
            }
        )
    return out


def read_conflicts(table: Any, start_key: bytes, end_key: bytes, limit: int | None = None) -> list[dict[str, Any]]:
    """Conflict rows in [start_key, end_key): {transaction_id, run, counted, copy} in key order."""
    rows = table.read_rows(start_key=start_key, end_key=end_key, filter_=_latest(ID), limit=limit or 0)
    out = []
    for row in rows:
        cells = _cells(row, ID)
        out.append(
            {
                "transaction_id": cells.get(b"transaction_id", b"").decode(),
                "run": int(row.row_key.decode().split("#", 2)[1]),
                "reason": cells.get(b"reason", b"").decode(),
                "counted": json.loads(cells.get(b"counted", b"{}")),
                "copy": json.loads(cells.get(b"copy", b"{}")),
            }
        )
    return out


USER_DIRECTORY_CELLS: list[Cell] = [(USER, b"seen", b"1")]


def user_directory_row(table: Any, key: bytes) -> Any:
    row = table.direct_row(key)
    for family, qualifier, value in USER_DIRECTORY_CELLS:
        row.set_cell(family, qualifier, value)
    return row


def meta_cells_row(table: Any, key: bytes, cells: dict[bytes, bytes]) -> Any:
    """The mutation that stores bookkeeping cells (family dcfmeta) in one row."""
    row = table.direct_row(key)
    for qualifier, value in cells.items():
        row.set_cell(META, qualifier, value)
    return row


def marker_row(table: Any, key: bytes, run_id: int) -> Any:
    """The mutation that stores only a dcfmeta:run marker (bookkeeping rows such as processed files)."""
    row = table.direct_row(key)
    row.set_cell(META, RUN, str(run_id).encode())
    return row


def deleted_row(table: Any, key: bytes) -> Any:
    """The mutation that deletes a whole row."""
    row = table.direct_row(key)
    row.delete()
    return row


def write_rows(table: Any, rows: Sequence[Any], attempts: int = 4) -> list[RowFailure]:
    """Write rows in batches with mutate_rows, retrying failed rows; return the rows that still failed."""
    failures: list[RowFailure] = []
    for chunk in _chunks(list(rows), WRITE_CHUNK):
        pending = list(chunk)
        for attempt in range(attempts):
            try:
                statuses = table.mutate_rows(pending)
            except TRANSIENT as exc:
                if attempt == attempts - 1:
                    failures.extend(RowFailure(r.row_key, str(exc)) for r in pending)
                continue
            retry = [r for r, s in zip(pending, statuses, strict=True) if s.code != 0]
            if not retry:
                pending = []
                break
            if attempt == attempts - 1:
                failures.extend(
                    RowFailure(r.row_key, s.message or f"code {s.code}")
                    for r, s in zip(pending, statuses, strict=True)
                    if s.code != 0
                )
            pending = retry
    return failures


def direct_rows(table: Any, rows: Sequence[tuple[bytes, Sequence[Cell]]]) -> list[Any]:
    """Rows given as (key, [(family, qualifier, value)]) as the legacy client's DirectRow objects."""
    direct = []
    for key, cells in rows:
        row = table.direct_row(key)
        for family, qualifier, value in cells:
            if family:
                row.set_cell(family, qualifier, value)
            else:  # DELETE_ROW
                row.delete()
        direct.append(row)
    return direct


def write_cell_rows(table: Any, rows: Sequence[tuple[bytes, Sequence[Cell]]], attempts: int = 4) -> list[RowFailure]:
    """Write rows given as (key, [(family, qualifier, value)]) with MutateRows, building the request
    protobufs directly (common.bigtable_private says why and how much faster); a DELETE_ROW cell
    deletes the row. Retries failed rows like write_rows and returns the rows that still failed."""
    send = bigtable_private.bulk_sender(table)
    if send is None:
        return write_rows(table, direct_rows(table, rows), attempts)
    failures: list[RowFailure] = []
    for chunk in _chunks(list(rows), WRITE_CHUNK):
        pending = list(chunk)
        for attempt in range(attempts):
            try:
                statuses = send(pending, WRITE_TIMEOUT)
            except gexc.GoogleAPICallError as exc:
                if attempt == attempts - 1:
                    failures.extend(RowFailure(key, _call_error(exc)) for key, _ in pending)
                time.sleep(0.1 * 2**attempt)
                continue
            retry = [(row, status) for row, status in zip(pending, statuses, strict=True) if status[0] != 0]
            if not retry:
                break
            if attempt == attempts - 1:
                failures.extend(RowFailure(row[0], message or f"code {code}") for row, (code, message) in retry)
            pending = [row for row, _ in retry]
    return failures


def _call_error(exc: gexc.GoogleAPICallError) -> str:
    """The error as "UNAVAILABLE: <details>", the form the outage checks (common.outage) look for."""
    code = exc.grpc_status_code
    return f"{code.name}: {exc.message}" if code is not None else f"{exc.__class__.__name__}: {exc.message}"


def read_run_markers(table: Any, keys: Sequence[bytes]) -> dict[bytes, int]:
    """For each key that exists, the run id that last wrote it."""
    markers: dict[bytes, int] = {}
    for chunk in _chunks(sorted(set(keys)), READ_CHUNK):
        row_set = RowSet()
        for key in chunk:
            row_set.add_row_key(key)
        for row in table.read_rows(row_set=row_set, filter_=_latest(META, RUN)):
            value = _cells(row, META).get(RUN)
            if value is not None:
                markers[row.row_key] = int(value)
    return markers


def read_counters_at(table: Any, family: str, keys: Sequence[bytes]) -> dict[bytes, dict[bytes, int]]:
    """Counter rows of one family at exactly these keys (point reads: no range scan over the
    transaction rows that sort between a user's buckets), for the keys that exist."""
    found: dict[bytes, dict[bytes, int]] = {}
    for chunk in _chunks(sorted(set(keys)), READ_CHUNK):
        row_set = RowSet()
        for key in chunk:
            row_set.add_row_key(key)
        for row in table.read_rows(row_set=row_set, filter_=_latest(family)):
            found[row.row_key] = {q: int(v) for q, v in _cells(row, family).items()}
    return found


def _cells_and_markers(
    table: Any, family: str, chunk: Sequence[bytes]
) -> tuple[dict[bytes, dict[bytes, bytes]], dict[bytes, int]]:
    """The cells of one family and the run marker of each existing row among `chunk`."""
    row_set = RowSet()
    for key in chunk:
        row_set.add_row_key(key)
    current: dict[bytes, dict[bytes, bytes]] = {}
    markers: dict[bytes, int] = {}
    both = row_filters.RowFilterChain(
        filters=[
            row_filters.RowFilterUnion(
                filters=[row_filters.FamilyNameRegexFilter(family), row_filters.FamilyNameRegexFilter(META)]
            ),
            row_filters.CellsColumnLimitFilter(1),
        ]
    )
    for row in table.read_rows(row_set=row_set, filter_=both):
        current[row.row_key] = _cells(row, family)
        run = _cells(row, META).get(RUN)
        if run is not None:
            markers[row.row_key] = int(run)
    return current, markers


def _counters_and_markers(
    table: Any, family: str, chunk: Sequence[bytes]
) -> tuple[dict[bytes, dict[bytes, int]], dict[bytes, int]]:
    """The counter cells of one family and the run marker of each existing row among `chunk`."""
    cells, markers = _cells_and_markers(table, family, chunk)
    return {key: {q: int(v) for q, v in row.items()} for key, row in cells.items()}, markers


def _counter_row(
    family: str, key: bytes, stored: dict[bytes, int], deltas: dict[bytes, int], run_id: int
) -> tuple[bytes, list[Cell]]:
    """The counter row `key` with `deltas` added to its `stored` cells, and the run's marker."""
    cells: list[Cell] = [(family, q, str(stored.get(q, 0) + delta).encode()) for q, delta in deltas.items()]
    return key, [*cells, (META, RUN, str(run_id).encode())]


def apply_counter_deltas(
    table: Any, family: str, deltas: dict[bytes, dict[bytes, int]], run_id: int
) -> tuple[int, int, list[RowFailure]]:
    """Add each row's counter deltas once for this run. Returns (applied, skipped, failures)."""
    applied = skipped = 0
    failures: list[RowFailure] = []
    for chunk in _chunks(sorted(deltas), READ_CHUNK):
        current, markers = _counters_and_markers(table, family, chunk)
        rows: list[tuple[bytes, list[Cell]]] = []
        for key in chunk:
            if markers.get(key) == run_id:
                skipped += 1
                continue
            rows.append(_counter_row(family, key, current.get(key, {}), deltas[key], run_id))
        failed = write_cell_rows(table, rows)
        failures.extend(failed)
        applied += len(rows) - len(failed)
    return applied, skipped, failures


# --- the top-spender index ------------------------------------------------------------------------

TOP_SUM = b"sum"


def _list_of(key: bytes) -> tuple[str, int, int]:
    """(user, span hours, start epoch s) of an hour bucket or block counter row key."""
    if key.count(rowkeys.SEP.encode()) == 2:
        return rowkeys.parse_block_key(key)
    user_id, hour = rowkeys.parse_hour_bucket_key(key)
    return user_id, 1, hour


def top_index_changes(
    key: bytes, old: dict[bytes, int], deltas: dict[bytes, int]
) -> tuple[list[bytes], list[tuple[bytes, int]]]:
    """The index rows one counter update moves: (keys to delete, [(key to write, sum)]), for each
    currency whose sum is new or changes. `key` is the hour bucket's or the block counter's row key,
    `old` its cells before."""
    user_id, span, start = _list_of(key)
    deletes: list[bytes] = []
    writes: list[tuple[bytes, int]] = []
    for qualifier, delta in deltas.items():
        currency, _, what = qualifier.decode().partition(":")
        if what != SUM:
            continue
        before = old.get(qualifier)
        after = (before or 0) + delta
        if before is not None and before == after:
            continue  # same sum, same index row
        if before is not None:
            deletes.append(rowkeys.top_index_key(user_id, currency, start, before, span))
        writes.append((rowkeys.top_index_key(user_id, currency, start, after, span), after))
    return deletes, writes


def block_deltas(hour_deltas: dict[bytes, dict[bytes, int]]) -> dict[bytes, dict[bytes, int]]:
    """The block counter deltas (dcfblock, rowkeys.block_key, every span of rowkeys.BLOCK_SPANS)
    that hour-bucket deltas add up to. The job groups them with Spark; this is for callers that hold
    a whole run's hour deltas at once (seeding a table in tests and the benchmark)."""
    out: dict[bytes, dict[bytes, int]] = {}
    for key, cells in hour_deltas.items():
        user_id, hour = rowkeys.parse_hour_bucket_key(key)
        for span in rowkeys.BLOCK_SPANS:
            block = out.setdefault(rowkeys.block_key(user_id, span, rowkeys.block_start_s(hour, span)), {})
            for qualifier, delta in cells.items():
                block[qualifier] = block.get(qualifier, 0) + delta
    return out


def apply_bucket_deltas(
    table: Any, deltas: dict[bytes, dict[bytes, int]], run_id: int, family: str = HOUR
) -> tuple[int, int, int, list[RowFailure]]:
    """Add hour-bucket deltas (dcfbhour, keyed by rowkeys.hour_bucket_key), or with family=BLOCK
    block counter deltas (keyed by rowkeys.block_key), once for this run, and keep the top-spender
    index in step: for each sum that changes, the old index row is deleted and the new one written
    (with the run marker) BEFORE the counter, so a crash in between leaves the counter unmarked and
    the next attempt moves the same index rows again (idempotent); a counter whose index rows failed
    is not written. For hour buckets, the ~tophours# marker of each currency and hour they index is
    written first of all (an idempotent cell: tasks of one run may write it together), so the
    markers always name every hour the index holds rows of. Returns (counters applied, skipped,
    index rows written, failures)."""
    applied = skipped = indexed = 0
    failures: list[RowFailure] = []
    for chunk in _chunks(sorted(deltas), READ_CHUNK):
        current, markers = _counters_and_markers(table, family, chunk)
        rows: list[tuple[bytes, list[Cell]]] = []
        index_rows: list[tuple[bytes, list[Cell]]] = []
        index_of: dict[bytes, bytes] = {}  # index row key -> its counter's key
        marker = (META, RUN, str(run_id).encode())
        for key in chunk:
            if markers.get(key) == run_id:
                skipped += 1
                continue
            base = current.get(key, {})
            rows.append(_counter_row(family, key, base, deltas[key], run_id))
            deletes, writes = top_index_changes(key, base, deltas[key])
            for old_key in deletes:
                index_rows.append((old_key, [DELETE_ROW]))
                index_of[old_key] = key
            for new_key, total in writes:
                index_rows.append((new_key, [(TOP, TOP_SUM, str(total).encode()), marker]))
                index_of[new_key] = key
        marked: list[RowFailure] = []
        if family == HOUR:
            hours = set()
            for key in index_of:
                _, currency, _, hour, _ = rowkeys.parse_top_index_key(key)
                hours.add(rowkeys.top_hour_key(currency, hour))
            marked = write_rows(table, [_top_hour_row(table, key) for key in sorted(hours)])
        if marked:  # no index row may exist for an hour without its marker
            failures.extend(marked)
            failures.extend(RowFailure(key, "its top-spender hour marker failed") for key, _ in rows)
            continue
        index_failed = write_cell_rows(table, index_rows)
        blocked = {index_of[f.key] for f in index_failed}
        indexed += len(index_rows) - len(index_failed)
        failures.extend(index_failed)
        failed = write_cell_rows(table, [row for row in rows if row[0] not in blocked])
        failures.extend(failed)
        applied += len(rows) - len(blocked) - len(failed)
    return applied, skipped, indexed, failures


def _top_hour_row(table: Any, key: bytes) -> Any:
    row = table.direct_row(key)
    row.set_cell(TOP, b"seen", b"1")
    return row


def read_top_hours(table: Any, currency: str, first_hour_s: int, end_hour_s: int) -> set[int]:
    """The hours in [first_hour_s, end_hour_s) that the top-spender index may hold rows of in
    `currency` (their ~tophours# markers; a superset only while a run is writing)."""
    keys = read_keys(table, TOP, *rowkeys.top_hours_range(currency, first_hour_s, end_hour_s))
    return {rowkeys.parse_top_hour_key(key)[1] for key in keys}


@dataclass(frozen=True)
class TopEntry:
    """One top-spender index row: a user's sum in one currency over one hour or block."""

    user_id: str
    span_hours: int
    start_s: int
    sum_minor: int


def read_top_index(table: Any, ranges: Sequence[tuple[bytes, bytes]], limit: int | None = None) -> list[TopEntry]:
    """The index rows in several [start, end) key ranges, read in one request, in key order (at most
    `limit` rows in all when given). The sum is read from the key; the cell is not transferred."""
    ranges = [(low, high) for low, high in ranges if low < high]
    if not ranges:
        return []
    row_set = RowSet()
    for start_key, end_key in ranges:
        row_set.add_row_range_from_keys(start_key=start_key, end_key=end_key)
    chain = row_filters.RowFilterChain(
        filters=[
            row_filters.FamilyNameRegexFilter(TOP),
            row_filters.CellsRowLimitFilter(1),
            row_filters.StripValueTransformerFilter(True),
        ]
    )
    out = []
    for row in table.read_rows(row_set=row_set, filter_=chain, limit=limit or 0):
        user_id, _, span, start, total = rowkeys.parse_top_index_key(row.row_key)
        out.append(TopEntry(user_id, span, start, total))
    return out


def merge_cells_once(
    table: Any,
    family: str,
    updates: dict[bytes, dict[bytes, bytes]],
    merge: Callable[[bytes | None, bytes], bytes],
    run_id: int,
) -> tuple[int, int, list[RowFailure]]:
    """Merge each row's new cell values into the stored ones once for this run: a row whose
    dcfmeta:run already names the run is skipped, any other gets merge(stored or None, new) per
    cell and the run's marker, in one mutation. Returns (applied, skipped, failures)."""
    applied = skipped = 0
    failures: list[RowFailure] = []
    for chunk in _chunks(sorted(updates), READ_CHUNK):
        current, markers = _cells_and_markers(table, family, chunk)
        rows: list[tuple[bytes, list[Cell]]] = []
        for key in chunk:
            if markers.get(key) == run_id:
                skipped += 1
                continue
            stored = current.get(key, {})
            cells = [(family, q, merge(stored.get(q), value)) for q, value in updates[key].items()]
            rows.append((key, [*cells, (META, RUN, str(run_id).encode())]))
        failed = write_cell_rows(table, rows)
        failures.extend(failed)
        applied += len(rows) - len(failed)
    return applied, skipped, failures


# --- reads ------------------------------------------------------------------------------------


def read_counter_rows(
    table: Any, family: str, start_key: bytes, end_key: bytes, limit: int | None = None
) -> list[tuple[bytes, dict[bytes, int]]]:
    """Counter rows of one family in [start_key, end_key), in key order."""
    rows = table.read_rows(start_key=start_key, end_key=end_key, filter_=_latest(family), limit=limit or 0)
    return [(row.row_key, {q: int(v) for q, v in _cells(row, family).items()}) for row in rows]


def read_cell_rows(table: Any, family: str, start_key: bytes, end_key: bytes) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Rows of one family in [start_key, end_key) with their raw cell values, in key order."""
    rows = table.read_rows(start_key=start_key, end_key=end_key, filter_=_latest(family))
    return [(row.row_key, _cells(row, family)) for row in rows]


def read_transactions(
    table: Any, start_key: bytes, end_key: bytes, limit: int | None = None
) -> list[StoredTransaction]:
    """Transaction rows in [start_key, end_key), oldest first."""
    rows = table.read_rows(start_key=start_key, end_key=end_key, filter_=_latest(LIST), limit=limit or 0)
    return [_stored_transaction(row) for row in rows]


def read_transactions_in(table: Any, ranges: Sequence[tuple[bytes, bytes]]) -> list[StoredTransaction]:
    """Transaction rows in several [start, end) key ranges, read in one request, in key order."""
    if not ranges:
        return []
    row_set = RowSet()
    for start_key, end_key in ranges:
        row_set.add_row_range_from_keys(start_key=start_key, end_key=end_key)
    return [_stored_transaction(row) for row in table.read_rows(row_set=row_set, filter_=_latest(LIST))]


def _stored_transaction(row: Any) -> StoredTransaction:
    cells = _cells(row, LIST)
    return StoredTransaction(
        key=row.row_key,
        amount_minor=int(cells[b"amount_minor"]),
        currency=cells.get(b"currency", b"USD").decode(),
        category=cells.get(b"category", b"unknown").decode(),
        event_time=cells.get(b"event_time", b"").decode(),
    )


def read_keys(table: Any, family: str, start_key: bytes, end_key: bytes, limit: int | None = None) -> list[bytes]:
    """Row keys holding cells of one family in [start_key, end_key)."""
    chain = row_filters.RowFilterChain(
        filters=[
            row_filters.FamilyNameRegexFilter(family),
            row_filters.CellsRowLimitFilter(1),
            row_filters.StripValueTransformerFilter(True),
        ]
    )
    return [
        row.row_key for row in table.read_rows(start_key=start_key, end_key=end_key, filter_=chain, limit=limit or 0)
    ]


def read_rows_at(table: Any, keys: Sequence[bytes], family: str) -> dict[bytes, dict[bytes, bytes]]:
    """The cells (raw values) of one family at exactly these keys, for the keys that exist."""
    if not keys:
        return {}
    row_set = RowSet()
    for key in sorted(set(keys)):
        row_set.add_row_key(key)
    return {row.row_key: _cells(row, family) for row in table.read_rows(row_set=row_set, filter_=_latest(family))}


def read_row_cells(table: Any, key: bytes, family: str) -> dict[bytes, bytes]:
    row = table.read_row(key, filter_=_latest(family))
    return _cells(row, family) if row is not None else {}


def write_cells(table: Any, key: bytes, family: str, cells: dict[bytes, bytes]) -> list[RowFailure]:
    row = table.direct_row(key)
    for qualifier, value in cells.items():
        row.set_cell(family, qualifier, value)
    return write_rows(table, [row])


def dump_table(
    table: Any, families: Iterable[str] = (LIST, HOUR, MINUTE, TOP, USER, ID, CAT, TIME, BLOCK)
) -> dict[bytes, dict[str, dict[bytes, bytes]]]:
    """Every data cell (newest version) by row and family; bookkeeping (dcfmeta) left out. For tests."""
    wanted = set(families)
    union = row_filters.RowFilterUnion(filters=[row_filters.FamilyNameRegexFilter(f) for f in sorted(wanted)])
    chain = row_filters.RowFilterChain(filters=[union, row_filters.CellsColumnLimitFilter(1)])
    out: dict[bytes, dict[str, dict[bytes, bytes]]] = {}
    for row in table.read_rows(filter_=chain):
        out[row.row_key] = {f: _cells(row, f) for f in row.cells if f in wanted}
    return out
