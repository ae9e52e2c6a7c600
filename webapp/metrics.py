"""GET /metrics: the web app's and the aggregation job's numbers in the Prometheus text format.

- `txn_http_requests_total{route, method, status}` and `txn_http_request_duration_seconds{route,
  method}`: `route` is the URL rule (`/api/v1/users/<user_id>/sum`), never the raw path, and
  "unmatched" for a path no rule matches; a method outside the standard ones counts as "other". So
  the number of series stays bounded whatever clients send.
- `txn_backend_errors_total{backend, error}`: Bigtable and Pub/Sub calls that failed, by error class.
- `txn_job_*`: the aggregation job's bookkeeping (its row in the table, common/jobstate.py),
  read when scraped and kept JOB_CACHE_SECONDS: the time of its last success, the counts of its last
  run, its failed runs. One scrape target is enough to alert on "no successful run for 15 minutes".
  `txn_job_state_up` is 0 when the row could not be read (the other txn_job_* are then absent).
- `txn_freshness_*` and `txn_spool_backlog_*` (webapp/freshness.py), measured when scraped and
  kept JOB_CACHE_SECONDS: the newest counted transaction's publish time and age, the time since the
  last run finished, the spool files the next run would process and their rows. Absent when unknown.

Who may scrape: the same rules as the data routes (webapp/security.py). Without tokens the server
answers only its own machine; once `read_token` is set, a scraper sends it as a bearer token.

Several gunicorn workers: each counts its own requests into files under PROMETHEUS_MULTIPROC_DIR
(txn-serve sets it; webapp/gunicorn_conf.py empties it at start and drops dead workers' files),
and whichever worker answers /metrics adds up every worker's counts. Without that variable (one
process: the Flask dev server, tests) the app's own registry is served.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from google.api_core import exceptions as gexc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from common.jobstate import read_job_status
from webapp.freshness import Freshness
from webapp.services import Services

bp = Blueprint("metrics", __name__)

EXTENSION = "txn_metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# From a cached whole-hour read (a few ms) to the 5 s read timeout past which the API answers 503.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_CACHE_SECONDS = 10.0
STATE_UP_HELP = "1 when the job's bookkeeping row could be read from the table"
log = logging.getLogger(__name__)

# Counts of the last finished run (its summary in the job row) -> metric name and help.
LAST_RUN_FIELDS = {
    "run_id": ("txn_job_last_run_id", "Id of the last run that finished"),
    "seconds": ("txn_job_last_run_duration_seconds", "How long the last finished run took"),
    "files": ("txn_job_last_run_files", "Spool files the last finished run processed"),
    "rows": ("txn_job_last_run_rows", "Rows the last finished run read from its spool files"),
    "duplicates_dropped": ("txn_job_last_run_duplicates", "Duplicate copies the last finished run dropped"),
    "already_counted": ("txn_job_last_run_already_counted", "Rows an earlier run had already counted"),
    "conflicts": ("txn_job_last_run_conflicts", "Conflicting copies the last finished run set aside"),
    "late_rows": ("txn_job_last_run_late_rows", "Rows published past the late horizon, kept but not counted"),
    "set_aside": ("txn_job_last_run_set_aside", "Rows whose amount their currency cannot hold"),
    "rows_written": ("txn_job_last_run_rows_written", "Transaction rows the last finished run wrote"),
    "files_left": ("txn_job_last_run_files_left", "Spool files the last finished run left for the next ones"),
    "failures": ("txn_job_last_run_failures", "Bigtable rows the last finished run failed to write"),
}


def _epoch_seconds(text: str | None) -> float:
    """An RFC 3339 time as epoch seconds; 0 for none (never), which any staleness alert sees as old."""
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def job_families(status: dict[str, Any] | None) -> list[Metric]:
    """The txn_job_* families for a job status (common.jobstate.read_job_status; None: the job
    has never run against the table)."""
    status = status or {}
    summary = status.get("last_summary") or {}
    failure = status.get("last_failure") or {}

    def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, value=value)

    success_at = status.get("last_success_at") or status.get("last_finished_at")
    families: list[Metric] = [
        gauge("txn_job_state_up", STATE_UP_HELP, 1),
        gauge(
            "txn_job_last_success_timestamp_seconds",
            "When the last successful run ended (one with nothing new to do included); 0: never",
            _epoch_seconds(success_at),
        ),
        gauge(
            "txn_job_last_success_duration_seconds",
            "How long the last successful run took",
            float(status.get("last_success_seconds") or summary.get("seconds") or 0.0),
        ),
        CounterMetricFamily(
            "txn_job_runs_finished", "Runs that finished and recorded their counts", value=status.get("last_run", 0)
        ),
        CounterMetricFamily(
            "txn_job_failed_runs",
            "Runs that failed (they stay pending and are resumed)",
            status.get("failed_runs_total", 0),
        ),
        gauge(
            "txn_job_last_failure_timestamp_seconds",
            "When the last failed run ended; 0: never",
            _epoch_seconds(status.get("last_failed_at")),
        ),
        gauge(
            "txn_job_last_failure_failed_rows",
            "Bigtable rows the last failed run could not write",
            int(failure.get("failures", 0)),
        ),
        gauge("txn_job_run_pending", "1 while a run has started and not finished", 1 if status.get("pending") else 0),
        CounterMetricFamily(
            "txn_job_conflicts", "Conflicting copies found by all finished runs", status.get("conflicts_total", 0)
        ),
    ]
    for key, (name, text) in LAST_RUN_FIELDS.items():
        families.append(gauge(name, text, float(summary.get(key, 0) or 0)))
    return families


class JobCollector(Collector):
    """The txn_job_* families, read from the table at scrape time and kept JOB_CACHE_SECONDS (a
    failed read too, so a scrape during an outage does not wait out the read timeout every time)."""

    def __init__(self, read_status: Callable[[], dict[str, Any] | None], on_error: Callable[[Exception], None]):
        self._read_status = read_status
        self._on_error = on_error
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= JOB_CACHE_SECONDS:
                try:
                    families = job_families(self._read_status())
                except Exception as exc:  # an unreadable row must not take the other metrics down
                    if isinstance(exc, gexc.GoogleAPIError):
                        self._on_error(exc)
                    log.warning("reading the job status for /metrics failed: %s", exc)
                    families = [GaugeMetricFamily("txn_job_state_up", STATE_UP_HELP, value=0)]
                self._cached = (now, families)
            yield from self._cached[1]


def freshness_families(fresh: Freshness, now: datetime) -> list[Metric]:
    """The txn_freshness_* and txn_spool_backlog_* gauges of one measurement, ages at `now`."""
    figures = fresh.as_json(now)
    known: list[tuple[str, str, float | None]] = [
        (
            "txn_freshness_newest_counted_publish_timestamp_seconds",
            "Publish time of the newest transaction a finished run processed",
            fresh.newest_counted_publish_time.timestamp() if fresh.newest_counted_publish_time else None,
        ),
        (
            "txn_freshness_newest_counted_age_seconds",
            "Seconds since the newest transaction a finished run processed was published",
            figures["newest_counted_age_seconds"],
        ),
        (
            "txn_freshness_since_last_run_seconds",
            "Seconds since the job last finished a run (one with nothing new included)",
            figures["since_last_run_seconds"],
        ),
        ("txn_spool_backlog_files", "Spool files the next run would process", fresh.backlog_files),
        ("txn_spool_backlog_rows", "Rows in the spool files the next run would process", fresh.backlog_rows),
    ]
    return [GaugeMetricFamily(name, text, value=value) for name, text, value in known if value is not None]


class FreshnessCollector(Collector):
    """The freshness gauges, measured at scrape time and kept JOB_CACHE_SECONDS; none when the
    measurement failed (logged)."""

    def __init__(self, measure: Callable[[], Freshness], clock: Callable[[], datetime]) -> None:
        self._measure = measure
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Freshness | None] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= JOB_CACHE_SECONDS:
                try:
                    fresh: Freshness | None = self._measure()
                except Exception as exc:
                    log.warning("measuring freshness for /metrics failed: %s", exc)
                    fresh = None
                self._cached = (now, fresh)
            measured = self._cached[1]
        if measured is not None:
            yield from freshness_families(measured, self._clock())


class WebMetrics:
    """One app's request and backend counters, and the job collector, in a registry of its own."""

    def __init__(self, svc: Services) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "txn_http_requests",
            "HTTP requests answered, by URL rule, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "txn_http_request_duration_seconds",
            "Time to answer an HTTP request, by URL rule and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "txn_backend_errors",
            "Bigtable and Pub/Sub calls that failed, by backend and error class",
            ["backend", "error"],
            registry=self.registry,
        )
        self.job = JobCollector(lambda: read_job_status(svc.table()), lambda exc: self.backend_error("bigtable", exc))
        self.registry.register(self.job)
        self.freshness = FreshnessCollector(
            lambda: svc.freshness.measure(svc.cfg, svc.table(), read_job_status(svc.table())), svc.clock
        )
        self.registry.register(self.freshness)

    def backend_error(self, backend: str, exc: BaseException) -> None:
        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            exc = exc.cause  # the error it gave up on
        self.backend_errors.labels(backend, exc.__class__.__name__).inc()

    def exposition(self) -> bytes:
        """Every metric of this process, or (multiprocess mode) of every worker, in text format."""
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=directory)
        combined.register(self.job)
        combined.register(self.freshness)
        return generate_latest(combined)


def install(app: Flask, svc: Services) -> WebMetrics:
    """Time and count every request of `app` and serve GET /metrics. Call it before any other
    before_request hook is installed, so the time includes the checks that may refuse a request."""
    metrics = WebMetrics(svc)
    app.extensions[EXTENSION] = metrics
    app.register_blueprint(bp)

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        metrics.requests.labels(rule, method, str(response.status_code)).inc()
        if started is not None:
            metrics.latency.labels(rule, method).observe(time.perf_counter() - started)
        return response

    return metrics


def count_backend_error(backend: str, exc: BaseException) -> None:
    """Count a failed `backend` ("bigtable", "pubsub") call of the current app."""
    metrics: WebMetrics | None = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.backend_error(backend, exc)


@bp.get("/metrics")
def metrics_text() -> Response:
    metrics: WebMetrics = current_app.extensions[EXTENSION]
    return Response(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
