"""Bigtable I/O that runs in the executors, as mapInArrow functions.

Each factory takes plain values (the Config, the run id) and returns a function over Arrow record
batches, so the work is spread over the executors and batched per record batch. Writers yield
RESULT rows: one per batch with the counts, and one per row key that failed, with the reason.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from common import clients, rowkeys, store
from common.config import Config
from common.timeutil import SECOND_US, format_rfc3339_column

ArrowFn = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]

RESULT_SCHEMA = "family string, written long, skipped long, failed_key string, message string"

_RESULT_ARROW = pa.schema(
    [
        pa.field("family", pa.string()),
        pa.field("written", pa.int64()),
        pa.field("skipped", pa.int64()),
        pa.field("failed_key", pa.string()),
        pa.field("message", pa.string()),
    ]
)


@functools.lru_cache(maxsize=4)
def _table(cfg: Config) -> Any:
    """One table handle per worker process and config (Python workers are reused across tasks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Connecting to Bigtable emulator", once per worker
        return clients.bigtable_table(cfg)


def _micros(batch: pa.RecordBatch, name: str) -> list[int]:
    micros: list[int] = batch.column(name).cast(pa.int64()).to_pylist()
    return micros


def _result(family: str, written: int, skipped: int, failures: list[store.RowFailure]) -> pa.RecordBatch:
    rows: list[tuple[str, int, int, str | None, str | None]] = [(family, written, skipped, None, None)]
    rows += [(family, 0, 0, f.key.decode("utf-8", "replace"), f.message) for f in failures]
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, _RESULT_ARROW, strict=True)],
        schema=_RESULT_ARROW,
    )


def _pause(seconds: float) -> None:
    """The crash tests' kill point: `seconds` of sleep after each written batch (0 in production),
    so a run can be killed when some, but not all, of its rows are written."""
    if seconds > 0:
        time.sleep(seconds)


LOOKUP_SCHEMA = "transaction_id string, status string, looked_up long"
COUNTED, CONFLICT = "counted", "conflict"


def _version(batch: pa.RecordBatch, prefix: str = "") -> list[store.Version]:
    return [
        store.Version(user, amount, currency, event_us, publish_us, message_id)
        for user, amount, currency, event_us, publish_us, message_id in zip(
            batch.column(f"{prefix}user_id").to_pylist(),
            batch.column(f"{prefix}amount_minor").to_pylist(),
            batch.column(f"{prefix}currency").to_pylist(),
            _micros(batch, f"{prefix}event_time"),
            _micros(batch, f"{prefix}publish_time"),
            batch.column(f"{prefix}message_id").to_pylist(),
            strict=True,
        )
    ]


def check_id_index(cfg: Config, run_id: int) -> ArrowFn:
    """The run's transactions (transaction_id, user_id, amount_minor, currency, event_time,
    publish_time, message_id) -> the ids another run has counted already: status "counted" when the
    counted copy is the same transaction, "conflict" when it differs (a conflict row holding both
    versions is written here), plus one row per batch with looked_up = ids looked up.

    One point read per id in the id index, whatever the copy carries: the cost follows the new
    data, never the history. An index row carrying this run's id was written by an interrupted
    attempt of this same run, which made the same pick: it is not counted yet."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            ids = batch.column("transaction_id").to_pylist()
            versions = _version(batch)
            keys = [rowkeys.id_index_key(tid) for tid in ids]
            index = store.read_id_index(table, keys)
            dropped: list[tuple[str, str]] = []
            conflicts: list[tuple[bytes, list[store.Cell]]] = []
            for tid, key, version in zip(ids, keys, versions, strict=True):
                found = index.get(key)
                if found is None or found[0] == run_id:
                    continue
                if found[1].same_transaction(version):
                    dropped.append((tid, COUNTED))
                else:
                    dropped.append((tid, CONFLICT))
                    cells = store.conflict_cells(tid, found[1], version, run_id)
                    conflicts.append((rowkeys.conflict_key(run_id, tid, version.message_id), cells))
            failures = store.write_cell_rows(table, conflicts)
            if failures:
                raise RuntimeError(f"could not record {len(failures)} conflicting copies: {failures[0].message}")
            yield pa.RecordBatch.from_pydict(
                {
                    "transaction_id": [t for t, _ in dropped] + [None],
                    "status": [s for _, s in dropped] + [None],
                    "looked_up": [0] * len(dropped) + [len(ids)],
                },
                schema=pa.schema([("transaction_id", pa.string()), ("status", pa.string()), ("looked_up", pa.int64())]),
            )

    return run


def write_conflicts(cfg: Config, run_id: int) -> ArrowFn:
    """Copies that differ from the copy kept in this run (transforms.conflicting_copies) -> conflict
    rows holding both versions."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            ids = batch.column("transaction_id").to_pylist()
            rows = [
                (rowkeys.conflict_key(run_id, tid, copy.message_id), store.conflict_cells(tid, kept, copy, run_id))
                for tid, kept, copy in zip(ids, _version(batch, "kept_"), _version(batch, "copy_"), strict=True)
            ]
            failures = store.write_cell_rows(table, rows)
            yield _result(store.ID, len(rows) - len(failures), 0, failures)

    return run


