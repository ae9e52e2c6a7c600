"""Hostile requests to the Flask app over a seeded Bigtable table: markup and junk in every user id
and query parameter never come back as a 5xx or as HTML; the receipts entry point refuses every
request without the right token, from another origin or not declared JSON, and publishes exactly
the bodies it accepts; a read token refuses every data route to a missing or wrong one; a burst
over the POST rate limit is cut off; and a schemathesis fuzz of the OpenAPI document (positive and
negative cases; more under --heavy) finds no 5xx. tests/integration/test_api_openapi.py,
tests/unit/test_dashboard.py, tests/integration/test_api_ingest.py and tests/integration/test_api_security.py cover the
document, the page and the common cases; this adds the hostile and the generated ones. The tally
counts the requests refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from conftest import cleanup_resources, make_config
from flask import Flask
from flask.testing import FlaskClient
from google.api_core import exceptions as gexc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from support.scale import Scale
from support.seed import random_ledger, run_job
from support.tally import TALLY

from common import clients
from common.config import Config
from webapp import create_app

TOKEN = "t0ken-for-the-hostile-tests"
READ_TOKEN = "read-t0ken-for-the-hostile-tests"
JSON = "application/json"
NOW = datetime.now(UTC).replace(microsecond=0)
USERS = ["u1", "u10", "a.b-c_d"]
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</title><svg/onload=alert(1)>",
    "javascript:alert(1)",
    "u1<b>",
    "u1'\"",
    "u1%00",
    "u1\x00",
    "u1\r\nSet-Cookie: a=1",
    "u1#2",
    "~job",
    "u1/../u10",
    "..%2F..%2Fetc%2Fpasswd",
    "ü",
    "ｕ１",
    "u1\u200b",
    "u" * 65,
    "' OR '1'='1",
    "{{7*7}}",
    "${jndi:ldap://x/a}",
]
USER_ROUTES = [
    "/api/v1/users/{}/sum",
    "/api/v1/users/{}/transactions",
    "/api/v1/users/{}/hourly",
    "/api/v1/users/{}/latest",
]
QUERY_ROUTES = ["/sum", "/hour", "/list"]
ALL_GET_ROUTES = [
    *[route.format("u1") for route in USER_ROUTES],
    *QUERY_ROUTES,
    "/api/v1/top-users",
    "/api/v1/stats/per-minute",
    "/api/v1/users",
    "/health",
]
PARAMETERS = ["from", "to", "n", "limit", "hours", "minutes", "prefix", "page_token", "user_id"]


@pytest.fixture(scope="module")
def seeded(spark: Any, emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    # The fuzz posts far more than a client may: the limit has its own test below.
    cfg = make_config(tmp_path_factory.mktemp("hostile-api"), ingest_token=TOKEN, post_rate_limit="1000000 per minute")
    # The fuzz is only worth something when the routes have data to read.
    assert run_job(spark, cfg, random_ledger(USERS, NOW - timedelta(days=2), NOW, 3)).rows_written > 100
    clients.ensure_subscription(cfg)
    yield cfg
    cleanup_resources(cfg)


@pytest.fixture(scope="module")
def app(seeded: Config) -> Flask:
    app = create_app(seeded)
    # The run stream stays open until its time is up and the fuzzers read each answer whole: here
    # its streams end after half a second, so requests to it are checked and none hangs.
    app.extensions["txn_push"].max_stream_seconds = 0.5
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def assert_json_never_html(response: Any) -> dict[str, Any] | list[Any]:
    """The answer is JSON that no browser will sniff into HTML, and not a server error."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json", response.mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.get_data(as_text=True)
    assert not body.lstrip().startswith("<")
    parsed: dict[str, Any] | list[Any] = json.loads(body)
    return parsed


def drain(cfg: Config, wait_s: float = 3.0) -> list[Any]:
    """Pull and ack everything on the test subscription (what the entry point published)."""
    subscriber = clients.subscriber_client(cfg)
    path = clients.subscription_path(cfg)
    got: list[Any] = []
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            try:
                response = subscriber.pull(subscription=path, max_messages=100, timeout=1)
            except gexc.DeadlineExceeded:
                continue
            if response.received_messages:
                got += [m.message for m in response.received_messages]
                subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
                deadline = time.monotonic() + wait_s
    finally:
        subscriber.close()
    return got


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_user_id_is_refused_as_json_on_every_route(client: FlaskClient, hostile: str) -> None:
    for route in USER_ROUTES:
        TALLY.tried_malformed("hostile user ids (API)")
        response = client.get(route.format(quote(hostile, safe="")))
        body = assert_json_never_html(response)
        assert response.status_code in (400, 404), (route, hostile)
        if response.status_code == 400:
            assert isinstance(body, dict) and body["parameter"] == "user_id"
    for route in QUERY_ROUTES:
        TALLY.tried_malformed("hostile user ids (API)")
        response = client.get(route, query_string={"user_id": hostile})
        body = assert_json_never_html(response)
        assert response.status_code == 400 and isinstance(body, dict) and body["parameter"] == "user_id"
    TALLY.tried_malformed("hostile user ids (API)")
    response = client.get("/api/v1/users", query_string={"prefix": hostile})
    assert response.status_code == 400 and assert_json_never_html(response)


