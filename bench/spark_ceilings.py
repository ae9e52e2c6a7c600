"""Ceilings for the aggregation job, measured on the same input in the same run.

duckdb_buckets_seconds / pandas_buckets_seconds / spark_buckets_seconds
    the hourly per-user buckets (sum_cents, count) of a spool's transactions, deduplicated by
    transaction_id, computed by DuckDB, by pandas, and by the job's own Spark transforms into a
    no-op sink
public_mutate_rows_rate / protobuf_mutate_rows_rate
    rows/s of a plain single-threaded loop writing transaction rows to a scratch table, through the
    client's DirectRow API (`table.mutate_rows`) and through store.write_cell_rows (what the job uses)
job_rate
    one job run over the spool into a fresh table: its summary (rows written per second overall and
    in the load phase)

  python -m bench.spark_ceilings --rows 1000000      # writes a spool, measures everything once
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from common import clients, rowkeys, spool, store
from common.config import Config, from_dict
from common.timeutil import HOUR_US


def _best(repeat: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def _transactions(spool_dir: str) -> str:
    return str(spool.local_path(spool_dir) / spool.TRANSACTIONS)


def duckdb_buckets_seconds(spool_dir: str, repeat: int = 2) -> float:
    """Seconds (best of `repeat`) for DuckDB to compute the deduplicated hourly buckets."""
    import duckdb

    pattern = f"{_transactions(spool_dir)}/**/*.parquet"
    query = f"""
        WITH first AS (
            SELECT arg_min(user_id, (publish_time, message_id)) AS user_id,
                   arg_min(amount_minor, (publish_time, message_id)) AS amount_minor,
                   arg_min(epoch_us(event_time), (publish_time, message_id)) AS ev
            FROM read_parquet('{pattern}') GROUP BY transaction_id)
        SELECT user_id, ev // {HOUR_US} AS hour, sum(amount_minor)::BIGINT AS sum_cents, count(*) AS count
        FROM first GROUP BY 1, 2"""

    def work() -> None:
        with duckdb.connect() as con:
            con.sql(query).to_arrow_table()

    return _best(repeat, work)


def pandas_buckets_seconds(spool_dir: str, repeat: int = 2) -> float:
    """Seconds (best of `repeat`) for pandas to compute the deduplicated hourly buckets."""
    import pandas as pd
    import pyarrow.parquet as pq

    columns = ["transaction_id", "user_id", "amount_minor", "event_time", "publish_time", "message_id"]

    def work() -> None:
        files = spool.list_files(spool_dir, spool.TRANSACTIONS)
        frame = pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True)
        frame = frame.sort_values(["publish_time", "message_id"]).drop_duplicates("transaction_id")
        frame["hour"] = frame["event_time"].astype("int64") // HOUR_US
        frame.groupby(["user_id", "hour"]).agg(sum_cents=("amount_minor", "sum"), count=("amount_minor", "size"))

    return _best(repeat, work)


def spark_buckets_seconds(spark: Any, spool_dir: str, repeat: int = 2) -> float:
    """Seconds (best of `repeat`) for the job's transforms (dedupe, hourly buckets) into a no-op sink."""
    from jobs.aggregate import extract
    from jobs.aggregate import transforms as tf

    files = [str(p) for p in spool.list_files(spool_dir, spool.TRANSACTIONS)]

    def work() -> None:
        frame = extract.check_schema(spark.read.parquet(*files))
        buckets = frame.transform(tf.dedupe_transactions).transform(tf.hourly_buckets)
        buckets.write.format("noop").mode("overwrite").save()

    return _best(repeat, work)


def _scratch(cfg: Config) -> tuple[Config, Any]:
    scratch = from_dict({**cfg.to_dict(), "table_id": f"bench-{uuid.uuid4().hex[:10]}"})
    return scratch, clients.ensure_table(scratch)


def _drop(cfg: Config) -> None:
    clients.bigtable_client(cfg, admin=True).instance(cfg.instance_id).table(cfg.table_id).delete()


