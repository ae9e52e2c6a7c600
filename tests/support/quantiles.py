"""Exact quantiles and ranks of amounts, by DuckDB over a ledger: what the sketch answers are
checked against.

    exact = ExactAmounts(ledger_frame)          # the spool columns (support.ledger / seed.spool_frame)
    exact.stats("u1", start_us, end_us, "USD")  # (n, min, max) of u1's USD amounts in [start, end)
    exact.quantile(None, ..., q)                # all users: the smallest v with share(<= v) >= q
    exact.rank_interval(None, ..., v)           # (share below v, share at or below v)
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from common import rowkeys, sketches, store

HOUR_US = 3_600_000_000


class ExactAmounts:
    """The counted transactions of a ledger (one per id, the first published; none beyond the late
    horizon), queried by user (None: everyone), event-time range and currency."""

    def __init__(self, ledger: pd.DataFrame, late_horizon_hours: int = 72) -> None:
        self.con = duckdb.connect()
        self.con.register("ledger", ledger)
        horizon_us = late_horizon_hours * HOUR_US
        self.con.execute(
            "CREATE TABLE kept AS SELECT user_id, amount_minor AS v, currency, epoch_us(event_time) AS ev FROM ("
            "SELECT *, row_number() OVER (PARTITION BY transaction_id ORDER BY publish_time, message_id) AS copy "
            f"FROM ledger) WHERE copy = 1 AND epoch_us(publish_time) - epoch_us(event_time) <= {horizon_us}"
        )

    def _where(self, user: str | None, start_us: int, end_us: int, currency: str) -> tuple[str, list[object]]:
        where = "ev >= ? AND ev < ? AND currency = ?"
        args: list[object] = [start_us, end_us, currency]
        if user is not None:
            where += " AND user_id = ?"
            args.append(user)
        return where, args

    def currencies(self, user: str | None, start_us: int, end_us: int) -> list[str]:
        where = "ev >= ? AND ev < ?" + (" AND user_id = ?" if user is not None else "")
        args: list[object] = [start_us, end_us] + ([user] if user is not None else [])
        return [
            c
            for (c,) in self.con.execute(
                f"SELECT DISTINCT currency FROM kept WHERE {where} ORDER BY 1", args
            ).fetchall()
        ]

    def stats(self, user: str | None, start_us: int, end_us: int, currency: str) -> tuple[int, int | None, int | None]:
        where, args = self._where(user, start_us, end_us, currency)
        found = self.con.execute(f"SELECT count(*), min(v), max(v) FROM kept WHERE {where}", args).fetchone()
        assert found is not None
        return int(found[0]), found[1], found[2]

    def quantile(self, user: str | None, start_us: int, end_us: int, currency: str, q: float) -> int:
        """The value at position max(1, ceil(q * n)) in sorted order."""
        where, args = self._where(user, start_us, end_us, currency)
        found = self.con.execute(
            f"SELECT v FROM (SELECT v, row_number() OVER (ORDER BY v) AS pos, count(*) OVER () AS n "
            f"FROM kept WHERE {where}) WHERE pos = greatest(1, ceil(? * n))",
            [*args, q],
        ).fetchone()
        assert found is not None
        return int(found[0])

    def rank_interval(self, user: str | None, start_us: int, end_us: int, currency: str, v: int) -> tuple[float, float]:
        """(share of the amounts below v, share at or below v)."""
        where, args = self._where(user, start_us, end_us, currency)
        found = self.con.execute(
            f"SELECT count(*) FILTER (v < ?), count(*) FILTER (v <= ?), count(*) FROM kept WHERE {where}",
            [v, v, *args],
        ).fetchone()
        assert found is not None and found[2] > 0
        return found[0] / found[2], found[1] / found[2]

    def hour_stats(self) -> dict[tuple[str | None, int, str], tuple[int, int, int]]:
        """(n, min, max) per (user, hour start epoch s, currency), and per (None, hour, currency) for
        everyone: what the job's sketch rows must hold."""
        out: dict[tuple[str | None, int, str], tuple[int, int, int]] = {}
        per_user = (
            "SELECT user_id, ev // 3600000000 * 3600, currency, count(*), min(v), max(v) FROM kept GROUP BY 1, 2, 3"
        )
        for user, hour, currency, n, low, high in self.con.execute(per_user).fetchall():
            out[(user, int(hour), currency)] = (int(n), int(low), int(high))
        everyone = "SELECT ev // 3600000000 * 3600, currency, count(*), min(v), max(v) FROM kept GROUP BY 1, 2"
        for hour, currency, n, low, high in self.con.execute(everyone).fetchall():
            out[(None, int(hour), currency)] = (int(n), int(low), int(high))
        return out


def stored_sketch_stats(table: Any) -> dict[tuple[str | None, int, str], tuple[int, int, int]]:
    """(n, min, max) of every sketch the job stored, keyed like ExactAmounts.hour_stats."""
    out: dict[tuple[str | None, int, str], tuple[int, int, int]] = {}
    for key, cells in store.read_cell_rows(table, store.KLL, b"~kll", b"~klm"):
        user, hour = rowkeys.parse_sketch_key(key)
        for currency, blob in cells.items():
            sketch = sketches.load(blob)
            out[(user, hour, currency.decode())] = (
                int(sketch.n),
                int(sketch.get_min_value()),
                int(sketch.get_max_value()),
            )
    return out


def values_frame(values: list[int], currency: str = "USD") -> pd.DataFrame:
    """Bare amounts as a ledger of one user at one instant, for ExactAmounts."""
    stamp = pd.Timestamp("2026-01-01T00:00:00Z")
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(values))],
            "user_id": "u",
            "amount_minor": values,
            "currency": currency,
            "event_time": stamp,
            "publish_time": stamp,
            "message_id": [f"m{i}" for i in range(len(values))],
        }
    )
