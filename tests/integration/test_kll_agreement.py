"""Spark's KLL sketch binary and the Python package `datasketches` read the same input the same way:
n, min and max exactly, quantiles identical to Spark's own reading of the same sketch, and within
the stated rank error of the exact quantiles (DuckDB). What common.sketches relies on."""

from __future__ import annotations

import math
import random
from typing import Any

from pyspark.sql import functions as F
from support.quantiles import ExactAmounts, values_frame

from common import sketches

QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def _amounts(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [
        rng.choice((rng.randint(100, 9_999), rng.randint(2_000, 2_100), 2**52 + rng.randint(0, 10))) for _ in range(n)
    ]


ALL_US = (0, 2**62)  # every event time of support.quantiles.values_frame


def _exact(values: list[int]) -> ExactAmounts:
    return ExactAmounts(values_frame(values))


def _spark_sketches(spark: Any, groups: dict[str, list[int]]) -> dict[str, tuple[bytes, list[float], int]]:
    """Per group: Spark's sketch bytes, Spark's own quantiles QS of it, and its n."""
    rows = [(g, float(v)) for g, values in groups.items() for v in values]
    df = spark.createDataFrame(rows, "g string, x double").repartition(3)  # partial sketches merged by Spark
    sketched = df.groupBy("g").agg(F.kll_sketch_agg_double("x", F.lit(sketches.K)).alias("s"))
    read = sketched.select(
        "g",
        "s",
        *[F.kll_sketch_get_quantile_double("s", F.lit(q)).alias(f"q{i}") for i, q in enumerate(QS)],
        F.kll_sketch_get_n_double("s").alias("n"),
    ).collect()
    return {r["g"]: (bytes(r["s"]), [r[f"q{i}"] for i in range(len(QS))], int(r["n"])) for r in read}


def test_spark_and_datasketches_read_one_sketch_alike_and_within_the_bound(spark: Any) -> None:
    groups = {"small": _amounts(150, 1), "edge": _amounts(sketches.K, 2), "large": _amounts(20_000, 3)}
    built = _spark_sketches(spark, groups)
    for name, values in groups.items():
        blob, spark_quantiles, spark_n = built[name]
        sketch = sketches.load(blob)
        assert (sketch.n, spark_n) == (len(values), len(values))
        assert (int(sketch.get_min_value()), int(sketch.get_max_value())) == (min(values), max(values))
        ours = [float(sketches.quantile(sketch, q)) for q in QS]
        assert ours == spark_quantiles, name
        answer = sketches.answer(sketch, QS)
        exact = _exact(values)
        if len(values) <= sketches.K:  # the library keeps this many exactly: every quantile is exact
            assert answer.exact and answer.rank_error == 0.0
            assert [v for _, v in answer.quantiles] == [exact.quantile(None, *ALL_US, "USD", q) for q in QS], name
        else:
            assert not answer.exact and 0 < answer.rank_error < 0.02
            for q, v in answer.quantiles:
                assert v is not None and v in set(values)
                low, high = exact.rank_interval(None, *ALL_US, "USD", v)
                assert low - answer.rank_error <= q <= high + answer.rank_error, (name, q, v, low, high)


def test_datasketches_merges_spark_sketches_and_exact_values_without_losing_count_or_extremes(spark: Any) -> None:
    groups = {f"g{i}": _amounts(700 * (i + 1), 10 + i) for i in range(4)}
    built = _spark_sketches(spark, groups)
    stored: bytes | None = None
    for name in groups:
        stored = sketches.merge_bytes(stored, built[name][0])
    edge = [5, 12_345, 2**52 + 99]
    merged = sketches.merged([stored or b""], edge)
    everything = [v for values in groups.values() for v in values] + edge
    answer = sketches.answer(merged, QS)
    exact = _exact(everything)
    assert answer.count == len(everything)
    assert (answer.min_value, answer.max_value) == (min(everything), max(everything))
    for q, v in answer.quantiles:
        assert v is not None
        low, high = exact.rank_interval(None, *ALL_US, "USD", v)
        assert low - answer.rank_error <= q <= high + answer.rank_error, (q, v, low, high)
    assert sum(count for _, _, count in answer.histogram) == len(everything)
    assert math.isclose(answer.rank_error, merged.normalized_rank_error(False))
