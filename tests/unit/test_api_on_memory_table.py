"""The JSON API served from an in-memory table handed to create_app: the routes read through the
same queries as on Bigtable, with no emulator. Expected answers are written out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.memtable import MemoryTable

from common import rowkeys, store
from common.config import from_dict
from webapp import create_app

NOW = datetime(2026, 3, 15, 10, 20, 30, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 15, hour, minute, tzinfo=UTC)


ROWS = [  # (user, event time, id, minor units, currency, category)
    ("ann", at(8, 15), "n1", 1250, "USD", "fuel"),
    ("ann", at(9, 5), "n2", 300, "USD", "grocery"),
    ("ann", at(9, 40), "n3", 700, "JPY", "online"),
    ("ann", at(10, 10), "n4", -50, "USD", "grocery"),
    ("ann", at(10, 20), "n5", 1234, "BHD", "travel"),
]
HOURS = {  # the dcfbhour counters of ROWS, added up by hand
    at(8): {"USD": (1250, 1)},
    at(9): {"USD": (300, 1), "JPY": (700, 1)},
    at(10): {"USD": (-50, 1), "BHD": (1234, 1)},
}


NINE_OCLOCK_CATEGORIES: list[store.Cell] = [  # n2 and n3
    (store.CAT, b"USD:grocery:sum", b"300"),
    (store.CAT, b"USD:grocery:count", b"1"),
    (store.CAT, b"JPY:online:sum", b"700"),
    (store.CAT, b"JPY:online:count", b"1"),
]


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    table = MemoryTable()
    rows = [
        (
            rowkeys.transaction_key(user, us(when), tid),
            store.transaction_cells(units, currency, category, when.strftime("%Y-%m-%dT%H:%M:%SZ"), 1),
        )
        for user, when, tid, units, currency, category in ROWS
    ]
    for hour, currencies in HOURS.items():
        cells: list[store.Cell] = []
        for currency, (total, count) in currencies.items():
            cells += [
                (store.HOUR, f"{currency}:sum".encode(), str(total).encode()),
                (store.HOUR, f"{currency}:count".encode(), str(count).encode()),
            ]
        rows.append((rowkeys.hour_bucket_key("ann", us(hour) // 1_000_000), cells))
    rows.append((rowkeys.user_directory_key("ann"), [(store.USER, b"seen", b"1")]))
    # The category counters and the time index of ROWS, written out by hand.
    for user, when, tid, units, currency, category in ROWS:
        minute_s = us(when) // 1_000_000
        cells = [
            (store.CAT, f"{currency}:{category}:sum".encode(), str(units).encode()),
            (store.CAT, f"{currency}:{category}:count".encode(), b"1"),
        ]
        rows.append((rowkeys.category_all_minute_key(minute_s), cells))
        rows.append((rowkeys.time_index_key(us(when), tid, user), store.time_index_cells(units, currency, category, 1)))
    rows.append((rowkeys.category_hour_key("ann", us(at(9)) // 1_000_000), NINE_OCLOCK_CATEGORIES))
    rows.append((rowkeys.category_all_hour_key(us(at(9)) // 1_000_000), NINE_OCLOCK_CATEGORIES))
    assert store.write_cell_rows(table, rows) == []
    # An emulator address nothing listens on: a read that went to Bigtable would fail.
    cfg = from_dict({"project_id": "test-project", "bigtable_emulator_host": "127.0.0.1:9"})
    return create_app(cfg, clock=lambda: NOW, table=table).test_client()


@pytest.mark.parametrize(
    ("start", "end", "currency", "expected"),
    [
        ("2026-03-15T08:30:00Z", "2026-03-15T10:15:00Z", "USD", ("2.50", 2)),  # partial hours at both ends
        ("2026-03-15T08:00:00Z", "2026-03-15T11:00:00Z", "USD", ("15.00", 3)),  # whole hours
        ("2026-03-15T08:00:00Z", "2026-03-15T11:00:00Z", "JPY", ("700", 1)),
        ("2026-03-15T10:15:00Z", "2026-03-15T10:30:00Z", "BHD", ("1.234", 1)),  # inside one hour
        ("2026-03-15T10:20:00Z", "2026-03-15T10:20:00Z", "USD", ("0.00", 0)),  # empty
    ],
)
def test_the_sum_route_reads_the_handed_table(
    client: FlaskClient, start: str, end: str, currency: str, expected: tuple[str, int]
) -> None:
    body = client.get("/api/v1/users/ann/sum", query_string={"from": start, "to": end, "currency": currency})
    assert body.status_code == 200, body.get_data(as_text=True)
    assert (body.get_json()["sum"], body.get_json()["count"]) == expected


def test_transaction_pages_follow_their_tokens(client: FlaskClient) -> None:
    seen: list[dict[str, Any]] = []
    query: dict[str, str] = {"from": "2026-03-15T00:00:00Z", "to": "now", "limit": "2"}
    for _ in range(10):
        page = client.get("/api/v1/users/ann/transactions", query_string=query).get_json()
        seen += page["transactions"]
        if page["next_page_token"] is None:
            break
        query["page_token"] = page["next_page_token"]
    assert [(t["transaction_id"], t["amount"], t["currency"]) for t in seen] == [
        ("n5", "1.234", "BHD"),
        ("n4", "-0.50", "USD"),
        ("n3", "700", "JPY"),
        ("n2", "3.00", "USD"),
        ("n1", "12.50", "USD"),
    ]


def test_latest_and_the_user_list(client: FlaskClient) -> None:
    latest = client.get("/api/v1/users/ann/latest?n=2").get_json()["transactions"]
    assert [t["transaction_id"] for t in latest] == ["n5", "n4"]
    assert client.get("/api/v1/users?prefix=a").get_json()["users"] == ["ann"]


def test_hourly_gives_each_hour_of_the_range(client: FlaskClient) -> None:
    hours = client.get(
        "/api/v1/users/ann/hourly", query_string={"from": "2026-03-15T08:30:00Z", "to": "2026-03-15T10:15:00Z"}
    ).get_json()
    assert [(h["hour_start"], h["sum"], h["count"]) for h in hours] == [
        ("2026-03-15T08:00:00Z", "0.00", 0),
        ("2026-03-15T09:00:00Z", "3.00", 1),
        ("2026-03-15T10:00:00Z", "-0.50", 1),
    ]


def test_categories_add_whole_hours_to_the_edges_for_a_user_and_for_everyone(client: FlaskClient) -> None:
    # ann: the 09:00 counters, then n4 (10:10) from the transaction rows; n1 (08:15) lies outside.
    mine = client.get(
        "/api/v1/users/ann/categories", query_string={"from": "2026-03-15T08:30:00Z", "to": "2026-03-15T10:15:00Z"}
    ).get_json()
    assert mine == [
        {"category": "online", "currency": "JPY", "sum": "700", "count": 1},
        {"category": "grocery", "currency": "USD", "sum": "2.50", "count": 2},
    ]
    # everyone: the 09:00 counters, the 08:15 minute's, and n4 from the time index (10:10:00-10:10:30).
    everyone = client.get(
        "/api/v1/categories", query_string={"from": "2026-03-15T08:15:00Z", "to": "2026-03-15T10:10:30Z"}
    ).get_json()
    assert everyone == [
        {"category": "online", "currency": "JPY", "sum": "700", "count": 1},
        {"category": "fuel", "currency": "USD", "sum": "12.50", "count": 1},
        {"category": "grocery", "currency": "USD", "sum": "2.50", "count": 2},
    ]


def test_everyones_latest_and_totals_read_the_time_index(client: FlaskClient) -> None:
    latest = client.get("/api/v1/transactions/latest?n=3").get_json()["transactions"]
    assert [(t["user_id"], t["transaction_id"], t["amount"]) for t in latest] == [
        ("ann", "n5", "1.234"),
        ("ann", "n4", "-0.50"),
        ("ann", "n3", "700"),
    ]
    minutes = client.get(
        "/api/v1/totals",
        query_string={"from": "2026-03-15T10:09:30Z", "to": "2026-03-15T10:10:30Z", "granularity": "minute"},
    ).get_json()
    assert [(m["minute_start"], m["sum"], m["count"]) for m in minutes] == [
        ("2026-03-15T10:09:00Z", "0.00", 0),
        ("2026-03-15T10:10:00Z", "-0.50", 1),
    ]


def test_a_path_with_an_empty_segment_is_a_json_404_not_an_html_redirect(client: FlaskClient) -> None:
    for path in ("/api/v1/users/%0A%2F/latest", "/api/v1/users/u1//sum", "/api/v1//users"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "application/json", path
