"""The soak stage: the live pipeline for a long while, through a long Pub/Sub outage and a long
Bigtable outage, with every process's memory sampled each minute.

    python -m bench --stages soak                                   30 min, two 10-min outages
    python -m bench --stages soak --soak-minutes 6 --soak-outage-minutes 2

A live emitter (with its ledger), the spooler, an `--every` job and the dashboard's server
(run_server.sh) run against the emulators through outage proxies (bench/proxy.py) while a
few clients keep asking the API. After the first sixth of the run (5 of 30 minutes) Pub/Sub is
refused for the outage's length; a little later Bigtable is. At the end the emitter is stopped,
the spooler and the job catch up, and the ledger, the spool, Bigtable (every user-hour bucket) and
the API (each user's sum over the whole run) are reconciled. Targets: nothing lost, nothing counted
twice, every process alive at the end, and each process's RSS at the end within 10 % of its value
after the first sixth. The RSS samples go to soak-rss.json and a chart to soak-rss.png beside the
results.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from bench import procs
from bench.pipeline import ledger_buckets, read_all_buckets
from bench.proxy import OutageProxy
from bench.results import Result, compare
from bench.stages import ROOT, Bench, _free_port, _wait_ready, scratch
from common import clients, jobstate, spool
from common.config import Config
from common.money import format_minor
from common.timeutil import HOUR_S

SOAK_USERS = 100
SOAK_SPEEDUP = 600  # 100 users at a 30-min mean period, 600 x: about 33 transactions/s
JOB_EVERY = "20s"
RSS_TOLERANCE = 0.10


@dataclass
class Timeline:
    """When each thing happens, in seconds from the start."""

    total: float
    outage: float
    baseline: float = field(init=False)  # the RSS reference (5 min of 30)
    pubsub: tuple[float, float] = field(init=False)
    bigtable: tuple[float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.baseline = self.total / 6
        self.pubsub = (self.baseline, self.baseline + self.outage)
        start = self.pubsub[1] + self.total / 30
        self.bigtable = (start, start + self.outage)
        if self.bigtable[1] > self.total * 14 / 15:
            raise ValueError(
                f"two {self.outage / 60:g}-min outages do not fit in a {self.total / 60:g}-min soak "
                "(they need about 75 % of it)"
            )


@dataclass
class Rss:
    """One RSS point per process each `interval` seconds: the peak RSS of its process tree (MB)
    over that interval, read every few seconds. A peak per minute rather than one reading: the job's
    tree grows by its Python workers while a run is going, and a single reading would land in or
    between runs by chance."""

    interval: float
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _peaks: dict[str, float] = field(default_factory=dict)

    def read(self, processes: dict[str, procs.Started]) -> None:
        """One reading of every process, kept towards the current interval's peak."""
        for name, started in processes.items():
            value = procs.tree_rss(psutil.Process(started.process.pid)) / procs.MB if started.running() else 0.0
            self._peaks[name] = max(self._peaks.get(name, 0.0), value)

    def sample(self, elapsed: float, processes: dict[str, procs.Started]) -> None:
        """Close the current interval at `elapsed`: its peak becomes the point."""
        self.read(processes)
        for name, peak in self._peaks.items():
            self.series.setdefault(name, []).append((round(elapsed, 1), round(peak, 1)))
        self._peaks = {}

    def at(self, name: str, elapsed: float) -> float:
        """The sample nearest to `elapsed`."""
        return min(self.series[name], key=lambda point: abs(point[0] - elapsed))[1]


