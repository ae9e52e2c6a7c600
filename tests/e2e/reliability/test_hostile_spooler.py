"""Hostile input through Pub/Sub to the real spooler (`python -m jobs.spooler`): every kind of
malformed message below is dead-lettered with the reason written beside it, its payload and
attributes kept byte for byte, and the good messages published between them are spooled intact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from support.tally import TALLY

from bench.hostile import CORPUS
from common import clients, spool
from common.config import Config
from common.message import Transaction
from jobs.spooler.spooler import Spooler
from reliability.pipeline import command, run, spool_rows, write_config

NOW = datetime.now(UTC).replace(microsecond=0)
GOOD = {
    "schema_version": 1,
    "transaction_id": "tpl-1",
    "user_id": "u1",
    "amount": "42.17",
    "currency": "USD",
    "event_time": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "merchant_category": "grocery",
}


def body(**changes: object) -> bytes:
    """GOOD with fields changed; `...` removes a field."""
    return json.dumps({k: v for k, v in {**GOOD, **changes}.items() if v is not ...}).encode()


def raw(text: str) -> bytes:
    """GOOD's JSON with `"amount": "42.17"` replaced by raw text (for what json.dumps cannot write)."""
    return body().replace(b'"amount": "42.17"', text.encode())


# (name, payload, the reason it must be dead-lettered with). Expected reasons are written by hand.
MALFORMED: list[tuple[str, bytes, str]] = [
    # the envelope
    ("not JSON", b"{this is not json", "bad_json"),
    ("truncated JSON", body()[:-7], "bad_json"),
    ("trailing garbage", body() + b"}}", "bad_json"),
    ("two objects", body() + body(), "bad_json"),
    ("JSON array", b"[1, 2, 3]", "bad_json"),
    ("JSON string", b'"u1,1.00,1763712000"', "bad_json"),
    ("JSON number", b"42", "bad_json"),
    ("JSON null", b"null", "bad_json"),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + body(), "bad_json"),
    ("NUL bytes", b"\x00\x00\x00\x00", "bad_json"),
    ("UTF-16", body().decode().encode("utf-16"), "bad_encoding"),
    ("invalid UTF-8", b"\xff\xfe\xfd\xfc", "bad_encoding"),
    ("encoded surrogate", b'{"user_id": "\xed\xa0\x80"}', "bad_encoding"),
    ("only whitespace", b" \n\t\r ", "empty"),
    ("over the size limit", body(merchant_category="x" * 9000), "oversize"),
    ("nested past the size limit", b"[" * 5000 + b"]" * 5000, "oversize"),
    ("integer too long to read", raw('"amount": ' + "9" * 5000), "bad_json"),
    # schema version
    ("schema version 2", body(schema_version=2), "bad_schema_version"),
    ("schema version true", body(schema_version=True), "bad_schema_version"),
    ("schema version text", body(schema_version="one"), "bad_schema_version"),
    # transaction id
    ("transaction id missing", body(transaction_id=...), "missing_field"),
    ("transaction id a number", body(transaction_id=7), "bad_type"),
    ("transaction id empty", body(transaction_id=""), "bad_transaction_id"),
    ("transaction id with a slash", body(transaction_id="a/b"), "bad_transaction_id"),
    ("transaction id of 129 characters", body(transaction_id="t" * 129), "bad_transaction_id"),
    # user id
    ("user id missing", body(user_id=...), "missing_field"),
    ("user id null", body(user_id=None), "missing_field"),
    ("user id with markup", body(user_id="<script>alert(1)</script>"), "bad_user_id"),
    ("user id with the key separator", body(user_id="u1#2"), "bad_user_id"),
    ("user id of a global row", body(user_id="~job"), "bad_user_id"),
    ("user id of 65 characters", body(user_id="u" * 65), "bad_user_id"),
    ("user id with a zero-width space", body(user_id="u1\u200b"), "bad_user_id"),
    ("user id in full-width letters", body(user_id="ｕ１"), "bad_user_id"),
    ("user id with a newline", body(user_id="u1\n"), "bad_user_id"),
    ("user id a number", body(user_id=1), "bad_user_id"),
    # amount
    ("amount missing", body(amount=...), "missing_field"),
    ("amount true", body(amount=True), "bad_type"),
    ("amount a list", body(amount=["1.00"]), "bad_type"),
    ("amount an object", body(amount={"value": "1.00"}), "bad_type"),
    ("amount empty", body(amount=""), "bad_amount"),
    ("amount with a thousands comma", body(amount="1,000.00"), "bad_amount"),
    ("amount in hexadecimal", body(amount="0x10"), "bad_amount"),
    ("amount in Arabic-Indic digits", body(amount="١٢.٥٠"), "bad_amount"),
    ("amount with an exponent out of range", body(amount="1e99999999999999999999"), "bad_amount"),
    ("amount NaN text", body(amount="NaN"), "non_finite_amount"),
    ("amount NaN literal", raw('"amount": NaN'), "non_finite_amount"),
    ("amount -Infinity literal", raw('"amount": -Infinity'), "non_finite_amount"),
    ("amount of a tenth of a cent", body(amount="1.001"), "too_many_decimals"),
    ("amount as a JSON number with three places", raw('"amount": 12.345'), "too_many_decimals"),
    ("amount in yen with decimals", body(amount="10.5", currency="JPY"), "too_many_decimals"),
    ("amount in dinars with four places", body(amount="1.2345", currency="BHD"), "too_many_decimals"),
    ("amount over the limit", body(amount="1000000.01"), "absurd_amount"),
    ("amount far over the limit", body(amount="-99999999999999.99"), "absurd_amount"),
    ("amount twice, the last one bad", raw('"amount": "1.00", "amount": "1.001"'), "duplicate_key"),
    ("amount twice, both good", raw('"amount": "1.00", "amount": "1.00"'), "duplicate_key"),
    # event time
    ("event time missing", body(event_time=...), "missing_field"),
    ("event time epoch number", body(event_time=1763712000), "bad_type"),
    ("event time without offset", body(event_time="2026-11-21T08:00:00"), "bad_event_time"),
    ("event time a date only", body(event_time="2026-11-21"), "bad_event_time"),
    ("event time relative", body(event_time="-1h"), "bad_event_time"),
    ("event time hour 25", body(event_time="2026-11-21T25:00:00Z"), "bad_event_time"),
    ("event time 30 February", body(event_time="2026-02-30T00:00:00Z"), "bad_event_time"),
    ("event time past year 9999", body(event_time="9999-12-31T23:59:59-14:00"), "bad_event_time"),
    ("event time before 2000", body(event_time="1999-12-31T23:59:59.999999Z"), "absurd_event_time"),
    ("event time years ahead", body(event_time="2099-01-01T00:00:00Z"), "absurd_event_time"),
    # currency and category
    ("currency lower case", body(currency="usd"), "bad_currency"),
    ("currency of two letters", body(currency="US"), "bad_currency"),
    ("currency a number", body(currency=840), "bad_currency"),
    ("currency not in ISO 4217", body(currency="ZZZ"), "unknown_currency"),
    ("an unknown field", body(note="hello"), "unknown_field"),
    ("category with markup", body(merchant_category="<b>x</b>"), "bad_merchant_category"),
    ("category empty", body(merchant_category=""), "bad_merchant_category"),
    ("category of 65 characters", body(merchant_category="c" * 65), "bad_merchant_category"),
    # the legacy CSV line
    ("CSV with four fields", b"u1,1.00,1763712000,extra", "bad_json"),
    ("CSV with empty fields", b",,", "bad_user_id"),
    ("CSV with a bad user", b"u#1,1.00,1763712000", "bad_user_id"),
    ("CSV with a tenth of a cent", b"u1,1.001,1763712000", "too_many_decimals"),
    ("CSV with an exponent bomb for a time", b"u1,1.00,1e999990", "bad_event_time"),
    ("CSV with infinity", b"u1,inf,1763712000", "non_finite_amount"),
    ("CSV with a non-numeric time", b"u1,12.50,notatime", "bad_event_time"),
    ("CSV with NaN seconds", b"u1,12.50,nan", "bad_event_time"),
    ("CSV before 2000", b"u1,12.50,-5", "absurd_event_time"),
]


