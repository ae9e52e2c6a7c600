"""Who the app lets in: the read token on every data route, open routes that hold no card-holder
data, clients off this machine, Host headers, the refusal to listen on a public address without
tokens, and tokens that never show in a repr, a log or an answer. POST-specific checks (origin,
content type, late events, the rate limit) are in tests/integration/test_api_ingest.py."""

from __future__ import annotations

import json
import logging
import pickle
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cleanup_resources, make_config
from flask import Flask
from support.seed import random_ledger, run_job

from common import clients
from common.config import Config, ConfigError, from_dict
from webapp import create_app
from webapp.security import check_bind, is_loopback

READ = "read-t0ken-0123456789abcdef"
INGEST = "ingest-t0ken-0123456789abcdef"
NOW = datetime.now(UTC).replace(microsecond=0)
USERS = ["u1", "u2"]
WRONG = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {READ[:-1]}"},
    {"Authorization": f"Bearer {READ}x"},
    {"Authorization": f"Bearer {READ.upper()}"},
    {"Authorization": f"Basic {READ}"},
    {"Authorization": f"Bearer {INGEST}"},  # the ingest token does not open the data routes
    {"X-Authorization": f"Bearer {READ}"},
    {"Cookie": f"token={READ}"},
]


@pytest.fixture(scope="module")
def seeded(spark: Any, emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    cfg = make_config(tmp_path_factory.mktemp("security"), ingest_token=INGEST, read_token=READ)
    run_job(spark, cfg, random_ledger(USERS, NOW - timedelta(days=1), NOW, 3))
    clients.ensure_topic(cfg)
    yield cfg
    cleanup_resources(cfg)


@pytest.fixture(scope="module")
def guarded(seeded: Config) -> Flask:
    return create_app(seeded)


def data_routes(app: Flask) -> list[str]:
    """A URL for every GET route of the API and the original routes, as the app serves them."""
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in ("api", "legacy") and "GET" in (rule.methods or ()):
            urls.append(rule.rule.replace("<user_id>", "u1") + "?user_id=u1")
    return sorted(urls)


KNOWN = {
    "/api/v1/users/u1/sum",
    "/api/v1/users/u1/transactions",
    "/api/v1/users/u1/hourly",
    "/api/v1/users/u1/latest",
    "/api/v1/top-users",
    "/api/v1/stats/per-minute",
    "/api/v1/users",
    "/sum",
    "/hour",
    "/list",
}


def test_every_data_route_needs_the_read_token(guarded: Flask) -> None:
    routes = data_routes(guarded)
    assert {route.split("?")[0] for route in routes} >= KNOWN
    client = guarded.test_client()
    for route in routes:
        for headers in WRONG:
            response = client.get(route, headers=headers)
            assert response.status_code == 401, (route, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.get_json() == {"error": "a valid 'Authorization: Bearer <token>' header is required"}
        served = client.get(route, headers={"Authorization": f"Bearer {READ}"})
        assert served.status_code == 200, (route, served.get_json())


def test_with_the_token_the_answers_hold_the_data(guarded: Flask) -> None:
    client = guarded.test_client()
    users = client.get("/api/v1/users", headers={"Authorization": f"bearer  {READ} "}).get_json()
    assert users["users"] == USERS  # the scheme is case-insensitive, the spaces around the token ignored


def test_the_health_page_the_dashboard_and_the_document_need_no_token(guarded: Flask, seeded: Config) -> None:
    client = guarded.test_client()
    health = client.get("/health")
    assert health.status_code == 200
    text = health.get_data(as_text=True)
    # Nothing about any card holder, and no address to aim at.
    for user in USERS:
        assert not re.search(rf"\b{user}\b", text)
    assert seeded.bigtable_emulator_host not in text and seeded.pubsub_emulator_host not in text
    assert client.get("/").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_without_a_read_token_loopback_clients_read_as_before(seeded: Config) -> None:
    client = create_app(replace(seeded, read_token="", ingest_token="")).test_client()
    for route in data_routes(client.application):
        assert client.get(route).status_code == 200, route


@pytest.mark.parametrize("address", ["203.0.113.5", "10.0.0.7", "::ffff:203.0.113.5", "2001:db8::1"])
def test_a_client_off_this_machine_is_refused_until_both_tokens_are_set(seeded: Config, address: str) -> None:
    environ = {"REMOTE_ADDR": address}
    for missing in ({"read_token": ""}, {"ingest_token": ""}, {"read_token": "", "ingest_token": ""}):
        client = create_app(replace(seeded, **missing)).test_client()
        auth = {"Authorization": f"Bearer {READ}"}
        for route in ["/health", "/", "/openapi.json", "/api/v1/users", "/sum?user_id=u1"]:
            response = client.get(route, headers=auth, environ_base=environ)
            assert response.status_code == 403, (missing, route)
            assert "ingest_token and read_token" in response.get_json()["error"]
        refused = client.post(
            "/api/v1/transactions",
            data="{}",
            headers={"Authorization": f"Bearer {INGEST}"},
            content_type="application/json",
            environ_base=environ,
        )
        assert refused.status_code == 403
    client = create_app(seeded).test_client()
    assert client.get("/health", environ_base=environ).status_code == 200
    assert client.get("/api/v1/users", environ_base=environ).status_code == 401
    assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {READ}"}, environ_base=environ).json == {
        "prefix": "",
        "users": USERS,
    }


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("txn.example.com", True),
        ("TXN.example.com:443", True),
        ("txn.example.com:8443", False),  # not the configured port
        ("evil.example", False),  # a name re-pointed at this server (DNS rebinding)
        ("localhost.evil.example", False),
        ("203.0.113.5:5000", False),
        ("evil.example@localhost", False),
        ("localhost:notaport", False),
        ("", False),
    ],
)
def test_the_host_header_must_name_this_machine_or_an_allowed_origin(seeded: Config, host: str, allowed: bool) -> None:
    client = create_app(replace(seeded, allowed_origins=("https://txn.example.com",))).test_client()
    response = client.get("/api/v1/users", headers={"Host": host, "Authorization": f"Bearer {READ}"})
    assert response.status_code == (200 if allowed else 403), response.get_json()
    if not allowed:
        assert "Host" in response.get_json()["error"]


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ["localhost", "LOCALHOST", "127.0.0.1", "127.255.0.9", "::1", "[::1]"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "::", "", "10.0.0.1", "localhost.example", "example.com"])