def write_transactions(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> ArrowFn:
    """Transactions (the spool's columns, spool.TRANSACTION_COLUMNS) -> their id index rows and
    dcflist rows, carrying this run's marker, in one MutateRows request per batch (then a sleep of
    pause_after_batch_s, a test's kill point)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            ids = batch.column("transaction_id").to_pylist()
            versions = _version(batch)
            rows = [
                (
                    rowkeys.transaction_key(version.user_id, version.event_us, tid),
                    store.transaction_cells(version.amount_minor, version.currency, category, text, run_id),
                )
                for tid, version, text, category in zip(
                    ids,
                    versions,
                    format_rfc3339_column(batch.column("event_time")),
                    batch.column("merchant_category").to_pylist(),
                    strict=True,
                )
            ]
            index = [
                (rowkeys.id_index_key(tid), store.id_index_cells(version, run_id))
                for tid, version in zip(ids, versions, strict=True)
            ]
            by_time = [
                (
                    rowkeys.time_index_key(version.event_us, tid, version.user_id),
                    store.time_index_cells(version.amount_minor, version.currency, category, run_id),
                )
                for tid, version, category in zip(
                    ids, versions, batch.column("merchant_category").to_pylist(), strict=True
                )
            ]
            failures = store.write_cell_rows(table, index + rows + by_time)
            others_failed = sum(1 for f in failures if f.key.startswith(b"~"))  # id and time index rows
            yield _result(store.LIST, len(rows) - (len(failures) - others_failed), 0, failures)
            _pause(pause_after_batch_s)

    return run


def write_late(cfg: Config, run_id: int) -> ArrowFn:
    """Transactions set aside as late (the spool columns) -> ~late rows, listed by the API."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            rows = [
                (rowkeys.late_key(version.publish_us, tid), store.late_cells(version, event, published, run_id))
                for tid, version, event, published in zip(
                    batch.column("transaction_id").to_pylist(),
                    _version(batch),
                    format_rfc3339_column(batch.column("event_time")),
                    format_rfc3339_column(batch.column("publish_time")),
                    strict=True,
                )
            ]
            failures = store.write_cell_rows(table, rows)
            yield _result(store.META, len(rows) - len(failures), 0, failures)

    return run


def _apply(
    cfg: Config,
    run_id: int,
    family: str,
    deltas_of: Callable[[pa.RecordBatch], dict[bytes, dict[bytes, int]]],
    pause_after_batch_s: float,
) -> ArrowFn:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            applied, skipped, failures = store.apply_counter_deltas(table, family, deltas_of(batch), run_id)
            yield _result(family, applied, skipped, failures)
            _pause(pause_after_batch_s)

    return run


def _totals(totals: list[dict[str, Any]]) -> dict[bytes, int]:
    cells: dict[bytes, int] = {}
    for t in totals:
        cells.update(store.counter_cells(t["currency"], t["sum_minor"], t["count"]))
    return cells


def _hour_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.hour_bucket_key(user, hour // SECOND_US): _totals(totals)
        for user, hour, totals in zip(
            batch.column("user_id").to_pylist(),
            _micros(batch, "hour_start"),
            batch.column("totals").to_pylist(),
            strict=True,
        )
    }


