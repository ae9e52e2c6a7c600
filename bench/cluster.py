"""The job on a standalone Spark cluster of 1 and then 2 one-core workers, on the same spool: does a
second worker buy speed? (issue 15, section 3)

`standalone_cluster` starts a master and N workers from the installed PySpark on 127.0.0.1 (the
e2e cluster test uses it too) and stops the process groups it started. The stage writes one spool,
runs `python -m jobs.aggregate --master spark://...` over it into a fresh table with one worker,
then with two, and reports both run times (the run's own seconds, Spark start-up excluded) and
their ratio. The job's per-phase lines (extract, transform, lookup, load) are read from its log, so
when the ratio falls short the note says which phases did not get faster: those are the serial ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from bench.results import Result, compare

if TYPE_CHECKING:
    from bench.stages import Bench

BIN = Path(sys.executable).parent
TARGET_RATIO = 0.7  # 2 workers take at most this share of 1 worker's time
WORKER_MEMORY = "2g"
EXECUTOR_MEMORY = "1500m"


def spark_env() -> dict[str, str]:
    """The launch scripts look for Spark with whatever `python3` is on PATH; point them at this one's."""
    import pyspark

    return {"SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _daemon(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **spark_env(), "SPARK_LOCAL_IP": "127.0.0.1"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "spark-class"), *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this module started (SIGKILL if it lingers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def alive_workers(ui_port: int) -> int:
    """Workers registered with the master whose web UI is on ui_port (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except OSError:
        return 0


@contextlib.contextmanager
def standalone_cluster(
    root: Path, workers: int = 1, cores: int = 1, memory: str = "1g", timeout: float = 120.0
) -> Iterator[str]:
    """A standalone master and `workers` workers (`cores` cores and `memory` each) on 127.0.0.1;
    yields the master URL once every worker has registered. Logs go to root/master.log and
    root/worker-<i>.log, each worker's executors' files under root/worker-<i>/."""
    root.mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    master_args = ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)]
    started = [_daemon(["org.apache.spark.deploy.master.Master", *master_args], root / "master.log")]
    url = f"spark://127.0.0.1:{port}"
    try:
        for index in range(workers):
            worker_args = ["--host", "127.0.0.1", "--cores", str(cores), "--memory", memory]
            worker_args += ["--port", str(free_port()), "--webui-port", str(free_port())]
            worker_args += ["--work-dir", str(root / f"worker-{index}")]
            started.append(
                _daemon(["org.apache.spark.deploy.worker.Worker", url, *worker_args], root / f"worker-{index}.log")
            )
        deadline = time.monotonic() + timeout
        while alive_workers(ui_port) < workers:
            for proc, log in zip(started, ["master", *(f"worker-{i}" for i in range(workers))], strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"spark {log} exited: {(root / f'{log}.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not register with the master within {timeout:g} s")
            time.sleep(0.5)
        yield url
    finally:
        for proc in reversed(started):
            _stop(proc)


# The job's per-phase lines (jobs/aggregate/job.py), each ending in its seconds.
PHASES = {
    "extract": re.compile(r"^extract: .*\(([\d.]+) s\)$"),
    "transform": re.compile(r"^transform: .*\(([\d.]+) s\)$"),
    "lookup": re.compile(r"^lookup: .*\(([\d.]+) s\)$"),
    "load rows": re.compile(r"^load: [\d,]+ dcflist rows in ([\d.]+) s"),
    "load counters": re.compile(r"^load: [\d,]+ dcfbhour.* in ([\d.]+) s$"),
}


def phase_seconds(output: str) -> dict[str, float]:
    """{phase: seconds} from a job run's output (the last line of each phase wins)."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        text = line.strip()
        for phase, pattern in PHASES.items():
            match = pattern.search(text)
            if match:
                found[phase] = float(match.group(1))
    return found


def serial_phases(one: dict[str, float], two: dict[str, float], share: float = TARGET_RATIO) -> list[str]:
    """The phases whose 2-worker time is above `share` of their 1-worker time, slowest first
    (phases taking under 0.5 s on one worker are left out as noise)."""
    slow = [p for p in one if p in two and one[p] >= 0.5 and two[p] > share * one[p]]
    return sorted(slow, key=lambda p: -two[p])


def _phases_text(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())


def stage(bench: Bench) -> list[Result]:
    """The job on a standalone cluster with 1 and then 2 one-core workers, same spool, a fresh table
    each: run seconds of each and their ratio (target <= 0.7), phase by phase."""
    from bench import procs, stages
    from bench.data import write_spool
    from common import clients

    rows, say = bench.sizes.cluster_rows, bench.say
    spool_cfg = bench.scratch_config("cluster")
    bench.cleanups.append(lambda: stages.drop(spool_cfg))
    files = stages.files_for(rows, spool_cfg)
    say(f"    writing {rows:,} rows into {files} spool files")
    write_spool(spool_cfg.spool_dir, rows, users=stages.HISTORY_USERS, hours=stages.HISTORY_HOURS, files=files, seed=3)
    timings: dict[int, tuple[float, float, dict[str, float]]] = {}
    for workers in (1, 2):
        # A fresh table each, over the shared spool (dropping the scratch config leaves that spool alone).
        with stages.scratch(bench, f"cluster-{workers}w") as scratch_cfg:
            cfg = replace(scratch_cfg, spool_dir=spool_cfg.spool_dir)
            clients.ensure_table(cfg)
            root = bench.work / f"cluster-{workers}w"
            with standalone_cluster(root, workers=workers, memory=WORKER_MEMORY) as url:
                say(f"    {workers} worker(s) at {url}: python -m jobs.aggregate over {rows:,} rows")
                path = procs.write_config(cfg, bench.work / "configs" / f"cluster-{workers}w.json")
                command = procs.python_module(
                    "jobs.aggregate",
                    "--config",
                    str(path),
                    "--master",
                    url,
                    "--conf",
                    f"spark.executor.memory={EXECUTOR_MEMORY}",
                )
                done = procs.run(command, bench.logs / f"cluster-{workers}w.log")
            summary = stages.read_summary(cfg, f"cluster-{workers}w", done)
            if summary["rows_written"] != rows:
                raise RuntimeError(f"{workers} workers wrote {summary['rows_written']:,} of {rows:,} rows")
            phases = phase_seconds(done.output)
            timings[workers] = (summary["seconds"], done.seconds, phases)
            say(
                f"    {workers} worker(s): run {summary['seconds']:.1f} s, process {done.seconds:.1f} s; "
                + _phases_text(phases)
            )
    (one, one_wall, one_phases), (two, two_wall, two_phases) = timings[1], timings[2]
    ratio = two / one
    serial = serial_phases(one_phases, two_phases)
    if ratio <= TARGET_RATIO:
        verdict = "the second worker pays"
    else:
        verdict = (
            f"short of {TARGET_RATIO}: phases that did not speed up: {', '.join(serial) or 'none singled out'}; "
            f"this machine has {os.cpu_count()} cores, shared by both workers, the driver and the Bigtable "
            "emulator, so a second worker core competes with the emulator that every write goes through"
        )
    shape = f"{rows:,} rows, {stages.HISTORY_USERS} users x {stages.HISTORY_HOURS} h, 1-core workers"
    return [
        compare(
            "cluster: 1 worker (ceiling)",
            one,
            "s",
            None,
            "-",
            None,
            f"{shape}; process {one_wall:.1f} s; phases: {_phases_text(one_phases)}",
        ),
        compare(
            "cluster: 2 workers",
            two,
            "s",
            one,
            f"<= {TARGET_RATIO} x 1 worker",
            ratio <= TARGET_RATIO,
            f"process {two_wall:.1f} s; phases: {_phases_text(two_phases)}; {verdict}",
        ),
    ]
