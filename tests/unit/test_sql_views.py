"""The SQL views over the spool (jobs/sql/views.py) against the rules applied independently with
pandas (tests/support/spool_cases.py) on a spool with redeliveries, conflicting copies, copies
published at the same instant, late rows, three currencies and a file of the old schema version."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from support.ledger import make_ledger, write_spool
from support.spool_cases import HORIZON_HOURS, LEGACY_SCHEMA, Expected, expected_rules, write_mixed_spool

from common import rules, spool
from common.config import Config, from_dict
from jobs.sql import views

EPOCH = pd.Timestamp(0, tz="UTC")


def _config(tmp_path: Path) -> Config:
    return from_dict({"spool_dir": str(tmp_path / "spool"), "late_horizon_hours": HORIZON_HOURS})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, Expected, int]:
    cfg = _config(tmp_path_factory.mktemp("mixed"))
    written = write_mixed_spool(cfg)
    return views.connect(cfg), expected_rules(written.copies), written.dead_letters


def _us(value: Any) -> int:
    return int((pd.Timestamp(value) - EPOCH) // pd.Timedelta(microseconds=1))


def test_the_rules_name_every_column_of_the_kept_copy() -> None:
    assert set(rules.KEEP_ORDER) == set(spool.TRANSACTION_COLUMNS) - {"transaction_id"}
    assert rules.KEEP_ORDER[:2] == ("publish_time", "message_id")
    assert rules.late_after_us(72 * 3600) == 72 * 3600 * 1_000_000


def test_transactions_holds_the_copy_the_rules_keep_for_each_id(mixed: Any) -> None:
    con, expected, _ = mixed
    got = con.sql(
        "SELECT transaction_id, user_id, amount_minor, currency, amount, merchant_category, epoch_us(event_time), "
        "epoch_us(publish_time), message_id, late, conflicted, copies FROM transactions"
    ).fetchall()
    kept = expected.kept[expected.kept["amount"].notna()]
    want = {
        tid: (
            r.user_id,
            r.amount,
            r.currency,
            r.amount_decimal,
            r.merchant_category,
            _us(r.event_time),
            _us(r.publish_time),
            r.message_id,
            r.late,
            r.conflicted,
            r.copies,
        )
        for tid, r in kept.iterrows()
    }
    assert {row[0]: tuple(row[1:]) for row in got} == want
    assert len(got) == len(want)
    # The data holds each case the rules decide, so the comparison above covers them.
    assert kept["late"].sum() >= 2 and kept["conflicted"].sum() >= 20 and (kept["copies"] > 1).sum() >= 40
    assert (kept["merchant_category"] == "same-instant").sum() == 5
    assert (kept["user_id"] == "zed").sum() == 10  # conflicting copies published first are the ones kept
    assert set(kept["currency"]) == {"USD", "JPY", "BHD"}


def test_amounts_are_exact_decimals_of_their_currency(mixed: Any) -> None:
    con, _, _ = mixed
    rows = con.sql("SELECT amount_minor, currency, amount FROM transactions WHERE transaction_id LIKE 'old-%'")
    places = {"USD": 2, "BHD": 3, "JPY": 0}
    for minor, currency, amount in rows.fetchall():
        assert isinstance(amount, Decimal)
        assert amount * 10 ** places[currency] == minor
    assert con.sql("SELECT typeof(amount), typeof(sum(amount)) FROM transactions GROUP BY 1").fetchall() == [
        ("DECIMAL(38,4)", "DECIMAL(38,4)")
    ]


def test_counted_sums_per_user_hour_and_currency_equal_the_rules(mixed: Any) -> None:
    con, expected, _ = mixed
    counted = expected.kept[expected.kept["amount"].notna() & ~expected.kept["late"]]
    hours = counted["event_time"].dt.floor("h")
    want = {
        (user, _us(hour), currency): (int(group["amount"].sum()), len(group))
        for (user, hour, currency), group in counted.groupby(["user_id", hours, "currency"])
    }
    got = con.sql(
        "SELECT user_id, epoch_us(date_trunc('hour', event_time)), currency, sum(amount_minor), count(*) "
        "FROM counted GROUP BY ALL"
    ).fetchall()
    assert {(u, h, c): (int(s), n) for u, h, c, s, n in got} == want
    assert "late" not in [column for column, *_ in con.sql("DESCRIBE counted").fetchall()]


def test_conflicts_lists_every_copy_that_differs_from_the_kept_one(mixed: Any) -> None:
    con, expected, _ = mixed
    got = con.sql("SELECT transaction_id, copy_message_id, kept_message_id FROM conflicts").fetchall()
    assert {(tid, copy) for tid, copy, _ in got} == expected.conflicts
    assert len(got) == len(expected.conflicts) >= 20
    kept = expected.kept["message_id"]
    assert all(kept_message == kept[tid] for tid, _, kept_message in got)


def test_old_amounts_their_currency_cannot_hold_are_set_aside(mixed: Any) -> None:
    con, expected, _ = mixed
    got = {tid for (tid,) in con.sql("SELECT transaction_id FROM set_aside").fetchall()}
    assert got == expected.set_aside
    assert len(got) == 5  # 10.50 and -2.50 and 0.07 yen, two amounts in an unknown currency
    listed = con.sql("SELECT count(*) FROM transactions WHERE transaction_id IN (SELECT transaction_id FROM set_aside)")
    assert listed.fetchall() == [(0,)]


def test_a_set_aside_copy_kept_first_sets_its_id_aside_whatever_later_copies_hold(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    old = make_ledger("one", 1, currencies=("JPY",))
    old["amount_cents"] = 1050  # 10.50 yen
    table = pa.Table.from_pandas(old[LEGACY_SCHEMA.names], schema=LEGACY_SCHEMA, preserve_index=False)
    spool.write_atomic(table, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS))
    later = make_ledger("one", 1, currencies=("JPY",)).assign(amount_minor=10, message_id="m-later")
    later["publish_time"] += timedelta(minutes=1)
    write_spool(cfg, later, files=1)
    con = views.connect(cfg)
    assert con.sql("SELECT transaction_id, copies, conflicted FROM set_aside").fetchall() == [("one-000000", 2, True)]
    assert con.sql("SELECT count(*) FROM transactions").fetchall() == [(0,)]
    assert con.sql("SELECT copy_message_id FROM conflicts").fetchall() == [("m-later",)]


def test_between_copies_of_one_message_a_missing_amount_comes_first_as_in_the_job(tmp_path: Path) -> None:
    # Same publish time and message id: the next field of the order, the amount, decides, and the
    # job's Spark struct ordering puts a null before any value.
    cfg = _config(tmp_path)
    old = make_ledger("tie", 1, currencies=("JPY",))
    old["amount_cents"] = 1050
    table = pa.Table.from_pandas(old[LEGACY_SCHEMA.names], schema=LEGACY_SCHEMA, preserve_index=False)
    spool.write_atomic(table, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS))
    write_spool(cfg, make_ledger("tie", 1, currencies=("JPY",)).assign(amount_minor=-5), files=1)
    con = views.connect(cfg)
    assert con.sql("SELECT transaction_id, copies FROM set_aside").fetchall() == [("tie-000000", 2)]


def test_dead_letters_lists_the_rejected_messages(mixed: Any) -> None:
    con, _, dead = mixed
    got = con.sql("SELECT message_id, reason FROM dead_letters ORDER BY 1").fetchall()
    assert len(got) == dead and got == [("d-1", "invalid_json"), ("d-2", "unknown_currency")]


def test_spool_rows_holds_every_copy_in_minor_units(mixed: Any) -> None:
    con, expected, _ = mixed
    assert con.sql("SELECT count(*) FROM spool_rows").fetchall() == [(int(expected.kept["copies"].sum()),)]
    old = con.sql("SELECT amount_minor FROM spool_rows WHERE transaction_id = 'old-000001'").fetchall()
    assert old == [(12340,)]  # 12.34 BHD held in hundredths, in fils


def test_an_empty_spool_has_every_view_and_no_rows(tmp_path: Path) -> None:
    con = views.connect(_config(tmp_path))
    for view in views.VIEWS:
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)], view


def test_a_file_without_a_column_is_refused_naming_the_column_and_the_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    ledger = make_ledger("bad", 3)
    path = spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS)
    spool.write_atomic(pa.Table.from_pandas(ledger.drop(columns=["currency"]), preserve_index=False), path)
    with pytest.raises(spool.SpoolSchemaError, match=f"'currency' is missing .* in transactions/.*{path.name}"):
        views.connect(cfg)


def test_a_column_of_the_wrong_type_is_refused_naming_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    ledger = make_ledger("bad", 3).assign(amount_minor=1.5)
    path = spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS)
    spool.write_atomic(pa.Table.from_pandas(ledger, preserve_index=False), path)
    with pytest.raises(spool.SpoolSchemaError, match="'amount_minor' must be int64, got double in transactions/"):
        views.connect(cfg)
