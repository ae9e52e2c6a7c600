"""The benchmark's stages. Each measures one part of the product right beside the ceiling that
bounds it (same machine, same run, same input) and returns Result records.

A stage takes the Bench context (base config, sizes, scratch directory, progress printer), makes
its own uuid-named topic, subscription, table and spool (`scratch`), and removes them afterwards.
The end-to-end and memory stages, which run the product's commands as processes, live in
bench.pipeline.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench import api_load, procs, pubsub_ceilings, spark_ceilings, writer
from bench.data import write_spool
from bench.results import Result, compare
from common import clients, jobstate, spool
from common.config import Config
from common.timeutil import SECOND_US
from emitter.simulate import MERCHANT_CATEGORIES
from jobs.aggregate.lock import LOCK_NAME

ROOT = Path(__file__).resolve().parent.parent
HISTORY_USERS = 1000
HISTORY_HOURS = 48
ANALYTICS_TARGET = 1.5  # the job with categories and sketches at most this many times the job without
API_USERS, API_DAYS, API_PER_USER_HOUR = 20, 31, 2  # the api stage's table: 29,760 transactions
AGGREGATE_DRIVER_MEMORY = "1g"  # Spark's default, which the aggregation stage always ran with
JOB_PEAK_RSS_MB = 1024  # the job's process tree over 1,000,000 rows (issue 14)


@dataclass(frozen=True)
class Sizes:
    """How much each stage moves. QUICK takes a couple of minutes; FULL is the issue's sizes."""

    messages: int  # publish and spool stages
    spark_rows: int  # aggregation to a no-op sink
    job_rows: int  # the job into Bigtable; the history under the incremental run
    write_rows: int  # the raw mutate_rows loops
    incremental: int  # new events per incremental run
    e2e_events: int
    drain_backlog: int
    api_clients: int
    api_requests: int  # per client and endpoint
    rounds: int  # interleaved repetitions of a ceiling and its stage (best of each is kept)
    holders: int = 1_000_000  # card holders of the holders stage (1-2 events each, over 2 hours)
    cluster_rows: int = 1_000_000  # the job on 1 and on 2 standalone workers
    cost_events: tuple[int, int] = (100_000, 1_000_000)  # the two sizes the per-event costs are fitted on


QUICK = Sizes(
    20_000,
    200_000,
    20_000,
    20_000,
    1_000,
    50_000,
    20_000,
    8,
    50,
    1,
    holders=20_000,
    cluster_rows=50_000,
    cost_events=(10_000, 40_000),
)
FULL = Sizes(200_000, 10_000_000, 1_000_000, 200_000, 10_000, 1_000_000, 200_000, 8, 250, 2)


@dataclass
class History:
    """A table and spool holding `rows` transactions processed by one job run."""

    cfg: Config
    rows: int


@dataclass
class Bench:
    base: Config
    sizes: Sizes
    work: Path
    say: Callable[[str], None]
    history: History | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    logs: Path = ROOT / "bench" / "out" / "logs"  # the commands' output, kept after the run
    soak_minutes: float = 30.0  # the soak stage's length and the length of each of its two outages
    soak_outage_minutes: float = 10.0
    freshness_minutes: float = 3.0  # the freshness stage's window per setting

    def scratch_config(self, name: str, **overrides: Any) -> Config:
        """The base config with a fresh topic, subscription, table and spool directory."""
        tag = f"bench-{name}-{uuid.uuid4().hex[:8]}"
        spool_dir = self.work / f"{name}-{uuid.uuid4().hex[:6]}" / "spool"
        return replace(
            self.base,
            topic_id=tag,
            subscription_id=tag,
            table_id=tag[:50],
            spool_dir=str(spool_dir),
            **overrides,
        )


def drop(cfg: Config) -> None:
    """Remove cfg's topic, subscription, table and local spool (missing ones are fine)."""
    pubsub_ceilings.drop(cfg)
    with contextlib.suppress(Exception):
        clients.bigtable_client(cfg, admin=True).instance(cfg.instance_id).table(cfg.table_id).delete()
    shutil.rmtree(spool.local_path(cfg.spool_dir).parent, ignore_errors=True)


