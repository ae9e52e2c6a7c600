"""Ledgers, spools and independent expectations for the aggregation job's tests.

A ledger is the truth: one row per distinct transaction, with the time it was first published.
Spools are written from ledgers (plus duplicate copies) with the spool's own atomic writer, and
the expected Bigtable contents are computed from the ledger with DuckDB, never with the job's code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from common import rowkeys, spool, store
from common.config import Config

BASE = datetime(2026, 11, 1, tzinfo=UTC)
USERS = ["u1", "u10", "u2", "u3", "u42", "alice", "bob.k", "c_9"]
CATEGORIES = ["grocery", "fuel", "online", "travel"]


def make_ledger(
    tag: str,
    count: int,
    first_hour: int = 0,
    hours: int = 6,
    seed: int = 1,
    publish_lag: timedelta = timedelta(seconds=2),
    currencies: tuple[str, ...] = ("USD",),
) -> pd.DataFrame:
    """`count` distinct transactions of USERS with event times over `hours` hours from BASE +
    first_hour, about one in ten a refund, some exactly on an hour edge, published `publish_lag`
    after their event (plus up to a second), each in one of `currencies` (amounts in its minor units)."""
    rng = random.Random(f"{tag}-{seed}")
    start = BASE + timedelta(hours=first_hour)
    rows = []
    for i in range(count):
        if i % 17 == 0:  # exactly on an hour edge, or the last microsecond before one
            event = start + timedelta(hours=rng.randrange(hours)) - timedelta(microseconds=i % 2)
            event = max(event, start)
        else:
            event = start + timedelta(microseconds=rng.randrange(hours * 3_600_000_000))
        cents = rng.randrange(1, 20_000)
        if rng.random() < 0.1:
            cents = -rng.randrange(1, 5_000)
        published = event + publish_lag + timedelta(microseconds=rng.randrange(1_000_000))
        rows.append(
            {
                "transaction_id": f"{tag}-{i:06d}",
                "user_id": rng.choice(USERS),
                "amount_minor": cents,
                "currency": currencies[i % len(currencies)],
                "merchant_category": rng.choice(CATEGORIES),
                "event_time": event,
                "publish_time": published,
                "message_id": f"m-{tag}-{i:06d}",
            }
        )
    return to_frame(rows)


def to_frame(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=spool.TRANSACTION_SCHEMA.names)
    for column in ("event_time", "publish_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    frame["amount_minor"] = frame["amount_minor"].astype("int64")
    return frame


def duplicates_of(ledger: pd.DataFrame, fraction: float, seed: int, delay: timedelta) -> pd.DataFrame:
    """Copies of a sample of the ledger: same transaction, published `delay` later, new message id."""
    copies = ledger.sample(frac=fraction, random_state=seed).copy()
    copies["publish_time"] = copies["publish_time"] + delay
    copies["message_id"] = copies["message_id"] + f"-dup{seed}"
    return to_frame(copies)


def write_spool(cfg: Config, rows: pd.DataFrame, files: int, seed: int = 0) -> list[Path]:
    """Shuffle the rows (arrival order is not event order) and write them as `files` spool files."""
    shuffled = rows.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    paths = []
    for index in range(files):
        part = shuffled.iloc[index::files]
        table = pa.Table.from_pandas(part, schema=spool.TRANSACTION_SCHEMA, preserve_index=False)
        paths.append(spool.write_atomic(table, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS)))
    return paths


@dataclass
class Contents:
    """A table's data, by family, in plain values."""

    transactions: dict[tuple[str, int, str], tuple[int, str, str, str]] = field(default_factory=dict)
    buckets: dict[tuple[str, int, str], tuple[int, int]] = field(default_factory=dict)  # (user, hour, currency)
    minutes: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)  # (minute, currency)
    top: dict[tuple[int, int, str, str], int] = field(default_factory=dict)  # (span h, start, currency, user)
    blocks: dict[tuple[str, int, int, str], tuple[int, int]] = field(default_factory=dict)  # (user, span, start, cur)
    top_hours: set[tuple[str, int]] = field(default_factory=set)  # (currency, hour) of the ~tophours# markers
    users: set[str] = field(default_factory=set)
    # (user, hour, currency, category), (hour, currency, category), (minute, currency, category)
    user_categories: dict[tuple[str, int, str, str], tuple[int, int]] = field(default_factory=dict)
    hour_categories: dict[tuple[int, str, str], tuple[int, int]] = field(default_factory=dict)
    minute_categories: dict[tuple[int, str, str], tuple[int, int]] = field(default_factory=dict)
    time_index: dict[tuple[str, int, str], tuple[int, str, str]] = field(default_factory=dict)


