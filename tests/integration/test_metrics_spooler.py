"""The spooler's /metrics, scraped from a running `python -m jobs.spooler` on the Pub/Sub emulator and
parsed with Prometheus' text parser: the counts equal the messages this test published (good and
malformed) and the files found in the spool, and the held messages drop to zero once acked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from common import clients, spool
from common.config import Config
from common.message import Transaction

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(url: str) -> Samples:
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    return parse(response.text)


def wait_for(url: str, done: Callable[[Samples], bool], timeout: float = 90) -> Samples:
    deadline = time.monotonic() + timeout
    last: Samples = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):  # not listening yet
            last = scrape(url)
        if last and done(last):
            return last
        time.sleep(0.3)
    raise AssertionError(f"not reached in {timeout} s; last scrape: {last}")


def test_a_running_spooler_exports_what_it_pulled_spooled_and_set_aside(cfg: Config, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.json"
    changes = {"spooler_metrics_port": port, "spool_roll_seconds": 0.5}
    config.write_text(json.dumps({**cfg.to_dict(), **changes}), encoding="utf-8")
    clients.ensure_subscription(cfg)
    now = datetime.now(UTC).replace(microsecond=0)
    good = [Transaction(f"m-{i}", "u1", 1000 + i, "USD", now - timedelta(minutes=i), "grocery") for i in range(5)]
    malformed = [
        b"{",  # bad_json
        b'{"transaction_id": "m-x", "user_id": "u1", "amount": "1.00", "colour": "red"}',  # unknown_field
        b"not json at all",  # bad_json
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.spooler", "--config", str(config), "--log-format", "json"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        before = wait_for(url, lambda s: True)
        assert before[("txn_spooler_received_messages_total", ())] == 0
        publisher = clients.publisher_client(cfg)
        topic = clients.topic_path(cfg)
        futures = [publisher.publish(topic, t.encode(), **t.attributes()) for t in good]
        futures += [publisher.publish(topic, data) for data in malformed]
        for future in futures:
            future.result(timeout=30)

        after = wait_for(url, lambda s: s[("txn_spooler_acked_messages_total", ())] == 8)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]

    assert after[("txn_spooler_received_messages_total", ())] == 8
    assert after[("txn_spooler_spooled_transactions_total", ())] == 5
    dead = {dict(k)["reason"]: v for (n, k), v in after.items() if n == "txn_spooler_dead_lettered_messages_total"}
    assert dead == {"bad_json": 2, "unknown_field": 1}
    assert after[("txn_spooler_ack_failures_total", ())] == 0
    assert after[("txn_spooler_held_messages", ())] == 0
    assert after[("txn_spooler_held_bytes", ())] == 0
    assert not [k for (n, k), v in after.items() if n == "txn_spooler_pull_errors_total"]
    assert after[("txn_spooler_pubsub_down", ())] == 0
    # The files it counts are the files in the spool, and each batch write was timed.
    written = {kind: len(spool.list_files(cfg.spool_dir, kind)) for kind in (spool.TRANSACTIONS, spool.DEAD_LETTER)}
    files = {dict(k)["kind"]: v for (n, k), v in after.items() if n == "txn_spooler_file_writes_total"}
    assert files == written and written[spool.TRANSACTIONS] >= 1 and written[spool.DEAD_LETTER] >= 1
    batches = after[("txn_spooler_file_write_seconds_count", ())]
    assert max(written.values()) <= batches <= sum(written.values())
    assert after[("txn_spooler_file_write_seconds_bucket", (("le", "+Inf"),))] == batches
    # Its log lines are JSON, the metrics address among them.
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert f"spooler: metrics on http://127.0.0.1:{port}/metrics" in [line["message"] for line in lines]
    assert "spooled 5 transactions, dead-lettered 3" in lines[-1]["message"]


def test_a_metrics_port_already_taken_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"spooler_metrics_port": port, "spool_dir": str(tmp_path / "spool")}))
        result = subprocess.run(
            [sys.executable, "-m", "jobs.spooler", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: config key 'spooler_metrics_port': cannot listen on 127.0.0.1:{port} (Address already in use)"
    ]