@contextlib.contextmanager
def scratch(bench: Bench, name: str, **overrides: Any) -> Iterator[Config]:
    """A scratch config for the block, its resources removed afterwards."""
    cfg = bench.scratch_config(name, **overrides)
    try:
        yield cfg
    finally:
        drop(cfg)


def _timed(say: Callable[[str], None], what: str, work: Callable[[], float], unit: str) -> float:
    started = time.perf_counter()
    value = work()
    say(f"    {what}: {value:,.3f} {unit} ({time.perf_counter() - started:.1f} s)")
    return value


def files_for(rows: int, cfg: Config) -> int:
    """As many spool files as the spooler would write for `rows` (one per spool_roll_messages)."""
    return max(1, math.ceil(rows / cfg.spool_roll_messages))


# --- ingest: emitter and spooler ---------------------------------------------------------------


def publish(bench: Bench) -> list[Result]:
    """The emitter's publish rate beside a bare PublisherClient on the same messages."""
    n, say = bench.sizes.messages, bench.say
    say(f"    encoding {n:,} simulated transactions for the raw publisher")
    messages = pubsub_ceilings.sample_messages(bench.base, n)
    raw, emitted = 0.0, 0.0
    for _ in range(bench.sizes.rounds):
        with scratch(bench, "raw-publish") as cfg:
            raw = max(
                raw, _timed(say, "raw publisher", partial(pubsub_ceilings.raw_publish_rate, cfg, messages), "msgs/s")
            )
        with scratch(bench, "emitter") as cfg:
            emitted = max(emitted, _timed(say, "emitter", partial(pubsub_ceilings.emitter_rate, cfg, n), "msgs/s"))
    return [
        compare("raw publisher (ceiling)", raw, "msgs/s", None, "-", None, f"{n:,} messages, batching as the emitter"),
        compare("emitter publish", emitted, "msgs/s", raw, ">= 0.9 x raw publisher", emitted >= 0.9 * raw),
    ]


def spool_stage(bench: Bench) -> list[Result]:
    """The spooler (durable Parquet files, acks after fsync) beside a bare Pull + Acknowledge loop,
    each draining a backlog of the same messages."""
    n, say = bench.sizes.messages, bench.say
    messages = pubsub_ceilings.sample_messages(bench.base, n)
    roll = n // math.ceil(n / bench.base.spool_roll_messages)  # the last file rolls by count, not age
    raw, spooled = 0.0, 0.0
    for _ in range(bench.sizes.rounds):
        with scratch(bench, "raw-pull") as cfg:
            say(f"    backlog of {n:,} for the raw pull + ack loop")
            pubsub_ceilings.publish_backlog(cfg, messages)
            raw = max(raw, _timed(say, "raw pull + ack", partial(pubsub_ceilings.raw_pull_ack_rate, cfg, n), "msgs/s"))
        with scratch(bench, "spooler", spool_roll_messages=roll) as cfg:
            say(f"    backlog of {n:,} for the spooler")
            pubsub_ceilings.publish_backlog(cfg, messages)
            spooled = max(spooled, _timed(say, "spooler", partial(pubsub_ceilings.spooler_rate, cfg, n), "msgs/s"))
    return [
        compare("raw pull + ack (ceiling)", raw, "msgs/s", None, "-", None, f"{n:,} messages, same pullers"),
        compare("spooler (durable)", spooled, "msgs/s", raw, ">= 0.8 x raw pull + ack", spooled >= 0.8 * raw),
    ]


# --- aggregation -----------------------------------------------------------------------------------


