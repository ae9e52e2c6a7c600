"""The simulation's statistics and determinism, checked against the distributions the config
describes (Kolmogorov-Smirnov), not against the code's own numbers."""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy import stats

from common.config import Config, ConfigError, from_dict, load_config
from common.message import Transaction, parse_message
from emitter.producer import SimulationRequest, encode_for_publish, encoded_batches
from emitter.simulate import MERCHANT_CATEGORIES, CurrencySpend, Population, draw_periods, simulate, user_ids

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1, tzinfo=UTC)
P_VALUE = 0.001


def population(**changes: object) -> Population:
    values: dict[str, object] = {
        "users": 1,
        "mean_period_seconds": 600.0,
        "min_period_seconds": 600.0,  # min == mean: every user's mean period is exactly 600 s
        "amount_min_minor": 2000,
        "amount_max_minor": 10000,
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
    txns = list(itertools.islice(simulate(population(amount_min_minor=1, amount_max_minor=3), START, None), 300))
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
    assert row[2] == json.loads(body)["amount"] and row[3] == "USD"
    assert row[4].endswith("Z") and datetime.fromisoformat(row[4]) == txn.event_time


# --- the currency mix ----------------------------------------------------------------------------

MIX = (
    CurrencySpend("EUR", 0.15, 1000, 5000),
    CurrencySpend("JPY", 0.05, 500, 20000),
    CurrencySpend("USD", 0.8, 2000, 10000),
)


def test_the_observed_currency_mix_matches_the_weights() -> None:
    txns = list(itertools.islice(simulate(population(users=20, mix=MIX), START, None), 20_000))
    observed = [sum(1 for t in txns if t.currency == code) for code in ("EUR", "JPY", "USD")]
    assert stats.chisquare(observed, [20_000 * w for w in (0.15, 0.05, 0.8)]).pvalue > P_VALUE
    # The test can fail: other weights are rejected.
    assert stats.chisquare(observed, [20_000 * w for w in (0.2, 0.05, 0.75)]).pvalue < P_VALUE
    assert stats.chisquare(observed, [20_000 * w for w in (0.15, 0.1, 0.75)]).pvalue < P_VALUE


def test_amounts_are_uniform_in_each_currencys_minor_units_over_its_range() -> None:
    txns = list(itertools.islice(simulate(population(users=20, mix=MIX), START, None), 30_000))
    for code, low, high in (("EUR", 1000, 5000), ("JPY", 500, 20000), ("USD", 2000, 10000)):
        units = [t.amount_minor for t in txns if t.currency == code]
        assert len(units) > 1000 and min(units) >= low and max(units) <= high
        assert stats.kstest(units, "uniform", args=(low, high - low)).pvalue > P_VALUE
        assert stats.kstest(units, "uniform", args=(low, (high - low) * 1.2)).pvalue < P_VALUE


def test_inter_arrival_times_stay_exponential_with_a_mix() -> None:
    txns = list(itertools.islice(simulate(population(mix=MIX), START, None), 5000))
    gaps = [(b.event_time - a.event_time).total_seconds() for a, b in itertools.pairwise(txns)]
    assert stats.kstest(gaps, "expon", args=(0, 600.0)).pvalue > P_VALUE
    assert stats.kstest(gaps, "expon", args=(0, 690.0)).pvalue < P_VALUE


def test_a_mix_is_drawn_the_same_for_the_same_seed() -> None:
    first = list(itertools.islice(simulate(population(users=5, mix=MIX), START, None), 3000))
    again = list(itertools.islice(simulate(population(users=5, mix=MIX), START, None), 3000))
    assert first == again
    assert [t.currency for t in first] != [t.currency for t in simulate_n(population(users=5, mix=MIX, seed=8), 3000)]


def simulate_n(pop: Population, count: int) -> list[Transaction]:
    return list(itertools.islice(simulate(pop, START, None), count))


def config(**values: object) -> Config:
    return from_dict({"currency": "USD", **values})


def test_the_default_config_spends_only_in_currency() -> None:
    assert Population.from_config(load_config(ROOT / "config.sample.json")).spends() == (
        CurrencySpend("USD", 1.0, 2000, 10000),
    )
    cfg = config(currency="JPY", amount_min="500", amount_max="20000")
    assert Population.from_config(cfg).spends() == (CurrencySpend("JPY", 1.0, 500, 20000),)
    assert {t.currency for t in simulate_n(Population.from_config(cfg), 200)} == {"JPY"}


def test_mix_ranges_come_from_currency_amounts_or_the_same_minor_units_as_currency() -> None:
    cfg = config(
        currency_mix={"USD": 8, "JPY": 1, "BHD": 0.5, "EUR": 1.5},
        currency_amounts={"JPY": ["500", "20000"], "BHD": ["1.25", "9.999"]},
    )
    assert Population.from_config(cfg).spends() == (
        CurrencySpend("BHD", 0.5, 1250, 9999),
        CurrencySpend("EUR", 1.5, 2000, 10000),  # no entry: 20.00..100.00, as many minor units as USD's
        CurrencySpend("JPY", 1.0, 500, 20000),
        CurrencySpend("USD", 8.0, 2000, 10000),
    )


@pytest.mark.parametrize(
    ("amount_minor", "currency", "written"),
    [(1234, "USD", "12.34"), (1234, "JPY", "1234"), (1234, "BHD", "1.234"), (5, "EUR", "0.05")],
)
def test_the_ledger_row_writes_the_amount_in_its_currencys_places(
    amount_minor: int, currency: str, written: str
) -> None:
    txn = Transaction("t1", "u0001", amount_minor, currency, START, "grocery")
    _, _, _, row = encode_for_publish(txn)
    assert row == ("t1", "u0001", written, currency, "2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("values", "key", "expected"),
    [
        ({"currency_mix": "USD"}, "currency_mix", "an object of ISO 4217 code -> weight > 0"),
        ({"currency_mix": {"USD": 1, "XYZ": 1}}, "currency_mix", "ISO 4217 codes"),
        ({"currency_mix": {"usd": 1}}, "currency_mix", "ISO 4217 codes"),
        ({"currency_mix": {"EUR": 0}}, "currency_mix", "give EUR a weight > 0"),
        ({"currency_mix": {"EUR": -1}}, "currency_mix", "give EUR a weight > 0"),
        ({"currency_mix": {"EUR": True}}, "currency_mix", "give EUR a weight > 0"),
        ({"currency_mix": {"EUR": "0.5"}}, "currency_mix", "give EUR a weight > 0"),
        ({"currency_amounts": ["20", "30"]}, "currency_amounts", "an object of ISO 4217 code"),
        ({"currency_amounts": {"GBP": ["1.00", "2.00"]}}, "currency_amounts", "names 'GBP', not spent (spent: USD)"),
        ({"currency_mix": {"JPY": 1}, "currency_amounts": {"JPY": ["20.50", "100"]}}, "currency_amounts", "in JPY"),
        ({"currency_mix": {"JPY": 1}, "currency_amounts": {"JPY": [500, 900]}}, "currency_amounts", "in JPY"),
        ({"currency_mix": {"JPY": 1}, "currency_amounts": {"JPY": ["900", "500"]}}, "currency_amounts", "min <= max"),
        ({"currency_mix": {"JPY": 1}, "currency_amounts": {"JPY": "500"}}, "currency_amounts", '["min", "max"]'),
        ({"currency": "JPY", "amount_min": "20.50"}, "amount_min", "an amount in JPY (at most 0 places)"),
        ({"currency": "ABC"}, "currency", "an ISO 4217 code"),
    ],
)
def test_a_wrong_currency_setting_gets_one_line_naming_the_key(
    values: dict[str, object], key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config(**values)
    message = str(info.value)
    assert message.startswith(f"config key '{key}'") and expected in message and "\n" not in message
