"""Which spool files compaction merges, and in which groups (jobs/aggregate/compact.py), on files
in a temporary folder: no table, no Spark."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.aggregate import compact

V2 = pa.schema([("transaction_id", pa.string()), ("amount_minor", pa.int64())])
V1 = pa.schema([("transaction_id", pa.string()), ("amount_cents", pa.int64())])


def _file(root: Path, name: str, rows: int, schema: pa.Schema = V2, age: float = 0.0, now: float = 1e9) -> str:
    relative = f"transactions/dt=2026-12-07/{name}"
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [pa.array([f"id{i}" for i in range(rows)]), pa.array(list(range(rows)), pa.int64())]
    pq.write_table(pa.Table.from_arrays(columns, schema=schema), path)
    os.utime(path, (now - age, now - age))
    return relative


def test_only_old_files_never_merged_before_are_candidates(tmp_path: Path) -> None:
    old = _file(tmp_path, "part-1.parquet", 3, age=700)
    _file(tmp_path, "part-2.parquet", 3, age=10)
    merged = _file(tmp_path, f"part-0{compact.MERGED_MARK}ab12.parquet", 3, age=900)
    gone = "transactions/dt=2026-12-07/part-9.parquet"  # processed, deleted since
    found = compact.candidates(tmp_path, [old, "transactions/dt=2026-12-07/part-2.parquet", merged, gone], 600, 1e9)
    assert found == {"dt=2026-12-07": [old]}


def test_groups_split_on_the_row_cap_and_on_a_schema_change(tmp_path: Path) -> None:
    names = [
        _file(tmp_path, "part-1.parquet", 4),
        _file(tmp_path, "part-2.parquet", 4),
        _file(tmp_path, "part-3.parquet", 4),  # 12 > 10: a new group
        _file(tmp_path, "part-4.parquet", 2, schema=V1),  # another schema version: a new group
        _file(tmp_path, "part-5.parquet", 1, schema=V1),
    ]
    planned = compact.groups(tmp_path, names, max_rows=10)
    assert [[name.rsplit("/", 1)[1] for name, _ in group] for group in planned] == [
        ["part-1.parquet", "part-2.parquet"],
        ["part-3.parquet"],
        ["part-4.parquet", "part-5.parquet"],
    ]
    assert [sum(rows for _, rows in group) for group in planned] == [8, 4, 3]


def test_a_merged_name_sorts_beside_its_first_member_and_is_never_merged_again() -> None:
    first = "transactions/dt=2026-12-07/part-20261207T100000000000Z-h-1-ab-1.parquet"
    name = compact.merged_name(first)
    before = "transactions/dt=2026-12-07/part-20261207T095959999999Z-h-1-ab-9.parquet"
    after = "transactions/dt=2026-12-07/part-20261207T100000000001Z-h-1-ab-2.parquet"
    assert before < name < after and name.endswith(".parquet") and compact.MERGED_MARK in name
    assert name != compact.merged_name(first)
