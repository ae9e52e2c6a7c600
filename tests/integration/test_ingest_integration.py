"""The ingest stage end to end on the real Pub/Sub emulator: the emitter and spooler commands as a
user runs them, the spool checked against the emitter's ledger with pandas."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from common import clients, spool
from common.config import Config
from common.message import Transaction
from emitter.publish import TransactionPublisher
from jobs.spooler.spooler import Spooler

ROOT = Path(__file__).resolve().parents[2]


def write_config(cfg: Config, tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**cfg.to_dict(), **changes}), encoding="utf-8")
    return path


def command(module: str, config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", module, "--config", str(config), *args]


def run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def start(argv: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_start(process: subprocess.Popen[str], prefix: str, timeout: float = 120) -> None:
    """Block until the command logs its start line (it has installed its signal handlers by then)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 1.0)
        if ready:
            line = process.stderr.readline()
            assert line, f"{prefix} exited before starting"
            if line.startswith(prefix):
                return
    raise AssertionError(f"{prefix} did not start within {timeout} s")


# ISO 4217 minor-unit digits of the currencies these tests spend, written out here.
PLACES = {"USD": 2, "EUR": 2, "JPY": 0, "BHD": 3}


def read_ledger(path: Path) -> pd.DataFrame:
    ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(ledger.columns) == ["transaction_id", "user_id", "amount", "currency", "event_time"]
    for currency, amounts in ledger.groupby("currency")["amount"]:
        places = PLACES[str(currency)]
        assert amounts.str.fullmatch(r"-?\d+" + (rf"\.\d{{{places}}}" if places else "")).all(), currency
    assert ledger["event_time"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z").all()
    # Written with exactly its currency's places, an amount's digits are its minor units.
    ledger["amount_minor"] = [int(a.replace(".", "")) for a in ledger["amount"]]
    ledger["event_time"] = pd.to_datetime(ledger["event_time"], utc=True, format="ISO8601")
    return ledger


def read_spool(spool_dir: str, kind: str = spool.TRANSACTIONS) -> pd.DataFrame:
    files = spool.list_files(spool_dir, kind)
    if not files:
        return pd.DataFrame(columns=spool.TRANSACTION_SCHEMA.names)
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def assert_spool_holds_ledger(spooled: pd.DataFrame, ledger: pd.DataFrame) -> None:
    """Every ledger transaction is spooled with its user, amount and event time; nothing else is."""
    assert set(spooled["transaction_id"]) == set(ledger["transaction_id"])
    unique = spooled.drop_duplicates("transaction_id")
    merged = ledger.merge(unique, on="transaction_id", suffixes=("_ledger", "_spool"))
    assert len(merged) == len(ledger)
    assert (merged["user_id_ledger"] == merged["user_id_spool"]).all()
    assert (merged["amount_minor_ledger"] == merged["amount_minor_spool"]).all()
    assert (merged["currency_ledger"] == merged["currency_spool"]).all()
    assert (merged["event_time_ledger"] == merged["event_time_spool"]).all()


def test_published_transactions_are_exactly_the_spooled_ones(cfg: Config, tmp_path: Path) -> None:
    config = write_config(cfg, tmp_path, spool_roll_messages=300)
    ledger_path = tmp_path / "ledger.csv"
    simulation = ("--users", "20", "--seed", "5", "--start", "-30d", "--end", "now", "--limit", "2000")
    emitted = run(command("emitter", config, *simulation, "--ledger", str(ledger_path), "--quiet"))
    assert "published 2000 transactions, 0 failed" in emitted.stderr.splitlines()[-1]
    spooled = run(command("jobs.spooler", config, "--until-idle", "2", "--quiet"))
    assert "spooled 2000 transactions, dead-lettered 0" in spooled.stderr.splitlines()[-1]

    ledger = read_ledger(ledger_path)
    assert len(ledger) == 2000 and ledger["user_id"].nunique() > 1
    table = read_spool(cfg.spool_dir)
    assert len(table) == 2000  # exactly once on the normal path
    assert_spool_holds_ledger(table, ledger)
    assert len(spool.list_files(cfg.spool_dir, spool.TRANSACTIONS)) >= 2000 // 300  # rolled by count
    assert spool.list_files(cfg.spool_dir, spool.DEAD_LETTER) == []
    publish_times = table["publish_time"]
    assert (publish_times > pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=5)).all()

    # Everything was acked: a second run finds nothing.
    again = run(command("jobs.spooler", config, "--until-idle", "1", "--quiet"))
    assert "spooled 0 transactions, dead-lettered 0" in again.stderr.splitlines()[-1]