def good_transactions(count: int) -> list[Transaction]:
    return [
        Transaction(
            f"good-{i:03d}",
            f"u{i % 7}",
            (i * 137 + 1) * (-1 if i % 5 == 0 else 1),
            "USD",
            NOW - timedelta(minutes=i, microseconds=i),
            "fuel",
        )
        for i in range(count)
    ]


def test_every_kind_of_malformed_message_is_dead_lettered_with_its_reason_and_good_ones_are_intact(
    cfg: Config, tmp_path: Path
) -> None:
    assert len({name for name, _, _ in MALFORMED}) == len(MALFORMED) >= 30
    clients.ensure_subscription(cfg)
    good = good_transactions(len(MALFORMED) + 10)
    publisher = clients.publisher_client(cfg)
    topic = clients.topic_path(cfg)
    futures = []
    for index, txn in enumerate(good):  # bad messages between the good ones, hostile attributes too
        futures.append(publisher.publish(topic, txn.encode(), **txn.attributes(), note="<img src=x onerror=alert(1)>"))
        if index < len(MALFORMED):
            name, payload, _ = MALFORMED[index]
            futures.append(publisher.publish(topic, payload, case=str(index), label=name))
    # An empty body is only publishable with an attribute.
    futures.append(publisher.publish(topic, b"", case="empty body"))
    message_ids = [future.result(timeout=60) for future in futures]
    assert len(set(message_ids)) == len(good) + len(MALFORMED) + 1

    config = write_config(cfg, tmp_path, spool_roll_messages=25)
    summary = run(command("jobs.spooler", config, "--until-idle", "2", "--quiet")).stderr.strip().splitlines()[-1]
    assert f"spooled {len(good)} transactions, dead-lettered {len(MALFORMED) + 1}" in summary

    dead = pd.concat(
        [pq.read_table(f).to_pandas() for f in spool.list_files(cfg.spool_dir, spool.DEAD_LETTER)], ignore_index=True
    )
    assert len(dead) == len(MALFORMED) + 1
    wrong = []
    for row in dead.itertuples(index=False):
        attributes = json.loads(row.attributes)
        TALLY.tried_malformed("through Pub/Sub to the spooler")
        if attributes["case"] == "empty body":
            assert (bytes(row.payload), row.reason) == (b"", "empty")
            continue
        name, payload, reason = MALFORMED[int(attributes["case"])]
        assert attributes["label"] == name
        assert bytes(row.payload) == payload, name
        if row.reason != reason:
            wrong.append((name, reason, row.reason, row.detail))
        assert row.detail and row.message_id in message_ids
    assert wrong == []
    assert summary.count("parser_error") == 0

    spooled = spool_rows(cfg.spool_dir).set_index("transaction_id").sort_index()
    assert list(spooled.index) == sorted(t.transaction_id for t in good)
    for txn in good:
        row = spooled.loc[txn.transaction_id]
        assert (row["user_id"], row["amount_minor"], row["currency"], row["merchant_category"]) == (
            txn.user_id,
            txn.amount_minor,
            "USD",
            "fuel",
        )
        assert row["event_time"] == pd.Timestamp(txn.event_time)


