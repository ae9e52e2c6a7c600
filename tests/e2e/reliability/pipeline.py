"""Running the pipeline's commands as a user runs them, and checking what they produce against the
emitter's ledger, aggregated independently (DuckDB), never with the code under test.

Expected Bigtable contents come from tests/support/ledger.py (DuckDB over a spool-shaped ledger);
expected /sum answers from a DuckDB range join over the same ledger.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from support.ledger import Contents, assert_contents, expected_contents, read_contents, to_frame
from support.tally import TALLY

from common import clients, jobstate, spool
from common.config import Config
from common.procs import Supervised, TimedOut
from common.timeutil import HOUR_US

ROOT = Path(__file__).resolve().parents[3]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- commands ----------------------------------------------------------------------------------


def write_config(cfg: Config, directory: Path, name: str = "config.json", **changes: object) -> Path:
    """The config as a file the commands read, with `changes` applied."""
    path = directory / name
    path.write_text(json.dumps({**cfg.to_dict(), **changes}), encoding="utf-8")
    return path


def command(module: str, config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", module, "--config", str(config), *args]


def service_env(pubsub: str | None = None, bigtable: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a command: this one, with the emulator hosts replaced when given."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    if pubsub:
        env["PUBSUB_EMULATOR_HOST"] = pubsub
    if bigtable:
        env["BIGTABLE_EMULATOR_HOST"] = bigtable
    return env


def run(
    argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600, expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; with `expect`, assert its exit code."""
    result = subprocess.run(
        list(argv), cwd=ROOT, env=env or service_env(), capture_output=True, text=True, timeout=timeout
    )
    if expect is not None:
        assert result.returncode == expect, f"exit {result.returncode}:\n{result.stderr[-4000:]}"
    return result


class Background(Supervised):
    """A command running in its own process group (so a kill takes its JVM and Python workers too),
    its stdout and stderr going to a log file that the test can read while it runs."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(argv, log, env=env or service_env(), cwd=ROOT)

    def kill(self) -> None:
        """SIGKILL the whole process group, then reap it."""
        self.signal_group(signal.SIGKILL)
        self.wait(timeout=60)

    def wait(self, timeout: float | None = 600) -> int:
        """The exit code; fails the test with the command's output when it runs past `timeout`, its
        Python threads' stacks at the end (SIGUSR1: common/cli.py)."""
        try:
            return super().wait(timeout)
        except TimedOut:
            self.signal(signal.SIGUSR1)
            time.sleep(2)
            raise AssertionError(f"{self.argv} did not end within {timeout:g} s:\n{self.output()[-4000:]}") from None


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300, watch: Background | None = None) -> None:
    """Poll until `condition` holds; fail naming `what` on timeout, or when `watch` dies first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if watch is not None and not watch.running():
            raise AssertionError(f"{what}: the command ended first (exit {watch.returncode}):\n{watch.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


# --- emitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Emission:
    """One emitter run: its seed, population, window and cap on the number of transactions."""

    seed: int
    users: int
    start: datetime
    end: datetime
    limit: int

    def args(self, ledger: Path) -> list[str]:
        return [
            "--seed",
            str(self.seed),
            "--users",
            str(self.users),
            "--start",
            iso(self.start),
            "--end",
            iso(self.end),
            "--limit",
            str(self.limit),
            "--ledger",
            str(ledger),
            "--quiet",
        ]


def recent_window(hours: int = 40) -> tuple[datetime, datetime]:
    """A window ending a minute ago: every event is published well within the late horizon."""
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    return end - timedelta(hours=hours), end


def emit(config: Path, emission: Emission, ledger: Path, env: dict[str, str] | None = None) -> str:
    """Run the emitter to its end; return its summary line, which must report no failure."""
    result = run(command("emitter", config, *emission.args(ledger)), env=env)
    summary = result.stderr.strip().splitlines()[-1]
    assert f"published {emission.limit} transactions, 0 failed" in summary, result.stderr[-2000:]
    return summary


# --- the ledger --------------------------------------------------------------------------------


def read_ledger(*paths: Path) -> pd.DataFrame:
    """The emitter's ledger CSVs as spool-shaped rows, read by DuckDB. An amount is written with
    exactly its currency's places ("12.34" USD, "1234" JPY), so its digits without the point are its
    minor units, exact, never a float. Published at their event time: the windows used here are recent."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    frame = con.execute(
        """
        SELECT transaction_id, user_id,
               CAST(replace(amount, '.', '') AS BIGINT) AS amount_minor,
               currency, 'unknown' AS merchant_category,
               CAST(event_time AS TIMESTAMPTZ) AS event_time,
               CAST(event_time AS TIMESTAMPTZ) AS publish_time,
               transaction_id AS message_id
        FROM read_csv($paths, header = true, all_varchar = true)
        """,
        {"paths": [str(p) for p in paths]},
    ).df()
    assert frame["transaction_id"].is_unique, "the ledger lists a transaction twice"
    return to_frame(frame)


