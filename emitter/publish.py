"""Publishing transactions to Pub/Sub: batched, flow-controlled, retried, counted.

`TransactionPublisher` is the one way the product publishes (the emitter and the web app's ingest
endpoint both use it). Completions are counted in a callback, so no future is kept per message;
`publish` blocks the caller while too many messages are unconfirmed, so a fast producer gets
backpressure instead of memory growth.

An outage never drops a message: the client library retries each batch for a while
(`retry_timeout_seconds`); a message whose publish still fails with a transient error goes back on a
resend queue, which a thread of its own publishes again after a capped exponential backoff
(common.outage.Backoff), for as long as it takes. Only errors no retry can fix (a bad argument, a
missing topic, no permission) count as failed. A resent message may have landed the first time:
Pub/Sub then holds it twice, and the pipeline counts it once (by transaction id).
"""

from __future__ import annotations

import collections
import csv
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud.pubsub_v1 import types

from common import clients
from common.cli import log
from common.config import Config
from common.message import Transaction
from common.outage import Backoff, first_line
from emitter.producer import EncodedTransaction, LedgerRow, encode_for_publish

LEDGER_HEADER = ("transaction_id", "user_id", "amount", "currency", "event_time")

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
# Errors no retry can fix: the message is counted as failed.
_PERMANENT = (
    gexc.InvalidArgument,
    gexc.NotFound,
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.FailedPrecondition,
    gexc.OutOfRange,
)


@dataclass(frozen=True)
class PublishSettings:
    """Batching, flow control and retry budget of the publisher. `retry_timeout_seconds` bounds the
    client library's retries of one attempt; after it the message is resent with `backoff_max_seconds`
    as the longest wait between attempts, and a line is said every `report_seconds` while that lasts."""

    batch_max_messages: int = 1000
    batch_max_bytes: int = 4_000_000
    batch_max_latency_seconds: float = 0.05
    max_in_flight_messages: int = 20_000
    max_in_flight_bytes: int = 40_000_000
    # While Pub/Sub is unreachable fewer may wait unconfirmed: the rest wait, not yet generated, in
    # the producer (memory stays flat through an outage of any length).
    outage_in_flight_messages: int = 200
    retry_timeout_seconds: float = 10.0
    backoff_max_seconds: float = 60.0
    report_seconds: float = 60.0

    @classmethod
    def from_config(cls, cfg: Config) -> PublishSettings:
        """The defaults, with the outage backoff and report interval of the config."""
        return cls(backoff_max_seconds=cfg.outage_backoff_max_seconds, report_seconds=cfg.outage_report_seconds)


@dataclass(frozen=True)
class PublishCounts:
    """What became of the messages handed to a publisher: `published` confirmed, `failed` refused for
    good, the rest (`unconfirmed`) still being retried when the publisher was closed."""

    submitted: int
    published: int
    failed: int
    first_error: str | None
    resent: int = 0

    @property
    def unconfirmed(self) -> int:
        return self.submitted - self.published - self.failed


