"""One aggregation run: extract -> transform -> drop already counted -> load -> mark done.

A run is numbered and strictly sequential (the caller holds the lock). Before touching any data it
records its files as pending in Bigtable; a run that dies is resumed with the same id and files
next time. Every write is idempotent for a given run id (dcflist rows carry the run marker; counter
rows are added to once per run), and a transaction whose dcflist row another run wrote is not
counted again, so any crash followed by a new invocation ends exact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import clients, jobstate, money, outage, rowkeys, spool, store
from common.config import Config, late_horizon
from common.timeutil import HOUR_US, MINUTE_US
from jobs.aggregate import extract, load, sketches
from jobs.aggregate import transforms as tf
from jobs.aggregate.progress import spark_progress

SHOWN_FAILURES = 10
IDLE_LINE = "no new spool files"  # the summary line of a run that found nothing to do

# A Bigtable row a run could not write: (column family, row key, reason).
Failure = tuple[str, str, str]


class LoadFailed(RuntimeError):
    """Some Bigtable rows could not be written; the run stays pending and is retried next time."""


@dataclass
class RunSummary:
    """What one run did. rows: rows read from its files; rows_written: dcflist rows written."""

    run_id: int = 0
    files: int = 0
    rows: int = 0
    duplicates_dropped: int = 0
    already_counted: int = 0
    conflicts: int = 0
    late_rows: int = 0
    set_aside: int = 0
    looked_up: int = 0
    rows_written: int = 0
    buckets_written: int = 0
    blocks_written: int = 0  # dcfblock counters (a user's 4, 16 and 64 hour blocks)
    minutes_written: int = 0
    top_index_written: int = 0  # top-spender index rows written or deleted
    users_written: int = 0
    category_rows_written: int = 0
    sketches_written: int = 0
    failures: int = 0
    conflicted_ids: int = 0
    files_left: int = 0  # new files beyond job_max_files_per_run, for the next run
    resumed: bool = False
    analytics: bool = True  # False: a benchmark run that wrote no category or sketch rows
    seconds: float = 0.0

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        head = f"run {self.run_id}" + (" (resumed)" if self.resumed else "") if self.run_id else IDLE_LINE
        return (
            f"{head}: {self.files:,} files, {self.rows:,} rows, {self.duplicates_dropped:,} duplicates dropped, "
            f"{self.already_counted:,} already counted, {self.conflicts:,} conflicting copies, "
            f"{self.late_rows:,} late rows, "
            f"{self.rows_written:,} rows written, {self.buckets_written:,} buckets written, "
            f"{self.failures:,} failures, {self.seconds:.1f} s"
            + (f"; {self.files_left:,} new files left for the next run" if self.files_left else "")
            + ("" if self.analytics else "; no categories or sketches written (--no-analytics)")
        )


def truncate_table(cfg: Config) -> None:
    """Delete every row of the table, keeping its column families (one admin DropRowRange call, so
    a crash leaves the table either whole or empty)."""
    clients.ensure_table(cfg)
    admin = clients.bigtable_client(cfg, admin=True)
    admin.instance(cfg.instance_id).table(cfg.table_id).truncate(timeout=120)


def drop_already_counted(cfg: Config, run_id: int, transactions: DataFrame, summary: RunSummary) -> DataFrame:
    """The transactions whose id no earlier run has counted, looked up in the id index by the
    executors (see load.check_id_index); copies that differ from the counted one are recorded as
    conflicts there. The result is persisted when some were dropped, so the lookups run once."""
    columns = ("transaction_id", "user_id", "amount_minor", "currency", "event_time", "publish_time", "message_id")
    looked = transactions.select(*columns).mapInArrow(load.check_id_index(cfg, run_id), load.LOOKUP_SCHEMA).persist()
    stats = looked.agg(
        F.sum("looked_up").alias("looked_up"),
        F.sum((F.col("status") == load.COUNTED).cast("long")).alias("counted"),
        F.sum((F.col("status") == load.CONFLICT).cast("long")).alias("conflicts"),
    ).first()
    summary.looked_up = int(stats["looked_up"] or 0) if stats else 0
    summary.already_counted = int(stats["counted"] or 0) if stats else 0
    summary.conflicts += int(stats["conflicts"] or 0) if stats else 0
    if not summary.already_counted and not (stats and stats["conflicts"]):
        looked.unpersist()
        return transactions
    dropped = looked.where(F.col("transaction_id").isNotNull()).select("transaction_id")
    remaining = transactions.join(dropped, "transaction_id", "left_anti").persist(StorageLevel.MEMORY_AND_DISK)
    remaining.count()
    looked.unpersist()
    return remaining


def record_conflicts(
    cfg: Config, run_id: int, raw: DataFrame, flagged: DataFrame, summary: RunSummary
) -> list[Failure]:
    """Write a conflict row for every copy in the run that differs from the copy kept for its id;
    returns the failures."""
    copies = tf.conflicting_copies(raw, flagged)
    written, failures = _collect_results(copies.mapInArrow(load.write_conflicts(cfg, run_id), load.RESULT_SCHEMA))
    summary.conflicts += written.get(store.ID, 0) + len(failures)
    return failures


def _collect_results(results: DataFrame) -> tuple[dict[str, int], list[Failure]]:
    rows = results.collect()
    written: dict[str, int] = {}
    for r in rows:
        written[r["family"]] = written.get(r["family"], 0) + int(r["written"]) + int(r["skipped"])
    failures = [(r["family"], r["failed_key"], r["message"]) for r in rows if r["failed_key"] is not None]
    return written, failures


def load_transactions(
    cfg: Config, run_id: int, remaining: DataFrame, pause_after_batch_s: float = 0.0
) -> tuple[dict[str, int], list[Failure]]:
    """Write the id index and dcflist rows of the remaining transactions, marked with this run.
    Returns ({family: rows written}, [(family, failed key, reason)])."""
    return _collect_results(
        remaining.select(*spool.TRANSACTION_COLUMNS).mapInArrow(
            load.write_transactions(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA
        )
    )


def category_writers(
    cfg: Config, run_id: int, remaining: DataFrame, pause_after_batch_s: float = 0.0
) -> list[DataFrame]:
    """The run's dcfcat writers (per user-hour, per hour and per minute for everyone) over its
    remaining transactions, as frames of load.RESULT_SCHEMA rows."""
    category_hours = remaining.transform(tf.category_stats, HOUR_US, "hour_start")
    category_minutes = remaining.transform(tf.category_stats, MINUTE_US, "minute_start")
    return [
        tf.per_category_row(remaining.transform(tf.category_buckets), "user_id", "hour_start").mapInArrow(
            load.apply_user_category_deltas(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA
        ),
        tf.per_category_row(category_hours, "hour_start").mapInArrow(
            load.apply_all_category_deltas(cfg, run_id, "hour_start", pause_after_batch_s), load.RESULT_SCHEMA
        ),
        tf.per_category_row(category_minutes, "minute_start").mapInArrow(
            load.apply_all_category_deltas(cfg, run_id, "minute_start", pause_after_batch_s), load.RESULT_SCHEMA
        ),
    ]


def load_counters(
    cfg: Config, run_id: int, remaining: DataFrame, pause_after_batch_s: float = 0.0, analytics: bool = True
) -> tuple[dict[str, int], list[Failure]]:
    """Add the remaining transactions' hour and block (with the top-spender index rows they move),
    minute and category deltas and merge their amount sketches (once per run per row) and write the
    user directory, as one Spark job so the executors stay busy. analytics=False leaves out the category
    and sketch writers: only the benchmark does that, to measure what they cost."""
    buckets = remaining.transform(tf.hourly_buckets)
    minutes = remaining.transform(tf.minute_stats)
    writers = [
        *(category_writers(cfg, run_id, remaining, pause_after_batch_s) if analytics else []),
        tf.per_row(buckets, "user_id", "hour_start").mapInArrow(
            load.apply_hour_deltas(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA
        ),
        tf.per_row(
            remaining.transform(tf.block_buckets, rowkeys.BLOCK_SPANS), "user_id", "span_hours", "block_start"
        ).mapInArrow(load.apply_block_deltas(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA),
        tf.per_row(minutes, "minute_start").mapInArrow(
            load.apply_minute_deltas(cfg, run_id, pause_after_batch_s), load.RESULT_SCHEMA
        ),
        remaining.transform(tf.distinct_users).mapInArrow(load.write_users(cfg), load.RESULT_SCHEMA),
        *(sketches.writers(cfg, run_id, remaining, pause_after_batch_s) if analytics else []),
    ]
    union = writers[0]
    for writer in writers[1:]:
        union = union.unionByName(writer)
    return _collect_results(union)


def _start_run(
    spark: SparkSession, cfg: Config, table: Any, summary: RunSummary, say: Callable[[str], None]
) -> tuple[jobstate.PendingRun | None, DataFrame | None]:
    """(run, its spool rows): the interrupted run, else a new one over the files not processed yet
    (recorded as pending once their schema is checked), else (None, None) when there is nothing new."""
    status = jobstate.read_job_status(table)
    jobstate.check_layout(status, cfg.table_id)
    run = jobstate.pending_run(status)
    if run is not None:
        summary.resumed = True
        say(f"resuming run {run.run_id}: {len(run.files):,} files listed by its interrupted attempt")
        return run, extract.read_spool(spark, cfg.spool_dir, run.files)
    # No run ever finished or started (a row of recorded failures alone counts nothing), yet buckets.
    never_ran = status is None or not (status["last_run"] or status["pending"])
    if never_ran and jobstate.has_counted_data(table):
        raise jobstate.JobStateError(
            f"table {cfg.table_id} holds buckets but no job state (~job); run with --rebuild to recount it"
        )
    listed_at = datetime.now(UTC)
    with spark_progress(spark, "list spool"):
        closed_before = jobstate.closed_folders(table)
        files, folders = extract.list_spool_files(spark, cfg.spool_dir, closed_before)
    done = jobstate.processed_among(table, files)
    new_files = [f for f in files if f not in done]
    # At most job_max_files_per_run files, the oldest first (the listing is sorted and names sort in
    # time order): a run's memory follows its input, so a backlog after an outage is counted in slices.
    summary.files_left = max(0, len(new_files) - cfg.job_max_files_per_run)
    new_files = new_files[: cfg.job_max_files_per_run]
    closing = spool.folders_to_close(folders, files, done | set(new_files), int(listed_at.timestamp() * 1000))
    closing = {name: mtime for name, mtime in closing.items() if closed_before.get(name) != mtime}
    if not new_files:
        if closing:  # nothing new, but some folders are now old enough to be closed
            jobstate.close_folders(table, closing)
        return None, None
    # Read (schema checked) before the run is recorded, so a bad file can be moved aside.
    raw = extract.read_spool(spark, cfg.spool_dir, new_files)
    return jobstate.begin_run(table, status, new_files, listed_at, closing), raw


def _extract(cfg: Config, table: Any, run: jobstate.PendingRun, raw: DataFrame, summary: RunSummary) -> None:
    """Count the run's rows; raise SpoolSchemaError when a required column holds nulls."""
    counts = extract.find_nulls(raw).first()
    summary.rows = int(counts["rows"]) if counts else 0
    error = extract.null_error(raw, counts.asDict() if counts else {}, cfg.spool_dir)
    if error is not None:
        if not summary.resumed:  # nothing written yet: forget the run so the file can be moved aside
            jobstate.abandon_run(table, run)
        raise error


