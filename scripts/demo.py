"""The live demo: the whole pipeline on the local emulators, with the dashboard on :5000.

    .venv/bin/python scripts/demo.py [--users 100] [--hours 48] [--port 5000] [--stop-after SECONDS]

Steps: start the emulators; reset the demo's own spool, table and subscription; simulate the last
--hours for --users card holders; spool them; run the Spark job; then keep the pipeline alive (a
live emitter, the spooler, the job every 30 s) and serve the dashboard until Ctrl-C, which stops
every process this script started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.config import ConfigError, load_config  # noqa: E402

PY = sys.executable
RUN_DIR = ROOT / "run" / "demo"


def step(number: int, total: int, text: str) -> None:
    print(f"\n==> [{number}/{total}] {text}", flush=True)


def run(cmd: list[str], env: dict[str, str]) -> None:
    """Run a pipeline command in the foreground, its progress shown as it goes."""
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[1:4])} failed with exit code {result.returncode}")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a background process in its own process group, output to a log file."""
    handle = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop_all(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _name, proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for name, proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            print(f"    stopped {name}", flush=True)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            print(f"    killed {name} (did not stop in time)", flush=True)


def wait_for_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def reset_services(config_path: Path) -> None:
    """Fresh table and subscription for the demo, so a second run starts from a clean slate."""
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from google.api_core import exceptions as e\n"
        "from common.config import load_config; from common import clients\n"
        f"cfg = load_config({str(config_path)!r})\n"
        "clients.ensure_topic(cfg)\n"
        "sub = clients.subscriber_client(cfg)\n"
        "try: sub.delete_subscription(subscription=clients.subscription_path(cfg))\n"
        "except e.NotFound: pass\n"
        "clients.ensure_subscription(cfg)\n"
        "t = clients.ensure_table(cfg); t.truncate(timeout=60)\n"
        "print('    topic, subscription and table ready')\n"
    )
    subprocess.run([PY, "-c", code], cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="base config (default config.json, else config.sample.json)")
    parser.add_argument("--users", type=int, default=100, help="card holders to simulate (default 100)")
    parser.add_argument("--hours", type=int, default=48, help="hours of history to simulate (default 48)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--every", default="30s", help="how often the job runs while live (default 30s)")
    parser.add_argument("--speedup", type=float, default=60.0, help="live emitter speed-up (default 60)")
    parser.add_argument(
        "--stop-after", type=float, default=0, help="stop after this many seconds live (0: run until Ctrl-C)"
    )
    args = parser.parse_args()
    if args.users < 1 or args.hours < 1:
        print("error: --users and --hours must be >= 1", file=sys.stderr)
        return 2
    try:
        base = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    total = 6
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    spool = RUN_DIR / "spool"
    settings = base.to_dict() | {"spool_dir": str(spool), "users": args.users}
    config_path = RUN_DIR / "config.json"
    config_path.write_text(json.dumps(settings, indent=2))
    env = dict(os.environ, PYTHONUNBUFFERED="1", CONFIG=str(config_path), PORT=str(args.port))
    cfg_args = ["--config", str(config_path)]

    step(1, total, "starting the Pub/Sub and Bigtable emulators")
    subprocess.run([str(ROOT / "scripts" / "emulators.sh"), "start"], cwd=ROOT, check=True)
    env.setdefault("PUBSUB_EMULATOR_HOST", base.pubsub_emulator_host)
    env.setdefault("BIGTABLE_EMULATOR_HOST", base.bigtable_emulator_host)

    step(2, total, f"resetting the demo's spool ({spool}), table and subscription")
    subprocess.run(["rm", "-rf", str(spool)], check=True)
    reset_services(config_path)

    step(3, total, f"simulating {args.users} card holders over the last {args.hours} h")
    run(
        [
            PY,
            "-m",
            "emitter",
            *cfg_args,
            "--start",
            f"-{args.hours}h",
            "--end",
            "now",
            "--ledger",
            str(RUN_DIR / "ledger.csv"),
        ],
        env,
    )

    step(4, total, "spooling the stream to Parquet")
    run([PY, "-m", "jobs.spooler", *cfg_args, "--until-idle", "3"], env)

    step(5, total, "aggregating with Spark into Bigtable")
    run([PY, "-m", "jobs.aggregate", *cfg_args], env)

    step(6, total, "keeping the pipeline alive and serving the dashboard")
    logs = RUN_DIR / "logs"
    logs.mkdir(exist_ok=True)
    procs = [
        ("dashboard", start([str(ROOT / "run_server.sh")], env, logs / "server.log")),
        ("spooler", start([PY, "-m", "jobs.spooler", *cfg_args], env, logs / "spooler.log")),
        (
            "live emitter",
            start(
                [PY, "-m", "emitter", *cfg_args, "--live", "--speedup", str(args.speedup), "--quiet"],
                env,
                logs / "emitter.log",
            ),
        ),
        (
            "aggregation job",
            start([PY, "-m", "jobs.aggregate", *cfg_args, "--every", args.every], env, logs / "aggregate.log"),
        ),
    ]
    url = f"http://127.0.0.1:{args.port}/"
    stop = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not wait_for_http(url + "health", 60):
            print(f"error: the dashboard did not answer; see {logs / 'server.log'}", file=sys.stderr)
            return 1
        print(f"\n    Dashboard: {url}\n    Logs: {logs}\n    Press Ctrl-C to stop.", flush=True)
        started = time.monotonic()
        while not stop["now"]:
            time.sleep(0.5)
            if args.stop_after and time.monotonic() - started >= args.stop_after:
                break
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"error: {name} exited with {proc.returncode}; see {logs}", file=sys.stderr)
                    return 1
    finally:
        print("\n==> stopping", flush=True)
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
