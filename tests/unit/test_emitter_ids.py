"""Transaction ids name one transaction: the same inputs give the same ids with the same content,
any change (a window shifted by seconds, another parameter) gives ids never seen before, and ids do
not collide. Checked on the generator (the command against the Pub/Sub emulator is in
tests/integration/test_emitter_command_ids.py)."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.scale import Scale

from common.message import Transaction
from emitter.simulate import CurrencySpend, Population, id_namespace, simulate, transaction_id

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(days=2)
BASE = Population(
    users=40,
    mean_period_seconds=1800.0,
    min_period_seconds=60.0,
    amount_min_minor=2000,
    amount_max_minor=10000,
    currency="USD",
    seed=42,
)
MIX = (
    CurrencySpend("EUR", 0.15, 2000, 10000),
    CurrencySpend("JPY", 0.05, 500, 20000),
    CurrencySpend("USD", 0.8, 2000, 10000),
)


def run_of(
    population: Population = BASE, start: datetime = START, end: datetime = END, scale: float = 1.0
) -> list[Transaction]:
    return list(simulate(population, start, end, scale))


def ids(transactions: list[Transaction]) -> set[str]:
    return {t.transaction_id for t in transactions}


def test_the_same_inputs_give_the_same_ids_and_content() -> None:
    first, again = run_of(), run_of()
    assert len(first) > 3000
    assert first == again  # ids, users, amounts, currencies, times, categories


def test_a_window_shifted_by_31_seconds_shares_no_id() -> None:
    first = run_of()
    shifted = run_of(start=START + timedelta(seconds=31), end=END + timedelta(seconds=31))
    # The case: the same users and amounts 31 s later were given the same ids.
    assert [(t.user_id, t.amount_minor) for t in shifted[:100]] == [(t.user_id, t.amount_minor) for t in first[:100]]
    assert ids(first).isdisjoint(ids(shifted))
    assert ids(first).isdisjoint(ids(run_of(start=START + timedelta(microseconds=1))))


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 43},
        {"users": 41},
        {"mean_period_seconds": 1801.0},
        {"min_period_seconds": 61.0},
        {"amount_min_minor": 2001},
        {"amount_max_minor": 10001},
        {"currency": "EUR"},
        {"mix": MIX},
        {"mix": (*MIX[:2], replace(MIX[2], weight=0.81))},
        {"mix": (*MIX[:2], replace(MIX[2], max_minor=10001))},
    ],
    ids=lambda change: ",".join(change),
)
def test_any_other_parameter_changed_shares_no_id(change: dict[str, object]) -> None:
    changed = run_of(replace(BASE, **change))  # type: ignore[arg-type]
    assert changed and ids(run_of()).isdisjoint(ids(changed))


def test_another_speed_up_shares_no_id() -> None:
    assert ids(run_of()).isdisjoint(ids(run_of(end=START + timedelta(hours=1), scale=60.0)))


def test_a_longer_window_from_the_same_start_repeats_the_shorter_one_exactly() -> None:
    # The end only cuts the same stream: the transactions both windows hold are true duplicates.
    short, long = run_of(end=START + timedelta(hours=20)), run_of()
    assert long[: len(short)] == short and len(long) > len(short)


def test_an_id_is_the_uuid5_of_the_users_position_in_the_runs_namespace() -> None:
    transactions = run_of(replace(BASE, mix=MIX))
    namespace = id_namespace(replace(BASE, mix=MIX), START)
    positions: Counter[str] = Counter()
    for txn in transactions:
        expected = str(uuid.uuid5(namespace, f"{txn.user_id}/{positions[txn.user_id]}"))
        assert txn.transaction_id == expected == transaction_id(namespace, txn.user_id, positions[txn.user_id])
        positions[txn.user_id] += 1
    assert uuid.UUID(transactions[0].transaction_id).version == 5


def test_no_id_collides_over_a_large_sample(scale: Scale) -> None:
    # 100 users over 10 days (about 48,000 transactions; 500 users, about 240,000, with --heavy), and
    # eleven runs a second apart of the first 5,000 (10,000) transactions of another population.
    users, first = (500, 10_000) if scale.heavy else (100, 5_000)
    many = replace(BASE, users=users, mix=MIX)
    seen = [t.transaction_id for t in simulate(many, START, START + timedelta(days=10))]
    for shift in range(1, 12):
        start = START + timedelta(seconds=shift)
        seen += [t.transaction_id for t in itertools.islice(simulate(BASE, start, None), first)]
    assert len(seen) > 400 * users + 11 * first
    assert len(set(seen)) == len(seen)