def _transform(cfg: Config, raw: DataFrame, summary: RunSummary) -> DataFrame:
    """The run's distinct transactions with the late and conflicted flags, persisted; counts
    duplicates and late rows. Rows of old spool files whose amount their currency cannot hold are
    set aside (counted in set_aside), as are their copies."""
    flagged = raw.transform(tf.dedupe_transactions).transform(tf.flag_late, int(late_horizon(cfg)))
    flagged = flagged.persist(StorageLevel.MEMORY_AND_DISK)
    stats = flagged.agg(
        F.count(F.lit(1)).alias("distinct"),
        F.sum(F.col("late").cast("long")).alias("late"),
        F.sum(F.col("amount_minor").isNull().cast("long")).alias("set_aside"),
        F.sum(F.col("conflicted").cast("long")).alias("conflicted"),
    ).first()
    distinct = int(stats["distinct"]) if stats else 0
    summary.duplicates_dropped = summary.rows - distinct
    summary.late_rows = int(stats["late"] or 0) if stats else 0
    summary.set_aside = int(stats["set_aside"] or 0) if stats else 0
    summary.conflicted_ids = int(stats["conflicted"] or 0) if stats else 0
    return flagged


def _load(
    spark: SparkSession,
    cfg: Config,
    run_id: int,
    remaining: DataFrame,
    summary: RunSummary,
    say: Callable[[str], None],
    pause_after_batch_s: float,
) -> list[Failure]:
    """dcflist rows first, then (when they all succeeded) the counters; returns the failures.
    summary.analytics False: no category or sketch rows (load_counters)."""
    phase = time.monotonic()
    with spark_progress(spark, "write dcflist"):
        written, failures = load_transactions(cfg, run_id, remaining, pause_after_batch_s)
    seconds = time.monotonic() - phase
    summary.rows_written = written.get(store.LIST, 0)
    rate = summary.rows_written / seconds if seconds > 0 else 0.0
    say(f"load: {summary.rows_written:,} dcflist rows in {seconds:.1f} s ({rate:,.0f} rows/s)")
    if failures:
        return failures
    phase = time.monotonic()
    with spark_progress(spark, "write counters"):
        counters, failures = load_counters(cfg, run_id, remaining, pause_after_batch_s, summary.analytics)
    summary.buckets_written = counters.get(store.HOUR, 0)
    summary.blocks_written = counters.get(store.BLOCK, 0)
    summary.minutes_written = counters.get(store.MINUTE, 0)
    summary.top_index_written = counters.get(store.TOP, 0)
    summary.users_written = counters.get(store.USER, 0)
    summary.category_rows_written = counters.get(store.CAT, 0)
    summary.sketches_written = counters.get(store.KLL, 0)
    say(
        f"load: {summary.buckets_written:,} dcfbhour, {summary.blocks_written:,} dcfblock, "
        f"{summary.minutes_written:,} dcfbmin, "
        f"{summary.top_index_written:,} dcftop, {summary.category_rows_written:,} dcfcat, "
        f"{summary.users_written:,} dcfuser, {summary.sketches_written:,} dcfkll rows "
        f"in {time.monotonic() - phase:.1f} s"
    )
    return failures


