"""The JSON API and the original routes against the Bigtable emulator.

The table is filled by the aggregation job itself (tests/support/seed.py: the ledger below written
as spool files, then two job runs in-process), late rows and conflicts included, from spool content
as the spooler would write it. Every expected value is computed from that ledger with plain Python
and Decimal (or pandas), never with the code under test. The app's clock is pinned, so relative
times, the top-spender hours and the per-minute window are exact. Money is checked per currency,
with each currency's places written out by hand (PLACES), not taken from common.money.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from conftest import cleanup_resources, make_config
from flask import Flask
from flask.testing import FlaskClient
from support.ledger import copies, write_spool
from support.seed import LedgerRow, run_job, spool_frame

from common import clients, spool
from webapp import create_app, queries

NOW = datetime(2026, 3, 15, 10, 20, 30, 250_000, tzinfo=UTC)
USERS = ("alice", "bob", "carol", "dense", "multi", "u1", "u10")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PLACES = {"USD": 2, "EUR": 2, "JPY": 0, "BHD": 3}  # ISO 4217 minor units, written out by hand


def _us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_ledger() -> list[LedgerRow]:
    rng = random.Random(20260315)
    rows: list[LedgerRow] = []

    def add(
        user: str, when: datetime, units: int, category: str = "grocery", tid: str | None = None, currency: str = "USD"
    ) -> None:
        rows.append(LedgerRow(tid or f"{user}-{len(rows)}", user, units, _us(when), currency, category))

    for user, n in (("alice", 150), ("bob", 80), ("u1", 40), ("u10", 40)):
        for _ in range(n):
            when = NOW - timedelta(microseconds=rng.randrange(1, 3 * 86_400 * 1_000_000))
            add(user, when, rng.randint(-300, 10_000), rng.choice(["grocery", "fuel", "food & drink"]))
    edge = datetime(2026, 3, 15, 5, tzinfo=UTC)
    add("alice", edge, 1111)  # exactly on an hour boundary
    add("alice", edge - timedelta(microseconds=1), 2222)  # the last microsecond of the hour before
    add("alice", edge + timedelta(microseconds=1), 3333)
    add("alice", edge, 5, tid="alice-same-micro-b")  # two ids at one microsecond
    add("alice", edge, -7, tid="alice-same-micro-a")
    add("alice", NOW - timedelta(seconds=5), 4200)  # in the current minute
    add("alice", NOW + timedelta(hours=2), 999)  # a little ahead of the clock, still accepted
    add("bob", NOW - timedelta(seconds=40), 100)
    # 'dense': 2,600 transactions in the last 30 minutes, more than one scan window holds
    for i in range(2600):
        add("dense", NOW - timedelta(minutes=30) + timedelta(microseconds=i * 690_000 + 1), 100 + i % 50)
    # 'multi': USD, EUR, JPY and BHD in the same hours; alice and bob also spend some EUR and JPY.
    for _ in range(240):
        when = NOW - timedelta(microseconds=rng.randrange(1, 2 * 86_400 * 1_000_000))
        currency = rng.choice(list(PLACES))
        add("multi", when, rng.randint(-5, 10 ** PLACES[currency] * 300), currency=currency)
    for user, currency in (("alice", "EUR"), ("alice", "JPY"), ("bob", "JPY"), ("u1", "BHD")):
        for _ in range(25):
            when = NOW - timedelta(microseconds=rng.randrange(1, 86_400 * 1_000_000))
            add(user, when, rng.randint(1, 10 ** PLACES[currency] * 200), currency=currency)
    hour = datetime(2026, 3, 10, 3, tzinfo=UTC)  # before every random row: these four are alone in their hour
    add("multi", hour + timedelta(minutes=1), 1000, currency="JPY", tid="multi-yen")
    add("multi", hour + timedelta(minutes=2), 1000, currency="USD", tid="multi-dollars")
    add("multi", hour + timedelta(minutes=3), 1234, currency="BHD", tid="multi-dinars")
    add("multi", hour + timedelta(minutes=4), -5, currency="EUR", tid="multi-euro-refund")
    return rows


FIRST_RUN = build_ledger()
CAROL = LedgerRow("carol-c", "carol", 99, _us(NOW - timedelta(hours=2)))
SECOND_RUN = [CAROL]
LEDGER = FIRST_RUN + SECOND_RUN
# What the job sets aside as late: published days after the event, beyond the 72 h horizon.
LATE = [
    LedgerRow(f"late-{i}", "alice" if i % 2 else "multi", 100 * i + 1, _us(NOW - timedelta(days=5, minutes=i)),
              currency=("USD", "JPY", "BHD")[i % 3],
              publish_us=_us(NOW - timedelta(hours=30) + timedelta(minutes=7 * i)))
    for i in range(25)
]  # fmt: skip
ALICE_FIRST = FIRST_RUN[0]
BOB_FIRST = next(r for r in FIRST_RUN if r.user_id == "bob")
U1_FIRST = next(r for r in FIRST_RUN if r.user_id == "u1")


def first_run_spool() -> pd.DataFrame:
    """The first run's files: the ledger, the late rows, and a copy of alice's first transaction in
    other money and one of bob's under another user (two conflicts, found within the run)."""
    return pd.concat(
        [
            spool_frame(FIRST_RUN),
            spool_frame(LATE),
            copies(spool_frame([ALICE_FIRST]), "-jpy", currency="JPY", amount_minor=999),
            copies(spool_frame([BOB_FIRST]), "-mallory", user_id="mallory"),
        ],
        ignore_index=True,
    )