def test_malformed_messages_are_dead_lettered_with_their_reason_and_good_ones_spooled(cfg: Config) -> None:
    clients.ensure_subscription(cfg)
    now = datetime.now(UTC).replace(microsecond=0)
    good = [
        Transaction(f"good-{i}", f"u{i % 7}", 100 * i + 1 - (i % 3) * 5000, "USD", now - timedelta(minutes=i), "fuel")
        for i in range(40)
    ]
    valid = json.loads(good[0].encode())
    bad = {
        b"{this is not json": "bad_json",
        b"[1, 2]": "bad_json",
        b"\xff\xfe\x00": "bad_encoding",
        json.dumps({**valid, "user_id": "u#1"}).encode(): "bad_user_id",
        json.dumps({**valid, "amount": "NaN"}).encode(): "non_finite_amount",
        json.dumps({**valid, "amount": "99999999.00"}).encode(): "absurd_amount",
        json.dumps({**valid, "amount": "1.234"}).encode(): "too_many_decimals",
        json.dumps({**valid, "amount": True}).encode(): "bad_type",
        json.dumps({k: v for k, v in valid.items() if k != "event_time"}).encode(): "missing_field",
        json.dumps({**valid, "event_time": "2026-11-21 08:00"}).encode(): "bad_event_time",
        json.dumps({**valid, "event_time": "1970-01-02T00:00:00Z"}).encode(): "absurd_event_time",
        json.dumps({**valid, "padding": "x" * 9000}).encode(): "oversize",
        b"u1,12.50,notatime": "bad_event_time",
    }
    csv_line = f"u0099,-7.25,{int(now.timestamp())}".encode()
    publisher = clients.publisher_client(cfg)
    topic = clients.topic_path(cfg)
    futures = []
    bad_items = list(bad.items())
    for i, txn in enumerate(good):  # bad messages interleaved with the good ones
        futures.append(publisher.publish(topic, txn.encode(), **txn.attributes()))
        if i < len(bad_items):
            futures.append(publisher.publish(topic, bad_items[i][0], case=str(i)))
    futures.append(publisher.publish(topic, csv_line))
    message_ids = [f.result(timeout=30) for f in futures]
    assert len(set(message_ids)) == len(good) + len(bad) + 1

    stats = Spooler(replace(cfg, spool_roll_messages=16), until_idle=2).run()

    assert (stats.spooled, stats.dead_lettered) == (len(good) + 1, len(bad))
    spooled = read_spool(cfg.spool_dir)
    assert len(spooled) == len(good) + 1
    by_id = spooled.set_index("transaction_id")
    assert set(by_id.index[by_id["user_id"] != "u0099"]) == {t.transaction_id for t in good}
    for txn in good:
        assert by_id.loc[txn.transaction_id, "amount_minor"] == txn.amount_minor
        assert by_id.loc[txn.transaction_id, "event_time"] == pd.Timestamp(txn.event_time)
    csv_row = by_id[by_id["user_id"] == "u0099"].iloc[0]
    assert csv_row.name.startswith("csv-")
    assert csv_row["amount_minor"] == -725 and csv_row["event_time"] == pd.Timestamp(now)

    dead = read_spool(cfg.spool_dir, spool.DEAD_LETTER)
    assert sorted(zip(dead["payload"], dead["reason"], strict=True)) == sorted(bad.items())
    assert dead["detail"].str.len().min() > 0
    for _, row in dead.iterrows():
        case = int(json.loads(row["attributes"])["case"])
        assert bytes(row["payload"]) == bad_items[case][0]
    assert set(dead["message_id"]) <= set(message_ids)


def test_a_currency_mix_reaches_the_spool_in_each_currencys_minor_units(cfg: Config, tmp_path: Path) -> None:
    mix = {"USD": 0.6, "EUR": 0.2, "JPY": 0.1, "BHD": 0.1}
    config = write_config(cfg, tmp_path, currency_mix=mix, currency_amounts={"JPY": ["100", "50000"]})
    ledger_path = tmp_path / "ledger.csv"
    run(command("emitter", config, "--users", "20", "--start", "-10d", "--limit", "3000", "--ledger", str(ledger_path)))
    spooled = run(command("jobs.spooler", config, "--until-idle", "2", "--quiet"))
    assert "spooled 3000 transactions, dead-lettered 0" in spooled.stderr.splitlines()[-1]

    ledger = read_ledger(ledger_path)
    assert ledger["currency"].value_counts().to_dict().keys() == mix.keys()
    assert_spool_holds_ledger(read_spool(cfg.spool_dir), ledger)
    jpy = ledger.loc[ledger["currency"] == "JPY", "amount_minor"]
    assert jpy.between(100, 50000).all() and jpy.max() > 10_000  # its own range, in whole yen
    bhd = ledger.loc[ledger["currency"] == "BHD", "amount_minor"]
    assert bhd.between(2000, 10000).all()  # no entry: as many minor units (fils) as USD's 20.00..100.00