def run_once(
    spark: SparkSession,
    cfg: Config,
    rebuild: bool = False,
    say: Callable[[str], None] = print,
    pause_after_batch_s: float = 0.0,
    analytics: bool = True,
) -> RunSummary:
    """Process the spool files not processed yet (or, with rebuild, the whole spool into an emptied
    table). Returns the summary; raises SpoolSchemaError for a bad spool file and LoadFailed when
    rows could not be written (the run then stays pending for the next invocation).
    pause_after_batch_s > 0 sleeps after each written batch of rows or counters: the crash tests'
    kill point, where some but not all of a run's rows are in the table. analytics=False writes no
    category (dcfcat) or sketch (dcfkll) rows: the benchmark's measure of what they cost, on a table
    it throws away (/categories and /percentiles would miss that run's transactions).

    The table's job row records every outcome for operators (the web app's /metrics): the time of
    the last success (a run with nothing new included), or the failed run's counts and reason."""
    started = time.monotonic()
    summary = RunSummary(analytics=analytics)
    try:
        return _run_once(spark, cfg, rebuild, say, pause_after_batch_s, summary, started)
    except Exception as exc:
        summary.seconds = time.monotonic() - started
        if not service_error(exc):  # with Bigtable away there is nowhere to record it
            _record_failure(cfg, summary, exc, say)
        raise