def second_run_spool() -> pd.DataFrame:
    """The second run's file: carol's transaction and a copy of it in dinars (a conflict within the
    run), and a copy of u1's first transaction for another amount (a conflict with the first run)."""
    return pd.concat(
        [
            spool_frame(SECOND_RUN),
            copies(spool_frame([CAROL]), "-bhd", currency="BHD", amount_minor=7),
            copies(spool_frame([U1_FIRST]), "-more", amount_minor=U1_FIRST.amount_minor + 1),
        ],
        ignore_index=True,
    )


def in_range(user: str, start: datetime, end: datetime, currency: str | None = "USD") -> list[LedgerRow]:
    """The user's ledger rows in [start, end), in one currency (None: every currency)."""
    return [
        r
        for r in LEDGER
        if r.user_id == user and _us(start) <= r.event_us < _us(end) and currency in (None, r.currency)
    ]


def money(units: int, currency: str = "USD") -> str:
    places = PLACES[currency]
    return str((Decimal(units).scaleb(-places)).quantize(Decimal(1).scaleb(-places)))


def expected_sum(user: str, start: datetime, end: datetime, currency: str = "USD") -> tuple[str, int]:
    rows = in_range(user, start, end, currency)
    return money(sum(r.amount_minor for r in rows), currency), len(rows)


