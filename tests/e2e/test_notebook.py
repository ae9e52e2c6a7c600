"""notebooks/main.ipynb runs top to bottom with small parameters (papermill, on a kernel that runs
this interpreter), its reconciliation says every user is equal to the cent, and the ledger it
wrote, summed here with DuckDB, equals what Bigtable holds; its SQL section (txn-sql over the spool)
agrees with the ledger and with Bigtable. The committed notebook has no outputs."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import nbformat
import papermill
import pytest
from conftest import checkout_env, cleanup_resources
from ipykernel.kernelspec import install as install_kernel_spec

from common import clients, rowkeys, store
from common.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "main.ipynb"
KERNEL = "txn-pipeline-test"
PARAMETERS = {"users": 6, "hours": 4, "seed": 7, "mean_spending_period_seconds": 900.0, "cleanup": False}


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec whose command is this interpreter (the .venv's), found before any other, and
    that imports this checkout's packages (the notebook itself relies on the installed project)."""
    prefix = tmp_path / "jupyter"
    install_kernel_spec(kernel_name=KERNEL, prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", checkout_env()["PYTHONPATH"])
    return KERNEL


@pytest.fixture
def run_dir(emulators: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    """The notebook's run dir; its topic, subscription and table are removed afterwards."""
    path = tmp_path / "run"
    yield path
    if (path / "config.json").exists():
        cleanup_resources(load_config(path / "config.json"))


def _outputs(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output.data["text/plain"])
    return "".join(parts)


def _tagged(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    return next(cell for cell in notebook.cells if tag in cell.metadata.get("tags", []))


def _ledger_by_user(ledger: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(sum in cents, count) per user and currency, computed by DuckDB from the CSV with exact
    decimals (the notebook's default config spends in USD only)."""
    rows = duckdb.execute(
        f"""
        SELECT user_id, currency, CAST(SUM(CAST(amount AS DECIMAL(18, 2)) * 100) AS BIGINT), COUNT(*)
        FROM read_csv('{ledger}', header = true, all_varchar = true)
        GROUP BY user_id, currency
        """
    ).fetchall()
    return {(user, currency): (int(cents), int(count)) for user, currency, cents, count in rows}


def _bigtable_by_user(cfg: Config) -> dict[tuple[str, str], tuple[int, int]]:
    """(sum in minor units, count) per user and currency from the hourly buckets the job wrote."""
    table = clients.bigtable_table(cfg)
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for key, cells in store.read_counter_rows(table, store.HOUR, b"", b"~"):
        user, _ = rowkeys.parse_hour_bucket_key(key)
        for currency, (total, count) in store.per_currency(cells).items():
            before = totals.get((user, currency), (0, 0))
            totals[(user, currency)] = (before[0] + total, before[1] + count)
    return totals


def test_notebook_runs_top_to_bottom_and_reconciles_to_the_cent(kernel: str, run_dir: Path, tmp_path: Path) -> None:
    executed = tmp_path / "main.out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        parameters={**PARAMETERS, "run_dir": str(run_dir)},
        kernel_name=kernel,
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        execution_timeout=600,
    )  # raises PapermillExecutionError when a cell fails, the notebook's own assertions included

    notebook = nbformat.read(executed, as_version=4)
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert errors == []
    assert f"kernel python {sys.executable}" in "".join(_outputs(c) for c in notebook.cells if c.cell_type == "code")

    cfg = load_config(run_dir / "config.json")
    assert cfg.users == PARAMETERS["users"] and cfg.seed == PARAMETERS["seed"]
    expected = _ledger_by_user(run_dir / "ledger.csv")
    assert expected and sum(count for _, count in expected.values()) > 20
    reconciliation = _outputs(_tagged(notebook, "reconciliation"))
    assert f"reconciliation: {len(expected)} of {len(expected)} users equal to the cent" in reconciliation
    assert f"API /sum: {len(expected)} of {len(expected)} users equal to the ledger" in _outputs(
        _tagged(notebook, "api")
    )
    assert _bigtable_by_user(cfg) == expected
    # The SQL section: txn-sql over the spool agrees with the ledger per user, with Bigtable per category.
    sql = _outputs(_tagged(notebook, "sql"))
    assert "merchant_category" in sql and "decimal(38,4)" in sql  # the command's table of top categories
    categories = re.search(r"(\d+) of (\d+) categories equal to Bigtable", sql)
    assert f"SQL over the spool: {len(expected)} of {len(expected)} users equal to the ledger" in sql
    assert categories and categories[1] == categories[2] and int(categories[1]) > 0
    # The API's categories agree with txn-sql to the cent, and its percentiles with the ledger.
    analytics = re.search(
        r"(\d+) categories agree with txn-sql to the cent; (\d+) percentiles within their rank bound",
        _outputs(_tagged(notebook, "analytics")),
    )
    assert analytics and int(analytics[1]) > 0 and int(analytics[2]) == 8
    # The figures were drawn: inter-arrival times, amounts, hourly totals, categories and percentiles.
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 4


def test_notebook_is_committed_without_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    parameters = [cell for cell in code if "parameters" in cell["metadata"].get("tags", [])]
    assert len(parameters) == 1 and code.index(parameters[0]) == 0
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))