def _record_failure(cfg: Config, summary: RunSummary, exc: Exception, say: Callable[[str], None]) -> None:
    """Count the failed run in the job row; a failure to do so is said, not raised (the run's own
    error is the one that matters)."""
    try:
        error = outage.first_line(exc, limit=300)
        jobstate.record_failure(clients.bigtable_table(cfg), asdict(summary), error, datetime.now(UTC))
    except Exception as record_exc:
        say(f"warning: could not record the failed run in the job state: {outage.first_line(record_exc)}")


def _run_once(
    spark: SparkSession,
    cfg: Config,
    rebuild: bool,
    say: Callable[[str], None],
    pause_after_batch_s: float,
    summary: RunSummary,
    started: float,
) -> RunSummary:
    phase = started
    if rebuild:
        say(f"rebuild: emptying table {cfg.table_id}")
        truncate_table(cfg)
    table = clients.ensure_table(cfg)
    run, raw = _start_run(spark, cfg, table, summary, say)
    if run is None or raw is None:
        summary.seconds = time.monotonic() - started
        jobstate.record_success(table, datetime.now(UTC), summary.seconds)
        say(summary.line())
        return summary
    summary.run_id, summary.files = run.run_id, len(run.files)
    with spark_progress(spark, "read spool"):
        _extract(cfg, table, run, raw, summary)
    say(f"extract: {summary.files:,} files, {summary.rows:,} rows ({time.monotonic() - phase:.1f} s)")

    phase = time.monotonic()
    raw = raw.transform(tf.rescale_legacy_amounts, money.exponents())
    with spark_progress(spark, "dedupe"):
        flagged = _transform(cfg, raw, summary)
    say(
        f"transform: {summary.rows - summary.duplicates_dropped:,} distinct transactions, "
        f"{summary.duplicates_dropped:,} duplicates dropped, {summary.late_rows:,} late rows (published more "
        f"than {cfg.late_horizon_hours} h after their event; kept in the spool, not counted) "
        f"({time.monotonic() - phase:.1f} s)"
    )

    phase = time.monotonic()
    remaining = (
        flagged.where(F.col("amount_minor").isNotNull())
        .drop("conflicted")
        .transform(tf.on_time)
        .transform(tf.with_hour_start)
    )
    if jobstate.has_id_index(table):  # else no run has counted anything yet: nothing to look up
        with spark_progress(spark, "look up earlier runs"):
            remaining = drop_already_counted(cfg, run.run_id, remaining, summary)
    say(
        f"lookup: {summary.looked_up:,} ids looked up, {summary.already_counted:,} already counted, "
        f"{summary.conflicts:,} conflicting copies set aside ({time.monotonic() - phase:.1f} s)"
    )

    failures: list[Failure] = []
    if summary.late_rows:
        late = flagged.where(F.col("late") & F.col("amount_minor").isNotNull())
        failures = _collect_results(late.mapInArrow(load.write_late(cfg, run.run_id), load.RESULT_SCHEMA))[1]
    if summary.conflicted_ids and not failures:
        with spark_progress(spark, "record conflicts"):
            failures = record_conflicts(cfg, run.run_id, raw, flagged, summary)
    failures = failures or _load(spark, cfg, run.run_id, remaining, summary, say, pause_after_batch_s)
    summary.failures = len(failures)
    for family, key, message in failures[:SHOWN_FAILURES]:
        say(f"failed: {family} row {key}: {message}")
    with contextlib.suppress(Exception):
        flagged.unpersist()
        remaining.unpersist()
    summary.seconds = time.monotonic() - started
    if failures:
        # When every row failed for want of Bigtable, say so: the caller then reports an outage
        # (and does not try to record the failure in the table it cannot reach).
        cause = f" ({failures[0][2]})" if all(outage.names_outage(message) for _, _, message in failures) else ""
        raise LoadFailed(
            f"run {run.run_id}: {summary.failures:,} Bigtable rows failed{cause}; "
            "the run stays pending and is retried by the next invocation"
        )
    conflicts_before = (jobstate.read_job_status(table) or {}).get("conflicts_total", 0)
    jobstate.finish_run(table, run, asdict(summary), datetime.now(UTC), conflicts_before)
    summary.seconds = time.monotonic() - started
    say(summary.line())
    return summary


def service_error(exc: BaseException) -> bool:
    """True for errors that mean Bigtable could not be reached (worth a one-line message), raised
    here or in an executor (common.outage reads the gRPC status from the error's text)."""
    return isinstance(exc, clients.ServiceUnavailable) or outage.is_outage(exc)