def test_the_server_refuses_to_listen_on_a_public_address_without_tokens_and_origins() -> None:
    bare = from_dict({})
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(bare, host)  # loopback: as before
    for host in ("0.0.0.0", "::", "10.0.0.5", "txn.example.com"):
        with pytest.raises(ConfigError, match="ingest_token, read_token, allowed_origins"):
            check_bind(bare, host)
    tokens_only = from_dict({"ingest_token": INGEST, "read_token": READ})
    with pytest.raises(ConfigError, match="without allowed_origins"):
        check_bind(tokens_only, "0.0.0.0")
    check_bind(replace(tokens_only, allowed_origins=("https://txn.example.com",)), "0.0.0.0")


def test_run_server_stops_before_serving_on_a_public_address(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"read_token": READ}))
    result = subprocess.run(
        [str(ROOT / "run_server.sh")],
        env={"PATH": "/usr/bin:/bin", "HOST": "0.0.0.0", "PORT": "1", "CONFIG": str(config)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0, which is not a loopback address, without ingest_token, "
        "allowed_origins in the config (set them, or listen on 127.0.0.1)"
    ]
    complete = tmp_path / "complete.json"
    complete.write_text(
        json.dumps({"read_token": READ, "ingest_token": INGEST, "allowed_origins": ["https://txn.example.com"]})
    )
    check = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "webapp", "--check", "--config", str(complete), "--host", "0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert READ not in check.stdout + check.stderr and INGEST not in check.stdout + check.stderr


# --- the tokens stay secret -----------------------------------------------------------------------


def test_the_configs_repr_hides_the_tokens_also_after_a_pickle(seeded: Config) -> None:
    for cfg in (seeded, pickle.loads(pickle.dumps(seeded))):
        text = repr(cfg) + str(cfg)
        assert READ not in text and INGEST not in text
        assert "read_token=<hidden>" in text and "ingest_token=<hidden>" in text
    assert pickle.loads(pickle.dumps(seeded)) == seeded  # the executors still get a whole config
    assert "read_token=''" in repr(replace(seeded, read_token=""))


@pytest.mark.parametrize("bad", ["short", "has a space inside 0123456789", "tab\tinside-0123456789abc", "ü" * 20])
def test_a_bad_token_in_the_config_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ConfigError) as refused:
        from_dict({"read_token": bad})
    assert "read_token" in str(refused.value) and bad not in str(refused.value)


def test_no_token_reaches_a_log_or_an_answer(
    seeded: Config, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[Any] = []
    client = create_app(seeded).test_client()
    near_misses = [READ[:-1], READ + "x", INGEST[:-1], f"{READ} {INGEST}", READ.upper()]
    for guess in [*near_misses, READ, INGEST]:
        for route in ["/api/v1/users", "/sum?user_id=u1", "/api/v1/users/%3Cx%3E/sum"]:
            answers.append(client.get(route, headers={"Authorization": f"Bearer {guess}"}))
        answers.append(
            client.post(
                "/api/v1/transactions",
                data=json.dumps({"transaction_id": "x", "user_id": "u1", "amount": "1.00", "event_time": "bad"}),
                headers={"Authorization": f"Bearer {guess}", "Origin": "https://evil.example"},
                content_type="application/json",
            )
        )
    # An outage logs the backend's error: no token in it either.
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", "127.0.0.1:1")
    outage = create_app(replace(seeded, bigtable_emulator_host="127.0.0.1:1")).test_client()
    outage.application.extensions["txn"].read_timeout_s = 1.0
    answers.append(outage.get("/api/v1/users", headers={"Authorization": f"Bearer {READ}"}))
    assert answers[-1].status_code == 503
    assert {a.status_code for a in answers} >= {200, 400, 401, 403, 503}
    everything = caplog.text + "".join(a.get_data(as_text=True) + str(a.headers) for a in answers)
    for secret in (READ, INGEST):
        assert secret not in everything