def read_contents(table: Any) -> Contents:
    """Everything the job wrote, parsed with the row-key module."""
    out = Contents()
    for key, families in store.dump_table(table).items():
        if store.LIST in families:
            cells = families[store.LIST]
            out.transactions[rowkeys.parse_transaction_key(key)] = (
                int(cells[b"amount_minor"]),
                cells[b"currency"].decode(),
                cells[b"category"].decode(),
                cells[b"event_time"].decode(),
            )
        if store.HOUR in families:
            user, hour = rowkeys.parse_hour_bucket_key(key)
            for currency, (total, count) in _per_currency(families[store.HOUR]).items():
                out.buckets[(user, hour, currency)] = (total, count)
        if store.MINUTE in families:
            minute = rowkeys.parse_minute_key(key)
            for currency, (total, count) in _per_currency(families[store.MINUTE]).items():
                out.minutes[(minute, currency)] = (total, count)
        if store.TOP in families and key.startswith(rowkeys.TOP_HOURS_PREFIX.encode()):
            out.top_hours.add(rowkeys.parse_top_hour_key(key))
        elif store.TOP in families:
            user, currency, span, start, total = rowkeys.parse_top_index_key(key)
            assert (span, start, currency, user) not in out.top, f"two index rows for {user} {currency} {span} {start}"
            assert int(families[store.TOP][b"sum"]) == total, key
            assert rowkeys.top_shard(user) == int(key.split(b"#")[1], 16), key
            out.top[(span, start, currency, user)] = total
        if store.BLOCK in families:
            user, span, start = rowkeys.parse_block_key(key)
            for currency, (total, count) in _per_currency(families[store.BLOCK]).items():
                out.blocks[(user, span, start, currency)] = (total, count)
        if store.USER in families:
            out.users.add(rowkeys.parse_user_directory_key(key))
        if store.CAT in families:
            _read_categories(out, key, families[store.CAT])
        if store.TIME in families:
            cells = families[store.TIME]
            out.time_index[rowkeys.parse_time_index_key(key)] = (
                int(cells[b"amount_minor"]),
                cells[b"currency"].decode(),
                cells[b"category"].decode(),
            )
    return out


def _read_categories(out: Contents, key: bytes, cells: dict[bytes, bytes]) -> None:
    """Category cells "<CUR>:<category>:sum|count", parsed here by hand, into the dict of their row's kind."""
    text = key.decode()
    for qualifier, value in cells.items():
        currency, category, what = qualifier.decode().split(":")
        index = {"sum": 0, "count": 1}[what]
        if text.startswith("~cathour#"):
            target: dict[Any, tuple[int, int]] = out.hour_categories
            where: tuple[Any, ...] = (int(text.split("#")[1]), currency, category)
        elif text.startswith("~catmin#"):
            target, where = out.minute_categories, (int(text.split("#")[1]), currency, category)
        else:
            user, hour, tag = text.split("#")
            assert tag == "cat", key
            target, where = out.user_categories, (user, int(hour), currency, category)
        pair = list(target.get(where, (0, 0)))
        pair[index] = int(value)
        target[where] = (pair[0], pair[1])


def _per_currency(cells: dict[bytes, bytes]) -> dict[str, tuple[int, int]]:
    """Counter cells "<CUR>:sum" / "<CUR>:count" -> {currency: (sum, count)}, parsed here by hand."""
    out: dict[str, list[int]] = {}
    for qualifier, value in cells.items():
        currency, _, what = qualifier.decode().partition(":")
        out.setdefault(currency, [0, 0])[{"sum": 0, "count": 1}[what]] = int(value)
    return {currency: (pair[0], pair[1]) for currency, pair in out.items()}