def aggregate(bench: Bench) -> list[Result]:
    """The job's Spark transforms (dedupe, hourly buckets) into a no-op sink beside DuckDB and pandas
    computing the same buckets from the same spool files."""
    from jobs.aggregate.session import get_spark

    rows, say = bench.sizes.spark_rows, bench.say
    spool_dir = str(bench.work / "aggregate-spool")
    say(f"    writing {rows:,} rows into {files_for(rows, bench.base)} spool files")
    write_spool(spool_dir, rows, users=HISTORY_USERS, hours=HISTORY_HOURS, files=files_for(rows, bench.base))
    duck = pandas = seconds = math.inf
    try:
        # The heap the transforms had in every earlier run (the job's own local default is smaller,
        # for its RSS target): the ratio stays comparable across runs.
        spark = get_spark(extra_conf={"spark.driver.memory": AGGREGATE_DRIVER_MEMORY})
        try:
            # Interleaved rounds, so a burst of load on the machine hits all three alike.
            for _ in range(2):
                duck = min(
                    duck, _timed(say, "DuckDB", partial(spark_ceilings.duckdb_buckets_seconds, spool_dir, 1), "s")
                )
                pandas = min(
                    pandas, _timed(say, "pandas", partial(spark_ceilings.pandas_buckets_seconds, spool_dir, 1), "s")
                )
                seconds = min(
                    seconds,
                    _timed(say, "Spark", partial(spark_ceilings.spark_buckets_seconds, spark, spool_dir, 1), "s"),
                )
        finally:
            spark.stop()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    note = (
        f"{rows:,} rows, {HISTORY_USERS} users x {HISTORY_HOURS} h, best of 2; lower is better; "
        f"Spark with spark.driver.memory={AGGREGATE_DRIVER_MEMORY}"
    )
    return [
        compare("DuckDB buckets (ceiling)", duck, "s", None, "-", None, note),
        compare("pandas buckets", pandas, "s", duck, "-", None),
        compare("Spark aggregation", seconds, "s", duck, "<= 2 x DuckDB", seconds <= 2 * duck),
    ]


# --- the job into Bigtable ------------------------------------------------------------------------


def run_job(bench: Bench, cfg: Config, name: str, *flags: str) -> tuple[dict[str, Any], procs.Finished]:
    """`python -m jobs.aggregate [flags]` over cfg's spool into cfg's table, as a process whose tree
    RSS is sampled. Returns the run's own summary (read back from the table's job state) and the process."""
    path = procs.write_config(cfg, bench.work / "configs" / f"{name}.json")
    done = procs.run(procs.python_module("jobs.aggregate", "--config", str(path), *flags), bench.logs / f"{name}.log")
    return read_summary(cfg, name, done), done


def read_summary(cfg: Config, name: str, done: procs.Finished) -> dict[str, Any]:
    """The last finished run's summary from cfg's table (the job state); RuntimeError when none."""
    status = jobstate.read_job_status(clients.bigtable_table(cfg)) or {}
    summary: dict[str, Any] = status.get("last_summary") or {}
    if not summary.get("run_id"):
        raise RuntimeError(f"{name}: the job recorded no finished run: {done.tail()}")
    return summary


