"""Transaction ids name one transaction: the same inputs give the same ids with the same content,
any change (a window shifted by seconds, another parameter) gives ids never seen before, and ids do
not collide. Checked on the generator and on the `python -m emitter` command against the Pub/Sub
emulator, its ledgers compared with pandas."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from common.config import Config
from common.message import Transaction
from emitter.simulate import CurrencySpend, Population, id_namespace, simulate, transaction_id

ROOT = Path(__file__).resolve().parent.parent
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


def test_no_id_collides_over_a_large_sample() -> None:
    # 500 users over 10 days (about 240,000 transactions), and eleven runs a second apart of the
    # first 10,000 transactions of another population.
    many = replace(BASE, users=500, mix=MIX)
    seen = [t.transaction_id for t in simulate(many, START, START + timedelta(days=10))]
    for shift in range(1, 12):
        start = START + timedelta(seconds=shift)
        seen += [t.transaction_id for t in itertools.islice(simulate(BASE, start, None), 10_000)]
    assert len(seen) > 300_000
    assert len(set(seen)) == len(seen)


# --- the command --------------------------------------------------------------------------------


def emit(config: Path, ledger: Path, *window: str) -> str:
    argv = [sys.executable, "-m", "emitter", "--config", str(config), *window]
    argv += ["--users", "30", "--limit", "3000", "--ledger", str(ledger), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def read_ledger(path: Path) -> pd.DataFrame:
    ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(ledger.columns) == ["transaction_id", "user_id", "amount", "currency", "event_time"]
    return ledger.sort_values("transaction_id").reset_index(drop=True)


def test_the_same_command_and_window_twice_publishes_the_same_ledger(cfg: Config, tmp_path: Path) -> None:
    mix = {"currency_mix": {"USD": 0.8, "EUR": 0.15, "JPY": 0.05}, "currency_amounts": {"JPY": ["500", "20000"]}}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**cfg.to_dict(), **mix}), encoding="utf-8")
    window = ("--start", "2026-11-01T00:00:00.250000Z", "--end", "2026-11-03T00:00:00Z")
    shifted = ("--start", "2026-11-01T00:00:31.250000Z", "--end", "2026-11-03T00:00:31Z")
    log = emit(config, tmp_path / "first.csv", *window)
    assert "in EUR 15%, JPY 5%, USD 80%, 2026-11-01T00:00:00.250000Z .. 2026-11-03T00:00:00Z" in log
    emit(config, tmp_path / "again.csv", *window)
    emit(config, tmp_path / "shifted.csv", *shifted)
    emit(config, tmp_path / "relative1.csv", "--start", "-30h")
    emit(config, tmp_path / "relative2.csv", "--start", "-30h")

    first, again = read_ledger(tmp_path / "first.csv"), read_ledger(tmp_path / "again.csv")
    assert len(first) == 3000 and first["transaction_id"].is_unique
    pd.testing.assert_frame_equal(first, again)  # a true duplicate, row for row
    assert set(first["transaction_id"]).isdisjoint(read_ledger(tmp_path / "shifted.csv")["transaction_id"])
    relative = [read_ledger(tmp_path / f"relative{i}.csv") for i in (1, 2)]
    assert set(relative[0]["transaction_id"]).isdisjoint(relative[1]["transaction_id"])

    # Each amount is written with its currency's places (ISO 4217: JPY none, USD and EUR two).
    by_currency = first.groupby("currency")["amount"]
    assert set(by_currency.groups) == {"EUR", "JPY", "USD"}
    assert by_currency.get_group("JPY").str.fullmatch(r"\d+").all()
    assert by_currency.get_group("JPY").astype(int).between(500, 20000).all()
    for code in ("EUR", "USD"):
        amounts = by_currency.get_group(code)
        assert amounts.str.fullmatch(r"\d+\.\d\d").all()
        assert amounts.map(lambda text: 20 <= float(text) <= 100).all()
