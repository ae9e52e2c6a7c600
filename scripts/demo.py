"""The live demo: the whole pipeline on the local emulators, with the dashboard on :5000.

    .venv/bin/python scripts/demo.py [--users 100] [--hours 48] [--seed 42] [--port 5000]
                                     [--every DURATION] [--speedup 60] [--stop-after SECONDS]
                                     [--run-dir run/demo] [--config PATH]

Steps: start the emulators; reset the demo's own spool, table and subscription; simulate the last
--hours for --users card holders (with a ledger of every published transaction); spool them; run
the Spark job; then keep the pipeline alive (a live emitter, the spooler rolling a file every
second, the job in its live mode `--stream`, or a run every --every DURATION when given) and serve
the dashboard until Ctrl-C (or --stop-after), which stops every process this script started, the
emulators it started included (emulators that were running before it keep running). Once the live
job has run a while, the banner gains the measured freshness: how long ago the newest counted
transaction was published (from /health). Running it again starts over from a clean slate.

The base config (--config, default config.json, else config.sample.json) names the topic,
subscription and table; the demo writes its own copy to <run-dir>/config.json with the spool
moved to <run-dir>/spool. Logs of the background processes go to <run-dir>/logs/.
Exit codes: 0 stopped cleanly, 1 a step failed, 2 a bad flag or config value, 3 the emulators
could not be reached, 130 interrupted before the dashboard was up.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import FrameType

from common import clients
from common.cli import (
    ArgumentParser,
    UsageError,
    add_config_argument,
    non_negative_int,
    positive_int,
    run,
)
from common.config import Config, load_config
from common.procs import Supervised, TimedOut
from common.timeutil import TimeFormatError, format_rfc3339, parse_duration, utcnow

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DEFAULT_RUN_DIR = ROOT / "run" / "demo"
STEPS = 6
# A background process gets this long to stop after SIGTERM. The job finishes a run in progress
# first, which can take longer; it is then killed, which is safe (an interrupted run is resumed, and
# the next demo starts from an empty table anyway).
STOP_GRACE_SECONDS = 20.0
LIVE_ROLL_SECONDS = 1.0  # the live mode's spool roll age: a file a second for the --stream job
FRESHNESS_AFTER_SECONDS = 20.0  # the live job's first runs over data pay for Spark's warm-up
GROUP_GRACE_SECONDS = 10.0  # helpers (a Spark JVM, a producer process) leave soon after their parent
HEALTH_WAIT_SECONDS = 90.0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class StepFailed(RuntimeError):
    """A pipeline command of the demo exited with an error."""


def step(number: int, text: str) -> None:
    print(f"\n==> [{number}/{STEPS}] {text}", flush=True)


def say(text: str) -> None:
    print(f"    {text}", flush=True)


class Children:
    """Every process the demo starts. Each runs in its own session (common.procs), so a signal
    reaches exactly the process it is meant for (a program stops its own helpers, such as the Spark
    JVM or the emitter's producer, in order), and at the end each whole group can be checked and
    cleared."""

    def __init__(self) -> None:
        self.foreground: Supervised | None = None
        self.background: list[tuple[str, Supervised]] = []
        self.stopping = False
        self.forced = False

    def run(self, cmd: list[str], env: dict[str, str]) -> None:
        """Run a pipeline command in the foreground, its progress shown as it goes; raise StepFailed
        when it fails."""
        if self.stopping:
            raise KeyboardInterrupt
        proc = Supervised(cmd, env=env, cwd=ROOT)
        self.foreground = proc
        try:
            code = proc.wait()
        finally:
            self.foreground = None
            proc.ensure_stopped(GROUP_GRACE_SECONDS)
        if self.stopping:
            raise KeyboardInterrupt
        if code != 0:
            raise StepFailed(f"`{' '.join(_short(cmd))}` failed with exit code {code}")

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        """Start a background process, its output appended to `log`."""
        self.background.append((name, Supervised(cmd, log, env=env, cwd=ROOT, append=True)))

    def exited(self) -> list[tuple[str, int]]:
        """(name, exit code) of background processes that have exited."""
        return [(name, code) for name, proc in self.background if (code := proc.returncode) is not None]

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First Ctrl-C: stop everything cleanly. Second: kill what is left."""
        if self.stopping:
            self.forced = True
            for proc in self._all():
                proc.signal_group(signal.SIGKILL)
            return
        self.stopping = True
        if self.foreground is not None:
            self.foreground.signal(signal.SIGTERM)

    def stop_all(self) -> None:
        """SIGTERM to each background process (not its helpers, which it stops itself), wait for it,
        then make sure nothing of its process group is left."""
        self.stopping = True
        helpers = {name: proc.helper_groups() for name, proc in self.background}
        for _, proc in self.background:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, proc in self.background:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                outcome = f"killed {name} (second Ctrl-C)" if self.forced else f"stopped {name}"
            except TimedOut:
                outcome = f"killed {name} (still busy {STOP_GRACE_SECONDS:.0f} s after SIGTERM)"
            left = proc.ensure_stopped(GROUP_GRACE_SECONDS, helpers[name])
            say(outcome + (f"; killed {left} leftover helper processes" if left else ""))

    def _all(self) -> list[Supervised]:
        procs = [proc for _, proc in self.background]
        return procs + ([self.foreground] if self.foreground is not None else [])


def _short(cmd: list[str]) -> list[str]:
    return ["python" if part == PY else part for part in cmd]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: connections of a server that just stopped (TIME_WAIT) do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_health(url: str, seconds: float, children: Children) -> bool:
    """Poll `url` until it answers 200; False after `seconds`, or when a background process exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not children.stopping and not children.exited():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


# Card holders spend in several currencies, so the dashboard shows each one they used; a base
# config with a currency_mix of its own keeps it.
DEMO_MIX = {"USD": 0.8, "EUR": 0.15, "JPY": 0.05}
DEMO_AMOUNTS = {"EUR": ["15.00", "90.00"], "JPY": ["500", "15000"]}


def demo_config(base: Config, run_dir: Path, users: int, seed: int | None) -> dict[str, object]:
    """The base config with the demo's spool, population size, seed and currency mix, on the local
    emulators."""
    mix = {"currency_mix": DEMO_MIX, "currency_amounts": DEMO_AMOUNTS} if not base.currency_mix else {}
    return (
        base.to_dict()
        | mix
        | {
            "spool_dir": str(run_dir / "spool"),
            "users": users,
            "seed": base.seed if seed is None else seed,
            "pubsub_emulator_host": base.pubsub_emulator_host or "127.0.0.1:8085",
            "bigtable_emulator_host": base.bigtable_emulator_host or "127.0.0.1:8086",
        }
    )


def reset_services(cfg: Config, run_dir: Path) -> None:
    """Empty the spool, drop the subscription's backlog and empty the table, so a run of the demo
    never sees data of an earlier one."""
    from google.api_core import exceptions as gexc

    shutil.rmtree(run_dir / "spool", ignore_errors=True)
    (run_dir / "ledger.csv").unlink(missing_ok=True)
    clients.ensure_topic(cfg)
    subscriber = clients.subscriber_client(cfg)
    try:
        with contextlib.suppress(gexc.NotFound):
            subscriber.delete_subscription(subscription=clients.subscription_path(cfg), timeout=10)
    finally:
        subscriber.close()
    clients.ensure_subscription(cfg)
    table = clients.ensure_table(cfg)
    table.truncate(timeout=60)
    say(f"spool emptied; topic {cfg.topic_id}, subscription {cfg.subscription_id} and table {cfg.table_id} ready")


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):  # type: ignore[no-untyped-def]
    """Hold <run-dir>/.demo.lock for the demo's lifetime: two demos in one run dir would reset each
    other's data."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".demo.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another demo is running with --run-dir {run_dir}; stop it (Ctrl-C) or pass another --run-dir"
            ) from None
        yield


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _duration(text: str) -> str:
    try:
        seconds = parse_duration(text).total_seconds()
    except TimeFormatError:
        raise ValueError(text) from None
    if seconds <= 0:
        raise ValueError(text)
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds >= 0"
_positive_float.__name__ = "number > 0"
_duration.__name__ = "duration such as 30s, 5m or 1h"
_port.__name__ = "port number 1..65535"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="scripts/demo.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_config_argument(parser)
    parser.add_argument(
        "--users", metavar="N", type=positive_int, default=100, help="card holders to simulate (default 100)"
    )
    parser.add_argument(
        "--hours", metavar="H", type=positive_int, default=48, help="hours of history to simulate (default 48)"
    )
    parser.add_argument(
        "--seed", metavar="S", type=non_negative_int, help="random seed of the history (default: the config's)"
    )
    parser.add_argument(
        "--port",
        metavar="PORT",
        type=_port,
        default=None,
        help="dashboard port on 127.0.0.1 (default $PORT, else 5000)",
    )
    parser.add_argument(
        "--every",
        metavar="DURATION",
        type=_duration,
        default=None,
        help="run the job on this schedule while live (e.g. 30s) instead of its live mode (--stream)",
    )
    parser.add_argument(
        "--speedup", metavar="X", type=_positive_float, default=60.0, help="live emitter speed-up (default 60)"
    )
    parser.add_argument(
        "--stop-after",
        metavar="SECONDS",
        type=_seconds,
        default=0,
        help="stop after this many seconds live (default 0: until Ctrl-C)",
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        default=str(DEFAULT_RUN_DIR),
        help="config, ledger, spool and logs of the demo (default run/demo)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = build_parser().parse_args(argv)
    port = args.port
    if port is None:
        try:
            port = _port(os.environ.get("PORT") or "5000")
        except ValueError:
            raise UsageError(f"PORT must be a port number 1..65535, got {os.environ['PORT']!r}") from None
    if not port_is_free(port):
        raise UsageError(f"--port {port}: something already listens on 127.0.0.1:{port}; pass another --port")
    run_dir = Path(args.run_dir).resolve()
    base = load_config(args.config)
    with run_dir_lock(run_dir):
        return _run(args, base, run_dir, port, started)


def _run(args: argparse.Namespace, base: Config, run_dir: Path, port: int, started: float) -> int:
    opts = vars(args)
    config_path = run_dir / "config.json"
    settings = demo_config(base, run_dir, opts["users"], opts["seed"])
    if opts["every"] is None:
        settings["spool_roll_seconds"] = LIVE_ROLL_SECONDS
    cfg = load_config(_write_json(config_path, settings))
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ledger = run_dir / "ledger.csv"
    # HOST pinned: the dashboard is for this machine (a shell that exports HOST must not move it).
    env = dict(os.environ, PYTHONUNBUFFERED="1", CONFIG=str(config_path), PORT=str(port), HOST="127.0.0.1")
    env.setdefault("PUBSUB_EMULATOR_HOST", cfg.pubsub_emulator_host)
    env.setdefault("BIGTABLE_EMULATOR_HOST", cfg.bigtable_emulator_host)
    cfg_args = ["--config", str(config_path)]
    children = Children()
    # SIGHUP too: the children run in their own sessions, so a closed terminal reaches only the demo.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, children.on_signal)
    url = f"http://127.0.0.1:{port}/"
    # Its own state folder: `emulators.sh stop` then stops only the emulators this demo started.
    emulator_env = dict(
        env,
        PUBSUB_PORT=cfg.pubsub_emulator_host.rsplit(":", 1)[1],
        BIGTABLE_PORT=cfg.bigtable_emulator_host.rsplit(":", 1)[1],
        EMULATOR_STATE_DIR=str(run_dir / "emulators"),
    )
    emulators_started = False
    try:
        step(1, "starting the Pub/Sub and Bigtable emulators")
        children.run([str(ROOT / "scripts" / "emulators.sh"), "start"], emulator_env)
        emulators_started = any((run_dir / "emulators").glob("*.pid"))

        step(2, f"resetting the demo's spool ({run_dir / 'spool'}), table and subscription")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "Connecting to Bigtable emulator"
            reset_services(cfg, run_dir)

        end = utcnow()
        start = end - timedelta(hours=opts["hours"])
        step(3, f"simulating {cfg.users} card holders over the last {opts['hours']} h (seed {cfg.seed})")
        window = ["--start", format_rfc3339(start), "--end", format_rfc3339(end)]
        children.run([PY, "-m", "emitter", *cfg_args, *window, "--ledger", str(ledger)], env)

        step(4, "spooling the stream to Parquet")
        children.run([PY, "-m", "jobs.spooler", *cfg_args, "--until-idle", "3"], env)

        step(5, "aggregating with Spark into Bigtable")
        children.run([PY, "-m", "jobs.aggregate", *cfg_args], env)
        job_done = time.monotonic()

        step(6, "keeping the pipeline alive and serving the dashboard")
        children.start("dashboard", [str(ROOT / "run_server.sh")], env, logs / "server.log")
        children.start("spooler", [PY, "-m", "jobs.spooler", *cfg_args, "--quiet"], env, logs / "spooler.log")
        # Another seed than the history's: the same seed would replay the history's transaction ids.
        live = [PY, "-m", "emitter", *cfg_args, "--live", "--speedup", str(opts["speedup"]), "--quiet"]
        children.start("live emitter", [*live, "--seed", str(cfg.seed + 1)], env, logs / "emitter.log")
        if not wait_for_health(url + "health", HEALTH_WAIT_SECONDS, children):
            if children.stopping:
                raise KeyboardInterrupt
            print(f"error: the dashboard did not answer on {url}health; see {logs}", file=sys.stderr)
            return EXIT_FAILED
        live_at = time.monotonic()
        print(
            f"\n    Dashboard: {url}  (live {live_at - started:.0f} s after start)\n"
            f"    History: {format_rfc3339(start)} .. {format_rfc3339(end)}, ledger {ledger}\n"
            f"    Logs: {logs}\n    Press Ctrl-C to stop.",
            flush=True,
        )
        # Scheduled: the job's first live run comes one period after step 5's, so it does not compete
        # with the dashboard's start-up for the CPU. Live mode: at once.
        if opts["every"]:
            mode = f"a run every {opts['every']}"
            live_job = [PY, "-m", "jobs.aggregate", *cfg_args, "--every", opts["every"]]
            job_at: float | None = job_done + parse_duration(opts["every"]).total_seconds()
        else:
            mode = f"live: --stream, spool files rolled every {LIVE_ROLL_SECONDS:g} s"
            live_job = [PY, "-m", "jobs.aggregate", *cfg_args, "--stream"]
            job_at = time.monotonic()
        freshness_at: float | None = None
        while not children.stopping:
            time.sleep(0.5)
            now = time.monotonic()
            if opts["stop_after"] and now - live_at >= opts["stop_after"]:
                break
            if job_at is not None and now >= job_at:
                children.start("aggregation job", live_job, env, logs / "aggregate.log")
                say(f"aggregation job started ({mode}; log {logs / 'aggregate.log'})")
                job_at = None
                freshness_at = now + FRESHNESS_AFTER_SECONDS
            if freshness_at is not None and now >= freshness_at:
                freshness_at = None if report_freshness(url + "health") else now + 5
            gone = children.exited()
            if gone:
                name, code = gone[0]
                print(f"error: {name} exited with code {code}; see {logs}", file=sys.stderr)
                return EXIT_FAILED
        return 0
    except KeyboardInterrupt:
        print("\n    interrupted", flush=True)
        return EXIT_INTERRUPTED
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        print("\n==> stopping", flush=True)
        children.stop_all()
        stop_emulators(emulator_env, emulators_started)
        print(f"    every process the demo started has stopped ({time.monotonic() - started:.0f} s in all)", flush=True)


def report_freshness(health_url: str) -> bool:
    """Print the banner's freshness line from /health; False when it has no figure yet."""
    try:
        with urllib.request.urlopen(health_url, timeout=3) as answer:
            figures = json.load(answer).get("freshness") or {}
    except (OSError, ValueError):
        return False
    age = figures.get("newest_counted_age_seconds")
    if age is None:
        return False
    print(
        f"\n    Freshness: the newest counted transaction was published {age:.1f} s ago "
        f"(the dashboard shows it live; GET /health)",
        flush=True,
    )
    return True


def stop_emulators(env: dict[str, str], started: bool) -> None:
    """Stop the emulators this demo started; say that the ones it found running keep running."""
    if not started:
        say("the emulators were running before the demo: they keep running")
        return
    done = subprocess.run([str(ROOT / "scripts" / "emulators.sh"), "stop"], env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.endswith("stopped"):
            say(f"stopped the {line[: -len(' stopped')]}")


def _write_json(path: Path, data: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    run(main)
