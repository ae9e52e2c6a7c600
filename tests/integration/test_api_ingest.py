"""POST /api/v1/transactions against the Pub/Sub emulator: the token, the validation and the
publish, checked by pulling from a real subscription."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import cleanup_resources, make_config
from flask.testing import FlaskClient
from google.api_core import exceptions as gexc

from common import clients
from common.config import Config
from webapp import create_app

NOW = datetime(2026, 3, 15, 10, 20, 30, tzinfo=UTC)
TOKEN = "s3cret-ingest-token-0042"


def body(**overrides: Any) -> bytes:
    message = {
        "schema_version": 1,
        "transaction_id": "r-0001",
        "user_id": "alice",
        "amount": "42.17",
        "currency": "USD",
        "event_time": "2026-03-15T10:00:00.123456Z",
        "merchant_category": "grocery",
    }
    message.update(overrides)
    return json.dumps({k: v for k, v in message.items() if v is not None}).encode()


def pull(cfg: Config, want: int, wait_s: float = 10.0) -> list[Any]:
    """Pull until `want` messages arrived or wait_s passed; ack them; return them all."""
    subscriber = clients.subscriber_client(cfg)
    path = clients.subscription_path(cfg)
    got: list[Any] = []
    deadline = time.monotonic() + wait_s
    try:
        while len(got) < want and time.monotonic() < deadline:
            try:
                response = subscriber.pull(subscription=path, max_messages=10, timeout=2)
            except gexc.DeadlineExceeded:
                continue
            got += [m.message for m in response.received_messages]
            if response.received_messages:
                subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
    finally:
        subscriber.close()
    return got


@pytest.fixture
def secured(emulators: dict[str, str], tmp_path: Path) -> Iterator[Config]:
    cfg = make_config(tmp_path, ingest_token=TOKEN)
    clients.ensure_subscription(cfg)
    yield cfg
    cleanup_resources(cfg)


@pytest.fixture
def client(secured: Config) -> FlaskClient:
    return create_app(secured, clock=lambda: NOW).test_client()


def post(client: FlaskClient, data: bytes, token: str | None = TOKEN, scheme: str = "Bearer") -> Any:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return client.post("/api/v1/transactions", data=data, headers=headers, content_type="application/json")


def test_a_good_transaction_is_accepted_and_arrives_on_the_topic(client: FlaskClient, secured: Config) -> None:
    response = post(client, body())
    assert response.status_code == 202
    assert response.get_json()["transaction_id"] == "r-0001"
    [message] = pull(secured, 1)
    assert json.loads(message.data) == {
        "schema_version": 1,
        "transaction_id": "r-0001",
        "user_id": "alice",
        "amount": "42.17",
        "currency": "USD",
        "event_time": "2026-03-15T10:00:00.123456Z",
        "merchant_category": "grocery",
    }
    assert dict(message.attributes) == {"event_time": "2026-03-15T10:00:00.123456Z", "schema_version": "1"}
    assert message.message_id == response.get_json()["message_id"]


def test_no_token_or_a_wrong_one_is_401_and_publishes_nothing(client: FlaskClient, secured: Config) -> None:
    refused = [
        post(client, body(transaction_id="no-token"), token=None),
        post(client, body(transaction_id="wrong-token"), token="guess"),
        post(client, body(transaction_id="prefix-token"), token=TOKEN[:-1]),
        post(client, body(transaction_id="basic"), scheme="Basic"),
    ]
    for response in refused:
        assert response.status_code == 401
        assert "Bearer" in response.get_json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert post(client, body(transaction_id="the-only-one")).status_code == 202
    # Everything refused came first; had any of it been published, it would arrive with this one.
    arrived = pull(secured, 5, wait_s=3)
    assert [json.loads(m.data)["transaction_id"] for m in arrived] == ["the-only-one"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (body(amount="12.345"), "too_many_decimals"),
        (body(amount="NaN"), "non_finite_amount"),
        (body(amount="2000000.00"), "absurd_amount"),
        (body(amount=None), "missing_field"),
        (body(amount=True), "bad_type"),
        (body(user_id="<script>"), "bad_user_id"),
        (body(transaction_id="has space"), "bad_transaction_id"),
        (body(event_time="2026-03-15T10:00:00"), "bad_event_time"),
        (body(event_time="1999-12-31T23:59:59Z"), "absurd_event_time"),
        (body(event_time="2026-03-17T10:00:00Z"), "absurd_event_time"),
        (body(currency="usd"), "bad_currency"),
        (body(schema_version=2), "bad_schema_version"),
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b"", "empty"),
        (b"\xff\xfe", "bad_encoding"),
        (body(merchant_category="x" * 9000), "oversize"),
    ],
)
def test_a_bad_body_is_refused_with_the_spoolers_reason(client: FlaskClient, data: bytes, reason: str) -> None:
    response = post(client, data)
    assert response.status_code == 400
    assert response.get_json()["reason"] == reason
    assert response.get_json()["parameter"] == "body"


def test_refused_bodies_publish_nothing(client: FlaskClient, secured: Config) -> None:
    assert post(client, body(amount="1.001", transaction_id="bad")).status_code == 400
    assert post(client, body(transaction_id="good")).status_code == 202
    assert [json.loads(m.data)["transaction_id"] for m in pull(secured, 3, wait_s=3)] == ["good"]


def test_the_legacy_csv_line_is_accepted(client: FlaskClient, secured: Config) -> None:
    epoch = int((NOW - timedelta(minutes=5)).timestamp())
    response = post(client, f"bob,12.34,{epoch}".encode())
    assert response.status_code == 202
    assert response.get_json()["transaction_id"].startswith("csv-")
    [message] = pull(secured, 1)
    assert json.loads(message.data)["amount"] == "12.34"
    assert json.loads(message.data)["user_id"] == "bob"


def test_without_a_configured_token_no_header_is_needed(emulators: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    clients.ensure_subscription(cfg)
    try:
        client = create_app(cfg, clock=lambda: NOW).test_client()
        assert post(client, body(), token=None).status_code == 202
        assert len(pull(cfg, 1)) == 1
    finally:
        cleanup_resources(cfg)


def test_a_missing_topic_is_a_503(emulators: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    client = create_app(cfg, clock=lambda: NOW).test_client()
    response = post(client, body(), token=None)
    assert response.status_code == 503
    assert "does not exist" in response.get_json()["error"]


def test_an_oversized_request_is_cut_off(client: FlaskClient) -> None:
    response = post(client, b"x" * 100_000)
    assert response.status_code == 413
    assert "error" in response.get_json()


# --- what a web page could make a browser send, and what would never be counted -------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # the types a page may POST cross-site without a preflight ...
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",  # ... and near misses
        "text/json",
        "",
    ],
)
def test_a_body_not_declared_json_is_415_and_publishes_nothing(
    client: FlaskClient, secured: Config, content_type: str
) -> None:
    response = client.post(
        "/api/v1/transactions",
        data=body(transaction_id="not-json"),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
    )
    assert response.status_code == 415
    assert response.get_json()["parameter"] == "Content-Type"
    assert "application/json" in response.get_json()["error"]
    assert pull(secured, 1, wait_s=2) == []


def test_json_with_a_charset_is_accepted(client: FlaskClient, secured: Config) -> None:
    response = client.post(
        "/api/v1/transactions",
        data=body(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 202
    assert len(pull(secured, 1)) == 1


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://evil.example",
        "null",  # sandboxed frames and file: pages
        "http://localhost:8080",  # another program on this machine, not this server's own page
        "http://127.0.0.1",
        "https://localhost",
        "http://localhost.evil.example",
        "http://localhost/path",
        "garbage",
    ],
)
def test_a_cross_origin_post_is_403_and_publishes_nothing(client: FlaskClient, secured: Config, origin: str) -> None:
    response = client.post(
        "/api/v1/transactions",
        data=body(transaction_id="cross-origin"),
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": origin},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "Origin" in response.get_json()["error"]
    assert pull(secured, 1, wait_s=2) == []


def test_the_issues_request_is_refused_even_without_a_token(emulators: dict[str, str], tmp_path: Path) -> None:
    # No ingest_token: a text/plain POST from another site's page used to be published (202).
    cfg = make_config(tmp_path)
    clients.ensure_subscription(cfg)
    try:
        client = create_app(cfg, clock=lambda: NOW).test_client()
        response = client.post(
            "/api/v1/transactions",
            data=body(),
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        assert response.status_code == 403
        assert pull(cfg, 1, wait_s=2) == []
    finally:
        cleanup_resources(cfg)


def test_the_pages_own_origin_and_configured_origins_may_post(emulators: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, ingest_token=TOKEN, read_token="r" * 24, allowed_origins=["https://Txn.Example.com:443"]
    )
    clients.ensure_subscription(cfg)
    try:
        client = create_app(cfg, clock=lambda: NOW).test_client()
        cases = [
            ("localhost:5000", "http://localhost:5000", "own-origin"),
            ("127.0.0.1:8123", "http://127.0.0.1:8123", "own-origin-ip"),
            ("[::1]:5000", "http://[::1]:5000", "own-origin-v6"),
            ("txn.example.com", "https://txn.example.com", "configured"),
            ("txn.example.com:443", "https://TXN.example.com", "configured-upper"),
            ("txn.example.com", None, "no-origin"),  # curl and other programs send none
        ]
        for host, origin, transaction_id in cases:
            headers = {"Authorization": f"Bearer {TOKEN}", "Host": host, **({"Origin": origin} if origin else {})}
            response = client.post(
                "/api/v1/transactions",
                data=body(transaction_id=transaction_id),
                headers=headers,
                content_type="application/json",
            )
            assert response.status_code == 202, (host, origin, response.get_json())
        published = sorted(json.loads(m.data)["transaction_id"] for m in pull(cfg, len(cases)))
        assert published == sorted(case[2] for case in cases)
    finally:
        cleanup_resources(cfg)


def test_an_event_beyond_the_late_horizon_is_422_and_publishes_nothing(client: FlaskClient, secured: Config) -> None:
    # late_horizon_hours is 72 by default: the job would set aside anything published later than
    # 72 h after its event time, and this POST is published now (NOW = 2026-03-15T10:20:30Z).
    late = post(client, body(transaction_id="late", event_time="2026-03-12T10:20:29Z"))
    assert late.status_code == 422
    assert late.get_json()["reason"] == "late"
    assert late.get_json()["parameter"] == "body"
    assert "72 h" in late.get_json()["error"]
    csv_epoch = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert post(client, f"bob,1.00,{csv_epoch}".encode()).status_code == 422
    # One minute inside the horizon is counted, so it is accepted.
    assert post(client, body(transaction_id="in-time", event_time="2026-03-12T10:21:30Z")).status_code == 202
    assert [json.loads(m.data)["transaction_id"] for m in pull(secured, 3, wait_s=3)] == ["in-time"]


def test_the_late_horizon_follows_the_config(emulators: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path, late_horizon_hours=1)
    clients.ensure_topic(cfg)
    try:
        client = create_app(cfg, clock=lambda: NOW).test_client()
        assert post(client, body(event_time="2026-03-15T09:20:29Z"), token=None).status_code == 422
        assert post(client, body(event_time="2026-03-15T09:20:31Z"), token=None).status_code == 202
    finally:
        cleanup_resources(cfg)


def test_a_burst_over_the_rate_limit_is_429_with_retry_after(emulators: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path, ingest_token=TOKEN, read_token="r" * 24, post_rate_limit="5 per minute")
    clients.ensure_subscription(cfg)
    try:
        client = create_app(cfg, clock=lambda: NOW).test_client()
        statuses = []
        for i in range(8):
            response = post(client, body(transaction_id=f"burst-{i}"))
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert 1 <= int(response.headers["Retry-After"]) <= 61
                assert "5 per minute" in response.get_json()["error"]
        assert statuses == [202] * 5 + [429] * 3
        # Counted per client address: another client still gets through, and reads are not limited.
        other = client.post(
            "/api/v1/transactions",
            data=body(transaction_id="other-client"),
            headers={"Authorization": f"Bearer {TOKEN}"},
            content_type="application/json",
            environ_base={"REMOTE_ADDR": "198.51.100.7"},
        )
        assert other.status_code == 202
        assert all(
            client.get("/health").status_code in (200, 503) for _ in range(10)
        )  # /health has no table here: 503, never 429
        published = sorted(json.loads(m.data)["transaction_id"] for m in pull(cfg, 7))
        assert published == sorted([f"burst-{i}" for i in range(5)] + ["other-client"])
    finally:
        cleanup_resources(cfg)
