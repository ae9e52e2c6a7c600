"""Bigtable I/O that runs in the executors, as mapInArrow functions.

Each factory takes plain values (the Config, the run id) and returns a function over Arrow record
batches, so the work is spread over the executors and batched per record batch. Writers yield
RESULT rows: one per batch with the counts, and one per row key that failed, with the reason.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from common import clients, rowkeys, store
from common.config import Config
from common.timeutil import format_rfc3339_column

ArrowFn = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]

RESULT_SCHEMA = "family string, written long, skipped long, failed_key string, message string"
COUNTED_SCHEMA = "transaction_id string, looked_up long"
# Test hook: seconds to sleep after each written batch, so a test can kill a run mid-write.
PAUSE_ENV = "AGGREGATE_PAUSE_AFTER_BATCH_SECONDS"

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
    return batch.column(name).cast(pa.int64()).to_pylist()


def _result(family: str, written: int, skipped: int, failures: list[store.RowFailure]) -> pa.RecordBatch:
    rows: list[tuple[str, int, int, str | None, str | None]] = [(family, written, skipped, None, None)]
    rows += [(family, 0, 0, f.key.decode("utf-8", "replace"), f.message) for f in failures]
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, _RESULT_ARROW, strict=True)],
        schema=_RESULT_ARROW,
    )


def _pause() -> None:
    seconds = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if seconds > 0:
        time.sleep(seconds)


def find_counted_elsewhere(cfg: Config, run_id: int) -> ArrowFn:
    """(user_id, hour_start, event_time, transaction_id), clustered by user and hour -> transaction_id
    of those another run has counted, plus one row per batch with looked_up = rows looked up.

    Only a transaction whose user-hour bucket exists can have been counted, so a batch reads its
    buckets first and then the dcflist rows of the transactions in existing buckets. When a batch
    has nearly one bucket per transaction, reading the buckets first would not save a read, and its
    dcflist rows are read directly. A dcflist row that carries this run's id was written by an
    interrupted attempt of this same run: not counted yet."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            users = batch.column("user_id").to_pylist()
            ids = batch.column("transaction_id").to_pylist()
            micros = _micros(batch, "event_time")
            hours = _micros(batch, "hour_start")
            buckets = [rowkeys.hour_bucket_key(u, h // 1_000_000) for u, h in zip(users, hours, strict=True)]
            if len(set(buckets)) * 2 > len(buckets):
                candidates = list(range(len(buckets)))
            else:
                existing = store.read_run_markers(table, buckets)
                candidates = [i for i, bucket in enumerate(buckets) if bucket in existing]
            keys = [rowkeys.transaction_key(users[i], micros[i], ids[i]) for i in candidates]
            markers = store.read_run_markers(table, keys)
            counted = [ids[i] for i, key in zip(candidates, keys, strict=True) if markers.get(key, run_id) != run_id]
            yield pa.RecordBatch.from_pydict(
                {"transaction_id": [*counted, None], "looked_up": [0] * len(counted) + [len(candidates)]},
                schema=pa.schema([("transaction_id", pa.string()), ("looked_up", pa.int64())]),
            )

    return run


def write_transactions(cfg: Config, run_id: int) -> ArrowFn:
    """Transactions (user_id, event_time, transaction_id, amount_minor, currency, merchant_category)
    -> dcflist rows carrying this run's marker."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            rows = [
                (
                    rowkeys.transaction_key(user, us, tid),
                    store.transaction_cells(cents, currency, category, text, run_id),
                )
                for user, us, text, tid, cents, currency, category in zip(
                    batch.column("user_id").to_pylist(),
                    _micros(batch, "event_time"),
                    format_rfc3339_column(batch.column("event_time")),
                    batch.column("transaction_id").to_pylist(),
                    batch.column("amount_minor").to_pylist(),
                    batch.column("currency").to_pylist(),
                    batch.column("merchant_category").to_pylist(),
                    strict=True,
                )
            ]
            failures = store.write_cell_rows(table, rows)
            yield _result(store.LIST, len(rows) - len(failures), 0, failures)
            _pause()

    return run


def _apply(cfg: Config, run_id: int, family: str, deltas_of: Callable[[pa.RecordBatch], dict]) -> ArrowFn:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            applied, skipped, failures = store.apply_counter_deltas(table, family, deltas_of(batch), run_id)
            yield _result(family, applied, skipped, failures)
            _pause()

    return run


def _hour_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.hour_bucket_key(user, hour // 1_000_000): {store.SUM: total, store.COUNT: count}
        for user, hour, total, count in zip(
            batch.column("user_id").to_pylist(),
            _micros(batch, "hour_start"),
            batch.column("sum_cents").to_pylist(),
            batch.column("count").to_pylist(),
            strict=True,
        )
    }


def _minute_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.minute_key(minute // 1_000_000): {store.SUM: total, store.COUNT: count}
        for minute, total, count in zip(
            _micros(batch, "minute_start"),
            batch.column("sum_cents").to_pylist(),
            batch.column("count").to_pylist(),
            strict=True,
        )
    }


def _top_deltas(batch: pa.RecordBatch) -> dict[bytes, dict[bytes, int]]:
    return {
        rowkeys.top_hour_key(hour // 1_000_000): {s["user_id"].encode(): s["sum_cents"] for s in spenders}
        for hour, spenders in zip(_micros(batch, "hour_start"), batch.column("spenders").to_pylist(), strict=True)
    }


def apply_hour_deltas(cfg: Config, run_id: int) -> ArrowFn:
    """Hourly buckets (user_id, hour_start, sum_cents, count) -> dcfbhour counters, once per run."""
    return _apply(cfg, run_id, store.HOUR, _hour_deltas)


def apply_minute_deltas(cfg: Config, run_id: int) -> ArrowFn:
    """Minute stats (minute_start, sum_cents, count) -> dcfbmin counters, once per run."""
    return _apply(cfg, run_id, store.MINUTE, _minute_deltas)


def apply_top_deltas(cfg: Config, run_id: int) -> ArrowFn:
    """Top-spender index rows (hour_start, spenders) -> dcftop counters, once per run. Each input row
    holds a whole hour, so no two tasks ever touch the same Bigtable row."""
    return _apply(cfg, run_id, store.TOP, _top_deltas)


def write_users(cfg: Config) -> ArrowFn:
    """Users (user_id) -> dcfuser directory rows."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = _table(cfg)
        for batch in batches:
            users = batch.column("user_id").to_pylist()
            rows = [store.user_directory_row(table, rowkeys.user_directory_key(u)) for u in users]
            failures = store.write_rows(table, rows)
            yield _result(store.USER, len(rows) - len(failures), 0, failures)

    return run
