"""The spooler's metrics in the Prometheus text format, served on `spooler_metrics_host`:
`spooler_metrics_port` (config; port 0, the default, serves none).

    txn_spooler_received_messages_total            messages pulled and kept
    txn_spooler_returned_messages_total            messages handed back unread (held bytes at the limit)
    txn_spooler_spooled_transactions_total         transactions in durable spool files
    txn_spooler_dead_lettered_messages_total{reason}  messages set aside, by the parser's reason
    txn_spooler_acked_messages_total, txn_spooler_ack_failures_total
    txn_spooler_pull_errors_total{error}           pulls that failed (Pub/Sub away), by error class
    txn_spooler_held_messages, txn_spooler_held_bytes   pulled and not yet acked / not yet written
    txn_spooler_file_writes_total{kind}            spool files written (transactions, dead-letter)
    txn_spooler_file_write_failures_total          batch writes that failed (spool_dir full, read-only)
    txn_spooler_file_write_seconds                 time to write one batch's files (histogram)
    txn_spooler_pubsub_down, txn_spooler_spool_dir_down   1 while the spooler waits one out

The counts are the spooler's own tallies, read under its lock when scraped, so pulling pays nothing
for them; only the write time is observed as it happens (once per batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.config import ConfigError

# A batch of up to spool_roll_messages rows: milliseconds on a local disk, seconds on a slow one.
WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Snapshot:
    """The spooler's tallies at one instant."""

    received: int
    spooled: int
    dead_lettered: Mapping[str, int]  # by reason
    acked: int
    ack_failures: int
    pull_errors: Mapping[str, int]  # by error class
    held_messages: int
    held_bytes: int
    files: Mapping[str, int] = field(default_factory=dict)  # by kind
    write_failures: int = 0
    pubsub_down: bool = False
    spool_dir_down: bool = False
    returned: int = 0


def families(snap: Snapshot) -> list[Metric]:
    """The counter and gauge families of a snapshot."""

    def counter(name: str, text: str, value: int) -> CounterMetricFamily:
        return CounterMetricFamily(name, text, value=value)

    def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, value=value)

    def by(name: str, text: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, text, labels=[label])
        for key, value in sorted(values.items()):
            family.add_metric([key], value)
        return family

    return [
        counter("txn_spooler_received_messages", "Messages pulled from Pub/Sub and kept", snap.received),
        counter(
            "txn_spooler_returned_messages",
            "Messages handed back unread because the held bytes were at their limit",
            snap.returned,
        ),
        counter("txn_spooler_spooled_transactions", "Transactions written to durable spool files", snap.spooled),
        by(
            "txn_spooler_dead_lettered_messages",
            "Messages written to the dead-letter spool, by reason",
            "reason",
            snap.dead_lettered,
        ),
        counter("txn_spooler_acked_messages", "Messages acked after their file was durable", snap.acked),
        counter(
            "txn_spooler_ack_failures", "Messages whose ack failed (Pub/Sub delivers them again)", snap.ack_failures
        ),
        by("txn_spooler_pull_errors", "Pulls that failed, by error class", "error", snap.pull_errors),
        gauge("txn_spooler_held_messages", "Messages pulled and not yet acked", snap.held_messages),
        gauge("txn_spooler_held_bytes", "Bytes held in batches not yet written", snap.held_bytes),
        by("txn_spooler_file_writes", "Spool files written, by kind", "kind", snap.files),
        counter("txn_spooler_file_write_failures", "Batch writes that failed (retried later)", snap.write_failures),
        gauge("txn_spooler_pubsub_down", "1 while Pub/Sub cannot be reached", int(snap.pubsub_down)),
        gauge("txn_spooler_spool_dir_down", "1 while spool_dir cannot be written", int(snap.spool_dir_down)),
    ]


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


class SpoolerMetrics:
    """A spooler's registry: the write-time histogram it observes, and its tallies once `watch`ed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.write_seconds = Histogram(
            "txn_spooler_file_write_seconds",
            "Time to write one batch's spool files (temp, fsync, rename)",
            buckets=WRITE_BUCKETS,
            registry=self.registry,
        )

    def watch(self, snapshot: Callable[[], Snapshot]) -> None:
        """Export the tallies `snapshot()` returns, read at each scrape."""
        self.registry.register(_SnapshotCollector(snapshot))

    def serve(self, host: str, port: int) -> Any:
        """Serve /metrics on host:port in a daemon thread; returns the server (call .shutdown()).
        Raises ConfigError naming the key when the address cannot be listened on."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"config key 'spooler_metrics_port': cannot listen on {host}:{port} ({exc.strerror or exc})"
            ) from None
        return server
