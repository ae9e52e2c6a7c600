"""The product's commands as subprocesses of the benchmark: a scratch config file for them, peak
RSS and CPU-time samplers (the process and all its children, e.g. the Spark driver's JVM), and start/stop helpers
on common.procs' supervisor, which only ever signals the process groups it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from common.config import Config
from common.procs import Supervised, TimedOut

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def write_config(cfg: Config, path: Path) -> Path:
    """cfg as a JSON config file the product's commands accept (`--config path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg.to_dict(), indent=2))
    return path


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of `process` and all its descendants (0 once it has exited)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


class PeakRss:
    """Samples the RSS of a process tree every `interval` seconds in a thread until `stop()`;
    `peak` is the largest sum seen, in bytes."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.peak = 0
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self._process))
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class TreeCpu:
    """Samples the CPU seconds (user + system) of a process tree every `interval` seconds in a thread
    until `stop()`, which returns their sum over every process seen: a process's last sample counts
    once it has exited, so a child that lives less than `interval` may be missed (the JVM and Python
    workers of a Spark run live for the whole run)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._process = psutil.Process(pid)
        self._seen: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-cpu", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            members = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return
        for member in members:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                self._seen[(member.pid, member.create_time())] = times.user + times.system

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self._seen.values())


@dataclass(frozen=True)
class Finished:
    """A command the benchmark ran: exit code, wall seconds, peak RSS of its tree, its output."""

    returncode: int
    seconds: float
    peak_rss_bytes: int
    output: str
    cpu_seconds: float = 0.0  # user + system of the whole tree (TreeCpu)

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.output.strip().splitlines()[-lines:])


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]


class Started:
    """A command started in its own process group, output to a log file, its RSS sampled."""

    def __init__(self, cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.started = time.perf_counter()
        self.supervised = Supervised(cmd, log_path, env={**os.environ, **(env or {})}, cwd=ROOT)
        self.process = self.supervised.process
        self.rss = PeakRss(self.process.pid)
        self.cpu = TreeCpu(self.process.pid)

    def running(self) -> bool:
        return self.supervised.running()

    def terminate(self) -> None:
        """SIGTERM to the process group this object started (the commands flush and exit on it)."""
        if self.running():
            self.supervised.signal_group(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> Finished:
        """Wait for the exit (SIGKILL to its group after `timeout` seconds); return the outcome."""
        try:
            code = self.supervised.wait(timeout)
        except TimedOut as exc:
            code = exc.returncode
        seconds = time.perf_counter() - self.started
        peak = self.rss.stop()
        return Finished(code, seconds, peak, self.supervised.output(), self.cpu.stop())


def run(cmd: Sequence[str], log_path: Path, timeout: float = 3600.0, env: dict[str, str] | None = None) -> Finished:
    """Run a command to its end (RSS sampled); raise RuntimeError with its last lines if it fails."""
    done = Started(cmd, log_path, env).wait(timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited with {done.returncode}: {done.tail()}")
    return done