def test_spooler_killed_mid_run_loses_nothing_after_a_restart(cfg: Config, tmp_path: Path) -> None:
    # A short ack deadline, so what the killed spooler held comes back within seconds.
    clients.ensure_subscription(cfg, ack_deadline_seconds=10)
    config = write_config(cfg, tmp_path, spool_roll_messages=250)
    ledger_path = tmp_path / "ledger.csv"
    run(command("emitter", config, "--start", "-3650d", "--limit", "20000", "--ledger", str(ledger_path), "--quiet"))

    spooler = start(command("jobs.spooler", config, "--quiet"))
    deadline = time.monotonic() + 120
    while len(spool.list_files(cfg.spool_dir, spool.TRANSACTIONS)) < 3:
        assert spooler.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    spooler.send_signal(signal.SIGKILL)
    spooler.communicate(timeout=10)  # waits, and closes its pipes
    rows_at_kill = spool.count_rows(spool.list_files(cfg.spool_dir, spool.TRANSACTIONS))
    assert 0 < rows_at_kill < 20000  # it really was killed mid-run

    # Restarted, the spooler drains the rest at once and gets what the killed run had pulled back
    # once its ack deadline expires.
    ledger = read_ledger(ledger_path)
    restarted = start(command("jobs.spooler", config, "--quiet"))
    deadline = time.monotonic() + 90
    while not set(ledger["transaction_id"]) <= set(read_spool(cfg.spool_dir)["transaction_id"]):
        assert restarted.poll() is None and time.monotonic() < deadline, "transactions still missing"
        time.sleep(0.5)
    restarted.send_signal(signal.SIGTERM)
    _, stderr = restarted.communicate(timeout=30)
    assert restarted.returncode == 0, stderr
    assert_spool_holds_ledger(read_spool(cfg.spool_dir), ledger)  # duplicates allowed, nothing lost


def test_sigterm_flushes_what_the_spooler_holds_and_exits_cleanly(cfg: Config, tmp_path: Path) -> None:
    clients.ensure_subscription(cfg)
    publisher = TransactionPublisher(cfg)
    now = datetime.now(UTC)
    for i in range(500):
        publisher.publish(Transaction(f"t{i}", "u1", 2000 + i, "USD", now - timedelta(seconds=i), "online"))
    assert publisher.close().published == 500
    # Nothing rolls by count or age during the run: only the shutdown can write a file.
    config = write_config(cfg, tmp_path, spool_roll_messages=100_000, spool_roll_seconds=3600.0)
    spooler = start(command("jobs.spooler", config, "--quiet"))
    wait_for_start(spooler, "spooler: ")
    time.sleep(2)
    assert spool.list_files(cfg.spool_dir, spool.TRANSACTIONS) == []
    spooler.send_signal(signal.SIGTERM)
    _, stderr = spooler.communicate(timeout=60)
    assert spooler.returncode == 0, stderr
    files = spool.list_files(cfg.spool_dir, spool.TRANSACTIONS)
    held = spool.count_rows(files)
    assert len(files) == 1 and held > 0
    assert f"spooled {held} transactions" in stderr.splitlines()[-1]
    # What it wrote was acked, and what it had not pulled is still there: no loss, no duplicate.
    run(command("jobs.spooler", config, "--until-idle", "2", "--quiet"))
    spooled = read_spool(cfg.spool_dir)
    assert len(spooled) == 500 and set(spooled["transaction_id"]) == {f"t{i}" for i in range(500)}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_live_mode_paces_by_the_wall_clock_until_stopped(cfg: Config, tmp_path: Path, stop_signal: int) -> None:
    config = write_config(cfg, tmp_path)
    ledger_path = tmp_path / "ledger.csv"
    started = pd.Timestamp.now(tz="UTC")
    simulation = ("--live", "--speedup", "3600", "--users", "50")
    live = start(command("emitter", config, *simulation, "--ledger", str(ledger_path), "--quiet"))
    wait_for_start(live, "emitter: ")
    time.sleep(2)
    live.send_signal(stop_signal)
    _, stderr = live.communicate(timeout=30)
    stopped = pd.Timestamp.now(tz="UTC")
    assert live.returncode == 0, stderr
    assert "stopped by signal" in stderr.splitlines()[-1]
    ledger = read_ledger(ledger_path)
    assert 20 < len(ledger) < 5000  # ~100 a second for a few seconds, not a burst of simulated time
    assert (ledger["event_time"] >= started).all()
    assert (ledger["event_time"] <= stopped).all()  # never ahead of the wall clock


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("module", ["emitter", "jobs.spooler"])
def test_unreachable_pubsub_is_one_clear_line_and_exit_3(cfg: Config, tmp_path: Path, module: str) -> None:
    host = f"127.0.0.1:{_closed_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PUBSUB_EMULATOR_HOST": host}
    result = subprocess.run(
        command(module, write_config(cfg, tmp_path), "--quiet"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach Pub/Sub") and host in last
