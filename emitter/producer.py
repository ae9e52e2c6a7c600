"""Simulated transactions, encoded for publishing, made in a separate process.

Publishing through google-cloud-pubsub costs most of a CPU core in Python; generating and encoding
a transaction costs a good fraction more. Doing the latter in a child process lets the publishing
process do nothing but publish. Batches travel through a bounded queue, so the child never runs
more than a few batches ahead: memory stays flat however long the simulation is.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from multiprocessing.synchronize import Event as EventType
from typing import Any

from common.message import Transaction
from common.money import format_minor
from common.timeutil import to_epoch_us
from emitter.simulate import Population, simulate

# transaction_id, user_id, amount (in its currency's places), currency, event_time (RFC 3339 UTC)
LedgerRow = tuple[str, str, str, str, str]
# (message body, message attributes, event time in epoch microseconds, ledger row)
EncodedTransaction = tuple[bytes, dict[str, str], int, LedgerRow]

_DONE = "done"
_ERROR = "error"
_BATCH = "batch"


def encode_for_publish(txn: Transaction) -> EncodedTransaction:
    """Everything publishing and the ledger need from one transaction, as plain values."""
    attributes = txn.attributes()
    amount = format_minor(txn.amount_minor, txn.currency)
    ledger_row = (txn.transaction_id, txn.user_id, amount, txn.currency, attributes["event_time"])
    return txn.encode(), attributes, to_epoch_us(txn.event_time), ledger_row


@dataclass(frozen=True)
class SimulationRequest:
    """What to simulate: the population, the window (end None: forever), the clock speed-up and an
    optional cap on the number of transactions."""

    population: Population
    start: datetime
    end: datetime | None
    time_scale: float = 1.0
    limit: int | None = None


def encoded_batches(request: SimulationRequest, batch_size: int = 1000) -> Iterator[list[EncodedTransaction]]:
    """The simulation's transactions, encoded, in lists of up to `batch_size`, in event-time order."""
    transactions = simulate(request.population, request.start, request.end, request.time_scale)
    batch: list[EncodedTransaction] = []
    for txn in transactions if request.limit is None else islice(transactions, request.limit):
        batch.append(encode_for_publish(txn))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _child_main(request: SimulationRequest, batch_size: int, out: Any, stop: EventType) -> None:
    # Ctrl-C (or a SIGTERM sent to the whole process group) reaches this process too; the parent
    # decides when to stop. Dying mid-put would leave a half-written batch in the pipe, on which the
    # parent's read would block forever.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    try:
        for batch in encoded_batches(request, batch_size):
            while True:
                if stop.is_set() or os.getppid() != parent:  # stopped, or the parent died
                    out.cancel_join_thread()  # exit now, without feeding what nobody will read
                    return
                try:
                    out.put((_BATCH, batch), timeout=0.5)
                    break
                except queue.Full:
                    continue
        out.put((_DONE, None))
    except Exception as exc:  # reported to the parent, which raises it
        out.put((_ERROR, f"{exc.__class__.__name__}: {exc}"))


class ProducerProcess:
    """Runs `encoded_batches(request)` in a child process; iterate it to get the batches.

    `stop()` ends the child early; `close()` (also on leaving a `with` block) waits for it."""

    def __init__(self, request: SimulationRequest, batch_size: int = 1000, queue_batches: int = 8) -> None:
        # spawn, not fork: the parent may already hold gRPC channels, which do not survive a fork.
        context = mp.get_context("spawn")
        self._queue = context.Queue(maxsize=queue_batches)
        self._stop = context.Event()
        self._process = context.Process(
            target=_child_main,
            args=(request, batch_size, self._queue, self._stop),
            name="emitter-producer",
            daemon=True,
        )
        self._process.start()

    def __iter__(self) -> Iterator[list[EncodedTransaction]]:
        while True:
            try:
                kind, payload = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive() and self._queue.empty():
                    raise RuntimeError(f"the producer process died (exit code {self._process.exitcode})") from None
                continue
            if kind == _BATCH:
                yield payload
            elif kind == _DONE:
                return
            else:
                raise RuntimeError(f"the producer process failed: {payload}")

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        # Nothing is read from the queue past this point: a stopped child exits without flushing
        # what it was sending (cancel_join_thread), so the pipe may end in half a batch, and a read
        # of it would wait forever. A child blocked on a full queue sees the stop flag within its
        # put's timeout; one stuck past that is terminated.
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._queue.close()
        self._queue.cancel_join_thread()

    def __enter__(self) -> ProducerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