def job(bench: Bench) -> list[Result]:
    """One job run over job_rows spooled transactions into an empty table (rows/s of the whole run,
    Spark start-up excluded) beside one thread of the store's protobuf writer on transaction rows
    (and the DirectRow mutate_rows loop); the peak RSS of the job's process tree (Python driver,
    JVM, Python workers); the run's seconds with categories and sketches against without them
    (analytics_cost). The table and spool are kept as the history of the incremental stage."""
    rows, say = bench.sizes.job_rows, bench.say
    with scratch(bench, "mutate") as cfg:
        public = _timed(
            say,
            "raw mutate_rows (DirectRow)",
            lambda: spark_ceilings.public_mutate_rows_rate(cfg, bench.sizes.write_rows),
            "rows/s",
        )
        protobuf = _timed(
            say,
            "raw mutate_rows (protobuf)",
            lambda: spark_ceilings.protobuf_mutate_rows_rate(cfg, bench.sizes.write_rows),
            "rows/s",
        )
    cfg = bench.scratch_config("history")
    bench.cleanups.append(lambda: drop(cfg))
    say(f"    writing {rows:,} rows into {files_for(rows, cfg)} spool files")
    write_history_spool(cfg, rows)
    clients.ensure_table(cfg)
    say(f"    python -m jobs.aggregate over {rows:,} rows")
    summary, done = run_job(bench, cfg, "job")
    rate = summary["rows_written"] / summary["seconds"]
    say(
        f"    job: {summary['rows_written']:,} rows in {summary['seconds']:.1f} s ({rate:,.0f} rows/s), "
        f"process {done.seconds:.1f} s, peak RSS {done.peak_rss_bytes / procs.MB:,.0f} MB"
    )
    bench.history = History(cfg, rows)
    analytics = analytics_cost(bench, cfg, summary["seconds"])
    peak_mb = done.peak_rss_bytes / procs.MB
    return [
        compare(
            "raw mutate_rows (DirectRow)",
            public,
            "rows/s",
            None,
            "-",
            None,
            f"{bench.sizes.write_rows:,} rows, one thread, table.mutate_rows over DirectRow batches",
        ),
        compare(
            "store protobuf writer (ceiling)",
            protobuf,
            "rows/s",
            None,
            "-",
            None,
            f"{bench.sizes.write_rows:,} transaction rows, one thread of store.write_cell_rows (MutateRows built "
            "as protobufs, what the job's writers use)",
        ),
        compare(
            "job into Bigtable",
            rate,
            "rows/s",
            protobuf,
            ">= 0.5 x store protobuf writer",
            rate >= 0.5 * protobuf,
            f"{rows:,} rows (dcflist rows; each with its id and time index rows), all counters, sketches; "
            f"whole run, Spark start-up excluded (process {done.seconds:.1f} s); "
            f"{rate / public:.2f} x raw mutate_rows (DirectRow)",
        ),
        compare(
            "job driver peak RSS",
            peak_mb,
            "MB",
            None,
            f"<= {JOB_PEAK_RSS_MB:,} MB at 1,000,000 rows",
            peak_mb <= JOB_PEAK_RSS_MB if rows >= 1_000_000 else None,
            f"{rows:,} rows; Python driver + JVM + Python workers (the process tree)",
        ),
        *analytics,
    ]


def write_history_spool(cfg: Config, rows: int) -> None:
    """The job stage's spool (and the incremental stage's history): `rows` transactions of
    HISTORY_USERS card holders over HISTORY_HOURS, in the emitter's merchant categories."""
    write_spool(
        cfg.spool_dir,
        rows,
        users=HISTORY_USERS,
        hours=HISTORY_HOURS,
        files=files_for(rows, cfg),
        seed=1,
        categories=MERCHANT_CATEGORIES,
    )


def copy_spool(source: Config, cfg: Config) -> None:
    """cfg's spool: the same files as source's, hard-linked (the same bytes, no copy), without the
    job's lock file. A run's compaction replaces files in its own folder only."""
    shutil.copytree(
        spool.local_path(source.spool_dir),
        spool.local_path(cfg.spool_dir),
        copy_function=os.link,
        ignore=shutil.ignore_patterns(LOCK_NAME),
    )


def analytics_cost(bench: Bench, source: Config, first_with: float) -> list[Result]:
    """The job's run seconds with its category (dcfcat) and sketch (dcfkll) writers and without them
    (`--no-analytics`, the benchmark's switch), each run from the same spool files as `source`'s
    into an empty table of its own. Round 0's run with them is the job stage's own (first_with);
    later rounds alternate which goes first. Best of `rounds` each."""
    say, rows = bench.say, bench.sizes.job_rows
    seconds: dict[bool, list[float]] = {True: [first_with], False: []}
    for round_ in range(bench.sizes.rounds):
        order = [False] if round_ == 0 else ([False, True] if round_ % 2 else [True, False])
        for analytics in order:
            name = f"job-{'with' if analytics else 'without'}-analytics-{round_}"
            with scratch(bench, name) as cfg:
                copy_spool(source, cfg)
                clients.ensure_table(cfg)
                summary, _ = run_job(bench, cfg, name, *([] if analytics else ["--no-analytics"]))
            if summary.get("analytics", True) != analytics or summary["rows_written"] != rows:
                raise RuntimeError(f"{name}: the run did not do what was asked: {summary}")
            seconds[analytics].append(summary["seconds"])
            say(f"    {name}: {summary['seconds']:.1f} s")
    best_with, best_without = min(seconds[True]), min(seconds[False])
    per_run = "; ".join(
        f"{label}: {', '.join(f'{s:.1f}' for s in seconds[flag])} s"
        for label, flag in (("with", True), ("without", False))
    )
    note = (
        f"{rows:,} rows, {len(MERCHANT_CATEGORIES)} merchant categories, run seconds (Spark start-up excluded), "
        f"best of {len(seconds[True])}; each run into an empty table of its own from the same spool files; {per_run}"
    )
    return [
        compare("job without categories and sketches (ceiling)", best_without, "s", None, "-", None, note),
        compare(
            "job with categories and sketches",
            best_with,
            "s",
            best_without,
            f"<= {ANALYTICS_TARGET:g} x without",
            best_with <= ANALYTICS_TARGET * best_without,
            "dcfcat (per user-hour, hour, minute) and dcfkll (per user-hour, hour) on top of every other row",
        ),
    ]