def test_a_user_id_with_markup_never_reaches_the_store_or_the_user_list(client: FlaskClient, seeded: Config) -> None:
    for hostile in HOSTILE:
        TALLY.tried_malformed("hostile user ids (API)")
        message = {
            "transaction_id": "x-1",
            "user_id": hostile,
            "amount": "1.00",
            "event_time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        response = client.post(
            "/api/v1/transactions",
            data=json.dumps(message),
            headers={"Authorization": f"Bearer {TOKEN}"},
            content_type=JSON,
        )
        body = assert_json_never_html(response)
        assert response.status_code == 400 and isinstance(body, dict) and body["reason"] == "bad_user_id"
    assert drain(seeded) == []
    listed = assert_json_never_html(client.get("/api/v1/users", query_string={"limit": "500"}))
    assert isinstance(listed, dict) and listed["users"] == sorted(USERS)


def test_any_query_value_on_any_route_is_answered_without_a_server_error(client: FlaskClient, scale: Scale) -> None:
    junk = st.text(max_size=40) | st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{0,10})?[a-z]{0,3}", fullmatch=True)

    @settings(max_examples=scale.api_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(ALL_GET_ROUTES), st.dictionaries(st.sampled_from(PARAMETERS), junk, max_size=4), junk)
    def check(route: str, query: dict[str, str], user: str) -> None:
        TALLY.fuzzed("hostile query strings (hypothesis)")
        path = route.replace("/u1/", f"/{quote(user, safe='') or 'u1'}/")
        assert_json_never_html(client.get(path, query_string=query))

    check()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer x{TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer{TOKEN}"},
        {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
        {"Authorization": "Bearer " + "A" * 8000},
        {"Authorization": "Bearer t0ken-for-the-hostile-testß"},
        {"X-Authorization": f"Bearer {TOKEN}"},
        {"Cookie": f"token={TOKEN}"},
    ],
)
def test_without_the_right_token_nothing_is_published(
    client: FlaskClient, seeded: Config, headers: dict[str, str]
) -> None:
    TALLY.tried_malformed("requests without the right token")
    message = {"transaction_id": "forged", "user_id": "u1", "amount": "9.99", "event_time": "2026-01-01T00:00:00Z"}
    response = client.post(
        "/api/v1/transactions",
        data=json.dumps(message),
        headers=headers,
        query_string={"token": TOKEN},
        content_type=JSON,
    )
    assert response.status_code == 401
    TALLY.refused_request("POST without the right token (401)")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_json_never_html(response)
    assert drain(seeded, wait_s=1.0) == []


def test_the_entry_point_publishes_exactly_the_bodies_it_accepts(
    client: FlaskClient, seeded: Config, scale: Scale
) -> None:
    valid = {
        "schema_version": 1,
        "user_id": "u1",
        "amount": "12.34",
        "currency": "USD",
        "event_time": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "merchant_category": "grocery",
    }
    values = st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.lists(st.integers(), max_size=2)
    accepted: list[str] = []

    @settings(max_examples=scale.api_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.integers(min_value=0, max_value=10**9),
        st.dictionaries(st.sampled_from(sorted(valid)), values, max_size=2),
        st.binary(max_size=60),
        st.booleans(),
    )
    def check(number: int, changes: dict[str, Any], junk: bytes, raw: bool) -> None:
        TALLY.fuzzed("POST bodies (hypothesis)")
        transaction_id = f"fz-{number}"
        data = junk if raw else json.dumps({**valid, "transaction_id": transaction_id, **changes}).encode()
        response = client.post(
            "/api/v1/transactions", data=data, headers={"Authorization": f"Bearer {TOKEN}"}, content_type=JSON
        )
        body = assert_json_never_html(response)
        assert response.status_code in (202, 400, 422)
        if response.status_code == 202:
            assert isinstance(body, dict)
            accepted.append(body["message_id"])
        else:
            assert isinstance(body, dict) and body["parameter"] == "body" and body["reason"]

    check()
    published = drain(seeded)
    assert sorted(m.message_id for m in published) == sorted(accepted)
    assert accepted  # the strategy reaches valid bodies too


CROSS_ORIGIN = [
    "https://evil.example",
    "http://evil.example",
    "null",
    "http://localhost:1",
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "https://localhost",
    "http://[::1]",
    "file://",
    "javascript:alert(1)",
    "http://localhost%0d%0aX-Injected: 1",
    "x" * 5000,
]
NOT_JSON = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----x",
    "text/html",
    "application/xml",
    "application/json-patch+json",
    "json",
    "",
]