def dead_letter_rows(cfg: Config) -> pd.DataFrame:
    files = spool.list_files(cfg.spool_dir, spool.DEAD_LETTER)
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_the_hostile_corpus_through_pubsub_is_dead_lettered_with_each_reason(cfg: Config, tmp_path: Path) -> None:
    clients.ensure_subscription(cfg)
    publisher = clients.publisher_client(cfg)
    topic = clients.topic_path(cfg)
    futures = [publisher.publish(topic, payload, case=str(index)) for index, (_, payload, _) in enumerate(CORPUS)]
    for future in futures:
        future.result(timeout=60)

    config = write_config(cfg, tmp_path, spool_roll_messages=20)
    summary = run(command("jobs.spooler", config, "--until-idle", "2", "--quiet")).stderr.strip().splitlines()[-1]
    assert f"spooled 0 transactions, dead-lettered {len(CORPUS)}" in summary

    dead = dead_letter_rows(cfg)
    TALLY.tried_malformed("hostile corpus through Pub/Sub to the spooler", len(dead))
    got = {int(json.loads(row.attributes)["case"]): (row.reason, bytes(row.payload)) for row in dead.itertuples()}
    assert got == {index: (reason, payload) for index, (_, payload, reason) in enumerate(CORPUS)}


def test_memory_is_bounded_in_bytes_whatever_arrives(cfg: Config) -> None:
    """Oversize bodies of 200 KB, each kept whole as a dead letter, behind small messages (so a
    pull sized by small ones brings big ones): held bytes pass the limit by at most one message,
    dead-letter files are cut at their byte limit, and the interning table stays bounded under
    ever-new user ids."""
    clients.ensure_subscription(cfg)
    publisher = clients.publisher_client(cfg)
    topic = clients.topic_path(cfg)
    big = 200_000
    good = [
        Transaction(f"fresh-{i}", f"user-{i}", 100 + i, "USD", NOW - timedelta(minutes=1), "fuel") for i in range(300)
    ]
    futures = [publisher.publish(topic, txn.encode(), **txn.attributes()) for txn in good[:150]]
    futures += [publisher.publish(topic, bytes([65 + i % 26]) * big, case=str(i)) for i in range(40)]
    futures += [publisher.publish(topic, txn.encode(), **txn.attributes()) for txn in good[150:]]
    for future in futures:
        future.result(timeout=60)

    limit, dead_limit = 1_000_000, 500_000
    spooler = Spooler(cfg, pullers=1, until_idle=2)
    spooler.max_held_bytes, spooler.max_dead_letter_bytes = limit, dead_limit
    spooler._interned.limit = 50
    stats = spooler.run(poll_seconds=0.05)

    assert (stats.spooled, stats.dead_lettered, stats.reasons["oversize"]) == (300, 40, 40), stats
    assert stats.peak_held_bytes <= limit + big + 1_000  # one message over (and its attributes)
    assert stats.returned > 0  # a pull brought more than the room left, and the rest went back
    dead = dead_letter_rows(cfg)
    per_file = [pq.read_metadata(f).num_rows for f in spool.list_files(cfg.spool_dir, spool.DEAD_LETTER)]
    assert sum(per_file) == 40 and max(per_file) <= dead_limit // big + 1
    assert sorted(dead["payload"].map(len)) == [big] * 40
    assert len(spooler._interned) <= 50 + 2  # the limit, and one row past it
    assert set(spool_rows(cfg.spool_dir)["user_id"]) == {txn.user_id for txn in good}