class Ledger:
    """The ground-truth CSV of published transactions: transaction_id,user_id,amount,currency,event_time.

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

    def write(self, row: LedgerRow) -> None:
        """One row: transaction_id, user_id, amount with its currency's places, currency, event_time
        RFC 3339 UTC."""
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

    `publish(txn)` returns once the message is handed to the client (blocking while
    `max_in_flight_messages` are unconfirmed); `close()` waits for every outcome and returns the
    counts. A message that fails with a transient error is published again after a backoff, for as
    long as it takes; one that fails for good is counted in `failed`, never raised.
    """

    def __init__(
        self,
        cfg: Config,
        settings: PublishSettings | None = None,
        ledger: Ledger | None = None,
        ensure_topic: bool = True,
        ensure_timeout: float = 5.0,
        say: Any = log,
    ) -> None:
        """Build the client; with `ensure_topic`, first create the topic when missing, raising
        clients.ServiceUnavailable within `ensure_timeout` seconds when Pub/Sub cannot be reached."""
        self.settings = settings or PublishSettings.from_config(cfg)
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
                # The limit that holds the caller back is this class's own (see _wait_for_room),
                # which a stop can interrupt; the library's, set above it, only guards memory.
                flow_control=types.PublishFlowControl(
                    message_limit=2 * s.max_in_flight_messages,
                    byte_limit=2 * s.max_in_flight_bytes,
                    limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
                ),
                retry=retry,
                timeout=s.retry_timeout_seconds,
            ),
        )
        self.backoff = Backoff("emitter", "Pub/Sub", say, cap=s.backoff_max_seconds, report_every=s.report_seconds)
        self._done = threading.Condition()
        self._submitted = 0
        self._published = 0
        self._failed = 0
        self._resent = 0
        self._first_error: str | None = None
        self._progress_at = time.monotonic()  # last confirmation, or when the first unconfirmed was sent
        self._resend: collections.deque[EncodedTransaction] = collections.deque()
        self._resend_at = 0.0
        self._closed = threading.Event()
        self._resender = threading.Thread(target=self._resend_loop, name="emitter-resend", daemon=True)
        self._resender.start()

    def publish(self, txn: Transaction) -> None:
        """Hand one transaction to the client; blocks while too many messages are in flight."""
        self.publish_encoded(encode_for_publish(txn))

    def publish_encoded(self, item: EncodedTransaction, stop: threading.Event | None = None) -> bool:
        """Publish a transaction already encoded by `encode_for_publish`; its ledger row is written
        once Pub/Sub confirms it. Blocks while too many are unconfirmed; returns False, without
        publishing, when `stop` is set meanwhile."""
        if not self._wait_for_room(stop):
            return False
        with self._done:
            if self._submitted == self._published + self._failed:
                self._progress_at = time.monotonic()
            self._submitted += 1
        self._send(item)
        return True

    def _wait_for_room(self, stop: threading.Event | None) -> bool:
        s = self.settings
        with self._done:
            while self._submitted - self._published - self._failed >= (
                s.outage_in_flight_messages if self.backoff.down else s.max_in_flight_messages
            ):
                if stop is not None and stop.is_set():
                    return False
                self._done.wait(0.25)
        return stop is None or not stop.is_set()

    def _send(self, item: EncodedTransaction) -> None:
        data, attributes, _, _ = item
        future = self._client.publish(self.topic, data, **attributes)
        future.add_done_callback(partial(self._on_done, item))

    def _on_done(self, item: EncodedTransaction, future: Future[Any]) -> None:
        error = future.exception()
        if error is not None and not isinstance(error, _PERMANENT):
            if self._closed.is_set():  # given up on: it stays unconfirmed, not failed
                return
            wait = self.backoff.failed(first_line(error))
            with self._done:
                self._resend.append(item)
                self._resend_at = max(self._resend_at, time.monotonic() + wait)
                self._done.notify_all()
            return
        with self._done:
            if error is None:
                self._published += 1
                self._progress_at = time.monotonic()
            else:
                self._failed += 1
                if self._first_error is None:
                    self._first_error = f"{error.__class__.__name__}: {str(error)[:200]}"
            self._done.notify_all()
        if error is None:
            if self.backoff.down:
                self.backoff.succeeded()
            if self._ledger is not None:
                self._ledger.write(item[3])

    def _resend_loop(self) -> None:
        """Publish the resend queue again once its backoff has passed; until close() gives up."""
        while not self._closed.is_set():
            with self._done:
                wait = self._resend_at - time.monotonic()
                if not self._resend or wait > 0:
                    self._done.wait(min(max(wait, 0.05), 0.5) if self._resend else 0.5)
                    continue
                items = list(self._resend)
                self._resend.clear()
                self._resent += len(items)
            for item in items:
                if self._closed.is_set():
                    break
                self._send(item)

    @property
    def published(self) -> int:
        return self._published

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def unconfirmed(self) -> int:
        with self._done:
            return self._submitted - self._published - self._failed

    def waiting_seconds(self) -> float:
        """How long messages have been waiting with no confirmation (0 when none is unconfirmed)."""
        with self._done:
            if self._submitted == self._published + self._failed:
                return 0.0
            return time.monotonic() - self._progress_at

    def counts(self) -> PublishCounts:
        with self._done:
            return PublishCounts(self._submitted, self._published, self._failed, self._first_error, self._resent)

    def wait(self, timeout: float | None = None, give_up: threading.Event | None = None) -> bool:
        """Wait for every outcome (resending through an outage), at most `timeout` seconds or until
        `give_up` is set; True when none is left unconfirmed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            while self._submitted > self._published + self._failed:
                if give_up is not None and give_up.is_set():
                    return False
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                self._done.wait(0.25)
        return True

    def close(self, timeout: float | None = None, give_up: threading.Event | None = None) -> PublishCounts:
        """`wait(timeout, give_up)`, then stop the client and return the counts (`unconfirmed` > 0
        when it gave up: those were never confirmed and are no longer retried)."""
        self.wait(timeout, give_up)
        if not self._closed.is_set():
            self._closed.set()
            self._resender.join(timeout=5)
            self._client.stop()
        if self._ledger is not None:
            self._ledger.close()
        return self.counts()
