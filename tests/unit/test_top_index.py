"""The top-spender index: one row per user-currency and hour or aligned block, moved when a sum
changes, and /top-users' exact ranking over it, checked against pandas over the raw transactions on
the memory table (flat, skewed and tied amounts, refunds, empty hours, windows across block
boundaries, data after the current hour)."""

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


def transactions(
    seed: int, users: int, hours: int, count: int, shape: str, now_hour: int = NOW_HOUR, later: int = 2
) -> pd.DataFrame:
    """`count` transactions over the `hours` hours up to the current one (and `later` hours after
    it, which no window holds), in USD and JPY, one in ten a refund; shape "flat" (every amount
    alike), "skewed" (a few big spenders), "ties" or "sparse" (a few hours hold every amount)."""
    rng = random.Random(seed)
    busy = [now_hour - rng.randrange(hours) * HOUR_S for _ in range(3)]
    rows = []
    for _ in range(count):
        user = f"u{rng.randrange(users)}"
        if shape == "skewed":
            amount = int(rng.paretovariate(1.2) * 100)
        elif shape == "ties":
            amount = rng.choice([100, 200, 300])
        elif shape == "sparse":
            amount = rng.randrange(2000, 10001)
        else:
            amount = rng.randrange(1, 1000)
        if rng.random() < 0.1:
            amount = -rng.randrange(1, 500)
        rows.append(
            {
                "user_id": user,
                "hour": rng.choice(busy)
                if shape == "sparse"
                else now_hour - rng.randrange(-later, hours + 2) * HOUR_S,  # two before any window asked
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
        assert store.apply_bucket_deltas(table, store.block_deltas(deltas), run, store.BLOCK)[3] == []


def expected_top(
    frame: pd.DataFrame, hours: int, n: int, currency: str, now_hour: int = NOW_HOUR
) -> list[tuple[str, int]]:
    hour = frame["hour"]
    inside = frame[(hour > now_hour - hours * HOUR_S) & (hour <= now_hour) & (frame["currency"] == currency)]
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


@pytest.mark.parametrize("shape", ["flat", "sparse"])
def test_top_users_is_exact_over_a_week_whatever_the_current_hour(shape: str) -> None:
    """Windows of 1 to 168 hours ending at every position in a 64-hour block, so each block
    boundary falls inside, at the edge of and outside the window; data after the current hour."""
    for offset in (0, 1, 33, 63):
        now_hour = NOW_HOUR - NOW_HOUR % (64 * HOUR_S) + offset * HOUR_S
        frame = transactions(offset, users=300, hours=170, count=2500, shape=shape, now_hour=now_hour, later=70)
        table = MemoryTable()
        load_in_runs(table, frame, runs=2)
        rng = random.Random(offset)
        for hours in (1, 2, 5, 16, 63, 64, 65, 130, rng.randint(1, 168), 168):
            n = rng.choice([1, 10, 100])
            at = (now_hour + rng.randrange(HOUR_S)) * 1_000_000
            assert queries.top_users(table, at, hours, n, "USD") == expected_top(frame, hours, n, "USD", now_hour), (
                offset,
                hours,
                n,
            )


def test_top_users_is_exact_with_thousands_of_flat_one_off_spenders() -> None:
    """The benchmark's `holders` shape: many card holders with one or two like amounts each in the
    last two hours, asked over a week."""
    rng = random.Random(3)
    rows = [
        {
            "user_id": f"u{rng.randrange(4000):05d}",
            "hour": NOW_HOUR - rng.randrange(2) * HOUR_S,
            "currency": "USD",
            "amount_minor": rng.randrange(2000, 10001),
        }
        for _ in range(6000)
    ]
    frame = pd.DataFrame(rows)
    table = MemoryTable()
    load_in_runs(table, frame, runs=1)
    for hours, n in ((168, 100), (1, 100), (2, 1), (24, 37)):
        assert queries.top_users(table, NOW_US, hours, n, "USD") == expected_top(frame, hours, n, "USD")


def test_an_empty_window_and_a_currency_without_data_rank_nobody() -> None:
    table = MemoryTable()
    frame = pd.DataFrame([{"user_id": "amy", "hour": NOW_HOUR - 10 * HOUR_S, "currency": "USD", "amount_minor": 5}])
    load_in_runs(table, frame, runs=1)
    assert queries.top_users(table, NOW_US, 10, 5, "USD") == []
    assert queries.top_users(table, NOW_US, 11, 5, "USD") == [("amy", 5)]
    assert queries.top_users(table, NOW_US, 168, 5, "EUR") == []


@pytest.mark.parametrize(
    ("data", "first", "current", "expected"),
    [
        # a week of data, window of the last 168 hours ending in hour 130: blocks never reach past it
        (range(0, 200), 130 - 167, 130, [(64, 0), (64, 64), (1, 128), (1, 129), (1, 130)]),
        # nothing after the current hour: its 64-hour block is one list
        (range(60, 131), 40, 130, [(64, 0), (64, 64), (64, 128)]),
        # the window starts inside a block whose earlier hours hold data
        ([4, 5, 9], 5, 9, [(1, 5), (4, 8)]),
        ([3, 5, 9], 5, 9, [(4, 4), (4, 8)]),
        ([3, 5, 9, 17], 5, 9, [(4, 4), (4, 8)]),
        ([3, 5, 9], 4, 9, [(4, 4), (4, 8)]),
        ([3, 5, 9], 0, 9, [(64, 0)]),
        # empty window
        ([3, 70], 10, 60, []),
    ],
)
def test_window_lists_cover_the_data_hours_of_the_window_with_the_largest_blocks_holding_nothing_else(
    data: list[int], first: int, current: int, expected: list[tuple[int, int]]
) -> None:
    lists = queries.window_lists([h * HOUR_S for h in data], first * HOUR_S, current * HOUR_S)
    assert lists == sorted((span, start * HOUR_S) for span, start in expected)


def test_each_user_hour_and_block_currency_has_exactly_one_index_row_holding_its_sum() -> None:
    frame = transactions(seed=7, users=50, hours=70, count=800, shape="flat")
    table = MemoryTable()
    load_in_runs(table, frame, runs=4)
    found = {}
    for key in table.row_keys():
        if key.startswith(b"~top#"):
            user, currency, span, start, total = rowkeys.parse_top_index_key(key)
            assert (user, currency, span, start) not in found
            found[(user, currency, span, start)] = total
    expected = {}
    for span in rowkeys.TOP_SPANS:
        blocks = frame.assign(start=frame["hour"] - frame["hour"] % (span * HOUR_S))
        sums = blocks.groupby(["user_id", "currency", "start"])["amount_minor"].sum()
        expected.update({(str(u), str(c), span, int(b)): int(s) for (u, c, b), s in sums.items()})
    assert found == expected
    marked = {rowkeys.parse_top_hour_key(k) for k in table.row_keys() if k.startswith(b"~tophours#")}
    assert marked == {
        (str(c), int(h)) for c, h in frame[["currency", "hour"]].drop_duplicates().itertuples(index=False)
    }


def test_a_resumed_run_moves_no_index_row_twice() -> None:
    table = MemoryTable()
    key = rowkeys.hour_bucket_key("amy", NOW_HOUR)
    store.apply_bucket_deltas(table, {key: store.counter_cells("USD", 500, 1)}, 1)
    assert store.apply_bucket_deltas(table, {key: store.counter_cells("USD", 70, 1)}, 2)[:3] == (1, 0, 2)
    assert store.apply_bucket_deltas(table, {key: store.counter_cells("USD", 70, 1)}, 2)[:3] == (0, 1, 0)
    index = [k for k in table.row_keys() if k.startswith(b"~top#")]
    assert index == [rowkeys.top_index_key("amy", "USD", NOW_HOUR, 570)]
    block = rowkeys.block_key("amy", 16, rowkeys.block_start_s(NOW_HOUR, 16))
    store.apply_bucket_deltas(table, {block: store.counter_cells("USD", 500, 1)}, 1, store.BLOCK)
    assert store.apply_bucket_deltas(table, {block: store.counter_cells("USD", 70, 1)}, 2, store.BLOCK)[:3] == (1, 0, 2)
    assert store.apply_bucket_deltas(table, {block: store.counter_cells("USD", 70, 1)}, 2, store.BLOCK)[:3] == (0, 1, 0)
    index = [k for k in table.row_keys() if k.startswith(b"~top#")]
    assert rowkeys.top_index_key("amy", "USD", rowkeys.block_start_s(NOW_HOUR, 16), 570, 16) in index
    assert len(index) == 2


def test_top_index_keys_sort_highest_sum_first_and_round_trip() -> None:
    sums = [-(2**63), -5, 0, 1, 99, 2**63 - 1]
    keys = [rowkeys.top_index_key("bo", "USD", HOUR_S, s) for s in sums]
    assert keys == sorted(keys, reverse=True)
    assert [rowkeys.parse_top_index_key(k) for k in keys] == [("bo", "USD", 1, HOUR_S, s) for s in sums]
    low, high = rowkeys.top_index_range(rowkeys.top_shard("bo"), "USD", HOUR_S, at_least=0, below=99)
    assert [s for s, k in zip(sums, keys, strict=True) if low <= k < high] == [0, 1]
    block = rowkeys.top_index_key("bo", "USD", 64 * HOUR_S, 7, 64)
    assert rowkeys.parse_top_index_key(block) == ("bo", "USD", 64, 64 * HOUR_S, 7)
    assert not low <= block < high
    with pytest.raises(rowkeys.RowKeyError, match="multiple of 64 h"):
        rowkeys.top_index_key("bo", "USD", HOUR_S, 7, 64)
    assert rowkeys.parse_block_key(rowkeys.block_key("bo", 4, 8 * HOUR_S)) == ("bo", 4, 8 * HOUR_S)