WRITER_ROUNDS = 5
WRITER_MAX_ROWS = 40_000


def writer_choice(bench: Bench) -> list[Result]:
    """The store's protobuf writer beside the public data API (bulk_mutate_rows, MutationsBatcher)
    and DirectRow + mutate_rows on the same job-shaped rows: the median per-round ratio of each to
    the store's writer (bench/writer.py)."""
    rows = min(bench.sizes.write_rows, WRITER_MAX_ROWS)
    bench.say(f"    {rows:,} job-shaped rows per writer, {WRITER_ROUNDS} rounds, a fresh table each")
    rates = writer.compare_writers(bench.base, rows, WRITER_ROUNDS, bench.say)
    store_writer, *others = writer.WRITERS
    baseline = statistics.median(rates[store_writer])
    note = f"{rows:,} rows (2 transaction, 2 id index, 1 counter in every 5), median of {WRITER_ROUNDS} rounds"
    results = [compare(f"{store_writer} (ceiling)", baseline, "rows/s", None, "-", None, note)]
    for name in others:
        ratio = writer.median_ratio(rates, name)
        results.append(
            Result(
                name,
                round(statistics.median(rates[name]), 3),
                "rows/s",
                round(baseline, 3),
                round(ratio, 3),
                ">= 0.8 x write_cell_rows to replace it" if name in writer.CANDIDATES else "-",
                ratio >= 0.8 if name in writer.CANDIDATES else None,
                "ratio: median over the rounds of this round's rate / write_cell_rows' rate; per round: "
                + ", ".join(f"{a / b:.2f}" for a, b in zip(rates[name], rates[store_writer], strict=True)),
            )
        )
    return results


def _history(bench: Bench) -> History:
    if bench.history is None:
        rows = bench.sizes.job_rows
        cfg = bench.scratch_config("history")
        bench.cleanups.append(lambda: drop(cfg))
        bench.say(f"    history: {rows:,} rows through one job run")
        write_history_spool(cfg, rows)
        clients.ensure_table(cfg)
        run_job(bench, cfg, "history")
        bench.history = History(cfg, rows)
    return bench.history


def incremental(bench: Bench) -> list[Result]:
    """A job run over `incremental` new events (their user-hours already counted in the history)
    on an empty table and on the history's table: the run's own seconds, best of `rounds`."""
    n, say = bench.sizes.incremental, bench.say
    history = _history(bench)
    empty, loaded = math.inf, math.inf
    for round_ in range(bench.sizes.rounds):
        seed = 100 + round_
        with scratch(bench, "incremental") as cfg:
            write_spool(cfg.spool_dir, n, users=HISTORY_USERS, hours=HISTORY_HOURS, files=1, seed=seed)
            clients.ensure_table(cfg)
            summary, _ = run_job(bench, cfg, f"incremental-empty-{round_}")
            empty = min(empty, summary["seconds"])
            say(f"    {n:,} new events on an empty table: {summary['seconds']:.2f} s")
        write_spool(history.cfg.spool_dir, n, users=HISTORY_USERS, hours=HISTORY_HOURS, files=1, seed=seed)
        summary, _ = run_job(bench, history.cfg, f"incremental-history-{round_}")
        loaded = min(loaded, summary["seconds"])
        say(
            f"    {n:,} new events on {history.rows:,} processed: {summary['seconds']:.2f} s "
            f"({summary.get('looked_up', 0):,} looked up)"
        )
        history.rows += n
    return [
        compare("incremental, empty history (ceiling)", empty, "s", None, "-", None, f"{n:,} new events"),
        compare(
            "incremental on history",
            loaded,
            "s",
            empty,
            "<= 1.3 x on empty history",
            loaded <= 1.3 * empty,
            f"{n:,} new events in hours already counted from {bench.sizes.job_rows:,} events; run seconds",
        ),
    ]


