"""KLL quantile sketches of amounts: the one binary format the Spark job writes and the web app reads.

The job builds each sketch with Spark's `kll_sketch_agg_double` (Apache DataSketches' Java
KllDoublesSketch); the executors and the web app read, merge and query the same bytes with the
Python package `datasketches` (its C++ kll_doubles_sketch). tests/integration/test_kll_agreement.py
checks that both read one input the same way. The doubles sketch and not the bigint one, because
the Python package reads only the former: amounts are doubles of integer minor units, exact below
2**53, and a KLL sketch only ever returns values it was given, so every quantile is an amount.

A sketch keeps at most about K values exactly; past that it compacts (randomly), and a quantile's
rank is then within the sketch's normalized rank error (about 1.33 % for K = 200, at 99 %
confidence) of the rank asked for. Sketches merge without losing that bound, which is what lets a
range be answered from per-hour sketches built by any number of runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import datasketches

K = 200  # the sketch size Spark uses by default; both sides name it, so they agree


def new() -> Any:
    """An empty sketch of size K."""
    return datasketches.kll_doubles_sketch(K)


def load(blob: bytes) -> Any:
    """A sketch from its serialized bytes (Spark's or this module's)."""
    return datasketches.kll_doubles_sketch.deserialize(bytes(blob))


def merged(blobs: Iterable[bytes], exact_values: Iterable[int] = ()) -> Any:
    """One sketch holding every sketch in `blobs` and every value in `exact_values` (minor units)."""
    sketch = new()
    for blob in blobs:
        sketch.merge(load(blob))
    for value in exact_values:
        sketch.update(float(value))
    return sketch


def merge_bytes(stored: bytes | None, added: bytes) -> bytes:
    """The stored sketch (None: none yet) with `added` merged into it, serialized."""
    if stored is None:
        return bytes(load(added).serialize())
    sketch = load(stored)
    sketch.merge(load(added))
    return bytes(sketch.serialize())


@dataclass(frozen=True)
class Answer:
    """What one sketch says about one currency's amounts (all in minor units).

    quantiles: (q, value) for each q asked, value None when the sketch is empty; rank_error: the
    normalized rank error of every quantile (0 when the sketch is exact: it holds every value);
    histogram: (low, high, estimated count) per bin [low, high), the last one closed."""

    count: int
    exact: bool
    rank_error: float
    min_value: int | None
    max_value: int | None
    quantiles: tuple[tuple[float, int | None], ...]
    histogram: tuple[tuple[int, int, int], ...]


def bin_edges(low: int, high: int, bins: int) -> list[int]:
    """Up to `bins` + 1 distinct integer edges from low to high + 1, about equally apart."""
    width = high + 1 - low
    return sorted({low + (width * i) // bins for i in range(bins + 1)})


def quantile(sketch: Any, q: float) -> int:
    """The inclusive q-quantile of a sketch that is not empty. q = 0 and q = 1 are its exact min and
    max: the C++ library answers them with the extreme values it still holds, which compaction may
    have dropped (the Java library, so Spark, already answers with min and max)."""
    if q <= 0:
        return int(sketch.get_min_value())
    if q >= 1:
        return int(sketch.get_max_value())
    return int(sketch.get_quantile(q, True))


def answer(sketch: Any, qs: Sequence[float], bins: int = 10) -> Answer:
    """The quantiles `qs`, count, extremes and a histogram of `bins` bins from `sketch`.

    A quantile is the inclusive one: the smallest value v with (values <= v) / count >= q, exactly
    that when the sketch is exact (not in estimation mode: it still holds every value)."""
    if sketch.is_empty():
        return Answer(0, True, 0.0, None, None, tuple((q, None) for q in qs), ())
    exact = not sketch.is_estimation_mode()
    low, high = int(sketch.get_min_value()), int(sketch.get_max_value())
    edges = bin_edges(low, high, bins)
    # get_cdf(points) with inclusive=False: the share of values below each point, then 1.
    below = [0.0, *sketch.get_cdf([float(e) for e in edges[1:-1]], False)[:-1], 1.0]
    n = int(sketch.n)
    counts = [round(n * below[i + 1]) - round(n * below[i]) for i in range(len(edges) - 1)]
    return Answer(
        count=n,
        exact=exact,
        rank_error=0.0 if exact else float(sketch.normalized_rank_error(False)),
        min_value=low,
        max_value=high,
        quantiles=tuple((q, quantile(sketch, q)) for q in qs),
        histogram=tuple((edges[i], edges[i + 1], counts[i]) for i in range(len(counts))),
    )
