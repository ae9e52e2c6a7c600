"""The demo's start-up path, shortened: scripts/demo.py with a small population, its own run dir,
ids and port. While it runs, the dashboard serves its page and /health, and the API's sums equal
the ledger's (summed here with Decimal); Ctrl-C (SIGINT) then stops every process it started. A
second run over the same run dir starts from a clean slate and reconciles again."""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
import requests
from conftest import checkout_env, cleanup_resources, make_config

from common.config import Config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
START_UP_TIMEOUT_S = 420  # a cold Spark start on two busy cores is slow; the timeout only stops a hung run
STOP_TIMEOUT_S = 150


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DemoRun:
    """scripts/demo.py in a subprocess: its output collected line by line, and every process it
    starts (children and their children, such as gunicorn workers and the Spark JVM) recorded."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(DEMO), *args],
            cwd=ROOT,
            env=checkout_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self.names: set[str] = set()
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._read, daemon=True), threading.Thread(target=self._watch)]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.extend(part for part in line.rstrip("\n").split("\r") if part)

    def _watch(self) -> None:
        parent = psutil.Process(self.proc.pid)
        while not self._done.is_set():
            try:
                for child in parent.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.seen.setdefault((child.pid, child.create_time()), child)
                        self.names.add(child.name())
            except psutil.Error:
                pass
            time.sleep(0.2)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> str:
        """The first output line holding `text`; fails when the demo exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.5)  # let the reader take the last lines
                pytest.fail(f"the demo exited with {self.proc.returncode} before {text!r}:\n{self.output[-4000:]}")
            time.sleep(0.2)
        pytest.fail(f"no {text!r} from the demo within {timeout} s:\n{self.output[-4000:]}")

    def interrupt(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Ctrl-C: SIGINT to the demo; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self.finish()
        return code

    def finish(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.proc.stdout is not None and not self._threads[0].is_alive():
            self.proc.stdout.close()  # _read has seen its end

    def leftovers(self) -> list[psutil.Process]:
        """Processes the demo started that still run (zombies, already dead, do not count)."""
        alive = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                pass
        return alive

    def kill_everything(self) -> None:
        """After a failure: leave nothing behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.finish()
        for proc in self.leftovers():
            with contextlib.suppress(psutil.Error):
                proc.kill()


def ledger_sums(path: Path) -> tuple[dict[tuple[str, str], tuple[Decimal, int]], datetime, datetime]:
    """Per user and currency (sum, count) of the ledger CSV, and its first and last event time."""
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    times = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["user_id"], row["currency"])
            sums[key] += Decimal(row["amount"])
            counts[key] += 1
            times.append(datetime.fromisoformat(row["event_time"].replace("Z", "+00:00")))
    return {key: (sums[key], counts[key]) for key in sums}, min(times), max(times)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_live_pipeline(demo: DemoRun, port: int, run_dir: Path, cfg: Config) -> None:
    """The dashboard page, /health, and the API's sums against the ledger."""
    base = f"http://127.0.0.1:{port}"
    page = requests.get(f"{base}/", timeout=10)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"] and "<html" in page.text.lower()

    health = requests.get(f"{base}/health", timeout=10)
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok"
    assert body["bigtable"]["table"] == cfg.table_id and body["pubsub"]["topic"] == cfg.topic_id
    assert body["last_job_run"]["last_run"] == 1  # the step-5 run, on a table the demo emptied first

    expected, first, last = ledger_sums(run_dir / "ledger.csv")
    users = {user for user, _ in expected}
    assert 1 <= len(users) <= 5
    # The live emitter's transactions come later than the history's last one, so they fall outside.
    window = {"from": _iso(first), "to": _iso(last + timedelta(microseconds=1))}
    for (user, currency), (total, count) in expected.items():
        answer = requests.get(
            f"{base}/api/v1/users/{user}/sum", params={**window, "currency": currency}, timeout=10
        ).json()
        assert (answer["currency"], Decimal(answer["sum"]), answer["count"]) == (currency, total, count), user
    listed = requests.get(f"{base}/api/v1/users", params={"limit": 10}, timeout=10).json()["users"]
    assert set(listed) == users


@pytest.fixture
def demo_setup(emulators: dict[str, str], tmp_path: Path) -> Iterator[tuple[list[str], Path, Config]]:
    """The demo's flags (its own base config, run dir and port) and the ids it will use; the topic,
    subscription and table are removed afterwards."""
    cfg = make_config(tmp_path)
    base = tmp_path / "base.json"
    base.write_text(json.dumps(cfg.to_dict()))
    run_dir = tmp_path / "demo"
    port = _free_port()
    args = ["--config", str(base), "--run-dir", str(run_dir), "--port", str(port), "--users", "5", "--hours", "3"]
    yield args, run_dir, cfg
    cleanup_resources(cfg)


def test_demo_serves_the_live_pipeline_and_ctrl_c_stops_every_process(
    demo_setup: tuple[list[str], Path, Config],
) -> None:
    args, run_dir, cfg = demo_setup
    port = int(args[args.index("--port") + 1])

    # First run, in the live mode: the --stream job starts at once, so stopping has to stop it too,
    # and the banner gains the freshness measured on /health.
    demo = DemoRun([*args, "--stop-after", "600"])
    try:
        demo.wait_for("Dashboard: ", START_UP_TIMEOUT_S)
        for number in range(1, 7):
            assert f"==> [{number}/6]" in demo.output
        check_live_pipeline(demo, port, run_dir, cfg)
        demo.wait_for("aggregation job started (live: --stream", 60)
        demo.wait_for("Freshness: the newest counted transaction was published", 120)
        code = demo.interrupt()
    finally:
        demo.kill_everything()
    assert code == 0, demo.output[-4000:]
    assert "java" in demo.names  # the Spark JVM of step 5 was watched
    assert demo.leftovers() == []
    for name in ("dashboard", "spooler", "live emitter"):
        assert f"    stopped {name}" in demo.lines, demo.output[-3000:]
    # The job is stopped, or killed when a run (or Spark's start-up) outlasts the grace period.
    assert any(line.startswith(("    stopped aggregation job", "    killed aggregation job")) for line in demo.lines)
    assert "every process the demo started has stopped" in demo.output
    # The emulators were up before the demo (this test's fixture): they stay up.
    assert "the emulators were running before the demo: they keep running" in demo.output
    assert subprocess.run([str(ROOT / "scripts" / "emulators.sh"), "status"], capture_output=True).returncode == 0

    # Second run in the same run dir: a clean slate (run 1 again, and the new ledger reconciles).
    again = DemoRun([*args, "--every", "10m", "--stop-after", "600"])
    try:
        again.wait_for("Dashboard: ", START_UP_TIMEOUT_S)
        check_live_pipeline(again, port, run_dir, cfg)
        code = again.interrupt()
    finally:
        again.kill_everything()
    assert code == 0, again.output[-4000:]
    assert again.leftovers() == []


def test_demo_refuses_a_bad_flag_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--users", "0", "--run-dir", str(tmp_path)],
        cwd=ROOT,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--users" in result.stderr and "integer >= 1" in result.stderr


def test_demo_refuses_a_port_already_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(DEMO), "--port", str(port), "--run-dir", str(tmp_path)],
            cwd=ROOT,
            env=checkout_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"--port {port}" in result.stderr and result.stderr.strip().count("\n") == 0