# --- the API ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, server: procs.Started, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            raise RuntimeError(f"the server exited: {server.wait(0).tail()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the server did not answer {url} within {timeout:g} s")


@contextlib.contextmanager
def served(bench: Bench, cfg: Config, name: str) -> Iterator[str]:
    """./run_server.sh (gunicorn, its default workers and threads) over cfg on a free port for the
    block, its output in logs/<name>.log; yields its base URL once /health answers."""
    port = _free_port()
    config_path = procs.write_config(cfg, bench.work / "configs" / f"{name}.json")
    server = procs.Started(
        [str(ROOT / "run_server.sh")], bench.logs / f"{name}.log", env={"PORT": str(port), "CONFIG": str(config_path)}
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base_url}/health", server)
        yield base_url
    finally:
        server.terminate()
        server.wait(20)


def seed_api_table(bench: Bench, cfg: Config) -> None:
    """cfg's table as the job writes it (so with categories and sketches): API_DAYS days of API_USERS
    card holders (u00000 ...), API_PER_USER_HOUR transactions an hour each, ending now, each published
    a second after its event, counted by one job run. RuntimeError when a family stayed empty."""
    rows = API_USERS * API_DAYS * 24 * API_PER_USER_HOUR
    bench.say(f"    seeding {rows:,} transactions of {API_USERS} users over {API_DAYS} days through the job")
    write_spool(
        cfg.spool_dir,
        rows,
        users=API_USERS,
        hours=API_DAYS * 24,
        files=files_for(rows, cfg),
        seed=3,
        categories=MERCHANT_CATEGORIES,
        publish_lag_us=SECOND_US,
    )
    clients.ensure_table(cfg)
    summary, _ = run_job(bench, cfg, "api-seed")
    if (
        summary["rows_written"] != rows
        or not summary.get("category_rows_written")
        or not summary.get("sketches_written")
    ):
        raise RuntimeError(f"api-seed: the job did not count every row with its categories and sketches: {summary}")


def api(bench: Bench) -> list[Result]:
    """./run_server.sh (gunicorn, its default workers and threads) over a table the job filled with
    31 days of 20 users; `api_clients` concurrent clients on one user's /sum, /percentiles and
    /categories over 30 days and /transactions over 6 h, one endpoint after another."""
    say, sizes = bench.say, bench.sizes
    with scratch(bench, "api") as cfg:
        seed_api_table(bench, cfg)
        with served(bench, cfg, "api") as base_url:
            say(f"    gunicorn on {base_url}: {sizes.api_clients} clients x {sizes.api_requests} requests each")
            results = api_load.run(base_url, "u00001", sizes.api_clients, sizes.api_requests)
    for result in results:
        say(f"    {result.line()}")
    by_name = {r.name: r for r in results}
    summed, listed = by_name["sum 30d"], by_name["transactions 6h"]
    quantiles, categories = by_name["percentiles 30d"], by_name["categories 30d"]
    workers = os.environ.get("WORKERS", "2")
    note = f"{summed.clients} clients, {summed.requests:,} requests, {summed.errors} errors; gunicorn {workers} workers"
    ratio_note = "ratio: p99 / the /sum 30 days p99 of the same run"
    return [
        compare("API /sum 30 days p50", summed.p50_ms, "ms", None, "-", None),
        compare(
            "API /sum 30 days p99",
            summed.p99_ms,
            "ms",
            None,
            "<= 25 ms",
            summed.p99_ms <= 25 and not summed.errors,
            note,
        ),
        compare(
            "API /sum 30 days rate", summed.requests_per_s, "req/s", None, ">= 300 req/s", summed.requests_per_s >= 300
        ),
        compare("API /transactions 6 h p50", listed.p50_ms, "ms", None, "-", None),
        compare("API /transactions 6 h p99", listed.p99_ms, "ms", None, "-", None, f"{listed.errors} errors"),
        compare("API /transactions 6 h rate", listed.requests_per_s, "req/s", None, "-", None),
        compare("API /percentiles 30 days p50", quantiles.p50_ms, "ms", None, "-", None),
        compare(
            "API /percentiles 30 days p99",
            quantiles.p99_ms,
            "ms",
            summed.p99_ms,
            "<= 3 x /sum 30 days p99",
            quantiles.p99_ms <= 3 * summed.p99_ms and not quantiles.errors,
            f"q=0.5,0.9,0.99, one user's 720 hourly sketches merged; {ratio_note}; {quantiles.errors} errors",
        ),
        compare("API /categories 30 days p50", categories.p50_ms, "ms", None, "-", None),
        compare(
            "API /categories 30 days p99",
            categories.p99_ms,
            "ms",
            summed.p99_ms,
            "-",
            None,
            f"{len(MERCHANT_CATEGORIES)} categories; {ratio_note}; {categories.errors} errors",
        ),
    ]