def test_cross_origin_and_non_json_posts_publish_nothing(client: FlaskClient, seeded: Config) -> None:
    valid = {
        "transaction_id": "csrf",
        "user_id": "u1",
        "amount": "9.99",
        "event_time": (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    for origin in CROSS_ORIGIN:
        TALLY.tried_malformed("cross-origin POSTs")
        response = client.post(
            "/api/v1/transactions", data=json.dumps(valid), headers={**authorized, "Origin": origin}, content_type=JSON
        )
        assert response.status_code == 403, origin
        assert_json_never_html(response)
        TALLY.refused_request("cross-origin POST (403)")
    for content_type in NOT_JSON:
        TALLY.tried_malformed("POSTs not declared JSON")
        response = client.post(
            "/api/v1/transactions", data=json.dumps(valid), headers={**authorized, "Content-Type": content_type}
        )
        assert response.status_code == 415, content_type
        assert_json_never_html(response)
        TALLY.refused_request("POST not declared JSON (415)")
    for host in ("evil.example", "localhost.evil.example", "203.0.113.9:5000"):
        TALLY.tried_malformed("foreign Host headers")
        response = client.post(
            "/api/v1/transactions", data=json.dumps(valid), headers={**authorized, "Host": host}, content_type=JSON
        )
        assert response.status_code == 403, host
        assert_json_never_html(response)
        TALLY.refused_request("foreign Host header (403)")
    assert drain(seeded) == []


READ_ATTEMPTS = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {READ_TOKEN[:-1]}"},
    {"Authorization": f"Bearer {READ_TOKEN}x"},
    {"Authorization": f"Bearer x{READ_TOKEN}"},
    {"Authorization": f"Bearer {READ_TOKEN.upper()}"},
    {"Authorization": f"Bearer {READ_TOKEN} {READ_TOKEN}"},
    {"Authorization": f"Basic {READ_TOKEN}"},
    {"Authorization": f"Bearer{READ_TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}"},
    {"Authorization": "Bearer " + "A" * 8000},
    {"Authorization": "Bearer read-t0ken-for-the-hostile-testß"},
    {"X-Authorization": f"Bearer {READ_TOKEN}"},
    {"Cookie": f"token={READ_TOKEN}"},
]


def test_a_missing_or_wrong_read_token_is_refused_on_every_data_route(seeded: Config) -> None:
    guarded = create_app(replace(seeded, read_token=READ_TOKEN)).test_client()
    routes = [route for route in ALL_GET_ROUTES if route != "/health"]
    for route in routes:
        for headers in READ_ATTEMPTS:
            TALLY.tried_malformed("missing or wrong read tokens")
            response = guarded.get(route, headers=headers, query_string={"user_id": "u1", "token": READ_TOKEN})
            assert response.status_code == 401, (route, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            body = assert_json_never_html(response)
            assert isinstance(body, dict) and "u1" not in json.dumps(body)
            TALLY.refused_request("missing or wrong read token (401)")
        served = guarded.get(route, headers={"Authorization": f"Bearer {READ_TOKEN}"}, query_string={"user_id": "u1"})
        assert served.status_code == 200, route
    # /health names no card holder, so it stays readable without the token.
    assert "u1" not in guarded.get("/health").get_data(as_text=True)


def test_a_burst_over_the_post_limit_is_cut_off(seeded: Config) -> None:
    limited = create_app(replace(seeded, post_rate_limit="10 per minute")).test_client()
    message = {
        "user_id": "u1",
        "amount": "1.00",
        "event_time": (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    statuses = []
    for i in range(40):
        response = limited.post(
            "/api/v1/transactions",
            data=json.dumps({**message, "transaction_id": f"burst-{i}"}),
            headers={"Authorization": f"Bearer {TOKEN}"},
            content_type=JSON,
        )
        statuses.append(response.status_code)
        assert_json_never_html(response)
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= 61
            TALLY.refused_request("POST over the rate limit (429)")
    assert statuses == [202] * 10 + [429] * 30
    assert len(drain(seeded)) == 10


def fuzz_operation(operation: Any, mode: GenerationMode, examples: int) -> None:
    """`examples` generated requests of one mode against one operation; none may get a 5xx."""
    label = f"OpenAPI {mode.value} cases (schemathesis)"

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        TALLY.fuzzed(label)
        case.call_and_validate(checks=[not_a_server_error])

    check()


def test_generated_requests_from_the_openapi_document_get_no_server_error(app: Flask, scale: Scale) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        fuzz_operation(operation, GenerationMode.POSITIVE, max(10, scale.api_examples // 5))
        # An operation that takes no input has no invalid input to generate.
        if list(operation.iter_parameters()) or operation.get_request_payload_content_types():
            fuzz_operation(operation, GenerationMode.NEGATIVE, max(10, scale.api_examples // 5))
