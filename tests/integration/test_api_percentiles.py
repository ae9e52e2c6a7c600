"""GET /api/v1/users/<id>/percentiles and /api/v1/percentiles on the real emulators and Spark,
against exact quantiles by DuckDB over the ledger (support.quantiles), for many random ranges that
are not hour-aligned: every count, min and max exact, every quantile's rank within the stated rank
error, exact answers (rank_error 0) wherever the range holds no more values than a sketch keeps.
The same holds when the ledger is split across several runs and after --rebuild (sketches are
not byte-identical then: compaction is random)."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import cleanup_resources, make_config
from support.quantiles import ExactAmounts
from support.seed import random_ledger, run_job, spool_frame

from common import sketches
from common.config import Config
from common.money import to_minor
from common.timeutil import format_rfc3339
from jobs.aggregate import job
from webapp import create_app

START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
HOURS = 12
USERS = ("u1", "u2", "u3", "u10")
RANGES = 15
QS = (0.0, 0.1, 0.5, 0.9, 0.99, 1.0)


@dataclass
class Seeded:
    cfg: Config
    exact: ExactAmounts
    ranges: list[tuple[str | None, datetime, datetime]]


def _ledger() -> Any:
    # USD twice as likely as JPY: a user's USD amounts over the whole window are more than a sketch
    # keeps exactly (~320), an hour's or a user's JPY ones fewer.
    return spool_frame(random_ledger(USERS, START, START + timedelta(hours=HOURS), 40, 3, ("USD", "USD", "JPY")))


def _ranges(seed: int) -> list[tuple[str | None, datetime, datetime]]:
    rng = random.Random(seed)
    out: list[tuple[str | None, datetime, datetime]] = []
    for i in range(RANGES * 2):
        user = None if i % 2 else rng.choice(USERS)
        length = rng.choice((rng.randint(60, 3_000), rng.randint(3_600, HOURS * 3_600)))
        begin = rng.randint(-1_800, HOURS * 3_600 - length // 2)
        start = START + timedelta(seconds=begin, microseconds=rng.randint(0, 999_999))
        out.append((user, start, start + timedelta(seconds=length)))
    out.append((None, START - timedelta(hours=1), START + timedelta(hours=HOURS + 1)))  # everything
    out.append(("u1", START, START + timedelta(hours=HOURS)))  # whole hours only
    return out


def _fresh_config(name: str) -> Config:
    return make_config(Path(tempfile.gettempdir()) / f"percentiles-{name}")


@pytest.fixture(scope="module")
def seeded(spark: Any, emulators: dict[str, str]) -> Iterator[Seeded]:
    cfg = _fresh_config("one-run")
    ledger = _ledger()
    run_job(spark, cfg, ledger)
    yield Seeded(cfg, ExactAmounts(ledger), _ranges(11))
    cleanup_resources(cfg)


def _ask(cfg: Config, user: str | None, start: datetime, end: datetime) -> dict[str, Any]:
    client = create_app(cfg).test_client()
    path = f"/api/v1/users/{user}/percentiles" if user else "/api/v1/percentiles"
    q = ",".join(str(q) for q in QS)
    response = client.get(path, query_string={"from": format_rfc3339(start), "to": format_rfc3339(end), "q": q})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def _us(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _check(seeded: Seeded, cfg: Config) -> dict[tuple[int, str], tuple[int, str | None, str | None]]:
    """Ask every range of `seeded` of the app over `cfg`'s table and check each answer against the
    ledger; returns (count, min, max) per (range index, currency)."""
    seen: dict[tuple[int, str], tuple[int, str | None, str | None]] = {}
    exact_answers = estimated_answers = 0
    for index, (user, start, end) in enumerate(seeded.ranges):
        low_us, high_us = _us(start), _us(end)
        body = _ask(cfg, user, start, end)
        assert body["q"] == list(QS)
        assert [c["currency"] for c in body["by_currency"]] == seeded.exact.currencies(user, low_us, high_us)
        for answer in body["by_currency"]:
            currency = answer["currency"]
            n, smallest, largest = seeded.exact.stats(user, low_us, high_us, currency)
            assert answer["count"] == n
            assert (to_minor(answer["min"], currency), to_minor(answer["max"], currency)) == (smallest, largest)
            values = [to_minor(item["value"], currency) for item in answer["quantiles"]]
            if n <= sketches.K:
                assert answer["exact"] and answer["rank_error"] == 0, (index, currency, n)
            if answer["exact"]:
                exact_answers += 1
                wanted = [seeded.exact.quantile(user, low_us, high_us, currency, q) for q in QS]
                assert values == wanted, (index, user, currency)
            else:
                estimated_answers += 1
                error = answer["rank_error"]
                assert 0 < error < 0.02
                for q, value in zip(QS, values, strict=True):
                    below, upto = seeded.exact.rank_interval(user, low_us, high_us, currency, value)
                    assert below - error <= q <= upto + error, (index, user, currency, q, value, below, upto)
            counts = [bin_["count"] for bin_ in answer["histogram"]]
            assert sum(counts) == n
            for bin_ in answer["histogram"]:
                lo, hi = to_minor(bin_["from"], currency), to_minor(bin_["to"], currency)
                below_hi = seeded.exact.rank_interval(user, low_us, high_us, currency, hi)[0]
                below_lo = seeded.exact.rank_interval(user, low_us, high_us, currency, lo)[0]
                true_count = round((below_hi - below_lo) * n)  # the last bin ends at max + 1
                slack = 0 if answer["exact"] else 2 * answer["rank_error"] * n + 1
                assert abs(bin_["count"] - true_count) <= slack, (index, currency, bin_, true_count)
            seen[(index, currency)] = (n, answer["min"], answer["max"])
    assert exact_answers >= 5 and estimated_answers >= 5  # both kinds were checked
    return seen


def test_random_ranges_of_both_scopes_are_within_the_stated_error_and_exact_when_small(seeded: Seeded) -> None:
    _check(seeded, seeded.cfg)


def test_split_runs_and_a_rebuild_answer_within_the_bound_with_the_same_counts(spark: Any, seeded: Seeded) -> None:
    cfg = _fresh_config("split")
    try:
        ledger = _ledger()
        thirds = [ledger.iloc[i::3] for i in range(3)]  # every third row: each run touches every hour
        for part in thirds:
            run_job(spark, cfg, part)
        split = _check(seeded, cfg)
        assert split == _check(seeded, seeded.cfg)
        summary = job.run_once(spark, cfg, rebuild=True, say=lambda line: None)
        assert summary.sketches_written > 0
        assert _check(seeded, cfg) == split
    finally:
        cleanup_resources(cfg)


def test_quantile_bounds_are_refused_in_one_line(seeded: Seeded) -> None:
    client = create_app(seeded.cfg).test_client()
    for bad in ("1.5", "-0.1", "0.5,,0.9", "a", ",".join(["0.5"] * 11), "0.1234567", "1.01"):
        response = client.get("/api/v1/percentiles", query_string={"q": bad})
        assert response.status_code == 400, bad
        body = response.get_json()
        assert body["parameter"] == "q" and "\n" not in body["error"] and "fractions from 0 to 1" in body["error"]
    ok = client.get("/api/v1/users/u1/percentiles", query_string={"q": "0,1", "from": "-1h"})
    assert ok.status_code == 200 and ok.get_json()["q"] == [0.0, 1.0]
