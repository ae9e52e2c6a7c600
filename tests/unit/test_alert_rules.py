"""docs/alerts.yml: every rule has a name, an expression and a severity, and every metric an
expression reads is one the web app or the spooler exports (a renamed metric would otherwise leave
an alert that can never fire)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from jobs.spooler import metrics as spooler_metrics
from webapp import create_app
from webapp import metrics as web_metrics

RULES = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"


def exported_names() -> set[str]:
    """Sample names (with _total, _bucket, ...) of every metric the two processes export."""
    names: set[str] = set()
    svc = create_app({"spool_dir": "spool"}).extensions["txn"]  # builds no client until a scrape
    web = web_metrics.WebMetrics(svc)
    web.requests.labels("/r", "GET", "200").inc()
    web.latency.labels("/r", "GET").observe(0.1)
    web.backend_errors.labels("bigtable", "Unavailable").inc()
    families = [*web.requests.collect(), *web.latency.collect(), *web.backend_errors.collect()]
    families += web_metrics.job_families({"last_run": 1})
    snapshot = spooler_metrics.Snapshot(1, 1, {"bad_json": 1}, 1, 0, {"Unavailable": 1}, 0, 0, {"transactions": 1})
    families += spooler_metrics.families(snapshot)
    spooler = spooler_metrics.SpoolerMetrics()
    spooler.write_seconds.observe(0.1)
    families += spooler.write_seconds.collect()
    for family in families:
        names.update(sample.name for sample in family.samples)
    return names


def test_every_rule_reads_only_exported_metrics() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 4
    exported = exported_names()
    read = set()
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["labels"]["severity"] in ("page", "ticket"), rule
        read.update(re.findall(r"\btxn_[a-z_]+", rule["expr"]))
    assert read, "no rule reads a txn_ metric"
    assert read <= exported, sorted(read - exported)
    # The four the operators asked for are there.
    wanted = {
        "txn_job_last_success_timestamp_seconds",
        "txn_http_requests_total",
        "txn_spooler_dead_lettered_messages_total",
        "txn_spooler_pull_errors_total",
    }
    assert wanted <= read