# --- checks ------------------------------------------------------------------------------------


def count_differences(actual: Contents, expected: Contents) -> dict[str, tuple[int, int]]:
    """Per family: (values compared, values that differ), a missing or extra row counting as one.
    A transaction row is compared on amount, currency and event time (the emitter's ledger does
    not record the merchant category)."""
    out = {}
    actual = replace(actual, transactions={k: (v[0], v[1], v[3]) for k, v in actual.transactions.items()})
    expected = replace(expected, transactions={k: (v[0], v[1], v[3]) for k, v in expected.transactions.items()})
    for name, label in (
        ("buckets", "user-hour buckets"),
        ("transactions", "transaction rows"),
        ("minutes", "minute totals"),
        ("top", "top-spender cells"),
    ):
        got, want = getattr(actual, name), getattr(expected, name)
        keys = got.keys() | want.keys()
        out[label] = (len(keys), sum(1 for key in keys if got.get(key) != want.get(key)))
    out["directory users"] = (len(actual.users | expected.users), len(actual.users ^ expected.users))
    return out


def reconcile(table: Any, ledger: pd.DataFrame, late_horizon_hours: int) -> Contents:
    """Bigtable against the ledger, family by family: counted in the tally, then asserted equal."""
    actual = read_contents(table)
    expected = expected_contents(ledger, late_horizon_hours)
    for label, (compared, differing) in count_differences(actual, expected).items():
        TALLY.checked(label, compared, differing)
    assert_contents(actual, expected, categories=False)
    assert len(expected.buckets) > 0
    return actual


def iso(value: datetime | int) -> str:
    """RFC 3339 with microseconds, from an aware datetime or epoch microseconds."""
    if isinstance(value, int):
        value = EPOCH + timedelta(microseconds=value)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Hand-written ISO 4217 exponents of the currencies the suite emits, for the expected strings.
PLACES = {"USD": 2, "EUR": 2, "JPY": 0, "BHD": 3}


def money(minor: int, currency: str = "USD") -> str:
    """Minor units as the API must write them: the currency's own number of places."""
    places = PLACES[currency]
    return str((Decimal(minor).scaleb(-places)).quantize(Decimal(1).scaleb(-places)))