def largest_row(cfg: Config) -> tuple[bytes, int]:
    """(key, bytes) of the table's largest row, read back whole: key plus every cell's qualifier
    and value, newest versions."""
    from google.cloud.bigtable import row_filters

    biggest, size = b"", 0
    latest = row_filters.CellsColumnLimitFilter(1)
    for row in clients.bigtable_table(cfg).read_rows(filter_=latest):
        total = len(row.row_key) + sum(
            len(qualifier) + len(cells[0].value) for family in row.cells.values() for qualifier, cells in family.items()
        )
        if total > size:
            biggest, size = row.row_key, total
    return biggest, size


def holders(bench: Bench) -> list[Result]:
    """`holders` card holders with 1-2 events each over two hours, spooled and counted by one job
    run into an empty table: the run's time, the largest row read back (no row may grow with the
    number of card holders) and the API p99 of /top-users (a week, n=100) and /sum."""
    say, sizes = bench.say, bench.sizes
    count = sizes.holders
    rows = count * 3 // 2
    with scratch(bench, "holders") as cfg:
        say(f"    writing {rows:,} events of {count:,} card holders into {files_for(rows, cfg)} spool files")
        write_spool(cfg.spool_dir, rows, users=count, hours=2, files=files_for(rows, cfg), seed=5)
        clients.ensure_table(cfg)
        summary, done = run_job(bench, cfg, "holders")
        say(f"    job: {summary['rows_written']:,} rows in {summary['seconds']:.1f} s (process {done.seconds:.1f} s)")
        key, size = largest_row(cfg)
        say(f"    largest row: {key[:60]!r} {size:,} bytes")
        with served(bench, cfg, "holders-api") as base_url:
            now = datetime.now(UTC).replace(microsecond=0)
            span = {"from": (now - timedelta(hours=3)).isoformat(), "to": now.isoformat()}
            top = api_load.measure(
                base_url,
                "/api/v1/top-users",
                {"hours": "168", "n": "100"},
                sizes.api_clients,
                sizes.api_requests,
                name="top-users 168 h n=100",
            )
            summed = api_load.measure(
                base_url, "/api/v1/users/u00001/sum", span, sizes.api_clients, sizes.api_requests, name="sum 3 h"
            )
    for result in (top, summed):
        say(f"    {result.line()}")
    note = f"{count:,} card holders, {rows:,} events"
    return [
        compare("holders: job run time", summary["seconds"], "s", None, "-", None, note),
        compare(
            "holders: largest row", size, "bytes", None, "<= 64 KiB", size <= 65536, f"{key[:60].decode()!r}; {note}"
        ),
        compare("holders: API /top-users p99", top.p99_ms, "ms", None, "-", None, f"{top.errors} errors"),
        compare("holders: API /sum p99", summed.p99_ms, "ms", None, "-", None, f"{summed.errors} errors"),
    ]
