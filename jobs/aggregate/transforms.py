"""Pure transforms, DataFrame -> DataFrame, chained with df.transform(...).

They take a DataFrame and plain values (never a session, a path or a client), use built-in Spark
functions only, and do integer arithmetic on epoch microseconds so the result never depends on the
session time zone. Money stays in integer cents (LongType) from the spool to the sums.

Input columns (the spool's): transaction_id, user_id, amount_minor, currency, merchant_category,
event_time, publish_time, message_id.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
SPOOL_COLUMNS = (
    "transaction_id",
    "user_id",
    "amount_minor",
    "currency",
    "merchant_category",
    "event_time",
    "publish_time",
    "message_id",
)


def _floor_time(column: str, step_us: int) -> Column:
    micros = F.unix_micros(F.col(column))
    return F.timestamp_micros(micros - F.pmod(micros, F.lit(step_us)))


def dedupe_transactions(df: DataFrame) -> DataFrame:
    """One row per transaction_id, columns unchanged. The copy kept is the one published first,
    then the smallest message_id, so the pick is the same however the rows were split or ordered."""
    kept = [c for c in SPOOL_COLUMNS if c not in ("transaction_id", "publish_time", "message_id")]
    first = F.min(F.struct("publish_time", "message_id", *kept)).alias("first")
    return df.groupBy("transaction_id").agg(first).select("transaction_id", "first.*").select(*SPOOL_COLUMNS)


def flag_late(df: DataFrame, late_horizon_seconds: int) -> DataFrame:
    """Add `late`: published more than the horizon after its event time. Decided per record from
    its own two times, so the answer never depends on when the job runs."""
    lag_us = F.unix_micros("publish_time") - F.unix_micros("event_time")
    return df.withColumn("late", lag_us > F.lit(int(late_horizon_seconds) * 1_000_000))


def on_time(df: DataFrame) -> DataFrame:
    """The rows not flagged late, without the flag."""
    return df.where(~F.col("late")).drop("late")


def with_hour_start(df: DataFrame) -> DataFrame:
    """Add `hour_start`: the event time rounded down to its UTC hour."""
    return df.withColumn("hour_start", _floor_time("event_time", HOUR_US))


def hourly_buckets(df: DataFrame) -> DataFrame:
    """Per user and UTC hour of event time: user_id, hour_start, sum_cents, count."""
    return (
        df.groupBy("user_id", _floor_time("event_time", HOUR_US).alias("hour_start"))
        .agg(F.sum("amount_minor").alias("sum_cents"), F.count(F.lit(1)).alias("count"))
        .select("user_id", "hour_start", "sum_cents", "count")
    )


def minute_stats(df: DataFrame) -> DataFrame:
    """Over all users, per UTC minute of event time: minute_start, sum_cents, count."""
    return (
        df.groupBy(_floor_time("event_time", MINUTE_US).alias("minute_start"))
        .agg(F.sum("amount_minor").alias("sum_cents"), F.count(F.lit(1)).alias("count"))
        .select("minute_start", "sum_cents", "count")
    )


def top_spender_index(buckets: DataFrame) -> DataFrame:
    """From hourly buckets, one row per hour: hour_start, spenders = [(user_id, sum_cents)] sorted by
    user_id. It becomes one Bigtable row per hour, so the hour's top spenders are one row read."""
    spender = F.struct("user_id", "sum_cents")
    return buckets.groupBy("hour_start").agg(F.array_sort(F.collect_list(spender)).alias("spenders"))


def distinct_users(df: DataFrame) -> DataFrame:
    """The users that appear: user_id."""
    return df.select("user_id").distinct()
