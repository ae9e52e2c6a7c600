"""Each transform of the aggregation job on tiny inline frames, against hand-written expected frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from jobs.aggregate import transforms as tf
from jobs.aggregate.extract import SpoolSchemaError, check_schema

SPOOL = T.StructType(
    [
        T.StructField("transaction_id", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("amount_minor", T.LongType()),
        T.StructField("currency", T.StringType()),
        T.StructField("merchant_category", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("publish_time", T.TimestampType()),
        T.StructField("message_id", T.StringType()),
    ]
)
EVENTS = T.StructType(
    [f for f in SPOOL.fields if f.name in ("transaction_id", "user_id", "amount_minor", "event_time")]
)
BUCKETS = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("hour_start", T.TimestampType()),
        T.StructField("sum_cents", T.LongType()),
        T.StructField("count", T.LongType()),
    ]
)


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, 20, hour, minute, second, micro, tzinfo=UTC)


def spool_row(tid: str, user: str, cents: int, event: datetime, published: datetime, message: str) -> tuple:
    return (tid, user, cents, "USD", "grocery", event, published, message)


def assert_frames(actual: Any, expected: Any) -> None:
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, ignore_column_order=False)


def test_dedupe_keeps_the_first_published_copy_then_the_smallest_message_id(spark: Any) -> None:
    rows = [
        spool_row("t1", "u1", 500, at(9), at(9, 0, 5), "m-b"),
        spool_row("t1", "u1", 500, at(9), at(9, 0, 1), "m-c"),  # published first: kept
        spool_row("t1", "u1", 500, at(9), at(9, 0, 9), "m-a"),
        spool_row("t2", "u2", 700, at(10), at(10, 0, 3), "m-z"),
        spool_row("t2", "u2", 700, at(10), at(10, 0, 3), "m-y"),  # same publish time: smaller message id kept
        spool_row("t3", "u1", -200, at(11), at(11, 1), "m-q"),
    ]
    expected = [
        spool_row("t1", "u1", 500, at(9), at(9, 0, 1), "m-c"),
        spool_row("t2", "u2", 700, at(10), at(10, 0, 3), "m-y"),
        spool_row("t3", "u1", -200, at(11), at(11, 1), "m-q"),
    ]
    actual = spark.createDataFrame(rows, SPOOL).transform(tf.dedupe_transactions)
    assert_frames(actual, spark.createDataFrame(expected, SPOOL))


def test_late_flag_is_publish_lag_beyond_the_horizon_per_record(spark: Any) -> None:
    horizon = 48 * 3600
    rows = [
        spool_row("on-time", "u1", 100, at(9), at(9, 0, 1), "m1"),
        spool_row("at-horizon", "u1", 100, at(9), at(9) + timedelta(hours=48), "m2"),
        spool_row("just-past", "u1", 100, at(9), at(9) + timedelta(hours=48, microseconds=1), "m3"),
        spool_row("days-late", "u2", 100, at(9), at(9) + timedelta(days=5), "m4"),
    ]
    schema = T.StructType([*SPOOL.fields, T.StructField("late", T.BooleanType())])
    expected = [(*row, late) for row, late in zip(rows, [False, False, True, True], strict=True)]
    actual = spark.createDataFrame(rows, SPOOL).transform(tf.flag_late, horizon)
    assert_frames(actual, spark.createDataFrame(expected, schema))


def test_on_time_keeps_unflagged_rows_without_the_flag(spark: Any) -> None:
    schema = T.StructType([*EVENTS.fields, T.StructField("late", T.BooleanType())])
    rows = [("t1", "u1", 100, at(9), False), ("t2", "u1", 200, at(9), True)]
    actual = spark.createDataFrame(rows, schema).transform(tf.on_time)
    assert_frames(actual, spark.createDataFrame([("t1", "u1", 100, at(9))], EVENTS))


def test_with_hour_start_rounds_down_to_the_utc_hour(spark: Any) -> None:
    rows = [("t1", "u1", 100, at(9, 59, 59, 999_999)), ("t2", "u1", 100, at(10)), ("t3", "u1", 1, at(10, 30))]
    schema = T.StructType([*EVENTS.fields, T.StructField("hour_start", T.TimestampType())])
    expected = [(*rows[0], at(9)), (*rows[1], at(10)), (*rows[2], at(10))]
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.with_hour_start)
    assert_frames(actual, spark.createDataFrame(expected, schema))


def test_hourly_buckets_split_at_hour_edges_and_net_refunds(spark: Any) -> None:
    rows = [
        ("t1", "u1", 1999, at(9, 59, 59, 999_999)),  # last microsecond of 09:00
        ("t2", "u1", 1, at(10)),  # first microsecond of 10:00
        ("t3", "u1", 2500, at(10, 45)),
        ("t4", "u1", -500, at(10, 50)),  # a refund nets out of the sum but still counts
        ("t5", "u10", 700, at(10, 5)),  # u10 is not u1
        ("t6", "u2", -300, at(23, 59)),
    ]
    expected = [
        ("u1", at(9), 1999, 1),
        ("u1", at(10), 2001, 3),
        ("u10", at(10), 700, 1),
        ("u2", at(23), -300, 1),
    ]
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.hourly_buckets)
    assert_frames(actual, spark.createDataFrame(expected, BUCKETS))


def test_minute_stats_add_up_all_users_per_minute(spark: Any) -> None:
    rows = [
        ("t1", "u1", 100, at(9, 0, 0)),
        ("t2", "u2", 250, at(9, 0, 59, 999_999)),
        ("t3", "u1", -50, at(9, 1, 0)),
        ("t4", "u3", 1000, at(9, 59, 30)),
    ]
    schema = T.StructType(
        [
            T.StructField("minute_start", T.TimestampType()),
            T.StructField("sum_cents", T.LongType()),
            T.StructField("count", T.LongType()),
        ]
    )
    expected = [(at(9, 0), 350, 2), (at(9, 1), -50, 1), (at(9, 59), 1000, 1)]
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.minute_stats)
    assert_frames(actual, spark.createDataFrame(expected, schema))


def test_top_spender_index_is_one_row_per_hour_with_every_users_sum(spark: Any) -> None:
    buckets = [
        ("u2", at(9), 300, 1),
        ("u1", at(9), 5000, 4),
        ("u3", at(9), -100, 1),
        ("u1", at(10), 42, 1),
    ]
    spender = T.StructType([T.StructField("user_id", T.StringType()), T.StructField("sum_cents", T.LongType())])
    schema = T.StructType(
        [T.StructField("hour_start", T.TimestampType()), T.StructField("spenders", T.ArrayType(spender))]
    )
    expected = [(at(9), [("u1", 5000), ("u2", 300), ("u3", -100)]), (at(10), [("u1", 42)])]
    actual = spark.createDataFrame(buckets, BUCKETS).transform(tf.top_spender_index)
    assert_frames(actual, spark.createDataFrame(expected, schema))


def test_distinct_users_lists_each_user_once(spark: Any) -> None:
    rows = [("t1", "u1", 1, at(9)), ("t2", "u1", 2, at(10)), ("t3", "u10", 3, at(9))]
    schema = T.StructType([T.StructField("user_id", T.StringType())])
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.distinct_users)
    assert_frames(actual, spark.createDataFrame([("u1",), ("u10",)], schema))


def test_schema_check_names_a_missing_column(spark: Any) -> None:
    frame = spark.createDataFrame([], SPOOL).drop("amount_minor")
    with pytest.raises(SpoolSchemaError, match="'amount_minor' is missing"):
        check_schema(frame)


def test_schema_check_names_a_column_of_the_wrong_type(spark: Any) -> None:
    fields = [T.StructField("amount_minor", T.DoubleType()) if f.name == "amount_minor" else f for f in SPOOL.fields]
    frame = spark.createDataFrame([], T.StructType(fields))
    with pytest.raises(SpoolSchemaError, match="'amount_minor' must be bigint, got double"):
        check_schema(frame)


def test_schema_check_keeps_the_spool_columns_in_order_and_drops_extras(spark: Any) -> None:
    row = spool_row("t1", "u1", 5, at(9), at(9), "m1")
    shuffled = spark.createDataFrame([row], SPOOL).selectExpr("1 AS extra", *reversed(SPOOL.names))
    assert_frames(check_schema(shuffled), spark.createDataFrame([row], SPOOL))
