"""A transaction id is a transaction's identity: whatever its copies carry and however they are
split between runs, an id is counted at most once, and a copy that differs from the counted one is
recorded as a conflict with both versions. Money is summed per currency, never across. Expected
tables come from the ledger of the copies that must count, aggregated with DuckDB."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from support.ledger import assert_contents, expected_contents, make_ledger, read_contents, to_frame, write_spool

from common import clients, jobstate, rowkeys, spool, store
from common.config import Config
from jobs.aggregate import job

DATA = (store.LIST, store.HOUR, store.MINUTE, store.TOP, store.USER)


def run(spark: Any, cfg: Config, rebuild: bool = False) -> job.RunSummary:
    return job.run_once(spark, cfg, rebuild=rebuild, say=lambda line: None)


def altered_copies(ledger: pd.DataFrame, delay: timedelta) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(copies with the same ids but other content, true duplicates), published `delay` after the
    originals (negative: before them). Ten of each kind: event time 31 s later, another user,
    another amount, another currency; and ten identical copies."""
    rows = ledger.sort_values("transaction_id").reset_index(drop=True)
    kinds = {
        "time": lambda r: r.assign(event_time=r["event_time"] + timedelta(seconds=31)),
        "user": lambda r: r.assign(user_id=r["user_id"].map(lambda u: "zed" if u != "zed" else "yan")),
        "amount": lambda r: r.assign(amount_minor=r["amount_minor"] + 1),
        "currency": lambda r: r.assign(currency=r["currency"].map(lambda c: "EUR" if c != "EUR" else "USD")),
    }
    altered = []
    for index, change in enumerate(kinds.values()):
        part = rows.iloc[index * 10 : index * 10 + 10].copy()
        altered.append(change(part))
    same = rows.iloc[40:50].copy()
    out = []
    for frame, tag in ((pd.concat(altered), "alt"), (same, "dup")):
        frame = frame.copy()
        frame["publish_time"] = frame["publish_time"] + delay
        frame["message_id"] = frame["message_id"] + f"-{tag}"
        out.append(to_frame(frame))
    return out[0], out[1]


def conflicts_in(table: Any) -> set[tuple[str, str, str]]:
    """(transaction id, kept message id, set-aside message id) of every conflict row."""
    rows = store.read_conflicts(table, *rowkeys.conflict_range())
    assert all(r["reason"] == "conflicting_duplicate" for r in rows)
    return {(r["transaction_id"], r["counted"]["message_id"], r["copy"]["message_id"]) for r in rows}


def data_of(table: Any) -> dict[bytes, Any]:
    return store.dump_table(table, DATA)


@pytest.mark.parametrize("altered_first", [False, True], ids=["original-first", "altered-first"])
def test_copies_of_counted_ids_in_a_later_run_count_once_and_differing_ones_are_conflicts(
    spark: Any, cfg: Config, altered_first: bool
) -> None:
    ledger = make_ledger("ident", 300, hours=6, currencies=("USD", "JPY"))
    altered, same = altered_copies(ledger, timedelta(minutes=5))
    first, second = (altered, ledger) if altered_first else (ledger, altered)
    write_spool(cfg, first, files=1)
    run(spark, cfg)
    write_spool(cfg, pd.concat([second, same]), files=2, seed=3)
    summary = run(spark, cfg)

    counted_ids = set(first["transaction_id"])
    truth = pd.concat([first, second[~second["transaction_id"].isin(counted_ids)]])
    table = clients.bigtable_table(cfg)
    assert_contents(read_contents(table), expected_contents(truth, cfg.late_horizon_hours))
    assert summary.conflicts == 40  # the altered copies (or, the other way round, their originals)
    # original-first: the ten true duplicates were counted by run 1; altered-first: run 1 never saw their ids
    assert summary.already_counted == (0 if altered_first else 10)
    kept = dict(zip(first["transaction_id"], first["message_id"], strict=True))
    lost = altered if not altered_first else ledger[ledger["transaction_id"].isin(set(altered["transaction_id"]))]
    assert conflicts_in(table) == {
        (t, kept[t], m) for t, m in zip(lost["transaction_id"], lost["message_id"], strict=True)
    }
    status = jobstate.read_job_status(table)
    assert status is not None and status["conflicts_total"] == 40 and status["last_summary"]["conflicts"] == 40


@pytest.mark.parametrize("altered_delay", [timedelta(minutes=5), timedelta(minutes=-5)], ids=["later", "earlier"])
def test_within_one_run_the_copy_published_first_counts_and_rebuild_agrees(
    spark: Any, cfg: Config, altered_delay: timedelta
) -> None:
    ledger = make_ledger("inrun", 300, hours=6, currencies=("USD", "EUR", "BHD"))
    altered, same = altered_copies(ledger, altered_delay)
    write_spool(cfg, pd.concat([ledger, altered, same]), files=3, seed=5)
    summary = run(spark, cfg)
    assert (summary.rows, summary.duplicates_dropped, summary.conflicts) == (350, 50, 40)

    winners = pd.concat([ledger, altered]).sort_values(["publish_time", "message_id"])
    truth = winners.drop_duplicates("transaction_id", keep="first")
    table = clients.bigtable_table(cfg)
    assert_contents(read_contents(table), expected_contents(truth, cfg.late_horizon_hours))
    losers = pd.concat([ledger, altered]).merge(
        truth[["transaction_id", "message_id"]], on="transaction_id", suffixes=("", "_kept")
    )
    losers = losers[losers["message_id"] != losers["message_id_kept"]]
    assert conflicts_in(table) == set(
        zip(losers["transaction_id"], losers["message_id_kept"], losers["message_id"], strict=True)
    )

    before = store.dump_table(table, (*DATA, store.ID))
    summary = run(spark, cfg, rebuild=True)
    assert summary.conflicts == 40
    assert store.dump_table(table, (*DATA, store.ID)) == before


