"""Crashes: the spooler SIGKILLed at several random points and the job SIGKILLed at several random
points (at start-up, while reading, during the dcflist writes, during the counter writes), each
restarted, the last restart twice at once; afterwards nothing is lost or counted twice: Bigtable
and /sum equal the ledger. Every other killed job runs in the live mode (`--stream`), the others as
one-off runs: a kill mid-run means the same in both.

The kill points are drawn from a seeded generator (printed, so a failure can be replayed); a job
run is slowed (one core, small batches, a pause after each write batch) so that the write phases
last long enough to be hit at a random moment inside them."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from support.scale import Scale
from support.tally import TALLY

from common import clients, jobstate, spool
from common.config import Config
from jobs.aggregate.__main__ import EXIT_LOCKED
from reliability.pipeline import (
    Background,
    Emission,
    check_sums,
    command,
    emit,
    read_ledger,
    recent_window,
    reconcile,
    run,
    spool_rows,
    wait_for,
    write_config,
)

SEED = 20261121
# One core, small Arrow batches, no coalescing: many short write batches, one at a time.
SLOW = [
    "--master",
    "local[1]",
    "--conf",
    "spark.sql.execution.arrow.maxRecordsPerBatch=100",
    "--conf",
    "spark.sql.adaptive.coalescePartitions.enabled=false",
]
# Where a job kill may land: after which line of the job's output, and up to how many seconds later.
JOB_PHASES = {
    "start-up": ("", 8.0),
    "extract": ("extract:", 2.0),
    "dcflist writes": ("lookup:", 4.0),
    "counter writes": ("dcflist rows in", 2.5),
}


def spooled_files(cfg: Config) -> int:
    return len(spool.list_files(cfg.spool_dir, spool.TRANSACTIONS))


def kill_spooler_at_random_points(cfg: Config, config: Path, tmp_path: Path, kills: int, rng: random.Random) -> None:
    """Start the spooler `kills` times; kill each once it has written a random number of new files
    (and a random moment more), so it dies holding pulled, unacked messages, or mid-write."""
    for attempt in range(kills):
        before = spooled_files(cfg)
        target = before + rng.randint(1, 3)
        extra = rng.uniform(0.0, 0.2)
        with Background(command("jobs.spooler", config, "--quiet"), tmp_path / f"spooler-{attempt}.log") as spooler:
            wait_for(lambda: spooled_files(cfg) >= target, "the spooler to write files", timeout=120, watch=spooler)  # noqa: B023
            time.sleep(extra)
            spooler.kill()
        print(f"spooler kill {attempt + 1}: after {spooled_files(cfg) - before} new files (+{extra:.2f} s)")
        TALLY.fault("spooler SIGKILL")


def kill_job_at_random_points(
    config: Path, tmp_path: Path, table: object, phases: list[str], rng: random.Random
) -> int:
    """One slowed job run per phase, SIGKILLed at a random moment of it; returns the kills made
    (a run may finish before its kill point; then the rest have nothing left to interrupt)."""
    kills = 0
    for attempt, phase in enumerate(phases):
        marker, longest = JOB_PHASES[phase]
        delay = rng.uniform(0.0, longest)
        live = ["--stream"] if attempt % 2 else []
        argv = command("jobs.aggregate", config, *SLOW, *live, "--pause-after-batch", "0.2")
        with Background(argv, tmp_path / f"job-{attempt}.log") as job:
            wait_for(lambda: marker in job.output() or not job.running(), f"the job to reach {phase}", timeout=300)  # noqa: B023
            time.sleep(delay)
            if not job.running():
                assert job.wait() == 0, job.output()[-3000:]
                print(f"job run {attempt + 1} finished before its kill point ({phase})")
                break
            if live and (status := jobstate.read_job_status(table)) and not status["pending"] and status["last_run"]:
                job.kill()  # the live job finished the run and waits for files: nothing left to interrupt
                print(f"job run {attempt + 1} (--stream) finished before its kill point ({phase})")
                break
            job.kill()
        kills += 1
        status = jobstate.read_job_status(table)
        mode = "--stream" if live else "one-off"
        print(f"job kill {kills} ({mode}): {phase} + {delay:.2f} s; pending: {bool(status and status['pending'])}")
        TALLY.fault(f"job SIGKILL ({phase})")
    return kills


def test_sigkills_of_the_spooler_and_the_job_at_random_points_lose_and_double_count_nothing(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    rng = random.Random(SEED)
    print(f"kill points drawn with seed {SEED}")
    # A short ack deadline: what a killed spooler held comes back within seconds.
    clients.ensure_subscription(cfg, ack_deadline_seconds=10)
    config = write_config(cfg, tmp_path, spool_roll_messages=150, amount_min="-10.00", amount_max="90.00")
    start, end = recent_window(hours=30)
    ledger_path = tmp_path / "ledger.csv"
    emit(config, Emission(8, max(20, scale.crash_events // 150), start, end, scale.crash_events), ledger_path)
    ledger = read_ledger(ledger_path)

    kill_spooler_at_random_points(cfg, config, tmp_path, scale.spooler_kills, rng)
    # The restart outlives the ack deadline of everything the killed ones held.
    run(command("jobs.spooler", config, "--until-idle", "12", "--quiet"))
    spooled = spool_rows(cfg.spool_dir)
    assert set(spooled["transaction_id"]) == set(ledger["transaction_id"])  # nothing lost
    redelivered = len(spooled) - spooled["transaction_id"].nunique()
    print(f"spool: {len(spooled)} rows, {redelivered} of them spooled again after a kill")

    table = clients.ensure_table(cfg)
    phases = ["dcflist writes", "counter writes"]
    phases += [rng.choice(list(JOB_PHASES)) for _ in range(max(0, scale.job_kills - len(phases)))]
    rng.shuffle(phases)
    kills = kill_job_at_random_points(config, tmp_path, table, phases, rng)
    assert kills >= 2

    # The last restart is made twice at the same moment, as cron and an operator might: one run
    # resumes, the other exits at once with the lock message.
    restarts = [
        Background(command("jobs.aggregate", config, "--master", "local[2]"), tmp_path / f"restart-{i}.log")
        for i in (1, 2)
    ]
    TALLY.fault("job started twice at once")
    codes = [restart.wait(timeout=600) for restart in restarts]
    assert sorted(codes) == [0, EXIT_LOCKED], [restart.output()[-2000:] for restart in restarts]
    winner, loser = restarts if codes[0] == 0 else restarts[::-1]
    assert re.fullmatch(
        r"error: another aggregation run \(pid \d+\) holds \S+_aggregate\.lock; it will pick up new files too, "
        r"or pass --wait to run after it",
        loser.output().strip(),
    ), loser.output()
    assert " 0 failures" in winner.output().strip().splitlines()[-1], winner.output()[-3000:]
    status = jobstate.read_job_status(table)
    assert status is not None and status["last_run"] == 1 and status["pending"] is None
    reconcile(table, ledger, cfg.late_horizon_hours)
    check_sums(cfg, ledger, scale.sum_ranges, seed=SEED)
