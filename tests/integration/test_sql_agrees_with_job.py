"""The analysts' SQL views and the aggregation job apply the same rules (common/rules.py): on one
spool with redeliveries, conflicting copies, same-instant copies, late rows, three currencies and a
file of the old schema version, the views keep the ids the job wrote to Bigtable, with the same
copy, and give the same sums per user, hour and currency, after a real run on the emulator."""

from __future__ import annotations

from typing import Any

from support.ledger import read_contents
from support.spool_cases import write_mixed_spool

from common import clients
from common.config import Config
from jobs.aggregate import job
from jobs.sql import views


def test_the_views_keep_the_ids_and_sums_the_job_writes(spark: Any, cfg: Config) -> None:
    write_mixed_spool(cfg)
    summary = job.run_once(spark, cfg, say=lambda line: None)
    assert summary.run_id == 1 and summary.failures == 0
    stored = read_contents(clients.bigtable_table(cfg))
    con = views.connect(cfg)

    listed = con.sql(
        "SELECT user_id, epoch_us(event_time), transaction_id, amount_minor, currency, merchant_category FROM counted"
    ).fetchall()
    assert {(u, ev, tid): (a, c, cat) for u, ev, tid, a, c, cat in listed} == {
        key: (amount, currency, category) for key, (amount, currency, category, _) in stored.transactions.items()
    }
    buckets = con.sql(
        "SELECT user_id, epoch(date_trunc('hour', event_time))::BIGINT, currency, sum(amount_minor)::BIGINT, "
        "count(*) FROM counted GROUP BY ALL"
    ).fetchall()
    assert {(u, h, c): (s, n) for u, h, c, s, n in buckets} == stored.buckets

    (late,), (set_aside,), (conflicts,) = (
        con.sql(f"SELECT count(*) FROM {view}").fetchall()[0]
        for view in ("transactions WHERE late", "set_aside", "conflicts")
    )
    distinct = con.sql("SELECT (SELECT count(*) FROM transactions) + (SELECT count(*) FROM set_aside)").fetchall()
    assert (summary.late_rows, summary.set_aside, summary.conflicts) == (late, set_aside, conflicts)
    assert summary.rows - summary.duplicates_dropped == distinct[0][0]
    assert late >= 2 and set_aside >= 2 and conflicts >= 20  # each case is in the data