def _sample_rows(rows: int) -> list[tuple[bytes, list[store.Cell]]]:
    base_us = 1_763_697_600_000_000
    return [
        (
            rowkeys.transaction_key(f"u{i % 1000:05d}", base_us + i * 1000, f"bench-{i}"),
            store.transaction_cells(2000 + i % 8000, "USD", "grocery", "2025-11-21T04:00:00.001Z", 1),
        )
        for i in range(rows)
    ]


def public_mutate_rows_rate(cfg: Config, rows: int = 100_000) -> float:
    """Rows/s of a single-threaded loop of `table.mutate_rows` over DirectRow batches of
    store.WRITE_CHUNK transaction rows (building the rows included), on a scratch table."""
    scratch, table = _scratch(cfg)
    try:
        sample = _sample_rows(rows)
        started = time.perf_counter()
        for start in range(0, rows, store.WRITE_CHUNK):
            batch = []
            for key, cells in sample[start : start + store.WRITE_CHUNK]:
                row = table.direct_row(key)
                for family, qualifier, value in cells:
                    row.set_cell(family, qualifier, value)
                batch.append(row)
            table.mutate_rows(batch)
        return rows / (time.perf_counter() - started)
    finally:
        _drop(scratch)


def protobuf_mutate_rows_rate(cfg: Config, rows: int = 100_000) -> float:
    """Rows/s of a single-threaded loop of store.write_cell_rows (MutateRows with the request
    protobufs built directly, as the job writes) over the same rows, on a scratch table."""
    scratch, table = _scratch(cfg)
    try:
        sample = _sample_rows(rows)
        started = time.perf_counter()
        failures = store.write_cell_rows(table, sample)
        elapsed = time.perf_counter() - started
        if failures:
            raise RuntimeError(f"{len(failures)} rows failed, e.g. {failures[0]}")
        return rows / elapsed
    finally:
        _drop(scratch)


def job_rate(spark: Any, cfg: Config) -> dict[str, float]:
    """One job run over cfg.spool_dir into a scratch table: its wall time, rows written, and rows/s
    over the whole run."""
    from jobs.aggregate import job

    scratch, _ = _scratch(cfg)
    try:
        summary = job.run_once(spark, scratch, say=lambda line: None)
        return {
            "seconds": summary.seconds,
            "rows_written": summary.rows_written,
            "rows_per_second": summary.rows_written / summary.seconds if summary.seconds else 0.0,
        }
    finally:
        _drop(scratch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_ceilings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions in the generated spool")
    parser.add_argument("--spool", help="an existing spool directory to use instead of generating one")
    parser.add_argument("--write-rows", type=int, default=200_000, help="rows for the raw write loops")
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)

    from bench.data import write_spool
    from jobs.aggregate.session import get_spark

    spool_dir = args.spool or tempfile.mkdtemp(prefix="bench-spool-")
    try:
        if not args.spool:
            write_spool(spool_dir, args.rows, files=10)
        cfg = from_dict({"project_id": "bench-project", "table_id": "bench", "spool_dir": spool_dir})
        clients.apply_emulator_env(cfg)
        spark = get_spark(args.master)
        results: dict[str, Any] = {"rows": args.rows, "spool": spool_dir}
        results["job"] = job_rate(spark, cfg)
        results["public_mutate_rows_rows_per_s"] = public_mutate_rows_rate(cfg, args.write_rows)
        results["protobuf_mutate_rows_rows_per_s"] = protobuf_mutate_rows_rate(cfg, args.write_rows)
        results["duckdb_s"] = duckdb_buckets_seconds(spool_dir)
        results["pandas_s"] = pandas_buckets_seconds(spool_dir)
        results["spark_s"] = spark_buckets_seconds(spark, spool_dir)
        spark.stop()
    finally:
        if not args.spool:
            shutil.rmtree(spool_dir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