def random_ranges(ledger: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """`count` (user, [start_us, end_us)) ranges, none hour-aligned on purpose: random spans from a
    microsecond to two days, spans whose ends are exact event times (from inclusive, to exclusive),
    and users without a transaction."""
    rng = random.Random(seed)
    micros = (ledger["event_time"].astype("int64")).tolist()
    users = ledger["user_id"].tolist()
    names = [*sorted(set(users)), "nobody", "u0"]
    low, high = min(micros), max(micros)
    rows = []
    for index in range(count):
        kind = index % 4
        if kind == 0:  # anywhere, up to six hours
            user = rng.choice(names)
            start = rng.randrange(low - HOUR_US, high + HOUR_US)
            end = start + rng.randrange(1, 6 * HOUR_US)
        elif kind == 1:  # long, across many whole hours
            user = rng.choice(names)
            start = rng.randrange(low - HOUR_US, high)
            end = start + rng.randrange(HOUR_US, 48 * HOUR_US)
        elif kind == 2:  # both ends on event times of this user
            pick = rng.randrange(len(micros))
            user, start = users[pick], micros[pick]
            end = micros[rng.randrange(len(micros))]
            start, end = min(start, end), max(start, end)
        else:  # a few microseconds around one event
            pick = rng.randrange(len(micros))
            user = users[pick]
            start = micros[pick] - rng.randrange(0, 3)
            end = start + rng.randrange(0, 5)
        rows.append((index, user, start, end))
    return pd.DataFrame(rows, columns=["id", "user_id", "start_us", "end_us"])


def expected_sums(ledger: pd.DataFrame, ranges: pd.DataFrame) -> dict[int, dict[str, tuple[int, int]]]:
    """Per range id and currency: (sum in minor units, count) of the ledger's transactions in it,
    by a DuckDB join; a range without any transaction maps to {}."""
    con = duckdb.connect()
    con.register("ledger", ledger)
    con.register("ranges", ranges)
    rows = con.execute(
        """
        SELECT r.id, l.currency, SUM(l.amount_minor)::BIGINT, COUNT(*)
        FROM ranges r JOIN ledger l
          ON l.user_id = r.user_id AND epoch_us(l.event_time) >= r.start_us AND epoch_us(l.event_time) < r.end_us
        GROUP BY r.id, l.currency
        """
    ).fetchall()
    out: dict[int, dict[str, tuple[int, int]]] = {int(i): {} for i in ranges["id"]}
    for i, currency, total, count in rows:
        out[int(i)][currency] = (int(total), int(count))
    return out


def check_sums(cfg: Config, ledger: pd.DataFrame, count: int, seed: int) -> int:
    """`count` random ranges through /api/v1/users/<id>/sum and the original /sum (alternately) of
    a Flask test client over the table, each equal to the ledger. Returns how many were checked."""
    from webapp import create_app

    ranges = random_ranges(ledger, count, seed)
    expected = expected_sums(ledger, ranges)
    client = create_app(cfg).test_client()
    currencies = sorted({c for per in expected.values() for c in per} | {cfg.currency})
    wrong = []
    for index, user, start, end in ranges.itertuples(index=False):
        currency = currencies[index % len(currencies)]
        window = {"from": iso(int(start)), "to": iso(int(end)), "currency": currency}
        if index % 2:
            response = client.get(f"/api/v1/users/{user}/sum", query_string=window)
        else:
            response = client.get("/sum", query_string={"user_id": user, **window})
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        want = expected[index]
        total, n = want.get(currency, (0, 0))
        by_currency = [{"currency": c, "sum": money(t, c), "count": k} for c, (t, k) in sorted(want.items())]
        if (body["currency"], body["sum"], body["count"], body["by_currency"]) != (
            currency,
            money(total, currency),
            n,
            by_currency,
        ):
            wrong.append((user, window, body, money(total, currency), n, by_currency))
    TALLY.checked("random /sum ranges", len(ranges), len(wrong))
    assert wrong == []
    return len(ranges)


def publish_copies(cfg: Config, rows: pd.DataFrame) -> int:
    """Publish spool-shaped rows as transaction messages (copies of ids the ledger holds, with other
    content), through the project's own message encoding. Returns how many were confirmed."""
    from common.message import Transaction

    publisher = clients.publisher_client(cfg)
    futures = [
        publisher.publish(
            clients.topic_path(cfg),
            Transaction(
                r.transaction_id,
                r.user_id,
                int(r.amount_minor),
                r.currency,
                r.event_time.to_pydatetime(),
                "unknown",
            ).encode(),
        )
        for r in rows.itertuples(index=False)
    ]
    return sum(1 for future in futures if future.result(timeout=60))


def spool_rows(spool_dir: str) -> pd.DataFrame:
    """Every row of the spool's complete transaction files."""
    import pyarrow.parquet as pq

    files = spool.list_files(spool_dir, spool.TRANSACTIONS)
    if not files:
        return pd.DataFrame(columns=spool.TRANSACTION_SCHEMA.names)
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def all_counted(cfg: Config, table: Any) -> bool:
    """True when no run is pending and every complete spool file has been processed."""
    status = jobstate.read_job_status(table)
    return bool(status) and not status.get("pending") and jobstate.spool_backlog(cfg, table) == 0  # type: ignore[union-attr]
