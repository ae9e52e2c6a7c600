"""The freshness stage: seconds from a card swipe's publish until the API's /sum counts it.

For each setting the live pipeline runs as an operator would run it: `python -m jobs.spooler`,
`python -m jobs.aggregate` (`--stream` with one-second spool files, or today's scheduled `--every`
with the default ten-second files) and `./run_server.sh`, on the local emulators. This process
publishes load transactions at a steady rate (spread over LOAD_USERS card holders) and, every
PROBE_EVERY_S, one probe transaction for a card holder of its own. A poller asks
`GET /api/v1/users/<probe>/sum` for each probe until the answer counts it: the time from just before
its publish to that answer is the probe's freshness. The window starts once the pipeline has
settled under the load (a probe counted within a few seconds): the job's first runs over data pay
for the JVM's JIT and the Python workers' start, once per process. Each setting reports freshness p50/p95/p99 and
the rate sustained (transactions confirmed by Pub/Sub per second of the window); each probe's sum
must also equal its amount to the cent, or the setting fails.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from bench import procs
from bench.results import Result, compare
from bench.stages import ROOT, Bench, _free_port, _wait_ready, scratch
from common import clients, jobstate
from common.config import Config
from common.message import Transaction
from common.money import format_minor
from common.timeutil import format_rfc3339
from emitter.publish import TransactionPublisher

LOAD_USERS = 1000
PROBE_EVERY_S = 2.0
POLL_EVERY_S = 0.2
CATEGORIES = ("grocery", "fuel", "travel", "dining", "online")
TARGET_P99_S = 10.0


@dataclass(frozen=True)
class Setting:
    """One run of the live pipeline: the job's mode, the spool roll age and the load rate."""

    mode: str  # "stream" or "every 30s"
    rate: int  # load transactions per second
    roll_seconds: float

    @property
    def label(self) -> str:
        return f"{self.mode} at {self.rate:,}/s"

    def job_flags(self) -> list[str]:
        return ["--stream"] if self.mode == "stream" else ["--every", self.mode.split()[1]]


SETTINGS = (
    Setting("stream", 200, 1.0),
    Setting("stream", 1000, 1.0),
    Setting("stream", 3000, 1.0),
    Setting("every 30s", 1000, 10.0),
)


@dataclass
class Probe:
    user_id: str
    amount_minor: int
    sent_at: float  # time.monotonic() just before the publish
    seen_after: float | None = None
    wrong_sum: str | None = None


@dataclass
class Outcome:
    setting: Setting
    freshness: list[float]
    probes: int
    published: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    exact: bool = True  # every probe's sum and count equal what was sent

    def percentile(self, q: float) -> float:
        if len(self.freshness) < 2:
            return self.freshness[0] if self.freshness else float("nan")
        return statistics.quantiles(self.freshness, n=100, method="inclusive")[int(q) - 1]


def _transaction(user_id: str, amount_minor: int) -> Transaction:
    return Transaction(
        transaction_id=str(uuid.uuid4()),
        user_id=user_id,
        amount_minor=amount_minor,
        currency="USD",
        event_time=datetime.now(UTC),
        merchant_category=random.choice(CATEGORIES),
    )


