"""Pure transforms, DataFrame -> DataFrame, chained with df.transform(...).

They take a DataFrame and plain values (never a session, a path or a client), use built-in Spark
functions only, and do integer arithmetic on epoch microseconds so the result never depends on the
session time zone. Money stays in integer minor units of its currency (LongType) from the spool
to the sums, and every sum is grouped by currency: no two currencies are ever added.

Input columns (the spool's): transaction_id, user_id, amount_minor, currency, merchant_category,
event_time, publish_time, message_id. A transaction id is a transaction's identity: the fields
IDENTITY must agree between all copies of one id. The rules (identity, the copy kept, late) are
named in common/rules.py, which the analysts' SQL views (jobs/sql) build from too.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common import rules, spool
from common.timeutil import HOUR_US, MINUTE_US

SPOOL_COLUMNS = spool.TRANSACTION_COLUMNS

IDENTITY = rules.IDENTITY
LEGACY_AMOUNT = spool.LEGACY_AMOUNT_COLUMN


def _floor_time(column: str, step_us: int) -> Column:
    micros = F.unix_micros(F.col(column))
    return F.timestamp_micros(micros - F.pmod(micros, F.lit(step_us)))


def rescale_legacy_amounts(df: DataFrame, exponents: dict[str, int]) -> DataFrame:
    """Spool rows of either schema version -> amount_minor in the currency's own minor units.

    Version 1 files hold `amount_cents` (hundredths, whatever the currency); version 2 files hold
    `amount_minor`. A hundredths amount is rescaled by the currency's exponent (from `exponents`,
    ISO 4217 code -> places); one that its currency cannot hold exactly (10.50 JPY) or in an unknown
    currency becomes null, so the caller can set it aside. Without a legacy column, df is unchanged."""
    if LEGACY_AMOUNT not in df.columns:
        return df
    places = F.create_map(*[F.lit(x) for code, exp in sorted(exponents.items()) for x in (code, exp)])[
        F.col("currency")
    ]
    cents = F.col(LEGACY_AMOUNT)
    up = cents * F.pow(F.lit(10), F.greatest(places - 2, F.lit(0))).cast("long")
    step = F.pow(F.lit(10), F.greatest(2 - places, F.lit(0))).cast("long")  # never 0 (ANSI division)
    down = F.when(F.pmod(cents, step) == 0, F.floor(cents / step).cast("long"))
    legacy = F.when(places >= 2, up).when(places < 2, down)
    minor = F.col("amount_minor") if "amount_minor" in df.columns else F.lit(None).cast("long")
    return df.withColumn("amount_minor", F.coalesce(minor, legacy)).drop(LEGACY_AMOUNT)


def dedupe_transactions(df: DataFrame) -> DataFrame:
    """One row per transaction_id, the spool columns plus `conflicted`. The copy kept is the first in
    rules.KEEP_ORDER (published first, then the smallest message_id), so the pick is the same however
    the rows were split or ordered. `conflicted` is true when some copy of the id differs from another
    in a field of IDENTITY (see conflicting_copies)."""
    first = F.min(F.struct(*rules.KEEP_ORDER)).alias("first")
    low, high = F.min(F.struct(*IDENTITY)).alias("low"), F.max(F.struct(*IDENTITY)).alias("high")
    # Min and max of structs of strings have no hash-aggregate buffer, so Spark aggregates by
    # sorting. Grouped as is, it sorts every row twice: a partial aggregation before the shuffle
    # (which saves nothing: almost every id has one copy) and the final one after it. Shuffled by
    # the id first, the aggregation runs once, after one sort (bench/TUNING.md: 2.48-2.83 s against
    # 2.79-2.84 s on 1M rows).
    return (
        df.repartition("transaction_id")
        .groupBy("transaction_id")
        .agg(first, low, high)
        .select("transaction_id", "first.*", (F.col("low") != F.col("high")).alias("conflicted"))
        .select(*SPOOL_COLUMNS, "conflicted")
    )


def conflicting_copies(raw: DataFrame, firsts: DataFrame) -> DataFrame:
    """The copies in `raw` that differ in IDENTITY from the copy kept for their id (`firsts`, from
    dedupe_transactions): transaction_id, then kept_* and copy_* for user_id, amount_minor, currency,
    event_time, publish_time and message_id."""
    fields = (*IDENTITY, "publish_time", "message_id")
    kept = firsts.where("conflicted").select("transaction_id", *[F.col(c).alias(f"kept_{c}") for c in fields])
    copies = raw.select("transaction_id", *[F.col(c).alias(f"copy_{c}") for c in fields])
    differs = F.lit(False)
    for c in IDENTITY:
        differs = differs | ~F.col(f"kept_{c}").eqNullSafe(F.col(f"copy_{c}"))
    return kept.join(copies, "transaction_id").where(differs)


def flag_late(df: DataFrame, late_horizon_seconds: int) -> DataFrame:
    """Add `late`: published more than the horizon after its event time. Decided per record from
    its own two times, so the answer never depends on when the job runs."""
    lag_us = F.unix_micros("publish_time") - F.unix_micros("event_time")
    return df.withColumn("late", lag_us > F.lit(rules.late_after_us(late_horizon_seconds)))


def on_time(df: DataFrame) -> DataFrame:
    """The rows not flagged late, without the flag."""
    return df.where(~F.col("late")).drop("late")


def with_hour_start(df: DataFrame) -> DataFrame:
    """Add `hour_start`: the event time rounded down to its UTC hour."""
    return df.withColumn("hour_start", _floor_time("event_time", HOUR_US))


def hourly_buckets(df: DataFrame) -> DataFrame:
    """Per user, UTC hour of event time and currency: user_id, hour_start, currency, sum_minor, count."""
    return (
        df.groupBy("user_id", _floor_time("event_time", HOUR_US).alias("hour_start"), "currency")
        .agg(F.sum("amount_minor").alias("sum_minor"), F.count(F.lit(1)).alias("count"))
        .select("user_id", "hour_start", "currency", "sum_minor", "count")
    )


def block_buckets(df: DataFrame, spans_hours: tuple[int, ...]) -> DataFrame:
    """Per user, aligned block of each of `spans_hours` (hours since the epoch, so blocks of 4, 16
    and 64 hours never straddle two of the next size) and currency: user_id, span_hours,
    block_start, currency, sum_minor, count."""
    micros = F.unix_micros(F.col("event_time"))
    span_us = F.col("span_hours").cast("long") * F.lit(HOUR_US)
    spans = F.array(*[F.lit(span) for span in spans_hours])
    return (
        df.withColumn("span_hours", F.explode(spans))
        .groupBy(
            "user_id",
            "span_hours",
            F.timestamp_micros(micros - F.pmod(micros, span_us)).alias("block_start"),
            "currency",
        )
        .agg(F.sum("amount_minor").alias("sum_minor"), F.count(F.lit(1)).alias("count"))
        .select("user_id", "span_hours", "block_start", "currency", "sum_minor", "count")
    )


def minute_stats(df: DataFrame) -> DataFrame:
    """Over all users, per UTC minute of event time and currency: minute_start, currency, sum_minor, count."""
    return (
        df.groupBy(_floor_time("event_time", MINUTE_US).alias("minute_start"), "currency")
        .agg(F.sum("amount_minor").alias("sum_minor"), F.count(F.lit(1)).alias("count"))
        .select("minute_start", "currency", "sum_minor", "count")
    )


def category_buckets(df: DataFrame) -> DataFrame:
    """Per user, UTC hour of event time, currency and merchant category: user_id, hour_start,
    currency, merchant_category, sum_minor, count."""
    return (
        df.groupBy("user_id", _floor_time("event_time", HOUR_US).alias("hour_start"), "currency", "merchant_category")
        .agg(F.sum("amount_minor").alias("sum_minor"), F.count(F.lit(1)).alias("count"))
        .select("user_id", "hour_start", "currency", "merchant_category", "sum_minor", "count")
    )


def category_stats(df: DataFrame, step_us: int, name: str) -> DataFrame:
    """Over all users, per `step_us` of event time (an hour or a minute), currency and merchant
    category: <name> (the step's start), currency, merchant_category, sum_minor, count."""
    return (
        df.groupBy(_floor_time("event_time", step_us).alias(name), "currency", "merchant_category")
        .agg(F.sum("amount_minor").alias("sum_minor"), F.count(F.lit(1)).alias("count"))
        .select(name, "currency", "merchant_category", "sum_minor", "count")
    )


def per_category_row(df: DataFrame, *keys: str) -> DataFrame:
    """Per-category totals (keys..., currency, merchant_category, sum_minor, count) -> one row per
    Bigtable row: keys..., totals = [(currency, merchant_category, sum_minor, count)] sorted, like per_row."""
    total = F.struct("currency", "merchant_category", "sum_minor", "count")
    return df.groupBy(*keys).agg(F.array_sort(F.collect_list(total)).alias("totals"))


def per_row(df: DataFrame, *keys: str) -> DataFrame:
    """Per-currency totals (keys..., currency, sum_minor, count) -> one row per Bigtable row: keys...,
    totals = [(currency, sum_minor, count)] sorted by currency. A counter row is then changed by one
    writer, once, with every currency it holds."""
    total = F.struct("currency", "sum_minor", "count")
    return df.groupBy(*keys).agg(F.array_sort(F.collect_list(total)).alias("totals"))


def distinct_users(df: DataFrame) -> DataFrame:
    """The users that appear: user_id."""
    return df.select("user_id").distinct()