class ApiLoad:
    """A steady load on the API from `clients` threads until stopped: each user's sum over the
    last hours, and /health, each client about 5 requests a second. Counts answers by status."""

    def __init__(self, base_url: str, users: list[str], clients_count: int = 2) -> None:
        self.base_url, self.users = base_url, users
        self.statuses: dict[int, int] = {}
        self.failures = 0  # no answer at all
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients_count)]
        for thread in self._threads:
            thread.start()

    def _loop(self, seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while not self._stop.wait(0.2):
            user = rng.choice(self.users)
            path = f"/api/v1/users/{user}/sum?from=-6h" if rng.random() < 0.8 else "/health"
            url = self.base_url + path
            try:
                status = session.get(url, timeout=10).status_code
            except requests.RequestException:
                with self._lock:
                    self.failures += 1
                continue
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _spooled_ids(cfg: Config) -> set[str]:
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for path in spool.list_files(cfg.spool_dir, spool.TRANSACTIONS):
        ids.update(pq.read_table(path, columns=["transaction_id"]).column(0).to_pylist())
    return ids


def _ledger_ids(path: Path) -> set[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return {row["transaction_id"] for row in csv.DictReader(handle)}


def _wait_until(condition: Callable[[], bool], what: str, timeout: float, watch: list[procs.Started]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for started in watch:
            if not started.running():
                raise RuntimeError(f"{what}: a process exited first: {started.wait(0).tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(2)


def chart(rss: Rss, timeline: Timeline, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for (start, end), label, color in (
        (timeline.pubsub, "Pub/Sub outage", "#ffcc80"),
        (timeline.bigtable, "Bigtable outage", "#90caf9"),
    ):
        ax.axvspan(start / 60, end / 60, color=color, alpha=0.5, label=label)
    ax.axvline(timeline.baseline / 60, color="#555", lw=0.8, ls="--", label="RSS reference")
    for name, points in rss.series.items():
        ax.plot([t / 60 for t, _ in points], [mb for _, mb in points], marker="o", ms=3, label=name)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS of the process tree, MB")
    ax.set_title(f"soak: {timeline.total / 60:g} min, two {timeline.outage / 60:g}-min outages")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak(bench: Bench) -> list[Result]:
    """the live pipeline through a Pub/Sub and a Bigtable outage: nothing lost, RSS flat"""
    say = bench.say
    timeline = Timeline(bench.soak_minutes * 60, bench.soak_outage_minutes * 60)
    cap = max(5.0, min(60.0, timeline.outage / 10))
    with scratch(
        bench,
        "soak",
        spool_roll_seconds=5.0,
        outage_backoff_max_seconds=cap,
        outage_report_seconds=60.0,
    ) as cfg:
        config_path = procs.write_config(cfg, bench.work / "configs" / "soak.json")
        clients.ensure_subscription(cfg)
        table = clients.ensure_table(cfg)
        pubsub_target = int((cfg.pubsub_emulator_host or "127.0.0.1:8085").rsplit(":", 1)[1])
        bigtable_target = int((cfg.bigtable_emulator_host or "127.0.0.1:8086").rsplit(":", 1)[1])
        pubsub, bigtable = OutageProxy(pubsub_target), OutageProxy(bigtable_target)
        env = {"PUBSUB_EMULATOR_HOST": pubsub.address, "BIGTABLE_EMULATOR_HOST": bigtable.address}
        ledger = bench.work / "soak-ledger.csv"
        logs = bench.logs
        port = _free_port()
        arg = ["--config", str(config_path)]
        (p0, p1), (b0, b1) = timeline.pubsub, timeline.bigtable
        say(
            f"    {timeline.total / 60:g} min: Pub/Sub out {p0 / 60:g}-{p1 / 60:g} min, "
            f"Bigtable out {b0 / 60:g}-{b1 / 60:g} min; backoff cap {cap:g} s"
        )
        running = {
            "emitter": procs.Started(
                procs.python_module(
                    "emitter",
                    *arg,
                    "--live",
                    "--speedup",
                    str(SOAK_SPEEDUP),
                    "--users",
                    str(SOAK_USERS),
                    "--ledger",
                    str(ledger),
                    "--quiet",
                ),
                logs / "soak-emitter.log",
                env,
            ),
            "spooler": procs.Started(
                procs.python_module("jobs.spooler", *arg, "--quiet"), logs / "soak-spooler.log", env
            ),
            "job": procs.Started(
                procs.python_module("jobs.aggregate", *arg, "--every", JOB_EVERY, "--master", "local[1]"),
                logs / "soak-job.log",
                env,
            ),
            "server": procs.Started(
                [str(ROOT / "run_server.sh")],
                logs / "soak-server.log",
                {**env, "PORT": str(port), "CONFIG": str(config_path)},
            ),
        }
        base_url = f"http://127.0.0.1:{port}"
        rss = Rss(interval=60.0)
        load: ApiLoad | None = None
        results: list[Result] = []
        try:
            _wait_ready(f"{base_url}/health", running["server"], timeout=180)
            load = ApiLoad(base_url, [f"u{i:04d}" for i in range(1, SOAK_USERS + 1)])
            started = time.monotonic()
            events = [
                (timeline.pubsub[0], pubsub.refuse, "Pub/Sub refused"),
                (timeline.pubsub[1], pubsub.restore, "Pub/Sub restored"),
                (timeline.bigtable[0], bigtable.refuse, "Bigtable refused"),
                (timeline.bigtable[1], bigtable.restore, "Bigtable restored"),
            ]
            rss.sample(0.0, running)
            next_sample = rss.interval
            while (elapsed := time.monotonic() - started) < timeline.total:
                while events and elapsed >= events[0][0]:
                    _at, action, what = events.pop(0)
                    action()
                    say(f"    {elapsed / 60:5.1f} min: {what}")
                if int(elapsed) % 5 == 0:
                    rss.read(running)
                if elapsed >= next_sample:
                    rss.sample(elapsed, running)
                    latest = ", ".join(f"{n} {p[-1][1]:,.0f}" for n, p in rss.series.items())
                    say(f"    {elapsed / 60:5.1f} min: RSS MB {latest}")
                    next_sample += rss.interval
                dead = [name for name, started_ in running.items() if not started_.running()]
                if dead:
                    raise RuntimeError(f"{', '.join(dead)} exited during the soak: {running[dead[0]].wait(0).tail()}")
                time.sleep(1.0)
            rss.sample(time.monotonic() - started, running)
            alive = sum(1 for started_ in running.values() if started_.running())
            load.stop()

            # Wind down: the emitter stops, the spooler and the job catch up.
            running["emitter"].process.send_signal(signal.SIGINT)
            emitted = running["emitter"].wait(120)
            if emitted.returncode != 0:
                raise RuntimeError(f"the emitter failed: {emitted.tail()}")
            wanted = _ledger_ids(ledger)
            say(f"    emitter stopped: {len(wanted):,} confirmed transactions; waiting for spool and job")
            watch = [running["spooler"], running["job"]]
            _wait_until(lambda: _spooled_ids(cfg) >= wanted, "the spool to hold every transaction", 900, watch)
            _wait_until(
                lambda: (
                    (s := jobstate.read_job_status(table)) is not None
                    and not s.get("pending")
                    and jobstate.spool_backlog(cfg, table) == 0
                ),
                "the job to count every spool file",
                900,
                watch,
            )
            spooled = _spooled_ids(cfg)
            now_hour = int(time.time()) // HOUR_S * HOUR_S
            expected = ledger_buckets(ledger)
            first_hour = min(hour for _, hour, _ in expected)
            found = read_all_buckets(cfg, first_hour, now_hour + HOUR_S)
            wrong = sum(1 for key, value in expected.items() if found.get(key) != value)
            extra = len(set(found) - set(expected))
            api_wrong = _check_api(base_url, expected, first_hour, now_hour + HOUR_S, say)
        finally:
            if load is not None:
                load.stop()
            finished = {}
            for name, started_ in running.items():  # stopped before their routes are cut
                if name == "job" and started_.running():
                    # To the driver only: it stops its Spark session itself (a signal to the whole
                    # group would kill the JVM under it first).
                    started_.process.send_signal(signal.SIGTERM)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        started_.process.wait(300)
                started_.terminate()
                finished[name] = started_.wait(120)
            pubsub.close()
            bigtable.close()

        lost = len(wanted - spooled)
        counted = sum(count for _, count in expected.values())
        doubled = sum(max(0, found.get(key, (0, 0))[1] - value[1]) for key, value in expected.items())
        (logs.parent / "soak-rss.json").write_text(
            json.dumps({"timeline": timeline.__dict__, "rss_mb": rss.series}, indent=2) + "\n"
        )
        chart(rss, timeline, logs.parent / "soak-rss.png")
        statuses = dict(sorted(load.statuses.items())) if load else {}
        say(f"    API answers by status during the soak: {statuses}, {load.failures if load else 0} without answer")
        note = (
            f"{len(wanted):,} transactions, {len(expected):,} user-hours, {counted:,} counted; "
            f"{wrong} buckets wrong, {extra} extra, {api_wrong} API sums wrong; API answers {statuses}"
        )
        results += [
            compare(
                "soak: transactions lost",
                lost + wrong + api_wrong,
                "count",
                None,
                "0",
                lost + wrong + api_wrong == 0,
                note,
            ),
            compare("soak: transactions counted twice", doubled + extra, "count", None, "0", doubled + extra == 0),
            compare(
                "soak: processes alive at the end",
                alive,
                "of 4",
                None,
                "4",
                alive == len(running),
                ", ".join(f"{n} exit {f.returncode}" for n, f in finished.items()),
            ),
        ]
        for name in running:
            reference, end = rss.at(name, timeline.baseline), rss.series[name][-1][1]
            growth = end / reference if reference else float("inf")
            results.append(
                compare(
                    f"soak: {name} RSS end / at {timeline.baseline / 60:g} min",
                    growth,
                    "x",
                    None,
                    f"<= {1 + RSS_TOLERANCE:.2f}",
                    growth <= 1 + RSS_TOLERANCE,
                    f"{reference:,.0f} MB -> {end:,.0f} MB",
                )
            )
        return results


def _check_api(
    base_url: str,
    expected: dict[tuple[str, int, str], tuple[int, int]],
    start_s: int,
    end_s: int,
    say: Callable[[str], None] = print,
) -> int:
    """Each user's count (and, for a user spending in one currency, sum) over the whole run through
    /api/v1/users/<id>/sum against the ledger's; returns how many users differ, and says which."""
    per_user: dict[str, list[int]] = {}
    currencies: dict[str, set[str]] = {}
    for (user, _, currency), (total, count) in expected.items():
        sums = per_user.setdefault(user, [0, 0])
        sums[0] += total
        sums[1] += count
        currencies.setdefault(user, set()).add(currency)
    wrong = 0
    session = requests.Session()
    for user, (total, count) in per_user.items():
        body = session.get(
            f"{base_url}/api/v1/users/{user}/sum", params={"from": str(start_s), "to": str(end_s)}, timeout=30
        ).json()
        one = next(iter(currencies[user])) if len(currencies[user]) == 1 else None
        if body.get("count") != count or (one is not None and body.get("sum") != format_minor(total, one)):
            wrong += 1
            say(f"    API /sum of {user} differs: {body} against the ledger's count {count}, total {total}")
    return wrong
