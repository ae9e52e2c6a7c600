"""`python -m jobs.sql` as a process: a table on stdout, the whole result in CSV or Parquet, the SQL
from stdin, and bad SQL, a bad config value or a bad spool file as one `error:` line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import checkout_env
from support.ledger import duplicates_of, make_ledger, write_spool

from common import spool
from common.config import from_dict

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A config whose spool holds 30 transactions in USD and JPY, a third of them delivered twice."""
    cfg = from_dict({"spool_dir": str(tmp_path / "spool")})
    ledger = make_ledger("cli", 30, currencies=("USD", "JPY"))
    write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 1 / 3, seed=2, delay=timedelta(minutes=1))]), 2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"spool_dir": cfg.spool_dir}))
    return path


def txn_sql(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.sql", *args],
        cwd=ROOT,
        env=checkout_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_query_prints_a_table_counting_each_transaction_once(config_path: Path) -> None:
    result = txn_sql("--config", str(config_path), "SELECT count(*) AS n, sum(copies) AS c FROM transactions")
    assert result.returncode == 0, result.stderr
    cells = [line.replace("│", " ").split() for line in result.stdout.splitlines() if line.startswith("│")]
    assert cells == [["n", "c"], ["int64", "int128"], ["30", "40"]]
    assert result.stderr == ""


def test_csv_and_parquet_files_hold_the_whole_result(config_path: Path, tmp_path: Path) -> None:
    csv, parquet = tmp_path / "all.csv", tmp_path / "all.parquet"
    query = "SELECT transaction_id, currency, amount_minor, amount FROM transactions"
    for flag, path in (("--csv", csv), ("--parquet", parquet)):
        result = txn_sql("--config", str(config_path), "--max-rows", "2", flag, str(path), query)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == f"sql: wrote 30 rows to {path}" and result.stdout == ""
    from_csv = pd.read_csv(csv)
    from_parquet = pq.read_table(parquet).to_pandas()
    assert (
        sorted(from_csv["transaction_id"])
        == sorted(from_parquet["transaction_id"])
        == [f"cli-{i:06d}" for i in range(30)]
    )
    assert from_csv["amount_minor"].sum() == from_parquet["amount_minor"].sum()


def test_the_sql_can_come_from_stdin(config_path: Path) -> None:
    result = txn_sql("--config", str(config_path), "-", stdin="SELECT count(*) FROM spool_rows;\n")
    assert result.returncode == 0, result.stderr
    assert "│           40 │" in result.stdout


def test_bad_sql_is_one_line_and_exit_2(config_path: Path) -> None:
    line = one_error_line(txn_sql("--config", str(config_path), "SELECT * FROM transactons"))
    assert line.startswith("error: Catalog Error: Table with name transactons does not exist")


def test_a_bad_config_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"late_horizon_hours": 0}))
    line = one_error_line(txn_sql("--config", str(path), "SELECT 1"))
    assert "'late_horizon_hours'" in line


def test_a_spool_file_of_another_schema_is_one_line_and_exit_1(config_path: Path, tmp_path: Path) -> None:
    spool_dir = json.loads(config_path.read_text())["spool_dir"]
    odd = pa.table({"transaction_id": ["x"], "amount_minor": [1.5]})
    path = spool.write_atomic(odd, spool.new_file_path(spool_dir, spool.TRANSACTIONS))
    line = one_error_line(txn_sql("--config", str(config_path), "SELECT 1"), code=1)
    relative = path.relative_to(Path(spool_dir)).as_posix()
    assert line == f"error: spool column 'amount_minor' must be int64, got double in {relative}"
