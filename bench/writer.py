"""The Bigtable writer choice: the same job-shaped rows written four ways, in alternating rounds.

    (a) store.write_cell_rows   what the job uses: MutateRows requests built as protobufs, sent
                                through the public generated client (common/bigtable_private.py)
    (b) the public data API     google.cloud.bigtable.data: Table.bulk_mutate_rows over
                                RowMutationEntry / SetCell, per-row failures from MutationsExceptionGroup
    (b') its MutationsBatcher   the same entries through the data API's own batcher
    (c) DirectRow + mutate_rows the legacy client's public bulk write (store.write_rows)

Each writer writes `rows` rows (2 transaction rows, 2 id index rows, 1 counter row in every 5, the
cells the job writes) into a fresh table of its own, building the mutations inside the timed
section, as the job does. The machine is shared and noisy, so every round runs all writers one
after the other (rotating who goes first) and the figure is the median, over the rounds, of each
round's ratio to (a).

  python -m bench --stages writer [--quick]
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from google.cloud.bigtable.data import (
    BigtableDataClient,
    MutationsExceptionGroup,
    RowMutationEntry,
    SetCell,
)

from common import clients, rowkeys, store
from common.config import Config

SERVER_TIME = -1  # SetCell's "the server assigns the timestamp", as DirectRow.set_cell and the store send
Rows = Sequence[tuple[bytes, Sequence[store.Cell]]]


def job_shaped_rows(rows: int, run_id: int = 7) -> list[tuple[bytes, list[store.Cell]]]:
    """`rows` rows with the job's cells: in every 5, two transaction rows (5 cells), two id index
    rows (7 cells) and one user-hour counter row (sum, count, run marker)."""
    base_us = 1_763_697_600_000_000
    out: list[tuple[bytes, list[store.Cell]]] = []
    for i in range(rows):
        user, event_us, tid = f"u{i % 1000:05d}", base_us + i * 1000, f"bench-{i:09d}"
        version = store.Version(user, 2000 + i % 8000, "USD", event_us, event_us + 5, f"m{i}")
        kind = i % 5
        if kind < 2:
            key = rowkeys.transaction_key(user, event_us, tid)
            cells = store.transaction_cells(version.amount_minor, "USD", "grocery", "2025-11-21T04:00:00.001Z", run_id)
        elif kind < 4:
            key, cells = rowkeys.id_index_key(tid), store.id_index_cells(version, run_id)
        else:
            key = rowkeys.hour_bucket_key(user, base_us // 1_000_000 + 3600 * (i // 5000))
            counters = store.counter_cells("USD", 100 * i, i % 50 + 1)
            cells = [(store.HOUR, q, str(v).encode()) for q, v in counters.items()]
            cells.append((store.META, store.RUN, str(run_id).encode()))
        out.append((key, cells))
    return out


def _entries(rows: Rows) -> list[RowMutationEntry]:
    return [
        RowMutationEntry(key, [SetCell(family, qualifier, value, SERVER_TIME) for family, qualifier, value in cells])
        for key, cells in rows
    ]


def bulk_mutate_rows_writer(table: Any, rows: Rows, timeout: float = store.WRITE_TIMEOUT) -> list[store.RowFailure]:
    """(b) The public data API: one bulk_mutate_rows per store.WRITE_CHUNK rows; the rows a
    MutationsExceptionGroup names are the failures (server-time cells are not retried by the
    library: the store's own retry loop would wrap this)."""
    failures: list[store.RowFailure] = []
    for start in range(0, len(rows), store.WRITE_CHUNK):
        chunk = rows[start : start + store.WRITE_CHUNK]
        try:
            table.bulk_mutate_rows(_entries(chunk), operation_timeout=timeout, attempt_timeout=timeout)
        except MutationsExceptionGroup as group:
            for failed in group.exceptions:
                index = getattr(failed, "index", None)
                if index is not None:
                    failures.append(store.RowFailure(chunk[index][0], str(failed.__cause__ or failed)))
    return failures


def batcher_writer(table: Any, rows: Rows, timeout: float = store.WRITE_TIMEOUT) -> list[store.RowFailure]:
    """(b') The public data API's MutationsBatcher, flushing every store.WRITE_CHUNK rows' worth of cells."""
    cells = sum(len(c) for _, c in rows[: store.WRITE_CHUNK])
    try:
        with table.mutations_batcher(
            flush_interval=None,
            flush_limit_mutation_count=max(cells, 1),
            batch_operation_timeout=timeout,
            batch_attempt_timeout=timeout,
        ) as batcher:
            for entry in _entries(rows):
                batcher.append(entry)
    except MutationsExceptionGroup as group:
        return [store.RowFailure(failed.entry.row_key, str(failed.__cause__ or failed)) for failed in group.exceptions]
    return []


def direct_row_writer(table: Any, rows: Rows) -> list[store.RowFailure]:
    """(c) The legacy client's public bulk write: DirectRow objects through table.mutate_rows."""
    return store.write_rows(table, store.direct_rows(table, rows))


WRITERS = (
    "write_cell_rows (protobuf)",
    "data API bulk_mutate_rows",
    "data API MutationsBatcher",
    "DirectRow mutate_rows",
)
CANDIDATES = frozenset(WRITERS[1:3])  # the public data API, which would replace write_cell_rows within 20 %


@contextlib.contextmanager
def _fresh_table(cfg: Config) -> Iterator[Config]:
    scratch = replace(cfg, table_id=f"bench-writer-{uuid.uuid4().hex[:10]}")
    clients.ensure_table(scratch)
    try:
        yield scratch
    finally:
        with contextlib.suppress(Exception):
            clients.bigtable_client(scratch, admin=True).instance(scratch.instance_id).table(scratch.table_id).delete()


def _timed_write(cfg: Config, name: str, rows: Rows, data_client: BigtableDataClient) -> float:
    """Rows/s of one writer over `rows` into a fresh table; raises when any row failed."""
    with _fresh_table(cfg) as scratch:
        legacy = clients.bigtable_table(scratch)
        data = data_client.get_table(scratch.instance_id, scratch.table_id)
        writers: dict[str, Callable[[Rows], list[store.RowFailure]]] = {
            WRITERS[0]: lambda some: store.write_cell_rows(legacy, some),
            WRITERS[1]: lambda some: bulk_mutate_rows_writer(data, some),
            WRITERS[2]: lambda some: batcher_writer(data, some),
            WRITERS[3]: lambda some: direct_row_writer(legacy, some),
        }
        # One row first, untimed: the channel's connection is made outside the measurement.
        writers[name](rows[:1])
        started = time.perf_counter()
        failures = writers[name](rows)
        elapsed = time.perf_counter() - started
        data.close()
    if failures:
        raise RuntimeError(f"{name}: {len(failures)} of {len(rows)} rows failed, e.g. {failures[0]}")
    return len(rows) / elapsed


def compare_writers(cfg: Config, rows: int, rounds: int, say: Callable[[str], None]) -> dict[str, list[float]]:
    """{writer: [rows/s in each round]} for every writer in WRITERS, over `rounds` rounds, the
    order rotating each round."""
    clients.apply_emulator_env(cfg)
    sample = job_shaped_rows(rows)
    rates: dict[str, list[float]] = {name: [] for name in WRITERS}
    data_client = BigtableDataClient(project=cfg.project_id)
    try:
        for round_ in range(rounds):
            order = WRITERS[round_ % len(WRITERS) :] + WRITERS[: round_ % len(WRITERS)]
            for name in order:
                rates[name].append(_timed_write(cfg, name, sample, data_client))
            say(f"    round {round_ + 1}: " + ", ".join(f"{name} {rates[name][-1]:,.0f}" for name in WRITERS))
    finally:
        data_client.close()
    return rates


def median_ratio(rates: dict[str, list[float]], name: str, baseline: str = WRITERS[0]) -> float:
    """The median over the rounds of rates[name][i] / rates[baseline][i]."""
    return statistics.median(a / b for a, b in zip(rates[name], rates[baseline], strict=True))