def expected_by_currency(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    """[{currency, sum, count}] for every currency among `rows`, in code order."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        totals[row.currency][0] += row.amount_minor
        totals[row.currency][1] += 1
    return [{"currency": c, "sum": money(t, c), "count": n} for c, (t, n) in sorted(totals.items())]


def newest_first(rows: list[LedgerRow]) -> list[str]:
    return [r.transaction_id for r in sorted(rows, key=lambda r: (r.event_us, r.transaction_id), reverse=True)]


@pytest.fixture(scope="module")
def seeded(spark: Any, emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cfg = make_config(tmp_path_factory.mktemp("api"))
    run_job(spark, cfg, first_run_spool(), files=2)
    run_job(spark, cfg, second_run_spool())
    yield cfg
    cleanup_resources(cfg)


@pytest.fixture(scope="module")
def app(seeded: Any) -> Flask:
    return create_app(seeded, clock=lambda: NOW)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- /sum -------------------------------------------------------------------------------------


SUM_RANGES = [
    ("partial hours at both edges", NOW - timedelta(days=2, minutes=17, microseconds=3), NOW),
    ("whole hours only", datetime(2026, 3, 13, 4, tzinfo=UTC), datetime(2026, 3, 15, 9, tzinfo=UTC)),
    ("inside one hour", datetime(2026, 3, 15, 4, 10, tzinfo=UTC), datetime(2026, 3, 15, 4, 50, tzinfo=UTC)),
    ("across one boundary", datetime(2026, 3, 15, 4, 59, 59, tzinfo=UTC), datetime(2026, 3, 15, 5, 0, 1, tzinfo=UTC)),
    ("from on the edge", datetime(2026, 3, 15, 5, tzinfo=UTC), datetime(2026, 3, 15, 7, 30, tzinfo=UTC)),
    ("to on the edge", datetime(2026, 3, 14, 22, 30, tzinfo=UTC), datetime(2026, 3, 15, 5, tzinfo=UTC)),
    ("empty range", datetime(2026, 3, 15, 5, tzinfo=UTC), datetime(2026, 3, 15, 5, tzinfo=UTC)),
    ("thirty days", NOW - timedelta(days=30), NOW + timedelta(days=1)),
]


@pytest.mark.parametrize("user", ["alice", "bob", "u1"])
@pytest.mark.parametrize(("label", "start", "end"), SUM_RANGES, ids=[r[0] for r in SUM_RANGES])
def test_sum_is_exact_for_any_range(client: FlaskClient, user: str, label: str, start: datetime, end: datetime) -> None:
    body = client.get(f"/api/v1/users/{user}/sum", query_string={"from": _iso(start), "to": _iso(end)}).get_json()
    total, count = expected_sum(user, start, end)
    assert (body["currency"], body["sum"], body["count"]) == ("USD", total, count)
    assert body["by_currency"] == expected_by_currency(in_range(user, start, end, None))
    assert body["user_id"] == user
    assert body["from"] == _iso(start).replace(".000000Z", "Z") and body["to"] == _iso(end).replace(".000000Z", "Z")


def test_sum_includes_from_and_excludes_to(client: FlaskClient) -> None:
    edge = datetime(2026, 3, 15, 5, tzinfo=UTC)
    at_edge = client.get("/api/v1/users/alice/sum", query_string={"from": _iso(edge), "to": _iso(edge)}).get_json()
    assert at_edge["count"] == 0
    one_us = edge + timedelta(microseconds=1)
    body = client.get("/api/v1/users/alice/sum", query_string={"from": _iso(edge), "to": _iso(one_us)}).get_json()
    assert (body["sum"], body["count"]) == ("11.09", 3)  # 11.11 + 0.05 - 0.07 at exactly 05:00:00


@pytest.mark.parametrize(
    ("form_from", "form_to", "start", "end"),
    [
        ("-1h", "0m", NOW - timedelta(hours=1), NOW),
        ("-2d", "now", NOW - timedelta(days=2), NOW),
        ("-90m", "-30m", NOW - timedelta(minutes=90), NOW - timedelta(minutes=30)),
        ("2026-03-14T12:00:00+02:00", "2026-03-15T08:00:00", datetime(2026, 3, 14, 10, tzinfo=UTC),
         datetime(2026, 3, 15, 8, tzinfo=UTC)),
        ("1773446400", "1773547200.5", datetime(2026, 3, 14, tzinfo=UTC),
         datetime(2026, 3, 15, 4, tzinfo=UTC) + timedelta(milliseconds=500)),
    ],
)  # fmt: skip
def test_every_time_form_is_accepted(
    client: FlaskClient, form_from: str, form_to: str, start: datetime, end: datetime
) -> None:
    body = client.get("/api/v1/users/alice/sum", query_string={"from": form_from, "to": form_to}).get_json()
    assert (body["sum"], body["count"]) == expected_sum("alice", start, end)


def test_from_defaults_to_one_hour_ago_and_to_to_now(client: FlaskClient) -> None:
    body = client.get("/api/v1/users/alice/sum").get_json()
    assert (body["sum"], body["count"]) == expected_sum("alice", NOW - timedelta(hours=1), NOW)
    assert body["to"] == "2026-03-15T10:20:30.250000Z"


def test_a_user_never_sees_another_users_rows(client: FlaskClient) -> None:
    start, end = NOW - timedelta(days=4), NOW
    u1 = client.get("/api/v1/users/u1/sum", query_string={"from": _iso(start), "to": _iso(end)}).get_json()
    assert (u1["sum"], u1["count"]) == expected_sum("u1", start, end)
    ids = [t["transaction_id"] for t in client.get("/api/v1/users/u1/latest?n=100").get_json()["transactions"]]
    assert ids and all(i.startswith("u1-") for i in ids)
    nobody = client.get("/api/v1/users/u/sum", query_string={"from": _iso(start), "to": _iso(end)}).get_json()
    assert (nobody["sum"], nobody["count"]) == ("0.00", 0)


def _ledger_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r.user_id for r in LEDGER],
            "currency": [r.currency for r in LEDGER],
            "amount_minor": [r.amount_minor for r in LEDGER],
            "event_us": [r.event_us for r in LEDGER],
        }
    )


def _random_ranges(count: int, seed: int) -> list[tuple[datetime, datetime]]:
    """Ranges of 2 to 40 hours that start and end at random microseconds (almost never on an hour)
    inside the last 2 days, where 'multi' spends in four currencies."""
    rng = random.Random(seed)
    ranges = []
    for _ in range(count):
        length = rng.randrange(2 * 3_600_000_000, 40 * 3_600_000_000)
        start = rng.randrange(_us(NOW - timedelta(days=2)), _us(NOW) - length)
        ranges.append((EPOCH + timedelta(microseconds=start), EPOCH + timedelta(microseconds=start + length)))
    return ranges


@pytest.mark.parametrize(("start", "end"), _random_ranges(12, seed=5))
def test_sum_by_currency_is_exact_for_random_ranges_and_never_mixes_currencies(
    client: FlaskClient, start: datetime, end: datetime
) -> None:
    frame = _ledger_frame()
    inside = frame[(frame.user_id == "multi") & (frame.event_us >= _us(start)) & (frame.event_us < _us(end))]
    grouped = inside.groupby("currency").amount_minor.agg(["sum", "count"])
    expected = [
        {"currency": cur, "sum": money(int(row["sum"]), str(cur)), "count": int(row["count"])}
        for cur, row in grouped.sort_index().iterrows()
    ]
    assert len(expected) >= 2  # the ranges hold several currencies at once
    query = {"from": _iso(start), "to": _iso(end)}
    for currency in (None, *PLACES):
        body = client.get(
            "/api/v1/users/multi/sum", query_string={**query, **({"currency": currency} if currency else {})}
        ).get_json()
        cur = currency or "USD"
        total = int(grouped["sum"].get(cur, 0))
        count = int(grouped["count"].get(cur, 0))
        assert set(body) == {"user_id", "from", "to", "currency", "sum", "count", "by_currency"}
        assert (body["currency"], body["sum"], body["count"]) == (cur, money(total, cur), count)
        assert body["by_currency"] == expected


def test_each_currency_is_written_with_its_own_places(client: FlaskClient) -> None:
    hour = datetime(2026, 3, 10, 3, tzinfo=UTC)
    query = {"from": _iso(hour + timedelta(minutes=1)), "to": _iso(hour + timedelta(minutes=4, microseconds=1))}
    body = client.get("/api/v1/users/multi/sum", query_string=query).get_json()
    assert body["by_currency"] == [
        {"currency": "BHD", "sum": "1.234", "count": 1},
        {"currency": "EUR", "sum": "-0.05", "count": 1},
        {"currency": "JPY", "sum": "1000", "count": 1},
        {"currency": "USD", "sum": "10.00", "count": 1},
    ]
    assert (body["currency"], body["sum"]) == ("USD", "10.00")
    yen = client.get("/api/v1/users/multi/sum", query_string={**query, "currency": "JPY"}).get_json()
    assert (yen["currency"], yen["sum"], yen["count"]) == ("JPY", "1000", 1)
    empty = client.get("/api/v1/users/multi/sum", query_string={**query, "currency": "CHF"}).get_json()
    assert (empty["currency"], empty["sum"], empty["count"]) == ("CHF", "0.00", 0)
    listed = client.get("/api/v1/users/multi/transactions", query_string=query).get_json()["transactions"]
    assert [(t["amount"], t["currency"]) for t in listed] == [
        ("-0.05", "EUR"),
        ("1.234", "BHD"),
        ("10.00", "USD"),
        ("1000", "JPY"),
    ]
    whole = client.get(
        "/api/v1/users/multi/sum", query_string={"from": _iso(hour), "to": _iso(hour + timedelta(hours=1))}
    ).get_json()
    assert whole["by_currency"] == body["by_currency"]  # the same four from the hour's counters


def test_the_default_currency_comes_from_the_config(seeded: Any) -> None:
    client = create_app(dataclasses.replace(seeded, currency="JPY"), clock=lambda: NOW).test_client()
    start, end = NOW - timedelta(days=2), NOW
    body = client.get("/api/v1/users/multi/sum", query_string={"from": _iso(start), "to": _iso(end)}).get_json()
    assert (body["currency"], body["sum"], body["count"]) == ("JPY", *expected_sum("multi", start, end, "JPY"))
    top = client.get("/api/v1/top-users?hours=24&n=1").get_json()
    assert top[0]["currency"] == "JPY"


# --- /hourly ----------------------------------------------------------------------------------


def test_hourly_totals_match_the_ledger_and_add_up_to_the_sum(client: FlaskClient) -> None:
    start, end = NOW - timedelta(hours=30, minutes=12), NOW
    hours = client.get("/api/v1/users/alice/hourly", query_string={"from": _iso(start), "to": _iso(end)}).get_json()
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in in_range("alice", start, end):
        hour = datetime.fromtimestamp(row.event_us // 3_600_000_000 * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        expected[hour][0] += row.amount_minor
        expected[hour][1] += 1
    first = start.replace(minute=0, second=0, microsecond=0)
    assert [h["hour_start"] for h in hours] == [
        (first + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(31)
    ]
    for hour in hours:
        total, count = expected.get(hour["hour_start"], [0, 0])
        assert (hour["currency"], hour["sum"], hour["count"]) == ("USD", money(total), count), hour["hour_start"]
        hour_start = datetime.strptime(hour["hour_start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        inside = in_range("alice", max(start, hour_start), min(end, hour_start + timedelta(hours=1)), None)
        assert hour["by_currency"] == expected_by_currency(inside), hour["hour_start"]
    assert sum(h["count"] for h in hours) == len(in_range("alice", start, end))
    assert {c["currency"] for h in hours for c in h["by_currency"]} == {"USD", "EUR", "JPY"}


# --- /transactions and /latest ----------------------------------------------------------------


@pytest.mark.parametrize(("user", "limit"), [("alice", 7), ("dense", 500), ("dense", 97), ("multi", 50)])
def test_transaction_pages_walk_the_range_newest_first(client: FlaskClient, user: str, limit: int) -> None:
    start, end = NOW - timedelta(days=3), NOW + timedelta(hours=3)
    seen: list[dict[str, Any]] = []
    token = None
    for _ in range(100):
        query = {"from": _iso(start), "to": _iso(end), "limit": str(limit), **({"page_token": token} if token else {})}
        page = client.get(f"/api/v1/users/{user}/transactions", query_string=query).get_json()
        assert len(page["transactions"]) <= limit
        seen += page["transactions"]
        token = page["next_page_token"]
        if token is None:
            break
    expected = newest_first(in_range(user, start, end, None))
    assert [t["transaction_id"] for t in seen] == expected
    by_id = {r.transaction_id: r for r in LEDGER}
    for txn in seen:
        row = by_id[txn["transaction_id"]]
        assert txn["amount"] == money(row.amount_minor, row.currency)
        assert txn["user_id"] == user and txn["currency"] == row.currency
        assert txn["merchant_category"] == row.category


def test_a_page_of_a_dense_user_reads_a_bounded_window(seeded: Any) -> None:
    """2,600 rows in the last half hour: the newest 10 come back after reading a few hundred."""
    counted = {"rows": 0}
    table = clients.bigtable_table(seeded)

    class CountingTable:
        """The real table, counting the rows its scans return."""

        def read_rows(self, **kwargs: Any) -> Iterator[Any]:
            for row in table.read_rows(**kwargs):
                counted["rows"] += 1
                yield row

    start, end = NOW - timedelta(days=7), NOW
    page, after = queries.transactions_page(CountingTable(), "dense", _us(start), _us(end), 10)
    assert [t.key.decode().split("#")[2] for t in page] == newest_first(in_range("dense", start, end))[:10]
    assert after is not None
    assert counted["rows"] <= 400  # a capped probe of 200 rows, then a window sized from its density


def test_page_tokens_from_another_user_or_forged_are_refused(client: FlaskClient) -> None:
    first = client.get("/api/v1/users/u10/transactions", query_string={"from": "-3d", "limit": "2"}).get_json()
    token = first["next_page_token"]
    assert token
    stolen = client.get("/api/v1/users/u1/transactions", query_string={"from": "-3d", "page_token": token})
    assert stolen.status_code == 400 and stolen.get_json()["parameter"] == "page_token"
    for forged in ("not-a-token!", "AAAA", "x" * 500):
        response = client.get("/api/v1/users/u1/transactions", query_string={"page_token": forged})
        assert response.status_code == 400 and "page_token" in response.get_json()["error"]


def test_latest_returns_the_newest_n(client: FlaskClient) -> None:
    body = client.get("/api/v1/users/bob/latest?n=4").get_json()
    everything = [r for r in LEDGER if r.user_id == "bob"]
    assert [t["transaction_id"] for t in body["transactions"]] == newest_first(everything)[:4]
    assert (
        client.get("/api/v1/users/bob/latest").get_json()["transactions"][0]["transaction_id"]
        == (newest_first(everything)[0])
    )
    assert client.get("/api/v1/users/nobody/latest").get_json()["transactions"] == []


# --- everyone ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hours", [1, 3, 24])
@pytest.mark.parametrize("currency", [None, "USD", "EUR", "JPY", "BHD"])
def test_top_users_rank_whole_hours_within_one_currency(client: FlaskClient, hours: int, currency: str | None) -> None:
    current = NOW.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    totals: dict[str, int] = defaultdict(int)
    for row in LEDGER:
        if _us(start) <= row.event_us < _us(current + timedelta(hours=1)) and row.currency == (currency or "USD"):
            totals[row.user_id] += row.amount_minor
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:3]
    query = {"hours": hours, "n": 3, **({"currency": currency} if currency else {})}
    body = client.get("/api/v1/top-users", query_string=query).get_json()
    cur = currency or "USD"
    assert body == [
        {"rank": i + 1, "user_id": u, "currency": cur, "sum": money(c, cur)} for i, (u, c) in enumerate(ranked)
    ]
    if hours == 24:
        assert body  # every currency has spenders in the last day


@pytest.mark.parametrize("currency", ["USD", "JPY"])
def test_per_minute_counts_every_user_per_currency(client: FlaskClient, currency: str) -> None:
    body = client.get(f"/api/v1/stats/per-minute?minutes=1440&currency={currency}").get_json()
    current = NOW.replace(second=0, microsecond=0)
    assert len(body) == 1440
    assert body[-1]["minute_start"] == current.strftime("%Y-%m-%dT%H:%M:%SZ")
    for minute in body:
        start = datetime.strptime(minute["minute_start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        rows = [r for r in LEDGER if _us(start) <= r.event_us < _us(start + timedelta(minutes=1))]
        mine = [r for r in rows if r.currency == currency]
        assert (minute["currency"], minute["sum"], minute["count"]) == (
            currency,
            money(sum(r.amount_minor for r in mine), currency),
            len(mine),
        )
        assert minute["by_currency"] == expected_by_currency(rows)
    assert sum(c["count"] for m in body for c in m["by_currency"]) > 2600


# --- merchant categories, everyone's totals, everyone's latest -------------------------------------


def _category_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r.user_id for r in LEDGER],
            "currency": [r.currency for r in LEDGER],
            "category": [r.category for r in LEDGER],
            "amount_minor": [r.amount_minor for r in LEDGER],
            "event_us": [r.event_us for r in LEDGER],
        }
    )


def expected_categories(user: str | None, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """pandas over the ledger: per currency (code order), the highest sum first, ties by category."""
    frame = _category_frame()
    inside = frame[(frame.event_us >= _us(start)) & (frame.event_us < _us(end))]
    if user is not None:
        inside = inside[inside.user_id == user]
    grouped = inside.groupby(["currency", "category"]).amount_minor.agg(["sum", "count"]).reset_index()
    rows = sorted(
        ((str(g.currency), -int(g["sum"]), str(g.category), int(g["count"])) for _, g in grouped.iterrows()),
    )
    return [{"category": cat, "currency": cur, "sum": money(-neg, cur), "count": n} for cur, neg, cat, n in rows]


# Random microsecond ranges (never on an hour or a minute), plus a few under a minute and an hour.
CATEGORY_RANGES = [
    *_random_ranges(6, seed=13),
    (NOW - timedelta(seconds=50, microseconds=17), NOW - timedelta(seconds=3)),
    (NOW - timedelta(minutes=29, seconds=13, microseconds=5), NOW - timedelta(minutes=2, seconds=41)),
    (datetime(2026, 3, 15, 4, 59, 59, tzinfo=UTC), datetime(2026, 3, 15, 5, 0, 0, 1, tzinfo=UTC)),
    (NOW - timedelta(days=30), NOW + timedelta(days=1)),
]


@pytest.mark.parametrize(("start", "end"), CATEGORY_RANGES)
def test_categories_are_exact_for_any_range_for_a_user_and_for_everyone(
    client: FlaskClient, start: datetime, end: datetime
) -> None:
    query = {"from": _iso(start), "to": _iso(end)}
    for user in ("alice", "multi", "dense"):
        body = client.get(f"/api/v1/users/{user}/categories", query_string=query).get_json()
        assert body == expected_categories(user, start, end), user
    everyone = client.get("/api/v1/categories", query_string=query).get_json()
    assert everyone == expected_categories(None, start, end)
    assert everyone  # each range holds some spending
    only_jpy = client.get("/api/v1/categories", query_string={**query, "currency": "JPY"}).get_json()
    assert only_jpy == [row for row in everyone if row["currency"] == "JPY"]


@pytest.mark.parametrize(
    ("granularity", "start", "end"),
    [
        ("hour", *_random_ranges(1, seed=21)[0]),
        ("hour", NOW - timedelta(days=3, minutes=7, microseconds=9), NOW + timedelta(hours=3)),
        ("minute", NOW - timedelta(hours=2, seconds=31, microseconds=1), NOW - timedelta(seconds=7)),
    ],
)
def test_everyones_totals_per_step_match_the_ledger_and_add_up(
    client: FlaskClient, granularity: str, start: datetime, end: datetime
) -> None:
    step = timedelta(hours=1) if granularity == "hour" else timedelta(minutes=1)
    query = {"from": _iso(start), "to": _iso(end), "granularity": granularity, "currency": "JPY"}
    body = client.get("/api/v1/totals", query_string=query).get_json()
    first = datetime.fromtimestamp(_us(start) // 1_000_000 // int(step.total_seconds()) * step.total_seconds(), UTC)
    assert len(body) == -(-(_us(end) - _us(first)) // (int(step.total_seconds()) * 1_000_000))
    for index, entry in enumerate(body):
        at = first + index * step
        assert entry[f"{granularity}_start"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
        low, high = max(_us(at), _us(start)), min(_us(at + step), _us(end))
        rows = [r for r in LEDGER if low <= r.event_us < high]
        jpy = [r for r in rows if r.currency == "JPY"]
        assert (entry["currency"], entry["sum"], entry["count"]) == (
            "JPY",
            money(sum(r.amount_minor for r in jpy), "JPY"),
            len(jpy),
        )
        assert entry["by_currency"] == expected_by_currency(rows)
    assert sum(c["count"] for e in body for c in e["by_currency"]) == len(
        [r for r in LEDGER if _us(start) <= r.event_us < _us(end)]
    )


@pytest.mark.parametrize("n", [1, 7, 100, 500])
def test_latest_of_everyone_is_the_newest_n_across_card_holders(client: FlaskClient, n: int) -> None:
    body = client.get("/api/v1/transactions/latest", query_string={"n": n}).get_json()
    newest = sorted(LEDGER, key=lambda r: (-r.event_us, r.user_id, r.transaction_id))[:n]
    assert [(t["user_id"], t["transaction_id"]) for t in body["transactions"]] == [
        (r.user_id, r.transaction_id) for r in newest
    ]
    for shown, row in zip(body["transactions"], newest, strict=True):
        assert (shown["amount"], shown["currency"], shown["merchant_category"]) == (
            money(row.amount_minor, row.currency),
            row.currency,
            row.category,
        )
        assert shown["event_time"] == _rfc3339(row.event_us)
    assert len(client.get("/api/v1/transactions/latest").get_json()["transactions"]) == 100


# --- late rows and conflicts ----------------------------------------------------------------------


def _rfc3339(micros: int) -> str:
    text = (EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[:-7] if text.endswith(".000000") else text) + "Z"


@pytest.mark.parametrize(("start", "end", "limit"), [
    (NOW - timedelta(days=7), NOW, 100),
    (NOW - timedelta(hours=29, minutes=3), NOW - timedelta(hours=28, minutes=1, microseconds=7), 4),
    (NOW - timedelta(hours=30), NOW - timedelta(hours=30) + timedelta(minutes=7), 1),
])  # fmt: skip
def test_late_rows_are_listed_by_publish_time_page_by_page(
    client: FlaskClient, start: datetime, end: datetime, limit: int
) -> None:
    seen: list[dict[str, Any]] = []
    token = None
    for _ in range(50):
        query = {"from": _iso(start), "to": _iso(end), "limit": limit, **({"page_token": token} if token else {})}
        page = client.get("/api/v1/late", query_string=query).get_json()
        assert len(page["late"]) <= limit
        seen += page["late"]
        token = page["next_page_token"]
        if token is None:
            break
    expected = sorted(
        (r for r in LATE if _us(start) <= r.publish_us < _us(end)), key=lambda r: (r.publish_us, r.transaction_id)
    )
    assert expected
    assert seen == [
        {
            "transaction_id": r.transaction_id,
            "user_id": r.user_id,
            "amount": money(r.amount_minor, r.currency),
            "currency": r.currency,
            "event_time": _rfc3339(r.event_us),
            "publish_time": _rfc3339(r.publish_us),
            "run": 1,
        }
        for r in expected
    ]


def test_late_rows_default_to_the_last_seven_days(client: FlaskClient) -> None:
    body = client.get("/api/v1/late").get_json()
    assert [r["transaction_id"] for r in body["late"]] == [r.transaction_id for r in LATE]
    assert body["next_page_token"] is None
    assert client.get("/api/v1/late?from=-1h").get_json()["late"] == []


def test_a_late_page_token_only_continues_its_own_range(client: FlaskClient) -> None:
    first = client.get("/api/v1/late", query_string={"limit": 2}).get_json()
    token = first["next_page_token"]
    elsewhere = client.get("/api/v1/late", query_string={"from": "-2h", "page_token": token})
    assert elsewhere.status_code == 400 and elsewhere.get_json()["parameter"] == "page_token"


def _version(row: LedgerRow, publish_us: int, message_id: str, **changes: Any) -> dict[str, Any]:
    """One copy as /conflicts shows it, written out from the ledger row."""
    fields = {"user_id": row.user_id, "amount_minor": row.amount_minor, "currency": row.currency, **changes}
    return {
        "user_id": fields["user_id"],
        "amount": money(fields["amount_minor"], fields["currency"]),
        "currency": fields["currency"],
        "event_time": _rfc3339(row.event_us),
        "publish_time": _rfc3339(publish_us),
        "message_id": message_id,
    }


def test_conflicts_newest_run_first_with_both_versions(client: FlaskClient) -> None:
    body = client.get("/api/v1/conflicts?limit=10").get_json()
    assert body["conflicts_total"] == 4
    assert [(x["run"], x["transaction_id"]) for x in body["conflicts"]] == [
        (2, "carol-c"),
        (2, U1_FIRST.transaction_id),
        (1, "alice-0"),
        (1, BOB_FIRST.transaction_id),
    ]
    second, minute = 1_000_000, 60_000_000
    carol = body["conflicts"][0]
    assert carol == {
        "run": 2,
        "transaction_id": "carol-c",
        "reason": "conflicting_duplicate",
        "counted": _version(CAROL, CAROL.event_us + second, "m-carol-c"),
        "copy": _version(CAROL, CAROL.event_us + second + minute, "m-carol-c-bhd", currency="BHD", amount_minor=7),
    }
    assert carol["copy"]["amount"] == "0.007"  # 7 fils
    u1 = body["conflicts"][1]
    assert u1["counted"] == _version(U1_FIRST, U1_FIRST.event_us + second, f"m-{U1_FIRST.transaction_id}")
    assert u1["copy"]["amount"] == money(U1_FIRST.amount_minor + 1)
    alice = body["conflicts"][2]
    assert (alice["counted"]["currency"], alice["copy"]["currency"], alice["copy"]["amount"]) == ("USD", "JPY", "999")
    bob = body["conflicts"][3]
    assert (bob["counted"]["user_id"], bob["copy"]["user_id"]) == ("bob", "mallory")
    limited = client.get("/api/v1/conflicts?limit=1").get_json()["conflicts"]
    assert [x["transaction_id"] for x in limited] == ["carol-c"]


def test_users_are_listed_by_prefix(client: FlaskClient) -> None:
    assert client.get("/api/v1/users?prefix=u1").get_json()["users"] == ["u1", "u10"]
    assert client.get("/api/v1/users?prefix=u10").get_json()["users"] == ["u10"]
    assert client.get("/api/v1/users?limit=2").get_json()["users"] == sorted(USERS)[:2]
    assert client.get("/api/v1/users?prefix=zz").get_json()["users"] == []


# --- the original routes ----------------------------------------------------------------------


def test_original_routes_answer_like_the_api(client: FlaskClient) -> None:
    query = {"user_id": "alice", "from": "-26h", "to": "-10m"}
    start, end = NOW - timedelta(hours=26), NOW - timedelta(minutes=10)
    total = client.get("/sum", query_string=query).get_json()
    assert (total["sum"], total["count"]) == expected_sum("alice", start, end)
    hours = client.get("/hour", query_string=query).get_json()
    assert sum(Decimal(h["sum"]) for h in hours) == Decimal(total["sum"])
    listed = client.get("/list", query_string={**query, "limit": "500"}).get_json()
    assert [t["transaction_id"] for t in listed["transactions"]] == newest_first(in_range("alice", start, end, None))
    euros = client.get("/sum", query_string={**query, "currency": "EUR"}).get_json()
    assert (euros["currency"], euros["sum"], euros["count"]) == ("EUR", *expected_sum("alice", start, end, "EUR"))
    assert euros["by_currency"] == total["by_currency"] == expected_by_currency(in_range("alice", start, end, None))
    default = client.get("/sum?user_id=alice").get_json()
    assert (default["sum"], default["count"]) == expected_sum("alice", NOW - timedelta(hours=1), NOW)


# --- refusals -----------------------------------------------------------------------------------

BAD = [
    ("/api/v1/users/al%20ice/sum", "user_id"),
    ("/api/v1/users/" + "a" * 65 + "/sum", "user_id"),
    ("/api/v1/users/u%23x/sum", "user_id"),
    ("/api/v1/users/%E2%82%AC/hourly", "user_id"),
    ("/api/v1/users/u1/sum?from=yesterday", "from"),
    ("/api/v1/users/u1/sum?to=2026-13-01", "to"),
    ("/api/v1/users/u1/sum?from=-99999999999d", "from"),
    ("/api/v1/users/u1/sum?from=9999-12-31T23:59:59-01:00", "from"),
    ("/api/v1/users/u1/sum?from=1900-01-01T00:00:00Z", "from"),
    ("/api/v1/users/u1/sum?from=-1h&to=-2h", "from"),
    ("/api/v1/users/u1/sum?from=-400d", "from"),
    ("/api/v1/users/u1/hourly?from=-32d", "from"),
    ("/api/v1/users/u1/transactions?limit=0", "limit"),
    ("/api/v1/users/u1/transactions?limit=501", "limit"),
    ("/api/v1/users/u1/transactions?limit=ten", "limit"),
    ("/api/v1/users/u1/transactions?limit=%D9%A3", "limit"),
    ("/api/v1/users/u1/latest?n=0", "n"),
    ("/api/v1/users/u1/latest?n=101", "n"),
    ("/api/v1/users/u1/latest?n=-1", "n"),
    ("/api/v1/top-users?hours=0", "hours"),
    ("/api/v1/top-users?hours=169", "hours"),
    ("/api/v1/top-users?n=1000", "n"),
    ("/api/v1/stats/per-minute?minutes=1441", "minutes"),
    ("/api/v1/stats/per-minute?minutes=1.5", "minutes"),
    ("/api/v1/users?prefix=%3Cscript%3E", "prefix"),
    ("/api/v1/users?limit=9999", "limit"),
    ("/sum", "user_id"),
    ("/sum?user_id=%3Cb%3E", "user_id"),
    ("/hour?user_id=u1&from=garbage", "from"),
    ("/list?user_id=u1&limit=-3", "limit"),
    ("/list?user_id=u1&from=0m&to=-1m", "from"),
    ("/api/v1/users/u1/sum?currency=XYZ", "currency"),
    ("/api/v1/users/u1/sum?currency=usd", "currency"),
    ("/api/v1/users/u1/sum?currency=US", "currency"),
    ("/api/v1/users/u1/sum?currency=%E2%82%AC", "currency"),
    ("/api/v1/users/u1/hourly?currency=DOLLARS", "currency"),
    ("/api/v1/top-users?currency=ABC", "currency"),
    ("/api/v1/stats/per-minute?currency=QQQ", "currency"),
    ("/sum?user_id=u1&currency=XXXX", "currency"),
    ("/hour?user_id=u1&currency=E", "currency"),
    ("/api/v1/late?from=-40d", "from"),
    ("/api/v1/late?limit=501", "limit"),
    ("/api/v1/late?page_token=%21%21", "page_token"),
    ("/api/v1/conflicts?limit=0", "limit"),
    ("/api/v1/conflicts?limit=101", "limit"),
    ("/api/v1/users/u1/categories?from=-400d", "from"),
    ("/api/v1/users/u1/categories?currency=usd", "currency"),
    ("/api/v1/categories?from=now&to=-1h", "from"),
    ("/api/v1/totals?granularity=day", "granularity"),
    ("/api/v1/totals?granularity=minute&from=-2d", "granularity"),
    ("/api/v1/totals?from=-32d", "from"),
    ("/api/v1/transactions/latest?n=0", "n"),
    ("/api/v1/transactions/latest?n=501", "n"),
]


@pytest.mark.parametrize(("url", "parameter"), BAD)
def test_a_bad_parameter_is_a_400_naming_it(client: FlaskClient, url: str, parameter: str) -> None:
    response = client.get(url)
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["parameter"] == parameter
    assert f"'{parameter}'" in body["error"]


def test_unknown_paths_and_methods_answer_json(client: FlaskClient) -> None:
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404 and "error" in missing.get_json()
    wrong = client.delete("/api/v1/users/u1/sum")
    assert wrong.status_code == 405 and "error" in wrong.get_json()


# --- backends down ------------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bigtable_unreachable_is_a_503(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = _closed_port()
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", f"127.0.0.1:{port}")
    cfg = make_config(tmp_path, bigtable_emulator_host=f"127.0.0.1:{port}")
    app = create_app(cfg, clock=lambda: NOW)
    app.extensions["txn"].read_timeout_s = 1.0
    client = app.test_client()
    for url in ("/api/v1/users/u1/sum", "/api/v1/users/u1/transactions", "/sum?user_id=u1"):
        response = client.get(url)
        assert response.status_code == 503
        assert "Bigtable unreachable" in response.get_json()["error"]
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json()["bigtable"]["reachable"] is False
    assert health.get_json()["status"] == "degraded"


def test_a_missing_table_is_a_503_that_says_so(cfg: Any) -> None:
    client = create_app(cfg, clock=lambda: NOW).test_client()
    response = client.get("/api/v1/users/u1/sum")
    assert response.status_code == 503
    assert "does not exist" in response.get_json()["error"]


# --- health (the whole-hour cache: tests/unit/test_whole_hour_cache.py) ---------------------------


def test_health_reports_the_pipeline(seeded: Any) -> None:
    dead = spool.local_path(seeded.spool_dir)
    rows = pa.table(
        {
            "message_id": ["m1", "m2", "m3"],
            "publish_time": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")),
            "reason": ["bad_json"] * 3,
            "detail": ["x"] * 3,
            "payload": [b"{"] * 3,
            "attributes": ["{}"] * 3,
        },
        schema=spool.DEAD_LETTER_SCHEMA,
    )
    spool.write_atomic(rows, spool.new_file_path(str(dead), spool.DEAD_LETTER))
    clients.ensure_topic(seeded)
    app = create_app(seeded, clock=lambda: NOW)
    body = app.test_client().get("/health").get_json()
    assert body["status"] == "ok"
    assert body["bigtable"]["reachable"] and body["pubsub"]["reachable"] and body["pubsub"]["topic_exists"]
    assert body["last_job_run"]["last_run"] == 2 and body["last_job_run"]["pending"] is None
    assert body["spool_backlog"] == 0
    assert body["dead_letter_count"] == 3
    assert body["conflicts_total"] == 4
    assert body["recent_runs"] == [
        {"run": 2, "late_rows": 0, "set_aside": 0, "conflicts": 2},
        {"run": 1, "late_rows": len(LATE), "set_aside": 0, "conflicts": 2},
    ]
    spool.write_atomic(rows.slice(0, 2), spool.new_file_path(str(dead), spool.DEAD_LETTER))
    assert app.test_client().get("/health").get_json()["dead_letter_count"] == 5


def test_health_reports_freshness_and_the_backlog_in_rows(seeded: Any) -> None:
    clients.ensure_topic(seeded)
    app = create_app(seeded, clock=lambda: NOW)
    body = app.test_client().get("/health").get_json()
    fresh = body["freshness"]
    # The second run's one file is the newest processed: its newest publish time, from pandas.
    newest = second_run_spool()["publish_time"].max().to_pydatetime()
    assert datetime.fromisoformat(fresh["newest_counted_publish_time"]) == newest
    job = body["last_job_run"]
    assert fresh["last_run_finished_at"] == max(job["last_finished_at"], job["last_success_at"])
    assert (fresh["backlog_files"], fresh["backlog_rows"], fresh["backlog_rows_partial"]) == (0, 0, False)
    waiting = write_spool(seeded, spool_frame(LATE), files=1)
    try:
        fresh = app.test_client().get("/health").get_json()["freshness"]
        assert (fresh["backlog_files"], fresh["backlog_rows"]) == (1, len(LATE))
    finally:
        for path in waiting:
            path.unlink()
