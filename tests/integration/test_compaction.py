"""Compaction of small processed spool files (jobs/aggregate/compact.py) on the emulator and Spark:
fewer files, the same numbers after a later run and after --rebuild, and a merged file that was
never marked processed (a crash between writing and marking it) counted nothing twice."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from support.ledger import assert_contents, expected_contents, make_ledger, read_contents, write_spool

from common import clients, jobstate, spool
from common.config import Config
from jobs.aggregate import compact, job


def _run(spark, cfg: Config, rebuild: bool = False) -> job.RunSummary:  # type: ignore[no-untyped-def]
    return job.run_once(spark, cfg, rebuild=rebuild, say=lambda line: None)


def _age(paths: list[Path], seconds: float) -> None:
    old = time.time() - seconds
    for path in paths:
        os.utime(path, (old, old))


def _spool_files(cfg: Config) -> list[str]:
    return spool.list_spool(cfg.spool_dir, spool.TRANSACTIONS)[0]


def test_small_processed_files_are_merged_and_every_number_stays_exact(spark, cfg: Config) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(cfg, compact_after_seconds=300, compact_min_files=5, spool_roll_messages=120)
    first = make_ledger("small", 300, hours=3)
    small = write_spool(cfg, first, files=12)
    _run(spark, cfg)
    _age(small, 600)
    fresh = write_spool(cfg, make_ledger("fresh", 20, hours=1, seed=3), files=1)  # not processed: stays
    table = clients.ensure_table(cfg)

    done = compact.compact(cfg, table, say=lambda line: None)

    files = _spool_files(cfg)
    merged = [f for f in files if compact.MERGED_MARK in f]
    assert done.members == 12 and done.rows == 300 and len(merged) == done.merged_files == 3  # 120-row cap
    assert not any(Path(p).exists() for p in small) and all(Path(p).exists() for p in fresh)
    assert sum(pq.read_metadata(spool.local_path(cfg.spool_dir) / f).num_rows for f in merged) == 300
    assert jobstate.processed_among(table, files) == set(merged)  # the members' rows are forgotten
    assert compact.compact(cfg, table, say=lambda line: None).members == 0  # merged files stay as they are

    second = _run(spark, cfg)  # the fresh file, and nothing of the merged ones again
    assert second.files == 1 and second.rows == 20
    both = pd.concat([first, make_ledger("fresh", 20, hours=1, seed=3)])
    assert_contents(read_contents(table), expected_contents(both, cfg.late_horizon_hours))
    _run(spark, cfg, rebuild=True)
    assert_contents(read_contents(clients.bigtable_table(cfg)), expected_contents(both, cfg.late_horizon_hours))


def test_a_merged_file_left_unmarked_by_a_crash_counts_nothing_twice(spark, cfg: Config) -> None:  # type: ignore[no-untyped-def]
    ledger = make_ledger("crash", 200, hours=2)
    small = write_spool(cfg, ledger, files=4)
    _run(spark, cfg)
    # What compaction leaves when it dies after writing the merged file, before marking it processed.
    merged = pa.concat_tables([pq.read_table(p) for p in small])
    root = spool.local_path(cfg.spool_dir)
    relative = compact.merged_name(str(small[0].relative_to(root)))
    spool.write_atomic(merged, root / relative)

    again = _run(spark, cfg)
    assert again.files == 1 and again.already_counted == 200
    assert_contents(read_contents(clients.bigtable_table(cfg)), expected_contents(ledger, cfg.late_horizon_hours))
