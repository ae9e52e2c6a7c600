"""Publishing transactions to Pub/Sub: batched, flow-controlled, retried, counted.

`TransactionPublisher` is the one way the product publishes (the emitter and the web app's ingest
endpoint both use it). Completions are counted in a callback, so no future is kept per message;
the publisher's flow control blocks the caller when too much is in flight, so a fast producer gets
backpressure instead of memory growth.
"""

from __future__ import annotations

import csv
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.pubsub_v1 import types

from common import clients
from common.config import Config
from common.message import Transaction
from emitter.producer import EncodedTransaction, encode_for_publish

LEDGER_HEADER = ("transaction_id", "user_id", "amount", "event_time")

# Errors worth retrying: the service is busy, restarting or briefly unreachable.
_TRANSIENT = gretry.if_exception_type(
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
)


@dataclass(frozen=True)
class PublishSettings:
    """Batching, flow control and retry budget of the publisher."""

    batch_max_messages: int = 1000
    batch_max_bytes: int = 4_000_000
    batch_max_latency_seconds: float = 0.05
    max_in_flight_messages: int = 20_000
    max_in_flight_bytes: int = 40_000_000
    retry_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class PublishCounts:
    """What became of the messages handed to a publisher."""

    submitted: int
    published: int
    failed: int
    first_error: str | None


class Ledger:
    """The ground-truth CSV of published transactions: transaction_id,user_id,amount,event_time.

    Rows are written as Pub/Sub confirms each message, so the file lists exactly the transactions
    that were published (in confirmation order, which is close to event order)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Open for the ledger's lifetime; close() (or the publisher's close()) ends it.
        self._handle: IO[str] = open(self.path, "w", newline="", encoding="utf-8", buffering=1 << 20)  # noqa: SIM115
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(LEDGER_HEADER)
        self._lock = threading.Lock()

    def write(self, row: tuple[str, str, str, str]) -> None:
        """One row: transaction_id, user_id, amount with two decimals, event_time RFC 3339 UTC."""
        with self._lock:
            if not self._handle.closed:  # an outcome arriving after close() gave up waiting
                self._writer.writerow(row)

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                self._handle.close()


class TransactionPublisher:
    """Publish Transactions to the configured topic.

    `publish(txn)` returns once the message is handed to the client (blocking while the in-flight
    limit is reached); `close()` sends what is left, waits for every outcome and returns the counts.
    A message that still fails after the retry budget is counted in `failed`, never raised.
    """

    def __init__(
        self,
        cfg: Config,
        settings: PublishSettings | None = None,
        ledger: Ledger | None = None,
        ensure_topic: bool = True,
        ensure_timeout: float = 5.0,
    ) -> None:
        """Build the client; with `ensure_topic`, first create the topic when missing, raising
        clients.ServiceUnavailable within `ensure_timeout` seconds when Pub/Sub cannot be reached."""
        self.settings = settings or PublishSettings()
        if ensure_topic:
            clients.ensure_topic(cfg, timeout=ensure_timeout)
        self.topic = clients.topic_path(cfg)
        self._ledger = ledger
        s = self.settings
        retry = gretry.Retry(
            predicate=_TRANSIENT, initial=0.1, maximum=5.0, multiplier=2.0, timeout=s.retry_timeout_seconds
        )
        self._client = clients.publisher_client(
            cfg,
            batch_settings=types.BatchSettings(
                max_messages=s.batch_max_messages,
                max_bytes=s.batch_max_bytes,
                max_latency=s.batch_max_latency_seconds,
            ),
            publisher_options=types.PublisherOptions(
                flow_control=types.PublishFlowControl(
                    message_limit=s.max_in_flight_messages,
                    byte_limit=s.max_in_flight_bytes,
                    limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
                ),
                retry=retry,
                timeout=s.retry_timeout_seconds,
            ),
        )
        self._done = threading.Condition()
        self._submitted = 0
        self._published = 0
        self._failed = 0
        self._first_error: str | None = None
        self._closed = False

    def publish(self, txn: Transaction) -> None:
        """Hand one transaction to the client; blocks while too many messages are in flight."""
        self.publish_encoded(encode_for_publish(txn))

    def publish_encoded(self, item: EncodedTransaction) -> None:
        """Publish a transaction already encoded by `encode_for_publish`; its ledger row is written
        once Pub/Sub confirms it."""
        data, attributes, _, ledger_row = item
        with self._done:
            self._submitted += 1
        future = self._client.publish(self.topic, data, **attributes)
        if self._ledger is None:
            future.add_done_callback(self._on_done)
        else:
            future.add_done_callback(partial(self._on_done_with_ledger, ledger_row))

    def _on_done_with_ledger(self, ledger_row: tuple[str, str, str, str], future: Future[Any]) -> None:
        if self._on_done(future) and self._ledger is not None:
            self._ledger.write(ledger_row)

    def _on_done(self, future: Future[Any]) -> bool:
        error = future.exception()
        with self._done:
            if error is None:
                self._published += 1
            else:
                self._failed += 1
                if self._first_error is None:
                    self._first_error = f"{error.__class__.__name__}: {str(error)[:200]}"
            self._done.notify_all()
        return error is None

    @property
    def published(self) -> int:
        return self._published

    @property
    def failed(self) -> int:
        return self._failed

    def counts(self) -> PublishCounts:
        with self._done:
            return PublishCounts(self._submitted, self._published, self._failed, self._first_error)

    def close(self, timeout: float | None = None) -> PublishCounts:
        """Send the open batches, wait (up to `timeout` seconds) for every outcome, return the counts."""
        if not self._closed:
            self._closed = True
            self._client.stop()
        with self._done:
            self._done.wait_for(lambda: self._published + self._failed >= self._submitted, timeout)
        if self._ledger is not None:
            self._ledger.close()
        return self.counts()
