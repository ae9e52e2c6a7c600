"""Fill a Bigtable table the way production does: write a ledger as spool files and run the real
aggregation job over them, in-process on the session's SparkSession.

Whatever a test needs in the table comes from spool content, as it would from the spooler:
buckets, minutes, the top-spender index and the user directory from the job's own transforms;
a conflict from a copy of a transaction id with other content (`support.ledger.copies`); a late row from a row
published beyond the late horizon (`publish_us`). A test's expected values come from its ledger,
never from the table.

    rows = [LedgerRow("t1", "u1", 1250, event_us), ...]
    run_job(spark, cfg, spool_frame(rows))      # one job run: run 1, then 2, ...
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from common.config import Config
from common.money import exponent
from jobs.aggregate import job
from support.ledger import to_frame, write_spool

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PUBLISH_LAG_US = 1_000_000  # a row without publish_us was published a second after its event
CATEGORIES = ("grocery", "fuel", "restaurants", "travel", "online")


@dataclass(frozen=True)
class LedgerRow:
    """One delivered transaction. Money in minor units of `currency`; times in epoch microseconds."""

    transaction_id: str
    user_id: str
    amount_minor: int
    event_us: int
    currency: str = "USD"
    category: str = "grocery"
    publish_us: int | None = None  # None: PUBLISH_LAG_US after the event
    message_id: str | None = None  # None: "m-<transaction_id>"


def spool_frame(rows: Iterable[LedgerRow]) -> pd.DataFrame:
    """Ledger rows as a frame of the spool's columns, as the spooler writes them."""

    def spooled(r: LedgerRow) -> dict[str, Any]:
        publish_us = r.event_us + PUBLISH_LAG_US if r.publish_us is None else r.publish_us
        return {
            "transaction_id": r.transaction_id,
            "user_id": r.user_id,
            "amount_minor": r.amount_minor,
            "currency": r.currency,
            "merchant_category": r.category,
            "event_time": EPOCH + timedelta(microseconds=r.event_us),
            "publish_time": EPOCH + timedelta(microseconds=publish_us),
            "message_id": r.message_id or f"m-{r.transaction_id}",
        }

    return to_frame([spooled(r) for r in rows])


def random_ledger(
    users: Sequence[str],
    start: datetime,
    end: datetime,
    per_user_per_hour: float,
    seed: int = 7,
    currencies: Sequence[str] = ("USD",),
) -> list[LedgerRow]:
    """Random transactions of `users` over [start, end), about per_user_per_hour each: amounts of
    20 to 100 in a currency drawn from `currencies` (in its minor units), at microsecond times."""
    rng = random.Random(seed)
    start_us = int((start - EPOCH) / timedelta(microseconds=1))
    end_us = int((end - EPOCH) / timedelta(microseconds=1))
    count = max(1, round((end_us - start_us) / 3_600_000_000 * per_user_per_hour))
    rows = []
    for user in users:
        for index in range(count):
            currency = rng.choice(list(currencies))
            unit = 10 ** exponent(currency)
            rows.append(
                LedgerRow(
                    f"{user}-{seed}-{index}",
                    user,
                    rng.randint(20 * unit, 100 * unit),
                    rng.randrange(start_us, end_us),
                    currency,
                    rng.choice(CATEGORIES),
                )
            )
    return rows


def run_job(
    spark: Any, cfg: Config, rows: pd.DataFrame | Iterable[LedgerRow], files: int = 1, seed: int = 0
) -> job.RunSummary:
    """Write `rows` (a spool frame, or ledger rows) as `files` new spool files in cfg.spool_dir and
    run the aggregation job once, in-process, over every spool file no run has processed yet.
    Returns the run's summary; raises when the run processed nothing (a failed run raises itself)."""
    frame = rows if isinstance(rows, pd.DataFrame) else spool_frame(rows)
    if frame.empty:
        raise ValueError("run_job: no rows to write; a run needs at least one")
    write_spool(cfg, frame, files=files, seed=seed)
    summary = job.run_once(spark, cfg, say=lambda line: None)
    if summary.run_id == 0:
        raise RuntimeError(f"run_job: the run processed no file: {summary.line()}")
    return summary
