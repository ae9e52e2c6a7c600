"""The API during an outage, for real: Pub/Sub or Bigtable behind a socket that accepts and never
answers, a port nobody listens on, or a proxy that stalls and then forwards again. A POST gives up
within a few seconds with a 503, the data routes and /health answer 503 with one line that names no
host or port, and normal answers come back within seconds of the end of the outage."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import cleanup_resources, make_config
from flask.testing import FlaskClient
from support.seed import random_ledger, run_job

from bench.proxy import OutageProxy
from common import clients
from common.config import Config
from webapp import create_app
from webapp.api import PUBLISH_TIMEOUT_S
from webapp.services import READ_TIMEOUT_S

NOW = datetime.now(UTC).replace(microsecond=0)
# A POST holds a thread PUBLISH_TIMEOUT_S, a read READ_TIMEOUT_S; what the machine adds on top.
SLACK_S = 4.0


@pytest.fixture
def blackhole() -> Iterator[str]:
    """host:port of a socket that completes TCP handshakes (the kernel's backlog) and never says a
    word: a server that hangs, or a partition that lets SYNs through."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def closed_port() -> str:
    """host:port where nothing listens (connections refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def transaction(transaction_id: str) -> bytes:
    return json.dumps(
        {
            "transaction_id": transaction_id,
            "user_id": "u1",
            "amount": "12.50",
            "event_time": (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    ).encode()


def post(client: FlaskClient, transaction_id: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.post("/api/v1/transactions", data=transaction(transaction_id), content_type="application/json")
    return response, time.monotonic() - started


def assert_one_line_without_address(response: Any, address: str) -> str:
    """The error is one line and names neither the host nor the port it could not reach."""
    text = response.get_data(as_text=True)
    host, port = address.rsplit(":", 1)
    assert host not in text and port not in text, text
    error: str = response.get_json().get("error") or response.get_json().get("reason")
    assert error and "\n" not in error
    return error


@pytest.mark.parametrize("kind", ["blackhole", "closed_port"])
def test_a_post_gives_up_with_a_503_when_pubsub_does_not_answer(
    emulators: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    address = request.getfixturevalue(kind)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", address)
    client = create_app(make_config(tmp_path, pubsub_emulator_host=address)).test_client()
    for attempt in range(2):  # the second one too: no request waits on the first one's retries
        response, elapsed = post(client, f"outage-{kind}-{attempt}")
        assert response.status_code == 503
        assert elapsed < PUBLISH_TIMEOUT_S + SLACK_S, elapsed
        assert "Pub/Sub unreachable" in assert_one_line_without_address(response, address)


@pytest.fixture(scope="module")
def seeded(spark: Any, emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    cfg = make_config(tmp_path_factory.mktemp("outage-api"))
    run_job(spark, cfg, random_ledger(["u1", "u2"], NOW - timedelta(days=1), NOW, 3))
    clients.ensure_subscription(cfg)
    yield cfg
    cleanup_resources(cfg)


DATA_ROUTES = ["/api/v1/users/u1/sum?from=-30h", "/api/v1/users/u1/transactions", "/sum?user_id=u1&from=-6h"]


@pytest.mark.parametrize("kind", ["blackhole", "closed_port"])
def test_data_routes_and_health_answer_503_when_bigtable_does_not_answer(
    seeded: Config, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str
) -> None:
    address = request.getfixturevalue(kind)
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", address)
    client = create_app(seeded).test_client()
    for route in DATA_ROUTES:
        started = time.monotonic()
        response = client.get(route)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, route
        assert elapsed < READ_TIMEOUT_S + SLACK_S, (route, elapsed)
        assert "Bigtable unreachable" in assert_one_line_without_address(response, address)
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["reason"] == "Bigtable unreachable"
    assert_one_line_without_address(health, address)


def test_answers_are_normal_within_seconds_after_a_stall_ends(seeded: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    bigtable_port = int(seeded.bigtable_emulator_host.rsplit(":", 1)[1])
    pubsub_port = int(seeded.pubsub_emulator_host.rsplit(":", 1)[1])
    bigtable, pubsub = OutageProxy(bigtable_port), OutageProxy(pubsub_port)
    try:
        monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", f"127.0.0.1:{bigtable.port}")
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{pubsub.port}")
        client = create_app(seeded).test_client()
        assert client.get(DATA_ROUTES[0]).status_code == 200
        assert post(client, "before")[0].status_code == 202

        bigtable.stall()
        pubsub.stall()
        for _ in range(3):  # an outage of some length: the clients back off and reconnect meanwhile
            assert client.get(DATA_ROUTES[0]).status_code == 503
            assert post(client, "during")[0].status_code == 503
        bigtable.restore()
        pubsub.restore()

        restored = time.monotonic()
        statuses: list[tuple[int, int]] = []
        while time.monotonic() - restored < 30:
            statuses.append((client.get(DATA_ROUTES[0]).status_code, post(client, "after")[0].status_code))
            if statuses[-1] == (200, 202):
                break
            time.sleep(0.2)
        recovered_in = time.monotonic() - restored
        assert statuses[-1] == (200, 202), statuses
        assert recovered_in < READ_TIMEOUT_S + PUBLISH_TIMEOUT_S + SLACK_S, recovered_in
    finally:
        bigtable.close()
        pubsub.close()