def _minute_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.minute_key(minute // SECOND_US): _totals(totals)
        for minute, totals in zip(_micros(batch, "minute_start"), batch.column("totals").to_pylist(), strict=True)
    }


def _category_totals(totals: list[dict[str, Any]]) -> dict[bytes, int]:
    cells: dict[bytes, int] = {}
    for t in totals:
        cells.update(store.category_cells(t["currency"], t["merchant_category"], t["sum_minor"], t["count"]))
    return cells


def _user_category_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.category_hour_key(user, hour // SECOND_US): _category_totals(totals)
        for user, hour, totals in zip(
            batch.column("user_id").to_pylist(),
            _micros(batch, "hour_start"),
            batch.column("totals").to_pylist(),
            strict=True,
        )
    }


def _all_category_deltas(
    name: str, key: Callable[[int], bytes]
) -> Callable[[pa.RecordBatch], dict[bytes, dict[bytes, int]]]:
    def deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
        return {
            key(start // SECOND_US): _category_totals(totals)
            for start, totals in zip(_micros(batch, name), batch.column("totals").to_pylist(), strict=True)
        }

    return deltas


def apply_user_category_deltas(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> ArrowFn:
    """User-hour category rows (user_id, hour_start, totals of transforms.per_category_row) -> dcfcat
    counters at <user>#<hour>#cat, once per run."""
    return _apply(cfg, run_id, store.CAT, _user_category_deltas, pause_after_batch_s)


def apply_all_category_deltas(cfg: Config, run_id: int, name: str, pause_after_batch_s: float = 0.0) -> ArrowFn:
    """Everyone's category rows per hour (name "hour_start") or minute ("minute_start") with their
    totals -> dcfcat counters at ~cathour# or ~catmin#, once per run."""
    key = rowkeys.category_all_hour_key if name == "hour_start" else rowkeys.category_all_minute_key
    return _apply(cfg, run_id, store.CAT, _all_category_deltas(name, key), pause_after_batch_s)


def apply_hour_deltas(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> ArrowFn:
    """Hourly bucket rows (user_id, hour_start, totals) -> dcfbhour counters, once per run, and the
    top-spender index rows (dcftop) of every sum they change (store.apply_bucket_deltas). Each
    user-hour is one input row, so no two tasks move the same index row."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            applied, skipped, indexed, failures = store.apply_bucket_deltas(table, _hour_deltas(batch), run_id)
            yield _result(store.HOUR, applied, skipped, [f for f in failures if not f.key.startswith(b"~")])
            yield _result(store.TOP, indexed, 0, [f for f in failures if f.key.startswith(b"~")])
            _pause(pause_after_batch_s)

    return run


def _block_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.block_key(user, span, start // SECOND_US): _totals(totals)
        for user, span, start, totals in zip(
            batch.column("user_id").to_pylist(),
            batch.column("span_hours").to_pylist(),
            _micros(batch, "block_start"),
            batch.column("totals").to_pylist(),
            strict=True,
        )
    }


def apply_block_deltas(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> ArrowFn:
    """Block rows (user_id, span_hours, block_start, totals) -> dcfblock counters, once per run, and
    the top-spender index rows of every block sum they change, exactly as apply_hour_deltas does for
    the hours. Each user-block is one input row, so no two tasks move the same index row."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            applied, skipped, indexed, failures = store.apply_bucket_deltas(
                table, _block_deltas(batch), run_id, store.BLOCK
            )
            yield _result(store.BLOCK, applied, skipped, [f for f in failures if not f.key.startswith(b"~")])
            yield _result(store.TOP, indexed, 0, [f for f in failures if f.key.startswith(b"~")])
            _pause(pause_after_batch_s)

    return run


def apply_minute_deltas(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> ArrowFn:
    """Minute rows (minute_start, totals) -> dcfbmin counters, once per run."""
    return _apply(cfg, run_id, store.MINUTE, _minute_deltas, pause_after_batch_s)


def write_users(cfg: Config) -> ArrowFn:
    """Users (user_id) -> dcfuser directory rows."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            users = batch.column("user_id").to_pylist()
            rows = [(rowkeys.user_directory_key(u), store.USER_DIRECTORY_CELLS) for u in users]
            failures = store.write_cell_rows(table, rows)
            yield _result(store.USER, len(rows) - len(failures), 0, failures)

    return run
