"""What one event costs on this machine: the figures docs/sizing.md scales to a day's volume.

The stage pushes the simulator's transactions through the real commands at two sizes (a backlog
in Pub/Sub, `python -m jobs.spooler --until-idle` draining it into the spool, `python -m
jobs.aggregate` over that spool into a fresh table) and measures:

- CPU-seconds (user + system of the process tree: the spooler; the job's driver, its Spark JVM and
  Python workers; bench.procs.TreeCpu) at each size, fitted as fixed-per-run + per-event, so the
  start-up of a process (imports, the JVM) is not charged to the events;
- Pub/Sub bytes per event (data + attribute keys and values, as the emitter publishes them);
- spool bytes per event (the Parquet files' bytes / their rows);
- Bigtable rows and bytes per event, read back from the table: per column family, the rows and
  their approximate stored size (row key + for every cell family, qualifier, value and its 8-byte
  timestamp; Bigtable's own overhead and compression are not counted);
- Bigtable rows written per event: the rows in the table after that one run into an empty table
  (each written once by it; a handful are the job's bookkeeping), per family in the note.

The transactions are `COST_USERS` card holders over the last `COST_HOURS` hours (so none is late),
one currency mix as configured. Counter rows (hour buckets, minutes, top spenders, categories,
the user directory) grow with the distinct user-hours and minutes of a run, not with its events:
their share per event is what this data shape gives, and falls as a run's events per user-hour rise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from bench import procs
from bench.results import Result, compare
from common import clients, spool
from common.config import Config
from emitter.producer import EncodedTransaction, SimulationRequest, encoded_batches
from emitter.simulate import Population

if TYPE_CHECKING:
    from bench.stages import Bench

COST_USERS = 1000
COST_HOURS = 48
SPOOLER_IDLE_SECONDS = 3.0


def recent_messages(cfg: Config, n: int, users: int = COST_USERS, hours: int = COST_HOURS) -> list[EncodedTransaction]:
    """The first n simulated transactions of `users` card holders over the last `hours` hours,
    encoded as the emitter publishes them (RuntimeError when the window holds fewer)."""
    end = datetime.now(UTC)
    request = SimulationRequest(
        Population.from_config(replace(cfg, users=users)), end - timedelta(hours=hours), end, 1.0, n
    )
    messages = [item for batch in encoded_batches(request) for item in batch]
    if len(messages) < n:
        raise RuntimeError(f"{users} users over {hours} h make {len(messages):,} transactions, fewer than {n:,}")
    return messages


def message_bytes(message: EncodedTransaction) -> int:
    """A Pub/Sub message's data plus its attributes' keys and values, in bytes."""
    data, attributes = message[0], message[1]
    return len(data) + sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())


@dataclass(frozen=True)
class TableFootprint:
    """Rows and approximate bytes of a table, in all and per column family (a row is counted under
    its first family other than dcfmeta, which the job's bookkeeping cells share with other rows)."""

    rows: int
    bytes: int
    rows_by_family: dict[str, int]
    bytes_by_family: dict[str, int]


def table_footprint(table: Any) -> TableFootprint:
    """Read every row of `table` back and size it: key + (family + qualifier + value + 8) per cell."""
    rows: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for row in table.read_rows():
        size = len(row.row_key)
        family = next((name for name in row.cells if name != "dcfmeta"), "dcfmeta")
        for name, columns in row.cells.items():
            for qualifier, cells in columns.items():
                size += sum(len(name) + len(qualifier) + len(cell.value) + 8 for cell in cells)
        rows[family] += 1
        sizes[family] += size
    return TableFootprint(sum(rows.values()), sum(sizes.values()), dict(rows), dict(sizes))


def spool_footprint(spool_dir: str) -> tuple[int, int]:
    """(bytes, rows) of the transaction files in a local spool."""
    files = sorted((spool.local_path(spool_dir) / spool.TRANSACTIONS).rglob("*.parquet"))
    return sum(f.stat().st_size for f in files), sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def fit_line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per_unit) of the line through two (size, cost) points; a negative fixed part (noise)
    is reported as 0 with the per-unit cost of the larger point alone."""
    (n1, c1), (n2, c2) = sorted(points)
    if n1 == n2:
        raise ValueError("two different sizes are needed to fit a fixed and a per-event cost")
    per_unit = (c2 - c1) / (n2 - n1)
    fixed = c1 - per_unit * n1
    if fixed < 0 or per_unit <= 0:
        return 0.0, c2 / n2
    return fixed, per_unit


@dataclass(frozen=True)
class Point:
    """One size's measurements."""

    events: int
    spooler_cpu: float
    spooler_wall: float
    job_cpu: float
    job_wall: float
    run_seconds: float
    spool_bytes: int
    spool_rows: int
    footprint: TableFootprint


