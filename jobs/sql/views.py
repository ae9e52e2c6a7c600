"""The analysts' views over the Parquet spool, in DuckDB, with the product's rules applied.

    spool_rows     every copy of every transaction as spooled, from files of either schema version
                   (an old file's hundredths rescaled to the currency's minor units; null when the
                   currency cannot hold the amount exactly, as the job sets it aside)
    transactions   one row per transaction id: the copy the job keeps (common/rules.py), with
                   `amount` (exact decimal) beside `amount_minor`, `late`, `conflicted` and `copies`
    counted        the transactions the job counts: those not late
    conflicts      copies of an id that differ from the kept copy in user, amount, currency or event
                   time, both versions side by side (the job's conflict rows)
    set_aside      ids whose kept copy has no amount (an old file's amount its currency cannot hold)
    dead_letters   the messages the spooler rejected, with the reason

The whole spool is one run here, as for `txn-aggregate --rebuild`: where copies of an id were split
across runs, the job keeps the copy the first run counted, which is the one these views keep
whenever it was also published first (the usual case: redeliveries come after the original).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from common import money, rules, spool
from common.config import Config, late_horizon

# Amounts as exact decimals with as many places as any currency has (four: CLF, UYW), so one column
# holds every currency: 12.34 USD is 12.3400, 1000 JPY is 1000.0000.
AMOUNT_SCALE = max(money.exponents().values())
AMOUNT_TYPE = f"DECIMAL(38, {AMOUNT_SCALE})"
_LEGACY = spool.LEGACY_AMOUNT_COLUMN
_LEGACY_PLACES = 2  # schema version 1 held hundredths whatever the currency
COLUMNS = spool.TRANSACTION_COLUMNS
# The one spool_rows column that may be null: an old file's amount its currency cannot hold. (The
# job refuses a spool with nulls in any other column; the spooler's schema cannot hold them.)
MAY_BE_NULL = frozenset({"amount_minor"})
# The views analysts query, as this module's docstring lists them (the others are steps).
VIEWS = ("spool_rows", "transactions", "counted", "conflicts", "set_aside", "dead_letters")


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _expected(field: pa.Field) -> tuple[str, Any]:
    """(the form a spool column must take, a check of an Arrow type against it)."""
    if pa.types.is_timestamp(field.type):
        return "a timestamp with a time zone", lambda t: pa.types.is_timestamp(t) and t.tz is not None
    if pa.types.is_int64(field.type):
        return "int64", pa.types.is_int64
    return "a string", _is_string


EXPECTED = {field.name: _expected(field) for field in spool.TRANSACTION_SCHEMA}
EXPECTED[_LEGACY] = EXPECTED["amount_minor"]


def check_file_schema(schema: pa.Schema, name: str) -> set[str]:
    """The spool columns a transaction file holds (amount_minor, or the old amount_cents, or both);
    raises SpoolSchemaError naming the first column missing or of the wrong type, and the file."""
    present = set(schema.names)
    for column, (form, fits) in EXPECTED.items():
        if column in present and not fits(schema.field(column).type):
            raise spool.SpoolSchemaError(
                f"spool column '{column}' must be {form}, got {schema.field(column).type} in {name}"
            )
    for column, (form, _) in EXPECTED.items():
        if column == _LEGACY or column in present or (column == "amount_minor" and _LEGACY in present):
            continue
        raise spool.SpoolSchemaError(f"spool column '{column}' is missing (expected {form}) in {name}")
    return present & set(EXPECTED)


def _files(spool_dir: str, kind: str) -> tuple[Any, list[str], list[str]]:
    """(filesystem, full paths, spool-relative names) of the complete files of `kind`, by the
    spool's listing rule."""
    filesystem, base = spool.filesystem(spool_dir)
    relative = spool.list_spool(spool_dir, kind)[0]
    return filesystem, [f"{base}/{name}" for name in relative], relative


def _transaction_source(spool_dir: str) -> tuple[Any, set[str]]:
    """The spool's transaction files as one Arrow dataset (a column some files lack is null in them),
    and the spool columns present in any file. Every file's schema is checked first, from its footer."""
    filesystem, paths, names = _files(spool_dir, spool.TRANSACTIONS)
    if not paths:
        return spool.TRANSACTION_SCHEMA.empty_table(), set(COLUMNS)
    present: set[str] = set()
    for path, name in zip(paths, names, strict=True):
        present |= check_file_schema(pq.read_schema(path, filesystem=filesystem), name)
    fields = [f for f in spool.TRANSACTION_SCHEMA if f.name in present]
    if _LEGACY in present:
        fields.append(pa.field(_LEGACY, pa.int64()))
    schema = pa.schema([f.with_nullable(True) for f in fields])
    return pads.dataset(paths, schema=schema, format="parquet", filesystem=filesystem), present


def _dead_letter_source(spool_dir: str) -> Any:
    filesystem, paths, _ = _files(spool_dir, spool.DEAD_LETTER)
    if not paths:
        return spool.DEAD_LETTER_SCHEMA.empty_table()
    return pads.dataset(paths, schema=spool.DEAD_LETTER_SCHEMA, format="parquet", filesystem=filesystem)


