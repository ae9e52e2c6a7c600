"""One spool batch: the rows of the next transaction file and dead-letter file, and the ack ids
owed for them. Pure data; no Pub/Sub and no threads.

Rows are kept as columns of plain values (ids, integer minor units, times), never as message
objects: a client Message costs about 2 KB, a row a few hundred bytes, and a batch may hold tens of
thousands of them. A batch counts the bytes it holds (payloads, and the dead letters' attributes and
details), so the spooler can bound its memory in bytes as well as in messages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from common import spool
from common.message import MessageError, Transaction

_TX_COLUMNS = spool.TRANSACTION_SCHEMA.names
_DL_COLUMNS = spool.DEAD_LETTER_SCHEMA.names
MAX_INTERNED = 20_000  # distinct strings kept by an InternTable (each at most 64 characters)


class InternTable(dict[str, str]):
    """One string object per distinct value (users, currencies and categories repeat), at most about
    `limit` of them: when full it starts again empty, so a stream of ever-new user ids cannot grow
    it. Filled by SpoolBatch.add_transaction (under the spooler's lock)."""

    def __init__(self, limit: int = MAX_INTERNED) -> None:
        super().__init__()
        self.limit = limit


class SpoolBatch:
    """Rows for one transaction file and one dead-letter file, plus one ack id per row."""

    def __init__(self, interned: InternTable | None = None) -> None:
        self.transactions: dict[str, list[Any]] = {name: [] for name in _TX_COLUMNS}
        self.dead_letters: dict[str, list[Any]] = {name: [] for name in _DL_COLUMNS}
        self.acks: list[str] = []  # the Pub/Sub ack id of every row, in no particular order
        self.bytes = 0  # payload bytes of every row, plus the dead letters' attributes and details
        self.dead_letter_bytes = 0  # the part of `bytes` in dead letters
        self.started = self.leased = time.monotonic()
        self._intern = interned if interned is not None else InternTable()
        cols = self.transactions  # the columns, held once more by name for add_transaction
        self._transaction_ids, self._user_ids, self._amounts = (
            cols["transaction_id"],
            cols["user_id"],
            cols["amount_minor"],
        )
        self._currencies, self._categories = cols["currency"], cols["merchant_category"]
        self._event_times, self._publish_times, self._message_ids = (
            cols["event_time"],
            cols["publish_time"],
            cols["message_id"],
        )

    def __len__(self) -> int:
        return len(self.acks)

    @property
    def transaction_count(self) -> int:
        return len(self.transactions["transaction_id"])

    @property
    def dead_letter_count(self) -> int:
        return len(self.dead_letters["message_id"])

    def age(self) -> float:
        """Seconds since the batch was started."""
        return time.monotonic() - self.started

    def restart_clock(self) -> None:
        """Count the age (and the lease) from now: for an empty batch waiting for its first row."""
        self.started = self.leased = time.monotonic()

    def lease_age(self) -> float:
        """Seconds since the batch's messages were pulled or their ack deadline last extended."""
        return time.monotonic() - self.leased

    def renew_lease(self) -> None:
        self.leased = time.monotonic()

    def add_transaction(
        self, txn: Transaction, publish_us: int, message_id: str, ack_id: str, payload_bytes: int = 0
    ) -> None:
        table = self._intern
        if len(table) >= table.limit:
            table.clear()
        intern = table.setdefault
        user_id, currency, category = txn.user_id, txn.currency, txn.merchant_category
        self._transaction_ids.append(txn.transaction_id)
        self._user_ids.append(intern(user_id, user_id))
        self._amounts.append(txn.amount_minor)
        self._currencies.append(intern(currency, currency))
        self._categories.append(intern(category, category))
        self._event_times.append(txn.event_time)  # an aware datetime; Arrow converts it in C
        self._publish_times.append(publish_us)
        self._message_ids.append(message_id)
        self.acks.append(ack_id)
        self.bytes += payload_bytes

    def add_dead_letter(
        self,
        error: MessageError,
        payload: bytes,
        attributes: Mapping[str, str],
        publish_us: int,
        message_id: str,
        ack_id: str,
    ) -> int:
        """Add one dead-letter row; return the bytes it holds (payload, attributes, detail)."""
        cols = self.dead_letters
        attributes_json = json.dumps(dict(attributes), sort_keys=True)
        cols["message_id"].append(message_id)
        cols["publish_time"].append(publish_us)
        cols["reason"].append(error.reason)
        cols["detail"].append(error.detail)
        cols["payload"].append(payload)
        cols["attributes"].append(attributes_json)
        self.acks.append(ack_id)
        size = len(payload) + len(attributes_json) + len(error.detail)
        self.bytes += size
        self.dead_letter_bytes += size
        return size

    def transaction_table(self) -> pa.Table:
        return pa.Table.from_pydict(self.transactions, schema=spool.TRANSACTION_SCHEMA)

    def dead_letter_table(self) -> pa.Table:
        return pa.Table.from_pydict(self.dead_letters, schema=spool.DEAD_LETTER_SCHEMA)

    def write(self, spool_dir: str, now: datetime | None = None, writer: spool.WriterName | None = None) -> list[str]:
        """Write the batch's rows as durable Parquet files (transactions, then dead letters) in the
        local or gs:// spool, named by `writer` (default: this process's); return where they are.
        Only after this returns may the batch's messages be acked."""
        now = now or datetime.now(UTC)
        written = []
        if self.transaction_count:
            name = spool.new_file_name(spool.TRANSACTIONS, now, writer)
            written.append(spool.write_file(self.transaction_table(), spool_dir, name))
        if self.dead_letter_count:
            name = spool.new_file_name(spool.DEAD_LETTER, now, writer)
            written.append(spool.write_file(self.dead_letter_table(), spool_dir, name))
        return written