def measure(bench: Bench, messages: list[EncodedTransaction]) -> Point:
    """Publish `messages` as a backlog, drain it with the spooler, run the job over the spool, read
    the table back; each command's process tree CPU time."""
    from bench import pubsub_ceilings, stages

    n, say = len(messages), bench.say
    with stages.scratch(bench, f"costs-{n}") as cfg:
        say(f"    {n:,} events: publishing the backlog")
        pubsub_ceilings.publish_backlog(cfg, messages)
        path = procs.write_config(cfg, bench.work / "configs" / f"costs-{n}.json")
        spooled = procs.run(
            procs.python_module(
                "jobs.spooler", "--config", str(path), "--until-idle", str(SPOOLER_IDLE_SECONDS), "--quiet"
            ),
            bench.logs / f"costs-spooler-{n}.log",
        )
        spool_bytes, spool_rows = spool_footprint(cfg.spool_dir)
        if spool_rows != n:
            raise RuntimeError(f"the spooler wrote {spool_rows:,} of {n:,} transactions: {spooled.tail()}")
        say(f"    spooler: {spooled.cpu_seconds:.1f} CPU-s in {spooled.seconds:.1f} s; spool {spool_bytes:,} bytes")
        clients.ensure_table(cfg)
        summary, done = stages.run_job(bench, cfg, f"costs-job-{n}")
        say(f"    job: {done.cpu_seconds:.1f} CPU-s in {done.seconds:.1f} s (run {summary['seconds']:.1f} s)")
        footprint = table_footprint(clients.bigtable_table(cfg))
        say(f"    table: {footprint.rows:,} rows, about {footprint.bytes:,} bytes; {footprint.rows_by_family}")
        return Point(
            n,
            spooled.cpu_seconds,
            spooled.seconds,
            done.cpu_seconds,
            done.seconds,
            float(summary["seconds"]),
            spool_bytes,
            spool_rows,
            footprint,
        )


def stage(bench: Bench) -> list[Result]:
    """Per-event costs on this machine: CPU-seconds per 1,000 events of the spooler and the job
    (fixed + per-event, fitted on two sizes), Pub/Sub, spool and Bigtable bytes per event, and
    Bigtable rows per event (docs/sizing.md scales them)."""
    small, large = bench.sizes.cost_events
    bench.say(f"    simulating {large:,} transactions of {COST_USERS:,} users over {COST_HOURS} h")
    messages = recent_messages(bench.base, large)
    pubsub_bytes = sum(message_bytes(m) for m in messages) / len(messages)
    points = [measure(bench, messages[:small]), measure(bench, messages)]
    big = points[-1]
    spooler_fixed, spooler_per = fit_line([(p.events, p.spooler_cpu) for p in points])
    job_fixed, job_per = fit_line([(p.events, p.job_cpu) for p in points])
    sizes = f"fitted on {small:,} and {large:,} events"
    cpu = "; ".join(
        f"{p.events:,}: spooler {p.spooler_cpu:.1f} CPU-s ({p.spooler_wall:.1f} s), "
        f"job {p.job_cpu:.1f} CPU-s ({p.job_wall:.1f} s, run {p.run_seconds:.1f} s)"
        for p in points
    )
    families = ", ".join(
        f"{family} {rows / big.events:.3f} rows, {big.footprint.bytes_by_family[family] / big.events:.0f} B"
        for family, rows in sorted(big.footprint.rows_by_family.items())
    )
    shape = f"{big.events:,} events of {COST_USERS:,} users over {COST_HOURS} h"
    return [
        compare("cost: spooler CPU per 1,000 events", spooler_per * 1000, "CPU-s", None, "-", None, f"{sizes}; {cpu}"),
        compare("cost: spooler CPU fixed per process", spooler_fixed, "CPU-s", None, "-", None, "start-up, idle exit"),
        compare(
            "cost: job CPU per 1,000 events",
            job_per * 1000,
            "CPU-s",
            None,
            "-",
            None,
            f"{sizes}; driver, Spark JVM and Python workers",
        ),
        compare("cost: job CPU fixed per run", job_fixed, "CPU-s", None, "-", None, "a fresh process, JVM start"),
        compare("cost: Pub/Sub bytes per event", pubsub_bytes, "B", None, "-", None, "data + attributes"),
        compare(
            "cost: spool bytes per event",
            big.spool_bytes / big.spool_rows,
            "B",
            None,
            "-",
            None,
            f"{big.spool_bytes:,} Parquet bytes / {big.spool_rows:,} rows",
        ),
        compare(
            "cost: Bigtable bytes per event",
            big.footprint.bytes / big.events,
            "B",
            None,
            "-",
            None,
            f"approximate (keys + cells, uncompressed), {shape}; per family: {families}",
        ),
        compare(
            "cost: Bigtable rows written per event",
            big.footprint.rows / big.events,
            "rows",
            None,
            "-",
            None,
            f"{big.footprint.rows:,} rows in the table after one run into it over {shape}",
        ),
    ]
