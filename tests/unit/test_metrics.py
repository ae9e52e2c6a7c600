"""The metrics' shapes without any service: the job's families from a status, the spooler's from a
snapshot, parsed back with Prometheus' text parser."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.spooler import metrics as spooler_metrics
from webapp import metrics as web_metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_job_families_of_a_status_without_runs() -> None:
    families = {f.name: f for f in web_metrics.job_families(None)}
    assert families["txn_job_state_up"].samples[0].value == 1
    assert families["txn_job_last_success_timestamp_seconds"].samples[0].value == 0
    assert families["txn_job_failed_runs"].samples[0].value == 0
    names = [f.name for f in web_metrics.job_families({"last_run": 3})]
    assert len(names) == len(set(names))  # no family twice


def test_a_snapshot_becomes_counters_and_gauges_with_their_labels() -> None:
    snap = spooler_metrics.Snapshot(
        received=10,
        spooled=7,
        dead_lettered={"bad_json": 2, "empty": 1},
        acked=9,
        ack_failures=1,
        pull_errors={"ServiceUnavailable": 4},
        held_messages=3,
        held_bytes=512,
        files={"transactions": 2, "dead-letter": 1},
        write_failures=2,
        pubsub_down=True,
        returned=5,
    )
    metrics = spooler_metrics.SpoolerMetrics()
    metrics.watch(lambda: snap)
    metrics.write_seconds.observe(0.02)
    samples = parse(generate_latest(metrics.registry).decode())
    assert samples[("txn_spooler_received_messages_total", ())] == 10
    assert samples[("txn_spooler_returned_messages_total", ())] == 5
    assert samples[("txn_spooler_dead_lettered_messages_total", (("reason", "bad_json"),))] == 2
    assert samples[("txn_spooler_dead_lettered_messages_total", (("reason", "empty"),))] == 1
    assert samples[("txn_spooler_pull_errors_total", (("error", "ServiceUnavailable"),))] == 4
    assert samples[("txn_spooler_file_writes_total", (("kind", "dead-letter"),))] == 1
    assert samples[("txn_spooler_file_write_failures_total", ())] == 2
    assert samples[("txn_spooler_held_bytes", ())] == 512
    assert (samples[("txn_spooler_pubsub_down", ())], samples[("txn_spooler_spool_dir_down", ())]) == (1, 0)
    assert samples[("txn_spooler_file_write_seconds_bucket", (("le", "0.025"),))] == 1
    assert samples[("txn_spooler_file_write_seconds_bucket", (("le", "0.01"),))] == 0
