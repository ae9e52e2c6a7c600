"""GET /metrics of the web app, scraped through the Flask test client and parsed with Prometheus'
own text parser: requests counted per URL rule and status, Bigtable errors counted, the job's
bookkeeping exported from the table, and the same access rules as the data routes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from common import clients, jobstate
from common.config import Config
from webapp import create_app
from webapp import metrics as web_metrics

READ = "read-t0ken-0123456789abcdef"
INGEST = "ingest-t0ken-0123456789abcdef"
FINISHED_EPOCH = 1_796_040_042.5  # 2026-11-30T12:00:42.5Z, by `date -u -d 2026-11-30T12:00:42.5Z +%s.%N`
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient, **kwargs: Any) -> Samples:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def of(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
def app(cfg: Config) -> Flask:
    clients.ensure_table(cfg)
    return create_app(cfg)


def test_requests_are_counted_and_timed_per_url_rule_method_and_status(app: Flask) -> None:
    client = app.test_client()
    for _ in range(3):
        assert client.get("/openapi.json").status_code == 200
    for user in ("alice", "bob"):  # two paths, one rule
        assert client.get(f"/api/v1/users/{user}/sum", query_string={"from": "not a time"}).status_code == 400
    assert client.get("/no/such/page").status_code == 404
    assert client.open("/openapi.json", method="BREW").status_code == 405
    assert client.post("/api/v1/transactions", data="x", content_type="text/plain").status_code == 415

    samples = scrape(client)
    sum_rule = "/api/v1/users/<user_id>/sum"
    assert of(samples, "txn_http_requests_total") == {
        (("method", "GET"), ("route", "/openapi.json"), ("status", "200")): 3,
        (("method", "GET"), ("route", sum_rule), ("status", "400")): 2,
        (("method", "GET"), ("route", "unmatched"), ("status", "404")): 1,
        (("method", "other"), ("route", "unmatched"), ("status", "405")): 1,
        (("method", "POST"), ("route", "/api/v1/transactions"), ("status", "415")): 1,
    }
    counts = of(samples, "txn_http_request_duration_seconds_count")
    assert counts == {
        (("method", "GET"), ("route", "/openapi.json")): 3,
        (("method", "GET"), ("route", sum_rule)): 2,
        (("method", "GET"), ("route", "unmatched")): 1,
        (("method", "other"), ("route", "unmatched")): 1,
        (("method", "POST"), ("route", "/api/v1/transactions")): 1,
    }
    infinite = value(samples, "txn_http_request_duration_seconds_bucket", method="GET", route=sum_rule, le="+Inf")
    assert infinite == 2
    assert 0 < value(samples, "txn_http_request_duration_seconds_sum", method="GET", route=sum_rule) < 10
    # The scrape itself shows up in the next one.
    again = scrape(client)
    assert value(again, "txn_http_requests_total", method="GET", route="/metrics", status="200") == 1


def test_the_jobs_bookkeeping_is_exported_and_read_again_after_the_cache_time(
    app: Flask, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    never = scrape(client)
    assert value(never, "txn_job_state_up") == 1
    assert value(never, "txn_job_last_success_timestamp_seconds") == 0  # never: any staleness alert fires
    assert value(never, "txn_job_runs_finished_total") == 0

    table = clients.bigtable_table(cfg)
    listed = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    finished = listed + timedelta(seconds=42, microseconds=500_000)
    run = jobstate.begin_run(table, jobstate.read_job_status(table), ["transactions/a.parquet"], listed)
    summary = {"run_id": 1, "files": 1, "rows": 120, "duplicates_dropped": 7, "conflicts": 2, "late_rows": 3}
    jobstate.finish_run(table, run, {**summary, "seconds": 41.25, "rows_written": 108}, finished)
    cached = scrape(client)
    assert value(cached, "txn_job_runs_finished_total") == 0  # read less than JOB_CACHE_SECONDS ago

    monkeypatch.setattr(web_metrics, "JOB_CACHE_SECONDS", 0.0)
    done = scrape(client)
    assert value(done, "txn_job_last_success_timestamp_seconds") == FINISHED_EPOCH
    assert value(done, "txn_job_last_success_duration_seconds") == 41.25
    assert value(done, "txn_job_runs_finished_total") == 1
    assert value(done, "txn_job_run_pending") == 0
    assert value(done, "txn_job_conflicts_total") == 2
    expected_last_run = {
        "txn_job_last_run_id": 1,
        "txn_job_last_run_files": 1,
        "txn_job_last_run_rows": 120,
        "txn_job_last_run_duplicates": 7,
        "txn_job_last_run_conflicts": 2,
        "txn_job_last_run_late_rows": 3,
        "txn_job_last_run_rows_written": 108,
        "txn_job_last_run_duration_seconds": 41.25,
        "txn_job_last_run_failures": 0,
    }
    assert {name: value(done, name) for name in expected_last_run} == expected_last_run

    failed_at = finished + timedelta(minutes=5)
    jobstate.record_failure(table, {"failures": 4, "rows": 10}, "LoadFailed: 4 rows", failed_at)
    jobstate.record_failure(table, {"failures": 6, "rows": 10}, "LoadFailed: 6 rows", failed_at + timedelta(minutes=1))
    failed = scrape(client)
    assert value(failed, "txn_job_failed_runs_total") == 2
    assert value(failed, "txn_job_last_failure_timestamp_seconds") == FINISHED_EPOCH + 360
    assert value(failed, "txn_job_last_failure_failed_rows") == 6
    assert value(failed, "txn_job_last_success_timestamp_seconds") == FINISHED_EPOCH  # unchanged

    jobstate.record_success(table, failed_at + timedelta(minutes=10), 0.75)  # a run with nothing new
    quiet = scrape(client)
    assert value(quiet, "txn_job_last_success_timestamp_seconds") == FINISHED_EPOCH + 900
    assert value(quiet, "txn_job_last_success_duration_seconds") == 0.75
    assert value(quiet, "txn_job_last_run_rows") == 120  # still the last run that had work


@pytest.fixture
def closed_port() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"127.0.0.1:{port}"


def test_bigtable_errors_are_counted_and_the_job_state_shows_unreadable(
    cfg: Config, closed_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", closed_port)
    app = create_app(replace(cfg, bigtable_emulator_host=closed_port))
    app.extensions["txn"].read_timeout_s = 1.0
    client = app.test_client()
    assert client.get("/api/v1/users/alice/sum", query_string={"from": "-1h"}).status_code == 503
    first = scrape(client)
    assert sum(of(first, "txn_backend_errors_total").values()) == 1
    ((labels, _),) = of(first, "txn_backend_errors_total").items()
    assert dict(labels)["backend"] == "bigtable"
    assert value(first, "txn_http_requests_total", method="GET", route="/api/v1/users/<user_id>/sum", status="503")
    assert value(first, "txn_job_state_up") == 0
    assert ("txn_job_last_success_timestamp_seconds", ()) not in first
    # The scrape's own failed read of the job row counts too (after the counters were written out).
    second = scrape(client)
    assert sum(v for k, v in of(second, "txn_backend_errors_total").items() if ("backend", "bigtable") in k) == 2


def test_metrics_follow_the_data_routes_rules(cfg: Config) -> None:
    clients.ensure_table(cfg)
    open_app = create_app(cfg)
    assert open_app.test_client().get("/metrics").status_code == 200  # no token: this machine reads
    remote = open_app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert remote.status_code == 403  # ... and no one else

    guarded = create_app(replace(cfg, read_token=READ, ingest_token=INGEST)).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": f"Bearer {INGEST}"}).status_code == 401
    samples = scrape(guarded, headers={"Authorization": f"Bearer {READ}"}, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert value(samples, "txn_http_requests_total", method="GET", route="/metrics", status="401") == 2
    assert guarded.get("/health").status_code == 200  # /health stays open
