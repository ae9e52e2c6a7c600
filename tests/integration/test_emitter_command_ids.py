"""Transaction ids name one transaction, checked on the `python -m emitter` command against the
Pub/Sub emulator: the same command and window twice publish the same ledger (compared with pandas).
The generator's own id rules are in tests/unit/test_emitter_ids.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from common.config import Config

ROOT = Path(__file__).resolve().parents[2]


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