def expected_contents(ledger: pd.DataFrame, late_horizon_hours: int) -> Contents:
    """What the table must hold for this ledger: every transaction published within the horizon,
    aggregated with DuckDB in integer cents."""
    con = duckdb.connect()
    con.register("ledger", ledger)
    horizon_us = late_horizon_hours * 3_600_000_000
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE kept AS SELECT user_id, transaction_id, amount_minor, currency, merchant_category, "
        "epoch_us(event_time) AS ev, "
        # RFC 3339 in UTC, the fraction only when there is one
        "replace(strftime(event_time, '%Y-%m-%dT%H:%M:%S.%fZ'), '.000000Z', 'Z') AS ev_text "
        f"FROM ledger WHERE epoch_us(publish_time) - epoch_us(event_time) <= {horizon_us}"
    )
    out = Contents()
    query = "SELECT user_id, ev, transaction_id, amount_minor, currency, merchant_category, ev_text FROM kept"
    for user, ev, tid, cents, currency, category, text in con.execute(query).fetchall():
        out.transactions[(user, ev, tid)] = (cents, currency, category, text)
    hourly = (
        "SELECT user_id, ev // 3600000000 * 3600 AS h, currency, sum(amount_minor)::BIGINT, count(*) "
        "FROM kept GROUP BY 1, 2, 3"
    )
    for user, hour, currency, total, count in con.execute(hourly).fetchall():
        out.buckets[(user, hour, currency)] = (total, count)
        out.top[(1, hour, currency, user)] = total
        out.top_hours.add((currency, hour))
    for span in (4, 16, 64):
        blocks = (
            f"SELECT user_id, ev // {span * 3_600_000_000} * {span * 3600} AS b, currency, "
            "sum(amount_minor)::BIGINT, count(*) FROM kept GROUP BY 1, 2, 3"
        )
        for user, start, currency, total, count in con.execute(blocks).fetchall():
            out.blocks[(user, span, start, currency)] = (total, count)
            out.top[(span, start, currency, user)] = total
    minutely = "SELECT ev // 60000000 * 60 AS m, currency, sum(amount_minor)::BIGINT, count(*) FROM kept GROUP BY 1, 2"
    for minute, currency, total, count in con.execute(minutely).fetchall():
        out.minutes[(minute, currency)] = (total, count)
    out.users = {u for (u,) in con.execute("SELECT DISTINCT user_id FROM kept").fetchall()}
    per_category = (
        "SELECT {key}, currency, merchant_category, sum(amount_minor)::BIGINT, count(*) FROM kept GROUP BY ALL"
    )
    user_hour = "user_id, ev // 3600000000 * 3600"
    for user, hour, currency, category, total, count in con.execute(per_category.format(key=user_hour)).fetchall():
        out.user_categories[(user, hour, currency, category)] = (total, count)
    for step, target in ((3600, out.hour_categories), (60, out.minute_categories)):
        query = per_category.format(key=f"ev // {step * 1_000_000} * {step}")
        for start, currency, category, total, count in con.execute(query).fetchall():
            target[(start, currency, category)] = (total, count)
    for user, ev, tid, cents, currency, category, _ in con.execute(
        "SELECT user_id, ev, transaction_id, amount_minor, currency, merchant_category, ev_text FROM kept"
    ).fetchall():
        out.time_index[(user, ev, tid)] = (cents, currency, category)
    return out


def assert_contents(actual: Contents, expected: Contents, categories: bool = True) -> None:
    """Family by family, so a failure shows which family is off. categories=False leaves the
    merchant category out of the comparison (for ledgers that do not record it)."""
    assert actual.buckets == expected.buckets
    if categories:
        assert actual.transactions == expected.transactions
    else:

        def strip(t: dict[Any, tuple[int, str, str, str]]) -> dict[Any, tuple[int, str, str]]:
            return {k: (v[0], v[1], v[3]) for k, v in t.items()}

        assert strip(actual.transactions) == strip(expected.transactions)
    assert actual.minutes == expected.minutes
    assert actual.top == expected.top
    assert actual.blocks == expected.blocks
    assert actual.top_hours == expected.top_hours
    assert actual.users == expected.users
    if categories:
        assert actual.user_categories == expected.user_categories
        assert actual.hour_categories == expected.hour_categories
        assert actual.minute_categories == expected.minute_categories
        assert actual.time_index == expected.time_index
    else:
        assert set(actual.time_index) == set(expected.time_index)


def copies(
    frame: pd.DataFrame, suffix: str, publish_delay: timedelta = timedelta(minutes=1), **changes: Any
) -> pd.DataFrame:
    """Another delivery of each row of a spool frame: a new message id (message_id + suffix),
    published `publish_delay` later, with `changes` applied to its other columns (a change to
    user_id, amount_minor, currency or event_time makes it a conflicting copy)."""
    out = frame.copy()
    out["message_id"] = out["message_id"] + suffix
    out["publish_time"] = out["publish_time"] + publish_delay
    for column, value in changes.items():
        out[column] = value
    return to_frame(out)