def test_rebuild_equals_the_incremental_result_when_copies_arrive_in_later_runs(spark: Any, cfg: Config) -> None:
    ledger = make_ledger("split", 400, hours=6, currencies=("USD", "JPY"))
    altered, same = altered_copies(ledger, timedelta(minutes=5))
    for index, part in enumerate((ledger.iloc[:200], pd.concat([ledger.iloc[200:], same]), altered)):
        write_spool(cfg, part, files=1, seed=index)
        run(spark, cfg)
    table = clients.bigtable_table(cfg)
    incremental = data_of(table)
    assert_contents(read_contents(table), expected_contents(ledger, cfg.late_horizon_hours))
    summary = run(spark, cfg, rebuild=True)
    assert summary.conflicts == 40
    assert data_of(table) == incremental


class Crash(RuntimeError):
    pass


def test_a_crash_between_the_id_index_and_the_counters_then_a_rerun_is_exact(
    spark: Any, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = make_ledger("hist", 200, hours=4)
    write_spool(cfg, history, files=1)
    run(spark, cfg)
    fresh = make_ledger("fresh", 200, first_hour=2, hours=4, currencies=("USD", "JPY"))
    altered, same = altered_copies(history, timedelta(minutes=5))
    write_spool(cfg, pd.concat([fresh, altered, same]), files=2, seed=9)

    def crash(*args: object) -> None:
        raise Crash("killed after the id index and dcflist rows, before any counter")

    monkeypatch.setattr(job, "load_counters", crash)
    with pytest.raises(Crash):
        run(spark, cfg)
    table = clients.bigtable_table(cfg)
    fresh_keys = [rowkeys.id_index_key(t) for t in fresh["transaction_id"]]
    assert len(store.read_id_index(table, fresh_keys)) == 200  # the index holds run 2's ids already
    assert jobstate.pending_run(jobstate.read_job_status(table)) is not None
    monkeypatch.undo()

    summary = run(spark, cfg)
    assert summary.resumed and summary.run_id == 2
    assert (summary.already_counted, summary.conflicts, summary.rows_written) == (10, 40, 200)
    truth = pd.concat([history, fresh])
    assert_contents(read_contents(table), expected_contents(truth, cfg.late_horizon_hours))


def test_old_spool_files_in_hundredths_give_the_same_numbers_after_a_rebuild(spark: Any, cfg: Config) -> None:
    """Files written before amounts were kept per currency hold `amount_cents`; they are still read."""
    ledger = make_ledger("legacy", 300, hours=4, currencies=("USD", "JPY"))
    ledger["amount_minor"] = ledger["amount_minor"].where(
        ledger["currency"] != "JPY", ledger["amount_minor"] // 100 * 100
    )
    old = ledger.rename(columns={"amount_minor": "amount_cents"})
    legacy_schema = pa.schema(
        [pa.field("amount_cents", pa.int64()) if f.name == "amount_minor" else f for f in spool.TRANSACTION_SCHEMA]
    )
    table_v1 = pa.Table.from_pandas(old, schema=legacy_schema, preserve_index=False)
    spool.write_atomic(table_v1, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS))
    newer = make_ledger("newer", 100, hours=4, currencies=("BHD",))
    write_spool(cfg, newer, files=1)
    summary = run(spark, cfg)
    assert summary.rows_written == 400 and summary.set_aside == 0

    # In hundredths a JPY amount of 1200 is 12 yen; the test's DuckDB truth is in minor units.
    truth = pd.concat(
        [
            ledger.assign(
                amount_minor=ledger["amount_minor"].where(ledger["currency"] != "JPY", ledger["amount_minor"] // 100)
            ),
            newer,
        ]
    )
    table = clients.bigtable_table(cfg)
    assert_contents(read_contents(table), expected_contents(truth, cfg.late_horizon_hours))
    before = data_of(table)
    run(spark, cfg, rebuild=True)
    assert data_of(table) == before


def test_one_users_currencies_are_never_added_together(spark: Any, cfg: Config) -> None:
    base = make_ledger("mixed", 4, hours=1)
    rows = base.assign(user_id="u1", event_time=base["event_time"].min())
    rows["currency"] = ["USD", "EUR", "JPY", "BHD"]
    rows["amount_minor"] = [1000, 500, 1000, 1234]
    write_spool(cfg, to_frame(rows), files=1)
    run(spark, cfg)
    contents = read_contents(clients.bigtable_table(cfg))
    hour = int(rows["event_time"].min().floor("h").timestamp())
    assert {k: v for k, v in contents.buckets.items() if k[0] == "u1"} == {
        ("u1", hour, "USD"): (1000, 1),
        ("u1", hour, "EUR"): (500, 1),
        ("u1", hour, "JPY"): (1000, 1),
        ("u1", hour, "BHD"): (1234, 1),
    }
