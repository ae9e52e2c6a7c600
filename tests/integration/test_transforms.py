"""Each transform of the aggregation job on tiny inline frames, against hand-written expected frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from common.spool import SpoolSchemaError
from jobs.aggregate import transforms as tf
from jobs.aggregate.extract import check_schema

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
    [f for f in SPOOL.fields if f.name in ("transaction_id", "user_id", "amount_minor", "currency", "event_time")]
)
BUCKETS = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("hour_start", T.TimestampType()),
        T.StructField("currency", T.StringType()),
        T.StructField("sum_minor", T.LongType()),
        T.StructField("count", T.LongType()),
    ]
)
WITH_CONFLICTED = T.StructType([*SPOOL.fields, T.StructField("conflicted", T.BooleanType())])


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, 20, hour, minute, second, micro, tzinfo=UTC)


def spool_row(
    tid: str, user: str, cents: int, event: datetime, published: datetime, message: str, currency: str = "USD"
) -> tuple:
    return (tid, user, cents, currency, "grocery", event, published, message)


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
        (*spool_row("t1", "u1", 500, at(9), at(9, 0, 1), "m-c"), False),
        (*spool_row("t2", "u2", 700, at(10), at(10, 0, 3), "m-y"), False),
        (*spool_row("t3", "u1", -200, at(11), at(11, 1), "m-q"), False),
    ]
    actual = spark.createDataFrame(rows, SPOOL).transform(tf.dedupe_transactions)
    assert_frames(actual, spark.createDataFrame(expected, WITH_CONFLICTED))


def test_copies_of_an_id_that_differ_in_user_amount_currency_or_time_are_flagged_and_listed(spark: Any) -> None:
    rows = [
        spool_row("same", "u1", 500, at(9), at(9, 0, 1), "m1"),
        spool_row("same", "u1", 500, at(9), at(9, 0, 2), "m2"),  # a true duplicate
        spool_row("user", "u1", 500, at(9), at(9, 0, 1), "m3"),
        spool_row("user", "u2", 500, at(9), at(9, 0, 2), "m4"),
        spool_row("amount", "u1", 500, at(9), at(9, 0, 5), "m5"),
        spool_row("amount", "u1", 501, at(9), at(9, 0, 1), "m6"),  # published first: kept
        spool_row("currency", "u1", 500, at(9), at(9, 0, 1), "m7"),
        spool_row("currency", "u1", 500, at(9), at(9, 0, 2), "m8", currency="EUR"),
        spool_row("time", "u1", 500, at(9), at(9, 0, 1), "m9"),
        spool_row("time", "u1", 500, at(9, 0, 31), at(9, 0, 32), "m10"),
        spool_row("category", "u1", 500, at(9), at(9, 0, 1), "m11"),
    ]
    category_copy = list(spool_row("category", "u1", 500, at(9), at(9, 0, 2), "m12"))
    category_copy[4] = "fuel"  # the category is not part of a transaction's identity
    frame = spark.createDataFrame([*rows, tuple(category_copy)], SPOOL)
    firsts = frame.transform(tf.dedupe_transactions)
    flags = {r["transaction_id"]: (r["message_id"], r["conflicted"]) for r in firsts.collect()}
    assert flags == {
        "same": ("m1", False),
        "user": ("m3", True),
        "amount": ("m6", True),
        "currency": ("m7", True),
        "time": ("m9", True),
        "category": ("m11", False),
    }
    pairs = {
        (r["transaction_id"], r["kept_message_id"], r["copy_message_id"])
        for r in tf.conflicting_copies(frame, firsts).collect()
    }
    assert pairs == {("user", "m3", "m4"), ("amount", "m6", "m5"), ("currency", "m7", "m8"), ("time", "m9", "m10")}


def test_amounts_of_old_spool_files_in_hundredths_are_rescaled_to_each_currencys_minor_units(spark: Any) -> None:
    schema = T.StructType(
        [
            T.StructField("transaction_id", T.StringType()),
            T.StructField("currency", T.StringType()),
            T.StructField("amount_minor", T.LongType()),
            T.StructField("amount_cents", T.LongType()),
        ]
    )
    rows = [
        ("new", "JPY", 1000, None),  # a new file's row: already in minor units
        ("usd", "USD", None, 1234),
        ("bhd", "BHD", None, 1234),  # 12.34 BHD = 12340 fils
        ("jpy", "JPY", None, 100000),  # 1000.00 JPY = 1000 yen
        ("jpy-odd", "JPY", None, 1050),  # 10.50 JPY: no such amount
        ("unknown", "XQZ", None, 100),
        ("refund", "JPY", None, -500),
    ]
    exponents = {"USD": 2, "BHD": 3, "JPY": 0}
    actual = spark.createDataFrame(rows, schema).transform(tf.rescale_legacy_amounts, exponents)
    assert actual.columns == ["transaction_id", "currency", "amount_minor"]
    assert {r[0]: r[2] for r in actual.collect()} == {
        "new": 1000,
        "usd": 1234,
        "bhd": 12340,
        "jpy": 1000,
        "jpy-odd": None,
        "unknown": None,
        "refund": -5,
    }


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
    rows = [("t1", "u1", 100, "USD", at(9), False), ("t2", "u1", 200, "USD", at(9), True)]
    actual = spark.createDataFrame(rows, schema).transform(tf.on_time)
    assert_frames(actual, spark.createDataFrame([("t1", "u1", 100, "USD", at(9))], EVENTS))


def test_with_hour_start_rounds_down_to_the_utc_hour(spark: Any) -> None:
    rows = [
        ("t1", "u1", 100, "USD", at(9, 59, 59, 999_999)),
        ("t2", "u1", 100, "USD", at(10)),
        ("t3", "u1", 1, "USD", at(10, 30)),
    ]
    schema = T.StructType([*EVENTS.fields, T.StructField("hour_start", T.TimestampType())])
    expected = [(*rows[0], at(9)), (*rows[1], at(10)), (*rows[2], at(10))]
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.with_hour_start)
    assert_frames(actual, spark.createDataFrame(expected, schema))


def test_hourly_buckets_split_at_hour_edges_and_currencies_and_net_refunds(spark: Any) -> None:
    rows = [
        ("t1", "u1", 1999, "USD", at(9, 59, 59, 999_999)),  # last microsecond of 09:00
        ("t2", "u1", 1, "USD", at(10)),  # first microsecond of 10:00
        ("t3", "u1", 2500, "USD", at(10, 45)),
        ("t4", "u1", -500, "USD", at(10, 50)),  # a refund nets out of the sum but still counts
        ("t5", "u10", 700, "USD", at(10, 5)),  # u10 is not u1
        ("t6", "u2", -300, "USD", at(23, 59)),
        ("t7", "u1", 1000, "JPY", at(10, 10)),  # never added to u1's dollars
        ("t8", "u1", 5, "EUR", at(10, 11)),
    ]
    expected = [
        ("u1", at(9), "USD", 1999, 1),
        ("u1", at(10), "USD", 2001, 3),
        ("u1", at(10), "JPY", 1000, 1),
        ("u1", at(10), "EUR", 5, 1),
        ("u10", at(10), "USD", 700, 1),
        ("u2", at(23), "USD", -300, 1),
    ]
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.hourly_buckets)
    assert_frames(actual, spark.createDataFrame(expected, BUCKETS))


def test_minute_stats_add_up_all_users_per_minute(spark: Any) -> None:
    rows = [
        ("t1", "u1", 100, "USD", at(9, 0, 0)),
        ("t2", "u2", 250, "USD", at(9, 0, 59, 999_999)),
        ("t3", "u1", -50, "USD", at(9, 1, 0)),
        ("t4", "u3", 1000, "USD", at(9, 59, 30)),
        ("t5", "u3", 1000, "JPY", at(9, 59, 31)),
    ]
    schema = T.StructType(
        [
            T.StructField("minute_start", T.TimestampType()),
            T.StructField("currency", T.StringType()),
            T.StructField("sum_minor", T.LongType()),
            T.StructField("count", T.LongType()),
        ]
    )
    expected = [
        (at(9, 0), "USD", 350, 2),
        (at(9, 1), "USD", -50, 1),
        (at(9, 59), "USD", 1000, 1),
        (at(9, 59), "JPY", 1000, 1),
    ]
    actual = spark.createDataFrame(rows, EVENTS).transform(tf.minute_stats)
    assert_frames(actual, spark.createDataFrame(expected, schema))


def test_distinct_users_lists_each_user_once(spark: Any) -> None:
    rows = [("t1", "u1", 1, "USD", at(9)), ("t2", "u1", 2, "USD", at(10)), ("t3", "u10", 3, "USD", at(9))]
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
