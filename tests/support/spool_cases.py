"""A spool holding every case the product's rules decide, and what they decide, computed with pandas.

`write_mixed_spool` writes, from one ledger in three currencies: exact redeliveries, copies whose
content differs (published after the original, and before it, so the conflicting copy is the one
kept), copies published at the same instant as the original (the smaller message id wins; only
their merchant category differs, which is no conflict), rows published just within and just past
the late horizon, a late redelivery of an on-time row, and a file of the old schema version
(amounts in hundredths: rescaled, or set aside when the currency cannot hold them).

`expected_rules` applies the rules as the README states them, with pandas and a hand-written table
of currency places, never with the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pyarrow as pa

from common import spool
from common.config import Config
from support.ledger import copies, duplicates_of, make_ledger, to_frame, write_spool

# ISO 4217 minor-unit places of the currencies used here, written out (not read from common.money).
PLACES = {"USD": 2, "JPY": 0, "BHD": 3}
HORIZON_HOURS = 72
LEGACY_SCHEMA = pa.schema(
    [pa.field("amount_cents", pa.int64()) if f.name == "amount_minor" else f for f in spool.TRANSACTION_SCHEMA]
)


@dataclass
class Written:
    """Every copy written to the spool: the spool's columns, `amount_cents` (old files' hundredths,
    else null; their amount_minor is then null) and `version` (1 or 2)."""

    copies: pd.DataFrame
    dead_letters: int


def mixed_copies(tag: str = "mx", count: int = 240) -> pd.DataFrame:
    """The schema version 2 copies: a ledger in USD, JPY and BHD, and its awkward deliveries."""
    ledger = make_ledger(tag, count, hours=6, currencies=("USD", "JPY", "BHD"))
    redelivered = duplicates_of(ledger, 0.15, seed=1, delay=timedelta(minutes=1))
    later = ledger.iloc[0:10]
    conflicting_later = copies(later, "-amt", timedelta(minutes=2), amount_minor=later["amount_minor"] + 1)
    conflicting_earlier = copies(ledger.iloc[10:20], "-usr", timedelta(seconds=-1), user_id="zed")
    same_instant = ledger.iloc[20:25].copy()
    same_instant["message_id"] = "l-" + same_instant["message_id"]  # sorts before "m-...": kept
    same_instant["merchant_category"] = "same-instant"
    horizon = timedelta(hours=HORIZON_HOURS)
    edges = ledger.iloc[25:31].copy()
    lags = [horizon, horizon + timedelta(microseconds=1), horizon, horizon + timedelta(hours=28), horizon, horizon]
    edges["publish_time"] = edges["event_time"] + pd.to_timedelta(lags)
    late_redelivery = copies(ledger.iloc[31:36], "-late", timedelta(hours=100))
    rest = ledger.drop(ledger.index[25:31])
    return to_frame(
        pd.concat(
            [rest, edges, redelivered, conflicting_later, conflicting_earlier, same_instant, late_redelivery],
            ignore_index=True,
        )
    )


def legacy_copies(tag: str = "old") -> pd.DataFrame:
    """Schema version 1 copies, `amount_cents` in hundredths whatever the currency: USD as is, BHD
    times ten, JPY divided by a hundred when it divides (else set aside), an unknown code set aside."""
    base = make_ledger(tag, 12, hours=6, currencies=("USD", "BHD", "JPY", "JPY", "JPY", "ABC"))
    base["amount_cents"] = [1234, 1234, 120000, -1000, 1050, 500, -77, 999, 100, -250, 7, 100]
    return base.drop(columns=["amount_minor"])


def write_mixed_spool(cfg: Config) -> Written:
    """Write the mixed copies as three version 2 files and the legacy copies as one version 1 file,
    plus a dead-letter file of two rows; returns what was written."""
    old = legacy_copies()
    # The same transaction again in a newer file: 120000 hundredths of a yen is 1200 yen, no conflict.
    across = old.iloc[[2]].assign(amount_minor=1200, message_id="m-across", publish_time=old.iloc[2]["publish_time"])
    across["publish_time"] += timedelta(minutes=1)
    current = to_frame(pd.concat([mixed_copies(), across.drop(columns=["amount_cents"])], ignore_index=True))
    write_spool(cfg, current, files=3, seed=5)
    table = pa.Table.from_pandas(old[LEGACY_SCHEMA.names], schema=LEGACY_SCHEMA, preserve_index=False)
    spool.write_atomic(table, spool.new_file_path(cfg.spool_dir, spool.TRANSACTIONS))
    first = current.iloc[0]
    dead = pa.table(
        {
            "message_id": ["d-1", "d-2"],
            "publish_time": pa.array([first["publish_time"]] * 2, pa.timestamp("us", tz="UTC")),
            "reason": ["invalid_json", "unknown_currency"],
            "detail": ["line 1", "XYZ"],
            "payload": [b"{", b"{}"],
            "attributes": ["{}", "{}"],
        },
        schema=spool.DEAD_LETTER_SCHEMA,
    )
    spool.write_atomic(dead, spool.new_file_path(cfg.spool_dir, spool.DEAD_LETTER))
    copies = pd.concat(
        [current.assign(amount_cents=pd.NA, version=2), old.assign(amount_minor=pd.NA, version=1)],
        ignore_index=True,
    )
    return Written(copies=copies, dead_letters=2)


def _in_minor_units(row: pd.Series) -> int | None:
    """A copy's amount in its currency's minor units; None when an old file's hundredths cannot be
    held exactly by the currency, or the currency is unknown."""
    if row["version"] == 2:
        return int(row["amount_minor"])
    places = PLACES.get(row["currency"])
    cents = int(row["amount_cents"])
    if places is None:
        return None
    if places >= 2:
        return cents * 10 ** (places - 2)
    step = 10 ** (2 - places)
    return cents // step if cents % step == 0 else None


@dataclass
class Expected:
    kept: pd.DataFrame  # one row per id: the copy kept, with amount (Decimal or None), late, conflicted, copies
    conflicts: set[tuple[str, str]]  # (transaction id, message id of a copy that differs from the kept one)
    set_aside: set[str]


def expected_rules(copies: pd.DataFrame, horizon_hours: int = HORIZON_HOURS) -> Expected:
    """The rules, as stated: of an id's copies the one published first (then the smallest message id)
    is kept; copies differing in user, amount, currency or event time are conflicts; a kept copy
    without an amount is set aside; a kept copy published more than the horizon after its event is late."""
    amounts = pd.Series([_in_minor_units(r) for _, r in copies.iterrows()], index=copies.index, dtype="object")
    rows = copies.assign(amount=amounts)
    rows = rows.sort_values(["publish_time", "message_id"], kind="stable").reset_index(drop=True)
    identity = rows[["user_id", "amount", "currency", "event_time"]].astype(str).agg("|".join, axis=1)
    differs = identity != identity.groupby(rows["transaction_id"]).transform("first")
    conflicts = set(zip(rows.loc[differs, "transaction_id"], rows.loc[differs, "message_id"], strict=True))
    kept = rows.groupby("transaction_id").head(1).set_index("transaction_id")
    kept = kept.assign(
        copies=rows.groupby("transaction_id").size(),
        conflicted=kept.index.isin({tid for tid, _ in conflicts}),
        late=(kept["publish_time"] - kept["event_time"]) > pd.Timedelta(hours=horizon_hours),
        amount_decimal=[
            None if a is None else Decimal(a).scaleb(-PLACES[c])
            for a, c in zip(kept["amount"], kept["currency"], strict=True)
        ],
    )
    return Expected(kept=kept, conflicts=conflicts, set_aside=set(kept.index[kept["amount"].isna()]))
