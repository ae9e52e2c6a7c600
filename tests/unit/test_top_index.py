"""The top-spender index: one row per user-hour-currency, moved when a sum changes, and /top-users'
exact ranking over it, checked against pandas over the raw transactions on the memory table."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from common import rowkeys, store
from tests.support.memtable import MemoryTable
from webapp import queries

HOUR_S = 3600
NOW_HOUR = 500_000 * HOUR_S
NOW_US = (NOW_HOUR + 1234) * 1_000_000


def transactions(seed: int, users: int, hours: int, count: int, shape: str) -> pd.DataFrame:
    """`count` transactions over the `hours` hours up to the current one, in USD and JPY, one in
    ten a refund; shape "flat" (every amount alike), "skewed" (a few big spenders) or "ties"."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        user = f"u{rng.randrange(users)}"
        if shape == "skewed":
            amount = int(rng.paretovariate(1.2) * 100)
        elif shape == "ties":
            amount = rng.choice([100, 200, 300])
        else:
            amount = rng.randrange(1, 1000)
        if rng.random() < 0.1:
            amount = -rng.randrange(1, 500)
        rows.append(
            {
                "user_id": user,
                "hour": NOW_HOUR - rng.randrange(hours + 2) * HOUR_S,  # two hours before any window asked
                "currency": rng.choice(["USD", "USD", "JPY"]),
                "amount_minor": amount,
            }
        )
    return pd.DataFrame(rows)


def load_in_runs(table: MemoryTable, frame: pd.DataFrame, runs: int) -> None:
    """Apply the frame's hour buckets in `runs` slices, one run each, as the job does."""
    for run, part in enumerate(frame.groupby(frame.index % runs), start=1):
        deltas: dict[bytes, dict[bytes, int]] = {}
        for (user, hour, currency), group in part[1].groupby(["user_id", "hour", "currency"]):
            key = rowkeys.hour_bucket_key(str(user), int(hour))
            deltas.setdefault(key, {}).update(
                store.counter_cells(str(currency), int(group["amount_minor"].sum()), len(group))
            )
        assert store.apply_bucket_deltas(table, deltas, run)[3] == []


def expected_top(frame: pd.DataFrame, hours: int, n: int, currency: str) -> list[tuple[str, int]]:
    inside = frame[(frame["hour"] > NOW_HOUR - hours * HOUR_S) & (frame["currency"] == currency)]
    totals = inside.groupby("user_id")["amount_minor"].sum().reset_index()
    totals = totals.sort_values(["amount_minor", "user_id"], ascending=[False, True]).head(n)
    return [(str(u), int(s)) for u, s in zip(totals["user_id"], totals["amount_minor"], strict=True)]


@pytest.mark.parametrize("shape", ["flat", "skewed", "ties"])
def test_top_users_is_exact_for_random_windows_after_several_runs(shape: str) -> None:
    frame = transactions(seed=len(shape), users=400, hours=30, count=6000, shape=shape)
    table = MemoryTable()
    load_in_runs(table, frame, runs=3)
    rng = random.Random(shape)
    for _ in range(12):
        hours, n, currency = rng.randint(1, 32), rng.choice([1, 3, 10, 100]), rng.choice(["USD", "JPY", "EUR"])
        assert queries.top_users(table, NOW_US, hours, n, currency) == expected_top(frame, hours, n, currency), (
            hours,
            n,
            currency,
        )


def test_each_user_hour_currency_has_exactly_one_index_row_holding_its_sum() -> None:
    frame = transactions(seed=7, users=50, hours=5, count=800, shape="flat")
    table = MemoryTable()
    load_in_runs(table, frame, runs=4)
    found = {}
    for key in table.row_keys():
        if key.startswith(b"~top#"):
            user, currency, hour, total = rowkeys.parse_top_index_key(key)
            assert (user, currency, hour) not in found
            found[(user, currency, hour)] = total
    sums = frame.groupby(["user_id", "currency", "hour"])["amount_minor"].sum()
    assert found == {(str(u), str(c), int(h)): int(s) for (u, c, h), s in sums.items()}


def test_a_resumed_run_moves_no_index_row_twice() -> None:
    table = MemoryTable()
    key = rowkeys.hour_bucket_key("amy", NOW_HOUR)
    store.apply_bucket_deltas(table, {key: store.counter_cells("USD", 500, 1)}, 1)
    assert store.apply_bucket_deltas(table, {key: store.counter_cells("USD", 70, 1)}, 2)[:3] == (1, 0, 2)
    assert store.apply_bucket_deltas(table, {key: store.counter_cells("USD", 70, 1)}, 2)[:3] == (0, 1, 0)
    index = [k for k in table.row_keys() if k.startswith(b"~top#")]
    assert index == [rowkeys.top_index_key("amy", "USD", NOW_HOUR, 570)]


def test_top_index_keys_sort_highest_sum_first_and_round_trip() -> None:
    sums = [-(2**63), -5, 0, 1, 99, 2**63 - 1]
    keys = [rowkeys.top_index_key("bo", "USD", HOUR_S, s) for s in sums]
    assert keys == sorted(keys, reverse=True)
    assert [rowkeys.parse_top_index_key(k) for k in keys] == [("bo", "USD", HOUR_S, s) for s in sums]
    low, high = rowkeys.top_index_range(rowkeys.top_shard("bo"), "USD", HOUR_S, at_least=0, below=99)
    assert [s for s, k in zip(sums, keys, strict=True) if low <= k < high] == [0, 1]