def _currency_table(exponents: dict[str, int]) -> pa.Table:
    """One row per known currency: its places, the factor that scales hundredths up to its minor
    units (`up`) or the divisor that scales them down (`down`), and one minor unit as an exact
    decimal (`minor_unit`: 0.01 for USD, 1 for JPY)."""
    codes = sorted(exponents)
    places = [exponents[c] for c in codes]
    return pa.table(
        {
            "currency": pa.array(codes, pa.string()),
            "places": pa.array(places, pa.int32()),
            "up": pa.array([10 ** max(p - _LEGACY_PLACES, 0) for p in places], pa.int64()),
            "down": pa.array([10 ** max(_LEGACY_PLACES - p, 0) for p in places], pa.int64()),
            "minor_unit": pa.array([Decimal(1).scaleb(-p) for p in places], pa.decimal128(38, AMOUNT_SCALE)),
        }
    )


def _amount_minor_sql(present: set[str]) -> str:
    """amount_minor in the currency's own minor units, whichever schema version the row came from:
    an old file's hundredths rescaled by the currency's places; null when they cannot be held
    exactly (10.50 JPY) or the currency is unknown (as money.rescale and the job's rescale)."""
    minor = "r.amount_minor" if "amount_minor" in present else "NULL::BIGINT"
    if _LEGACY not in present:
        return minor
    legacy = (
        f"CASE WHEN c.places >= {_LEGACY_PLACES} THEN r.{_LEGACY} * c.up "
        f"WHEN r.{_LEGACY} % c.down = 0 THEN r.{_LEGACY} // c.down END"
    )
    return f"COALESCE({minor}, {legacy})"


def _struct_sql(columns: tuple[str, ...], nulls_first: bool = False) -> str:
    """The columns as one struct, compared field by field in order. With nulls_first, a column that
    may be null (MAY_BE_NULL) is preceded by whether it is set, so a null sorts before any value as
    in Spark's struct ordering (DuckDB's own puts it last)."""
    fields = []
    for column in columns:
        if nulls_first and column in MAY_BE_NULL:
            fields.append(f"{column}_is_set := {column} IS NOT NULL")
        fields.append(f"{column} := {column}")
    return f"struct_pack({', '.join(fields)})"


def _differs_sql(left: str, right: str) -> str:
    """True when two copies differ in a field of rules.IDENTITY (a null equals only a null)."""
    return " OR ".join(f"{left}.{c} IS DISTINCT FROM {right}.{c}" for c in rules.IDENTITY)


def view_statements(present: set[str], late_after_us: int) -> list[str]:
    """The CREATE VIEW statements over `spool_files` (the raw rows, holding the columns `present`),
    `currencies` (see _currency_table) and `dead_letter_files`. `kept` picks each id's copy with
    one aggregate, the smallest struct of rules.KEEP_ORDER, as the job's dedupe does."""
    raw = [f"{_amount_minor_sql(present)} AS amount_minor" if c == "amount_minor" else f"r.{c}" for c in COLUMNS]
    identity = _struct_sql(rules.IDENTITY)
    first = ", ".join(f"first.{c} AS {c}" for c in COLUMNS if c != "transaction_id")
    compared = (*rules.IDENTITY, "publish_time", "message_id")
    sides = ", ".join(f"k.{c} AS kept_{c}, r.{c} AS copy_{c}" for c in compared)
    return [
        f"""CREATE VIEW spool_rows AS
            SELECT {", ".join(raw)} FROM spool_files AS r LEFT JOIN currencies AS c USING (currency)""",
        f"""CREATE VIEW kept AS
            SELECT transaction_id, {first}, copies, conflicted FROM (
                SELECT transaction_id,
                    min({_struct_sql(rules.KEEP_ORDER, nulls_first=True)}) AS first,
                    count(*) AS copies,
                    min({identity}) IS DISTINCT FROM max({identity}) AS conflicted
                FROM spool_rows GROUP BY transaction_id
            )""",
        f"""CREATE VIEW transactions AS
            SELECT k.transaction_id, k.user_id, k.amount_minor, k.currency,
                CAST(CAST(k.amount_minor AS {AMOUNT_TYPE}) * c.minor_unit AS {AMOUNT_TYPE}) AS amount,
                k.merchant_category, k.event_time, k.publish_time, k.message_id,
                epoch_us(k.publish_time) - epoch_us(k.event_time) > {int(late_after_us)} AS late,
                k.conflicted, k.copies
            FROM kept AS k LEFT JOIN currencies AS c USING (currency)
            WHERE k.amount_minor IS NOT NULL""",
        "CREATE VIEW counted AS SELECT * EXCLUDE (late) FROM transactions WHERE NOT late",
        f"""CREATE VIEW conflicts AS
            SELECT k.transaction_id, {sides}
            FROM kept AS k JOIN spool_rows AS r USING (transaction_id)
            WHERE k.conflicted AND ({_differs_sql("k", "r")})""",
        """CREATE VIEW set_aside AS
            SELECT * EXCLUDE (amount_minor) FROM kept WHERE amount_minor IS NULL""",
        "CREATE VIEW dead_letters AS SELECT * FROM dead_letter_files",
    ]


def connect(cfg: Config) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection in UTC whose views (this module's docstring) read the complete
    files of cfg.spool_dir as they are now, with cfg's late horizon. Raises SpoolSchemaError for a
    spool file that is not the transaction schema, OSError when the spool cannot be listed."""
    transactions, present = _transaction_source(cfg.spool_dir)
    dead_letters = _dead_letter_source(cfg.spool_dir)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("spool_files", transactions)
    con.register("dead_letter_files", dead_letters)
    con.register("currencies", _currency_table(money.exponents()))
    for statement in view_statements(present, rules.late_after_us(late_horizon(cfg))):
        con.execute(statement)
    return con
