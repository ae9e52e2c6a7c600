"""The aggregation job on a real standalone Spark cluster, unchanged: a master and a one-core worker
from the installed PySpark on 127.0.0.1, the job run with --master spark://..., and the same
Bigtable contents as a local-mode run of the same spool (started through spark-submit)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from conftest import checkout_env, cleanup_resources, make_config
from support.ledger import assert_contents, duplicates_of, expected_contents, make_ledger, read_contents, write_spool

from bench.cluster import spark_env, standalone_cluster
from common import clients, store
from common.config import Config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    """A standalone master and one worker (1 core, 1 GB; bench.cluster starts them); yields the master URL."""
    with standalone_cluster(tmp_path, workers=1) as url:
        yield url


@pytest.fixture
def local_cfg(cfg: Config, tmp_path: Path) -> Iterator[Config]:
    """The same spool as `cfg`, into a table of its own."""
    config = make_config(tmp_path, spool_dir=cfg.spool_dir)
    yield config
    cleanup_resources(config)


def config_file(cfg: Config, path: Path) -> Path:
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def test_a_standalone_cluster_run_writes_what_a_local_run_writes(
    cluster: str, cfg: Config, local_cfg: Config, tmp_path: Path
) -> None:
    ledger = make_ledger("cluster", 400, hours=4)
    write_spool(cfg, pd.concat([ledger, duplicates_of(ledger, 0.1, seed=6, delay=timedelta(minutes=5))]), files=2)

    on_cluster = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.aggregate",
            "--config",
            str(config_file(cfg, tmp_path / "cluster.json")),
            "--master",
            cluster,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert on_cluster.returncode == 0, on_cluster.stderr[-3000:]
    assert "run 1: 2 files, 440 rows, 40 duplicates dropped" in on_cluster.stderr
    assert list((tmp_path / "worker-0").glob("app-*/0")), "no executor ran on the worker"

    local = subprocess.run(
        [
            str(BIN / "spark-submit"),
            "--master",
            "local[1]",
            "jobs/aggregate/__main__.py",
            "--config",
            str(config_file(local_cfg, tmp_path / "local.json")),
        ],
        cwd=ROOT,
        env=checkout_env(**spark_env()),  # the driver runs the file, not `python -m` from the root
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    # spark-submit runs the driver's Python with its stderr merged into the JVM's stdout.
    assert "run 1: 2 files, 440 rows, 40 duplicates dropped" in local.stdout + local.stderr

    cluster_table, local_table = clients.bigtable_table(cfg), clients.bigtable_table(local_cfg)
    assert store.dump_table(cluster_table) == store.dump_table(local_table)
    assert_contents(read_contents(cluster_table), expected_contents(ledger, cfg.late_horizon_hours))
