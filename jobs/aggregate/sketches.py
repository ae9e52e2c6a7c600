"""Quantile sketches of amounts: the transforms that build a run's KLL sketches, and the executor
functions that merge them into Bigtable once per run.

Per user, UTC hour of event time and currency, and per hour and currency for all users, a run
builds one KLL sketch of its newly counted amounts (doubles of minor units, see common.sketches)
with Spark's `kll_sketch_agg_double`. A sketch row is then changed by one writer, once per run: the
stored sketch and the run's one are merged in the executor (datasketches) and written back with the
run's marker in one mutation, so a run that dies and is resumed never merges its values twice
(common.store.merge_cells_once, the same rule as the counters).

Sketch compaction is random: two runs over the same values give sketches that are equally good but
not byte-identical once they hold more than K values. n, min and max are always exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common import rowkeys, sketches, store
from common.config import Config
from common.timeutil import HOUR_US, SECOND_US
from jobs.aggregate import load

# --- transforms (DataFrame -> DataFrame) ---------------------------------------------------------


def amount_sketches(df: DataFrame, *keys: str) -> DataFrame:
    """Transactions with hour_start (transforms.with_hour_start) -> one row per keys... (of which
    hour_start) and currency: keys..., currency, sketch (the KLL sketch of amount_minor, binary)."""
    amount = F.col("amount_minor").cast("double")
    return df.groupBy(*keys, "currency").agg(F.kll_sketch_agg_double(amount, F.lit(sketches.K)).alias("sketch"))


def sketch_rows(df: DataFrame, *keys: str) -> DataFrame:
    """Per-currency sketches (keys..., currency, sketch) -> one row per Bigtable row: keys...,
    sketches = [(currency, sketch)] sorted by currency."""
    return df.groupBy(*keys).agg(F.array_sort(F.collect_list(F.struct("currency", "sketch"))).alias("sketches"))


def user_hour_sketches(df: DataFrame) -> DataFrame:
    """Transactions -> user_id, hour_start, sketches: one row per user-hour."""
    return df.transform(amount_sketches, "user_id", "hour_start").transform(sketch_rows, "user_id", "hour_start")


def hour_sketches(df: DataFrame) -> DataFrame:
    """Transactions -> hour_start, sketches: one row per hour, all users together."""
    return df.transform(amount_sketches, "hour_start").transform(sketch_rows, "hour_start")


# --- executors: merge into Bigtable once per run --------------------------------------------------
# (load's private helpers: the table handle per worker, the RESULT rows, the crash tests' pause)


def _cells(sketches_of_row: list[dict[str, Any]]) -> dict[bytes, bytes]:
    """[(currency, sketch)] -> {b"USD": sketch bytes}"""
    return {s["currency"].encode(): bytes(s["sketch"]) for s in sketches_of_row}


def _hour_s(micros: int) -> int:
    return (micros - micros % HOUR_US) // SECOND_US


def _merge(cfg: Config, run_id: int, pause_after_batch_s: float, user_rows: bool) -> load.ArrowFn:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = load._table(cfg)
        for batch in batches:
            hours = batch.column("hour_start").cast(pa.int64()).to_pylist()
            rows = batch.column("sketches").to_pylist()
            if user_rows:
                users = batch.column("user_id").to_pylist()
                keys = [rowkeys.user_sketch_key(u, _hour_s(h)) for u, h in zip(users, hours, strict=True)]
            else:
                keys = [rowkeys.hour_sketch_key(_hour_s(h)) for h in hours]
            updates = {key: _cells(row) for key, row in zip(keys, rows, strict=True)}
            applied, skipped, failures = store.merge_cells_once(table, store.KLL, updates, sketches.merge_bytes, run_id)
            yield load._result(store.KLL, applied, skipped, failures)
            load._pause(pause_after_batch_s)

    return run


def merge_user_sketches(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> load.ArrowFn:
    """Rows (user_id, hour_start, sketches) -> the dcfkll cells of ~klluser rows, once per run."""
    return _merge(cfg, run_id, pause_after_batch_s, user_rows=True)


def merge_hour_sketches(cfg: Config, run_id: int, pause_after_batch_s: float = 0.0) -> load.ArrowFn:
    """Rows (hour_start, sketches) -> the dcfkll cells of ~kllhour rows, once per run. Each input row
    holds a whole hour, so no two tasks ever touch the same Bigtable row."""
    return _merge(cfg, run_id, pause_after_batch_s, user_rows=False)


def writers(cfg: Config, run_id: int, remaining: DataFrame, pause_after_batch_s: float = 0.0) -> list[DataFrame]:
    """The run's sketch writers over its remaining transactions (with hour_start), as frames of
    load.RESULT_SCHEMA rows for the job's load step to union with its counter writers."""
    return [
        remaining.transform(user_hour_sketches).mapInArrow(
            merge_user_sketches(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA
        ),
        remaining.transform(hour_sketches).mapInArrow(
            merge_hour_sketches(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA
        ),
    ]
