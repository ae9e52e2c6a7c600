"""The simulation's statistics and determinism, checked against the distributions the config
describes (Kolmogorov-Smirnov), not against the code's own numbers."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from datetime import UTC, datetime, timedelta

from scipy import stats

from common.message import parse_message
from emitter.producer import SimulationRequest, encode_for_publish, encoded_batches
from emitter.simulate import MERCHANT_CATEGORIES, Population, draw_periods, simulate, user_ids

START = datetime(2026, 1, 1, tzinfo=UTC)
P_VALUE = 0.001


def population(**changes: object) -> Population:
    values: dict[str, object] = {
        "users": 1,
        "mean_period_seconds": 600.0,
        "min_period_seconds": 600.0,  # min == mean: every user's mean period is exactly 600 s
        "amount_min_cents": 2000,
        "amount_max_cents": 10000,
        "currency": "USD",
        "seed": 7,
    }
    values.update(changes)
    return Population(**values)  # type: ignore[arg-type]


def gaps_seconds(pop: Population, count: int, time_scale: float = 1.0) -> list[float]:
    txns = list(itertools.islice(simulate(pop, START, None, time_scale), count))
    return [(b.event_time - a.event_time).total_seconds() for a, b in itertools.pairwise(txns)]


def test_one_users_inter_arrival_times_are_exponential_with_the_configured_mean() -> None:
    gaps = gaps_seconds(population(), 5000)
    assert stats.kstest(gaps, "expon", args=(0, 600.0)).pvalue > P_VALUE
    # The test can fail: a mean 15% off is rejected.
    assert stats.kstest(gaps, "expon", args=(0, 690.0)).pvalue < P_VALUE
    assert stats.kstest(gaps, "expon", args=(0, 510.0)).pvalue < P_VALUE


def test_live_speedup_divides_the_gaps() -> None:
    gaps = gaps_seconds(population(), 3000, time_scale=60.0)
    assert stats.kstest(gaps, "expon", args=(0, 10.0)).pvalue > P_VALUE
    assert stats.kstest(gaps, "expon", args=(0, 600.0)).pvalue < P_VALUE


def test_amounts_are_uniform_whole_cents_between_min_and_max() -> None:
    txns = list(itertools.islice(simulate(population(), START, None), 5000))
    cents = [t.amount_minor for t in txns]
    assert all(2000 <= c <= 10000 for c in cents)
    assert stats.kstest(cents, "uniform", args=(2000, 8000)).pvalue > P_VALUE
    assert stats.kstest(cents, "uniform", args=(2000, 9000)).pvalue < P_VALUE  # a wrong range is rejected
    assert stats.kstest(cents, "uniform", args=(3000, 7000)).pvalue < P_VALUE


def test_amount_bounds_are_inclusive() -> None:
    txns = list(itertools.islice(simulate(population(amount_min_cents=1, amount_max_cents=3), START, None), 300))
    assert {t.amount_minor for t in txns} == {1, 2, 3}


def test_users_mean_periods_are_min_plus_exponential() -> None:
    pop = population(users=3000, mean_period_seconds=1800.0, min_period_seconds=60.0)
    periods = draw_periods(pop, random.Random(3))
    assert min(periods) >= 60.0
    extra = [p - 60.0 for p in periods]
    assert stats.kstest(extra, "expon", args=(0, 1740.0)).pvalue > P_VALUE
    assert stats.kstest(extra, "expon", args=(0, 2100.0)).pvalue < P_VALUE


def test_users_spend_at_different_rates() -> None:
    pop = population(users=20, mean_period_seconds=1800.0, min_period_seconds=60.0)
    counts: dict[str, int] = {}
    for txn in simulate(pop, START, START + timedelta(days=7)):
        counts[txn.user_id] = counts.get(txn.user_id, 0) + 1
    assert set(counts) <= set(user_ids(20))
    assert max(counts.values()) > 3 * min(counts.values())


def test_events_are_in_time_order_inside_the_window() -> None:
    end = START + timedelta(days=2)
    pop = population(users=50, mean_period_seconds=1800.0, min_period_seconds=60.0)
    txns = list(simulate(pop, START, end))
    times = [t.event_time for t in txns]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < end
    assert len({t.transaction_id for t in txns}) == len(txns)
    assert {t.merchant_category for t in txns} <= set(MERCHANT_CATEGORIES)


def test_same_seed_gives_the_same_transactions_and_another_seed_does_not() -> None:
    pop = population(users=30, mean_period_seconds=1800.0, min_period_seconds=60.0)
    first = list(itertools.islice(simulate(pop, START, None), 2000))
    again = list(itertools.islice(simulate(pop, START, None), 2000))
    other = list(itertools.islice(simulate(population(users=30, seed=8), START, None), 2000))
    assert first == again
    assert {t.transaction_id for t in first}.isdisjoint({t.transaction_id for t in other})


def test_batching_and_limit_do_not_change_the_transactions() -> None:
    pop = population(users=10, mean_period_seconds=1800.0, min_period_seconds=60.0)
    request = SimulationRequest(pop, START, None, 1.0, 1234)
    small = [item for batch in encoded_batches(request, batch_size=7) for item in batch]
    large = [item for batch in encoded_batches(request, batch_size=1000) for item in batch]
    assert len(small) == 1234
    assert small == large


def test_user_ids_are_zero_padded() -> None:
    assert user_ids(3) == ["u0001", "u0002", "u0003"]
    assert user_ids(12345)[0] == "u00001"
    assert user_ids(12345)[-1] == "u12345"


def test_encoded_message_and_ledger_row_agree_with_the_transaction() -> None:
    txn = next(simulate(population(), START, None))
    body, attributes, event_us, ledger_row = encode_for_publish(txn)
    assert parse_message(body, START + timedelta(days=1)) == txn
    assert json.loads(body)["amount"] == f"{txn.amount_minor // 100}.{txn.amount_minor % 100:02d}"
    assert attributes == {"event_time": json.loads(body)["event_time"], "schema_version": "1"}
    assert event_us == (txn.event_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    row = next(csv.reader(io.StringIO(",".join(ledger_row))))
    assert row[0] == txn.transaction_id and row[1] == txn.user_id
    assert row[2] == json.loads(body)["amount"]
    assert row[3].endswith("Z") and datetime.fromisoformat(row[3]) == txn.event_time
