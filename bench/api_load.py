"""Load test of the JSON API: latency percentiles and requests/s with concurrent clients.

    python -m bench.api_load --base-url http://127.0.0.1:5000 --user u00001
    python -m bench.api_load --seed --config CONFIG --users 20 --days 30 ...   (seed the table first)

`measure()` drives one URL from several threads (one requests.Session each) for a bounded number
of requests; `run()` measures /sum, /percentiles and /categories over 30 days and /transactions
over 6 hours. The seeding helpers write a synthetic ledger with the project's own Bigtable writer
(common.store), in the cells the aggregate job writes but for its category and sketch rows, so the
API can be measured (and tested) without Spark; with --seed, /percentiles and /categories are
therefore not measured (the benchmark's api stage seeds its table through the job instead).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from tqdm import tqdm

from common import clients, jobstate, rowkeys, store
from common.config import ConfigError, load_config
from common.money import to_minor
from common.timeutil import HOUR_US, SECOND_US, format_rfc3339, from_epoch_us, to_epoch_us

CATEGORIES = ("grocery", "fuel", "restaurants", "travel", "online")


@dataclass(frozen=True)
class LedgerRow:
    transaction_id: str
    user_id: str
    amount_minor: int
    event_us: int
    currency: str = "USD"
    category: str = "grocery"


@dataclass(frozen=True)
class LateRow:
    """A transaction the job set aside as late: published `publish_us` for an event at `event_us`."""

    transaction_id: str
    user_id: str
    amount_minor: int
    currency: str
    event_us: int
    publish_us: int


@dataclass(frozen=True)
class ConflictRow:
    """A copy of a counted transaction id whose content differs from the counted one."""

    transaction_id: str
    counted: store.Version
    copy: store.Version


@dataclass(frozen=True)
class LoadResult:
    name: str
    requests: int
    errors: int
    clients: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name}: {self.requests} requests ({self.errors} errors) from {self.clients} clients in "
            f"{self.seconds:.1f} s: p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, {self.requests_per_s:.0f} req/s"
        )


# --- the ledger and its seeding ---------------------------------------------------------------


def synthetic_ledger(
    users: Sequence[str],
    start: datetime,
    end: datetime,
    per_user_per_hour: float,
    seed: int = 7,
    currencies: Sequence[str] = ("USD",),
) -> list[LedgerRow]:
    """Random transactions for `users` over [start, end): amounts 20-100 in a currency drawn from
    `currencies` (in its own minor units), about per_user_per_hour each, at microsecond event times."""
    rng = random.Random(seed)
    start_us, end_us = to_epoch_us(start), to_epoch_us(end)
    hours = (end_us - start_us) / HOUR_US
    rows = []
    for user in users:
        for index in range(max(1, round(hours * per_user_per_hour))):
            currency = currencies[0] if len(currencies) == 1 else rng.choice(currencies)
            rows.append(
                LedgerRow(
                    transaction_id=f"{user}-{seed}-{index}",
                    user_id=user,
                    amount_minor=rng.randint(to_minor("20", currency), to_minor("100", currency)),
                    event_us=rng.randrange(start_us, end_us),
                    currency=currency,
                    category=rng.choice(CATEGORIES),
                )
            )
    return rows


def seed_table(
    table: Any,
    ledger: Iterable[LedgerRow],
    progress: bool = False,
    late: Iterable[LateRow] = (),
    conflicts: Iterable[ConflictRow] = (),
) -> int:
    """Write the ledger as one aggregate job run would: the run recorded as pending in the ~job
    row, dcflist rows, dcfbhour / dcfblock / dcfbmin / dcftop counters per currency and the dcfuser directory,
    the ~late# rows it set aside and the ~conflict# rows it found, then the run recorded as
    finished (its summary counting them). Returns the rows written; raises RuntimeError on failures."""
    rows = list(ledger)
    status = jobstate.read_job_status(table)
    run = jobstate.begin_run(table, status, [], datetime.now(UTC))
    run_id = run.run_id
    hours: dict[bytes, dict[bytes, int]] = defaultdict(lambda: defaultdict(int))
    minutes: dict[bytes, dict[bytes, int]] = defaultdict(lambda: defaultdict(int))
    mutations = []
    for row in rows:
        key = rowkeys.transaction_key(row.user_id, row.event_us, row.transaction_id)
        event_time = format_rfc3339(from_epoch_us(row.event_us))
        mutations.append(
            store.transaction_row(table, key, row.amount_minor, row.currency, row.category, event_time, run_id)
        )
        hour_s = rowkeys.hour_start_us(row.event_us) // SECOND_US
        minute_s = rowkeys.minute_start_us(row.event_us) // SECOND_US
        for counters in (hours[rowkeys.hour_bucket_key(row.user_id, hour_s)], minutes[rowkeys.minute_key(minute_s)]):
            for qualifier, delta in store.counter_cells(row.currency, row.amount_minor, 1).items():
                counters[qualifier] += delta
    mutations += [
        store.user_directory_row(table, rowkeys.user_directory_key(u)) for u in sorted({r.user_id for r in rows})
    ]
    failures: list[store.RowFailure] = []
    with tqdm(total=len(mutations), desc="seed rows", unit="row", disable=not progress) as bar:
        for start in range(0, len(mutations), store.WRITE_CHUNK):
            chunk = mutations[start : start + store.WRITE_CHUNK]
            failures += store.write_rows(table, chunk)
            bar.update(len(chunk))
    hour_deltas = {key: dict(cells) for key, cells in hours.items()}
    failures += store.apply_bucket_deltas(table, hour_deltas, run_id)[3]
    failures += store.apply_bucket_deltas(table, store.block_deltas(hour_deltas), run_id, store.BLOCK)[3]
    failures += store.apply_counter_deltas(table, store.MINUTE, {k: dict(c) for k, c in minutes.items()}, run_id)[2]
    late_rows = [
        (
            rowkeys.late_key(r.publish_us, r.transaction_id),
            store.late_cells(
                store.Version(r.user_id, r.amount_minor, r.currency, r.event_us, r.publish_us),
                format_rfc3339(from_epoch_us(r.event_us)),
                format_rfc3339(from_epoch_us(r.publish_us)),
                run_id,
            ),
        )
        for r in late
    ]
    conflict_rows = [
        (
            rowkeys.conflict_key(run_id, c.transaction_id, c.copy.message_id),
            store.conflict_cells(c.transaction_id, c.counted, c.copy, run_id),
        )
        for c in conflicts
    ]
    failures += store.write_cell_rows(table, [*late_rows, *conflict_rows])
    if failures:
        raise RuntimeError(f"{len(failures)} rows failed to write, e.g. {failures[0].key!r}: {failures[0].message}")
    summary = {
        "rows_written": len(rows),
        "seeded": True,
        "late_rows": len(late_rows),
        "set_aside": 0,
        "conflicts": len(conflict_rows),
    }
    before = int((status or {}).get("conflicts_total") or 0)
    jobstate.finish_run(table, run, summary, datetime.now(UTC), conflicts_before=before)
    return len(rows)


# --- the load ---------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[int(rank) - 1]


def measure(
    base_url: str,
    path: str,
    params: dict[str, str],
    clients_count: int = 8,
    requests_per_client: int = 100,
    name: str = "",
    warmup: int = 5,
) -> LoadResult:
    """GET base_url + path with `clients_count` threads, each its own session, each sending `warmup`
    unmeasured requests, then (all together) `requests_per_client` requests back to back. Latency of
    every measured request; rate over the whole measured run."""
    url = base_url.rstrip("/") + path
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_gate = threading.Barrier(clients_count + 1)

    def client() -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        with requests.Session() as session:
            # Every client warms up, so every server worker and thread has served before the clock
            # starts: the figures are the steady state, not each worker's first connection.
            for _ in range(warmup):
                session.get(url, params=params, timeout=30)
            start_gate.wait()
            for _ in range(requests_per_client):
                began = time.perf_counter()
                try:
                    response = session.get(url, params=params, timeout=30)
                    ok = response.status_code == 200
                except requests.RequestException:
                    ok = False
                mine.append((time.perf_counter() - began) * 1000)
                bad += 0 if ok else 1
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients_count)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    latencies.sort()
    return LoadResult(
        name=name or path,
        requests=len(latencies),
        errors=errors,
        clients=clients_count,
        seconds=seconds,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
    )


def run(
    base_url: str, user_id: str, clients_count: int = 8, requests_per_client: int = 100, analytics: bool = True
) -> list[LoadResult]:
    """For one user: /sum over the last 30 days, /transactions over the last 6 hours and (unless
    analytics is False: a table without category and sketch rows) /percentiles (q=0.5,0.9,0.99) and
    /categories over the last 30 days, one after another."""
    now = datetime.now(UTC).replace(microsecond=0)
    base = f"/api/v1/users/{user_id}"
    month = now - timedelta(days=30)
    cases: list[tuple[str, str, datetime, dict[str, str]]] = [
        ("sum 30d", f"{base}/sum", month, {}),
        ("transactions 6h", f"{base}/transactions", now - timedelta(hours=6), {}),
    ]
    if analytics:
        cases += [
            ("percentiles 30d", f"{base}/percentiles", month, {"q": "0.5,0.9,0.99"}),
            ("categories 30d", f"{base}/categories", month, {}),
        ]
    results = []
    for name, path, start, extra in cases:
        params = {"from": format_rfc3339(start), "to": format_rfc3339(now), **extra}
        results.append(measure(base_url, path, params, clients_count, requests_per_client, name=name))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:5000", help="the running server")
    parser.add_argument("--user", default="u00001", help="the user whose ranges are read")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    parser.add_argument("--requests", type=int, default=200, help="requests per client and endpoint")
    parser.add_argument("--seed", action="store_true", help="seed the config's table with a synthetic ledger first")
    parser.add_argument("--config", default=None, help="config file naming the table to seed")
    parser.add_argument("--users", type=int, default=20, help="users to seed (u00000 ...)")
    parser.add_argument("--days", type=int, default=31, help="days of history to seed, ending now")
    parser.add_argument("--per-hour", type=float, default=2.0, help="transactions per user per hour to seed")
    args = parser.parse_args(argv)
    for flag in ("clients", "requests", "users", "days"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag} must be an integer >= 1", file=sys.stderr)
            return 2
    if args.seed:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        end = datetime.now(UTC)
        users = [f"u{i:05d}" for i in range(args.users)]
        ledger = synthetic_ledger(users, end - timedelta(days=args.days), end, args.per_hour)
        written = seed_table(clients.ensure_table(cfg), ledger, progress=True)
        print(f"seeded {written} transactions for {len(users)} users into table '{cfg.table_id}'")
    try:
        results = run(args.base_url, args.user, args.clients, args.requests, analytics=not args.seed)
    except requests.RequestException as exc:
        print(f"error: cannot reach {args.base_url}: {exc.__class__.__name__}", file=sys.stderr)
        return 1
    for result in results:
        print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
