"""A spool batch becomes exactly the expected Parquet rows, in the shared spool layout and schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from common import spool
from common.message import MessageError, Transaction
from jobs.spooler.batch import InternTable, SpoolBatch

WRITTEN = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def test_batch_writes_transactions_and_dead_letters_with_the_spool_schemas(tmp_path: Path) -> None:
    batch = SpoolBatch()
    event = datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=UTC)
    batch.add_transaction(Transaction("t-1", "u0001", 4217, "USD", event, "grocery"), 1_795_000_000_000_001, "m1", "a1")
    batch.add_transaction(Transaction("t-2", "u0002", -500, "EUR", event, "fuel"), 1_795_000_000_000_002, "m2", "a2")
    batch.add_dead_letter(
        MessageError("bad_user_id", "'user_id' must match ..."), b'{"user_id":"a#b"}', {"k": "v"}, 7, "m3", "a3"
    )
    assert (len(batch), batch.transaction_count, batch.dead_letter_count) == (3, 2, 1)
    assert sorted(batch.acks) == ["a1", "a2", "a3"]

    written = batch.write(str(tmp_path), WRITTEN)

    tx_files = spool.list_files(str(tmp_path), spool.TRANSACTIONS)
    dl_files = spool.list_files(str(tmp_path), spool.DEAD_LETTER)
    assert sorted(written) == sorted(str(p) for p in tx_files + dl_files)
    assert [p.parent.name for p in tx_files + dl_files] == ["dt=2026-11-21", "dt=2026-11-21"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp file left behind

    tx = pq.read_table(tx_files[0])
    assert tx.schema.equals(spool.TRANSACTION_SCHEMA)
    assert tx.to_pylist() == [
        {
            "transaction_id": "t-1",
            "user_id": "u0001",
            "amount_minor": 4217,
            "currency": "USD",
            "merchant_category": "grocery",
            "event_time": event,
            "publish_time": datetime(2026, 11, 18, 11, 6, 40, 1, tzinfo=UTC),
            "message_id": "m1",
        },
        {
            "transaction_id": "t-2",
            "user_id": "u0002",
            "amount_minor": -500,
            "currency": "EUR",
            "merchant_category": "fuel",
            "event_time": event,
            "publish_time": datetime(2026, 11, 18, 11, 6, 40, 2, tzinfo=UTC),
            "message_id": "m2",
        },
    ]
    dead = pq.read_table(dl_files[0])
    assert dead.schema.equals(spool.DEAD_LETTER_SCHEMA)
    [row] = dead.to_pylist()
    assert row["reason"] == "bad_user_id"
    assert row["payload"] == b'{"user_id":"a#b"}'
    assert json.loads(row["attributes"]) == {"k": "v"}
    assert (row["message_id"], row["detail"]) == ("m3", "'user_id' must match ...")


def test_a_batch_without_dead_letters_writes_one_file(tmp_path: Path) -> None:
    batch = SpoolBatch()
    batch.add_transaction(Transaction("t", "u", 1, "USD", WRITTEN, "x"), 0, "m", "a")
    assert len(batch.write(str(tmp_path), WRITTEN)) == 1
    assert spool.list_files(str(tmp_path), spool.DEAD_LETTER) == []
    assert SpoolBatch().write(str(tmp_path), WRITTEN) == []


def test_a_batch_counts_the_bytes_it_holds() -> None:
    batch = SpoolBatch()
    batch.add_transaction(Transaction("t", "u", 1, "USD", WRITTEN, "x"), 0, "m", "a", payload_bytes=180)
    error = MessageError("oversize", "payload is 9000 bytes")
    held = batch.add_dead_letter(error, b"x" * 9000, {"k": "v"}, 0, "m2", "a2")
    # payload + '{"k": "v"}' + the detail, counted by hand
    assert held == 9000 + 10 + 21
    assert (batch.bytes, batch.dead_letter_bytes) == (180 + 9031, 9031)


def test_the_intern_table_keeps_one_object_per_value_and_stays_bounded() -> None:
    table = InternTable(limit=4)
    batch = SpoolBatch(table)
    first = "".join(["u", "1"])
    batch.add_transaction(Transaction("t", first, 1, "EUR", WRITTEN, "food"), 0, "m", "a")
    batch.add_transaction(Transaction("t", "".join(["u", "1"]), 1, "EUR", WRITTEN, "food"), 0, "m", "a")
    assert batch.transactions["user_id"][1] is first  # an equal string built apart gives back the first
    for i in range(100):
        batch.add_transaction(Transaction(f"t{i}", f"v{i}", 1, "EUR", WRITTEN, "food"), 0, "m", "a")
        assert len(table) <= 4 + 2  # the limit, and what one row adds after it was checked
    assert batch.transactions["user_id"][2:] == [f"v{i}" for i in range(100)]
