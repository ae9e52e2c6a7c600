"""Shared fixtures: the real emulators (started once per run when not already up), a fresh config
with its own topic, subscription, table and spool per test, and one local SparkSession."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import jvm
from support.scale import DEFAULT, HEAVY, Scale
from support.tally import TALLY

from common.config import Config, from_dict

ROOT = Path(__file__).resolve().parent.parent
EMULATORS = ROOT / "scripts" / "emulators.sh"
ARTIFACTS = ROOT / "tests" / "artifacts"

warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")

# Every Spark driver the tests start runs with the options of support/jvm.py.
os.environ.setdefault("SPARK_SUBMIT_OPTS", jvm.FLAGS)


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment for a command that does not start in this checkout's root with `python -m`
    (scripts/demo.py run as a file, the notebook's kernel, spark-submit): the checkout first on
    PYTHONPATH, so the code under test runs whether the interpreter has the project installed, has
    another checkout installed, or neither."""
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH", "")) if part)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _emulators_up() -> bool:
    return subprocess.run([str(EMULATORS), "status"], capture_output=True).returncode == 0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--heavy", action="store_true", help="reliability suite (tests/e2e/reliability): more seeds, data, faults, fuzz"
    )


TIERS = ("unit", "integration", "e2e")
SERVICE_FIXTURES = {"emulators", "cfg", "spark"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its tier (the folder under tests/ it lives in); a unit test that asks
    for a service is refused by name."""
    for item in items:
        tier = item.path.relative_to(ROOT / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/integration or tests/e2e")
        item.add_marker(getattr(pytest.mark, tier))
        services = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if tier == "unit" and services:
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but uses {sorted(services)}: it belongs in tests/integration"
            )


@pytest.fixture(scope="session")
def spark_classes() -> None:
    """The class-data archive of support/jvm.py, written once per machine, for every Spark driver
    this test process starts from now on."""
    jvm.use_archive(ROOT)


@pytest.fixture(scope="session")
def emulators(spark_classes: None) -> Iterator[dict[str, str]]:
    """The Pub/Sub, Bigtable and Cloud Storage emulators, answering on their default ports. Started when not up
    (one test process at a time checks and starts them), and stopped at the end only by a run in a
    single process: with pytest-xdist, another worker may still be using them."""
    started = False
    with open(Path(tempfile.gettempdir()) / "txn-pipeline-emulators.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _emulators_up():
            subprocess.run([str(EMULATORS), "start"], check=True, capture_output=True)
            started = "PYTEST_XDIST_WORKER" not in os.environ
    hosts = {
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
        "BIGTABLE_EMULATOR_HOST": "127.0.0.1:8086",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023",
    }
    saved = {k: os.environ.get(k) for k in hosts}
    os.environ.update(hosts)
    yield hosts
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if started:
        subprocess.run([str(EMULATORS), "stop"], capture_output=True)


def make_config(tmp_path: Path, **overrides: object) -> Config:
    """A validated config whose topic, subscription, table and spool are this test's own."""
    tag = uuid.uuid4().hex[:10]
    data: dict[str, object] = {
        "project_id": "test-project",
        "topic_id": f"t-{tag}",
        "subscription_id": f"s-{tag}",
        "table_id": f"tbl-{tag}",
        "spool_dir": str(tmp_path / "spool"),
        "pubsub_emulator_host": "127.0.0.1:8085",
        "bigtable_emulator_host": "127.0.0.1:8086",
    }
    data.update(overrides)
    return from_dict(data)


@pytest.fixture
def cfg(emulators: dict[str, str], tmp_path: Path) -> Iterator[Config]:
    """A config with its own topic, subscription, table and spool; removed after the test."""
    config = make_config(tmp_path)
    yield config
    cleanup_resources(config)


def cleanup_resources(config: Config) -> None:
    from google.api_core import exceptions as gexc

    from common import clients

    try:
        sub = clients.subscriber_client(config)
        sub.delete_subscription(subscription=clients.subscription_path(config), timeout=5)
        sub.close()
    except gexc.GoogleAPICallError:
        pass
    try:
        pub = clients.publisher_client(config)
        pub.delete_topic(topic=clients.topic_path(config), timeout=5)
    except gexc.GoogleAPICallError:
        pass
    with contextlib.suppress(gexc.GoogleAPICallError):
        clients.bigtable_client(config, admin=True).instance(config.instance_id).table(config.table_id).delete()


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    """DEFAULT, or HEAVY when pytest runs with --heavy."""
    return HEAVY if request.config.getoption("--heavy", default=False) else DEFAULT


@pytest.fixture(scope="session")
def spark(spark_classes: None):  # type: ignore[no-untyped-def]
    """One local SparkSession for the whole run: two cores, two shuffle partitions, no UI."""
    from jobs.aggregate.session import get_spark

    session = get_spark(master="local[2]", app_name="tests", shuffle_partitions=2)
    yield session
    session.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand this worker's counts to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["tally"] = TALLY.counters()


def pytest_testnodedown(node: Any, error: object) -> None:
    """In the pytest-xdist controller: add up what each worker counted."""
    TALLY.add(node.workeroutput.get("tally", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.empty():
        return
    terminalreporter.section("reliability counts")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
    path = ARTIFACTS / "reliability-counts.json"
    TALLY.write(path)
    terminalreporter.write_line(f"(also in {path.relative_to(ARTIFACTS.parents[1])})")
