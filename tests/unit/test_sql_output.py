"""txn-sql's main in this process: the result printed as a table, written whole to CSV or Parquet
(read back here with pandas and pyarrow), and bad SQL or a bad flag as one `error:` line, exit 2.
The command as a process is tested in tests/integration/test_sql_command.py."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.ledger import duplicates_of, make_ledger, write_spool

from common.cli import run
from common.config import from_dict
from jobs.sql.__main__ import main


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    cfg = from_dict({"spool_dir": str(tmp_path / "spool")})
    ledger = make_ledger("out", 40, currencies=("USD", "JPY"))
    write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 0.5, seed=3, delay=pd.Timedelta(minutes=1))]), 2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"spool_dir": cfg.spool_dir}))
    return path


def _exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        run(main, argv)
    return int(stopped.value.code or 0)


def test_the_result_is_printed_as_a_table(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT currency, count(*) AS n FROM transactions GROUP BY ALL ORDER BY currency"
    assert _exit(["--config", str(config_path), query]) == 0
    out = capsys.readouterr().out
    lines = [line.strip("│ ") for line in out.splitlines() if line.startswith("│")]
    assert [" ".join(line.replace("│", " ").split()) for line in lines] == [
        "currency n",
        "varchar int64",
        "JPY 20",
        "USD 20",
    ]


def test_csv_and_parquet_hold_the_whole_result(config_path: Path, tmp_path: Path) -> None:
    query = "SELECT transaction_id, amount_minor, currency, amount, copies FROM transactions"
    csv, parquet = tmp_path / "out.csv", tmp_path / "out.parquet"
    assert _exit(["--config", str(config_path), "--max-rows", "1", "--csv", str(csv), query]) == 0
    assert _exit(["--config", str(config_path), "--parquet", str(parquet), query]) == 0
    from_csv = pd.read_csv(csv, dtype={"amount": str})
    from_parquet = pq.read_table(parquet).to_pandas()
    assert len(from_csv) == len(from_parquet) == 40
    assert set(from_csv["transaction_id"]) == set(from_parquet["transaction_id"]) == {f"out-{i:06d}" for i in range(40)}
    for frame in (from_csv, from_parquet):
        for minor, currency, amount in zip(frame["amount_minor"], frame["currency"], frame["amount"], strict=True):
            assert Decimal(amount) == Decimal(int(minor)).scaleb(-2 if currency == "USD" else 0)
    assert int(from_parquet["copies"].sum()) == 60
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_bad_sql_is_the_engines_one_line_error(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit(["--config", str(config_path), "SELEC 1"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ['error: Parser Error: syntax error at or near "SELEC"']
    assert _exit(["--config", str(config_path), "SELECT nope FROM transactions"]) == 2
    assert capsys.readouterr().err.startswith('error: Binder Error: Referenced column "nope" not found')
    assert _exit(["--config", str(config_path), "SELECT 'x'::INTEGER FROM transactions"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: Conversion Error: Could not convert string 'x' to INT32"]


def test_bad_output_flags_are_one_line_errors(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no" / "such" / "out.csv"
    assert _exit(["--config", str(config_path), "--csv", str(missing), "SELECT 1"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: --csv: the folder {str(missing.parent)!r} does not exist"]
    assert _exit(["--config", str(config_path), "--csv", "a.csv", "--parquet", "b.parquet", "SELECT 1"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert _exit(["--config", str(config_path), "  "]) == 2
    assert capsys.readouterr().err.startswith("error: the SQL is empty")