class Poller:
    """Asks /sum for every probe not yet counted, every POLL_EVERY_S, until stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pending: list[Probe] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.session = requests.Session()
        self.thread = threading.Thread(target=self._loop, name="freshness-poller", daemon=True)
        self.thread.start()

    def add(self, probe: Probe) -> None:
        with self.lock:
            self.pending.append(probe)

    def outstanding(self) -> int:
        with self.lock:
            return len(self.pending)

    def _loop(self) -> None:
        while not self.stop.wait(POLL_EVERY_S):
            with self.lock:
                batch = list(self.pending)
            for probe in batch:
                if self._counted(probe):
                    probe.seen_after = time.monotonic() - probe.sent_at
                    with self.lock:
                        self.pending.remove(probe)

    def _counted(self, probe: Probe) -> bool:
        now = datetime.now(UTC)
        span = {"from": format_rfc3339(now - timedelta(hours=2)), "to": format_rfc3339(now + timedelta(hours=1))}
        try:
            answer = self.session.get(f"{self.base_url}/api/v1/users/{probe.user_id}/sum", params=span, timeout=5)
        except requests.RequestException:
            return False
        if answer.status_code != 200:
            return False
        body = answer.json()
        if not body.get("count"):
            return False
        expected = format_minor(probe.amount_minor, "USD")
        if body.get("count") != 1 or body.get("sum") != expected:
            probe.wrong_sum = f"{probe.user_id}: count {body.get('count')}, sum {body.get('sum')}, sent {expected}"
        return True


class Load:
    """Load transactions at a steady rate, and probes, through one publisher."""

    def __init__(self, cfg: Config, rate: int) -> None:
        self.publisher = TransactionPublisher(cfg)
        self.rate = rate

    def run(self, seconds: float, poller: Poller | None, until: threading.Event | None = None) -> list[Probe]:
        """Publish at `rate` for `seconds` (or until `until` is set), a probe every PROBE_EVERY_S
        handed to `poller`; returns the probes."""
        probes: list[Probe] = []
        tick, owed = 0.05, 0.0
        started = time.monotonic()
        next_probe = started
        while (now := time.monotonic()) - started < seconds and not (until and until.is_set()):
            if poller is not None and now >= next_probe:
                probe = Probe(f"probe-{uuid.uuid4().hex[:10]}", random.randint(100, 99_999), time.monotonic())
                self.publisher.publish(_transaction(probe.user_id, probe.amount_minor))
                poller.add(probe)
                probes.append(probe)
                next_probe += PROBE_EVERY_S
            owed += self.rate * tick
            while owed >= 1:
                user = f"load-{random.randrange(LOAD_USERS):04d}"
                self.publisher.publish(_transaction(user, random.randint(100, 9_999)))
                owed -= 1
            time.sleep(max(0.0, tick - (time.monotonic() - now)))
        return probes


def _warm_up_under_load(load: Load, poller: Poller, timeout: float = 120.0) -> bool:
    """Run the load until a probe is counted within twice the probe period of its publish: the
    job's first runs over data (JIT, the Python workers' start) are behind it, and the window then
    measures the pipeline as it runs, not as it starts. False when it did not settle in `timeout`
    (the rate is above what the pipeline keeps up with: the window then shows the growing lag)."""
    warm = threading.Event()
    deadline = time.monotonic() + timeout

    def watch() -> None:
        while not warm.is_set() and time.monotonic() < deadline:
            probe = Probe(f"warm-{uuid.uuid4().hex[:10]}", 100, time.monotonic())
            load.publisher.publish(_transaction(probe.user_id, probe.amount_minor))
            poller.add(probe)
            while probe.seen_after is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if probe.seen_after is not None and probe.seen_after < 2 * PROBE_EVERY_S + 5:
                warm.set()

    watcher = threading.Thread(target=watch, name="freshness-warm-up", daemon=True)
    watcher.start()
    load.run(timeout, None, until=warm)
    return warm.is_set()


def _drive(cfg: Config, setting: Setting, seconds: float, base_url: str) -> Outcome:
    """Warm up under load, publish the load and the probes for `seconds`, then wait (bounded) for
    the last probes."""
    load = Load(cfg, setting.rate)
    poller = Poller(base_url)
    try:
        settled = _warm_up_under_load(load, poller)
        published_before = load.publisher.counts().published
        started = time.monotonic()
        probes = load.run(seconds, poller)
        window = time.monotonic() - started
        counts = load.publisher.close()
        deadline = time.monotonic() + 120
        while poller.outstanding() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        poller.stop.set()
        poller.thread.join(timeout=10)
    problems = [p.wrong_sum for p in probes if p.wrong_sum]
    if not settled:
        problems.append("the pipeline did not keep up: no probe counted within 9 s in 120 s of warm-up")
    missing = [p.user_id for p in probes if p.seen_after is None]
    if missing:
        problems.append(f"{len(missing)} probes never counted within 120 s of the end")
    return Outcome(
        setting,
        [p.seen_after for p in probes if p.seen_after is not None],
        len(probes),
        counts.published - published_before,
        window,
        problems,
        exact=not any(p.wrong_sum for p in probes),
    )


def run_setting(bench: Bench, setting: Setting, seconds: float) -> Outcome:
    """The live pipeline in `setting` for `seconds`, measured; its processes stopped afterwards."""
    name = f"fresh-{setting.mode.split()[0]}-{setting.rate}"
    with scratch(bench, name) as base:
        cfg = replace(base, spool_roll_seconds=setting.roll_seconds)
        clients.ensure_subscription(cfg)
        clients.ensure_table(cfg)
        config_path = procs.write_config(cfg, bench.work / "configs" / f"{name}.json")
        port = _free_port()
        started = [
            procs.Started(
                procs.python_module("jobs.spooler", "--config", str(config_path)), bench.logs / f"{name}-spooler.log"
            ),
            procs.Started(
                procs.python_module("jobs.aggregate", "--config", str(config_path), *setting.job_flags()),
                bench.logs / f"{name}-job.log",
            ),
            procs.Started(
                [str(ROOT / "run_server.sh")],
                bench.logs / f"{name}-api.log",
                env={"PORT": str(port), "CONFIG": str(config_path)},
            ),
        ]
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_ready(f"{base_url}/health", started[2])
            _warm_up(cfg, started[1])
            return _drive(cfg, setting, seconds, base_url)
        finally:
            for process in started:
                process.terminate()
            for process in started:
                process.wait(60)


def _warm_up(cfg: Config, job: procs.Started, timeout: float = 180.0) -> None:
    """Wait until the job's first run (over an empty spool) has succeeded, so the window measures
    the live pipeline, not the JVM's start."""
    table = clients.bigtable_table(cfg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not job.running():
            raise RuntimeError(f"the job exited: {job.wait(0).tail()}")
        if (jobstate.read_job_status(table) or {}).get("last_success_at"):
            return
        time.sleep(1)
    raise RuntimeError(f"the job's first run did not finish within {timeout:g} s")


def freshness(bench: Bench) -> list[Result]:
    """Freshness (publish -> /sum counts it) p50/p95/p99 of --stream at 200, 1,000 and 3,000
    events/s beside the scheduled --every 30s mode at 1,000/s; chart in out/freshness.png."""
    say = bench.say
    seconds = bench.freshness_minutes * 60
    outcomes: list[Outcome] = []
    for setting in SETTINGS:
        say(f"    {setting.label}: {seconds:.0f} s of load, a probe every {PROBE_EVERY_S:g} s")
        outcome = run_setting(bench, setting, seconds)
        outcomes.append(outcome)
        say(
            f"    {setting.label}: p50 {outcome.percentile(50):.1f} s, p99 {outcome.percentile(99):.1f} s "
            f"over {len(outcome.freshness)} of {outcome.probes} probes; {outcome.published / outcome.seconds:,.0f}/s "
            "sustained" + (f"; PROBLEMS: {'; '.join(outcome.problems[:3])}" if outcome.problems else "")
        )
    chart(outcomes, bench.logs.parent / "freshness.png")
    every = next(o for o in outcomes if o.setting.mode != "stream")
    results = []
    for outcome in outcomes:
        label = outcome.setting.label
        exact = outcome.exact
        facts = [f"{len(outcome.freshness)} probes", *(["every probe exact"] if exact else []), *outcome.problems]
        note = "; ".join(facts)
        ceiling = every.percentile(99) if outcome is not every else None
        results += [
            compare(f"freshness {label} p50", outcome.percentile(50), "s", None, "-", None),
            compare(f"freshness {label} p95", outcome.percentile(95), "s", None, "-", None),
            compare(
                f"freshness {label} p99",
                outcome.percentile(99),
                "s",
                ceiling,
                f"<= {TARGET_P99_S:g} s" if outcome.setting.rate == 1000 else "-",
                (outcome.percentile(99) <= TARGET_P99_S and exact) if outcome.setting.rate == 1000 else None,
                note,
            ),
            compare(
                f"sustained {label}",
                outcome.published / outcome.seconds,
                "events/s",
                outcome.setting.rate,
                ">= 0.95 x offered",
                outcome.published / outcome.seconds >= 0.95 * outcome.setting.rate,
            ),
        ]
    return results


def chart(outcomes: list[Outcome], path: Path) -> None:
    """Freshness of each probe in time order, one line per setting, and the 10 s target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for outcome in outcomes:
        left.plot(range(len(outcome.freshness)), outcome.freshness, label=outcome.setting.label, lw=1)
        ordered = sorted(outcome.freshness)
        right.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=outcome.setting.label)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    left.axhline(TARGET_P99_S, color="red", ls="--", lw=1, label="target p99")
    left.set(xlabel="probe (one every 2 s)", ylabel="seconds from publish to /sum", title="Freshness over the run")
    right.axvline(TARGET_P99_S, color="red", ls="--", lw=1)
    right.set(xlabel="seconds from publish to /sum", ylabel="share of probes", title="Distribution")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
