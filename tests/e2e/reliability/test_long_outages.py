"""Outages of minutes, longer than any retry budget the clients have by themselves, during a live run:
a live emitter, a spooler and an `--every` job, each talking to the emulators through an outage
proxy (bench/proxy.py). Pub/Sub is stalled (a partition), then refused (a stopped server),
75 seconds in all; Bigtable is refused for as long, overlapping it. Both outlast the 60 s retry
budget every client used to have by itself. Every process must still be
running, say in a line that it is waiting, resume by itself, and in the end the ledger, the spool,
Bigtable and the API agree to the cent.

The backoff caps come from the config (`outage_backoff_max_seconds`), short here so that recovery
is quick; the soak benchmark (python -m bench --stages soak) runs the same with 10-minute outages.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from support.scale import Scale
from support.tally import TALLY

from bench.proxy import OutageProxy
from common import clients, jobstate
from common.config import Config
from reliability.faults import SHARED_PUBSUB_PORT
from reliability.pipeline import (
    Background,
    Emission,
    all_counted,
    check_sums,
    command,
    read_ledger,
    recent_window,
    reconcile,
    run,
    service_env,
    spool_rows,
    wait_for,
    write_config,
)

SHARED_BIGTABLE_PORT = 8086
OUTAGE_SECONDS = 75.0  # longer than every retry budget the commands used to have (60 s)
BIGTABLE_FROM_SECONDS = 15.0  # into the Pub/Sub outage: both are out at once for most of it


def _lines(process: Background, text: str) -> list[str]:
    return [line for line in process.output().splitlines() if text in line]


def test_outages_past_every_retry_budget_of_pubsub_and_bigtable_during_a_live_run_lose_and_double_count_nothing(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    config = write_config(
        cfg,
        tmp_path,
        spool_roll_seconds=2.0,
        spool_roll_messages=5_000,
        outage_backoff_max_seconds=5.0,
        outage_report_seconds=20.0,
        bigtable_timeout_seconds=20.0,  # a run that meets the outage fails well within it
    )
    clients.ensure_subscription(cfg)
    table = clients.ensure_table(cfg)
    pubsub = OutageProxy(SHARED_PUBSUB_PORT)
    bigtable = OutageProxy(SHARED_BIGTABLE_PORT)
    env = service_env(pubsub=pubsub.address, bigtable=bigtable.address)
    ledger_path = tmp_path / "ledger.csv"
    users = 200 if scale.heavy else 100
    emitter = Background(
        command("emitter", config, "--live", "--speedup", "600", "--users", str(users), "--ledger", str(ledger_path)),
        tmp_path / "emitter.log",
        env=env,
    )
    spooler = Background(command("jobs.spooler", config, "--quiet"), tmp_path / "spooler.log", env=env)
    job = Background(
        command("jobs.aggregate", config, "--every", "5s", "--master", "local[1]"), tmp_path / "job.log", env=env
    )
    processes = {"emitter": emitter, "spooler": spooler, "job": job}
    try:
        # Warm up: the job has counted at least one run of spooled transactions.
        wait_for(
            lambda: (status := jobstate.read_job_status(table)) is not None and status["last_run"] >= 1,
            "the first job run",
            timeout=300,
            watch=job,
        )

        # Pub/Sub: stalled for the first half of its outage, refused for the second; Bigtable
        # refused from BIGTABLE_FROM_SECONDS in, for as long; each ends on its own schedule.
        started = time.monotonic()
        schedule = [
            (0.0, pubsub.stall, "Pub/Sub stalled"),
            (BIGTABLE_FROM_SECONDS, bigtable.refuse, "Bigtable refused"),
            (OUTAGE_SECONDS / 2, pubsub.refuse, "Pub/Sub refused"),
            (OUTAGE_SECONDS, pubsub.restore, None),
            (BIGTABLE_FROM_SECONDS + OUTAGE_SECONDS, bigtable.restore, None),
        ]
        for at, action, fault in schedule:
            time.sleep(max(0.0, started + at - time.monotonic()))
            for name, process in processes.items():
                assert process.running(), f"the {name} died during the outage:\n{process.output()[-3000:]}"
            action()
            if fault:
                TALLY.fault(f"{fault} for {OUTAGE_SECONDS:g} s (live run)")
        for proxy in (pubsub, bigtable):
            assert sum(outage.seconds for outage in proxy.outages) >= OUTAGE_SECONDS - 1

        # Each said it was waiting, then said when the service was back.
        assert _lines(emitter, "emitter: Pub/Sub unreachable"), emitter.output()[-3000:]
        assert _lines(spooler, "spooler: Pub/Sub unreachable"), spooler.output()[-3000:]
        # The job says it in a failed run's line, or, when the outage begins inside a run, in the
        # line of the lease it could not renew (that run then ends on its own calls' bound).
        assert _lines(job, "error: Bigtable") or _lines(job, "gave up the job's lease"), job.output()[-3000:]
        wait_for(lambda: bool(_lines(emitter, "emitter: Pub/Sub back after")), "the emitter's recovery", 120, emitter)
        wait_for(lambda: bool(_lines(spooler, "spooler: Pub/Sub back after")), "the spooler's recovery", 120, spooler)
        wait_for(lambda: bool(_lines(job, "a run succeeded again")), "the job's recovery", 300, job)
        # A line every outage_report_seconds, not one per retry.
        assert len(_lines(spooler, "spooler: Pub/Sub unreachable")) <= OUTAGE_SECONDS / 20 + 2
        time.sleep(10)  # a little more live traffic after the outages

        # The emitter stops cleanly with every transaction confirmed.
        emitter.signal_group(signal.SIGINT)
        assert emitter.wait(timeout=120) == 0, emitter.output()[-3000:]
        summary = emitter.output().strip().splitlines()[-1]
        assert " 0 failed" in summary and "not confirmed" not in emitter.output(), emitter.output()[-3000:]

        ledger = read_ledger(ledger_path)
        wanted = set(ledger["transaction_id"])
        wait_for(
            lambda: set(spool_rows(cfg.spool_dir)["transaction_id"]) >= wanted,
            "every confirmed transaction in the spool",
            300,
            spooler,
        )
        wait_for(lambda: all_counted(cfg, table), "the job to count every spool file", 600, job)
        for name in ("spooler", "job"):
            assert processes[name].running(), f"the {name} is not running:\n{processes[name].output()[-3000:]}"
        TALLY.outage_survived(f"Pub/Sub {OUTAGE_SECONDS:g} s: emitter, spooler")
        TALLY.outage_survived(f"Bigtable {OUTAGE_SECONDS:g} s: --every job")
        spooler.signal_group(signal.SIGTERM)
        job.signal(signal.SIGTERM)
        assert spooler.wait(timeout=120) == 0, spooler.output()[-3000:]
        assert job.wait(timeout=300) == 0, job.output()[-3000:]
    finally:
        for process in processes.values():
            process.ensure_stopped()
        pubsub.close()
        bigtable.close()
    for name, process in processes.items():
        assert "Traceback" not in process.output(), f"{name}:\n{process.output()[-3000:]}"

    # Ledger, spool, Bigtable and the API agree: nothing lost, nothing counted twice.
    spooled = spool_rows(cfg.spool_dir)
    assert set(spooled["transaction_id"]) == wanted  # every confirmed one, and none made up
    merged = ledger.merge(spooled.drop_duplicates("transaction_id"), on="transaction_id", suffixes=("", "_spool"))
    assert len(merged) == len(ledger) and (merged["amount_minor"] == merged["amount_minor_spool"]).all()
    TALLY.checked("spool rows after long outages", len(ledger), len(ledger) - len(merged))
    reconcile(table, ledger, cfg.late_horizon_hours)
    check_sums(cfg, ledger, scale.sum_ranges, seed=23)
    print(f"{len(ledger)} transactions; {len(spooled) - len(ledger)} arrived twice and were counted once")


def test_a_simulation_stopped_during_an_outage_names_what_is_unconfirmed_and_the_rerun_sends_it_once(
    cfg: Config, tmp_path: Path
) -> None:
    config = write_config(cfg, tmp_path, outage_backoff_max_seconds=2.0, outage_report_seconds=5.0)
    clients.ensure_subscription(cfg)
    events = 20_000
    start, end = recent_window(hours=40)
    emission = Emission(41, events // 200, start, end, events)
    with OutageProxy(SHARED_PUBSUB_PORT) as pubsub:
        emitter = Background(
            command("emitter", config, *emission.args(tmp_path / "ledger-1.csv")),
            tmp_path / "emitter-1.log",
            env=service_env(pubsub=pubsub.address),
        )
        with emitter:
            wait_for(lambda: pubsub.forwarded >= 0.3 * events * 250, "a third of the messages to pass", watch=emitter)
            pubsub.refuse()
            TALLY.fault("Pub/Sub refused, then the emitter stopped")
            wait_for(lambda: bool(_lines(emitter, "emitter: Pub/Sub unreachable")), "the outage line", 120, emitter)
            emitter.signal_group(signal.SIGINT)
            assert emitter.wait(timeout=120) == 130, emitter.output()[-3000:]
    output = emitter.output()
    assert "Traceback" not in output, output[-3000:]
    (told,) = _lines(emitter, "were not confirmed by Pub/Sub")
    rerun = told.split("run the same seed over the same window: ")[1].split(" (")[0]
    assert f"--users {events // 200} --seed 41" in rerun and f"--limit {events}" in rerun, told
    first = read_ledger(tmp_path / "ledger-1.csv")
    summary = next(line for line in output.splitlines() if line.startswith("emitter: published"))
    assert f"published {len(first)} transactions" in summary  # the ledger lists only confirmed ones
    assert 0 < len(first) < events

    # The printed command, run as printed (with a new ledger), sends them all again.
    argv = rerun.replace("python -m emitter", "").replace("NEW.csv", str(tmp_path / "ledger-2.csv")).split()
    run(command("emitter", config, *[a for a in argv if a not in ("--config", str(config))], "--quiet"))
    run(command("jobs.spooler", config, "--until-idle", "3", "--quiet"))
    second = read_ledger(tmp_path / "ledger-2.csv")
    assert len(second) == events and set(first["transaction_id"]) <= set(second["transaction_id"])
    spooled = spool_rows(cfg.spool_dir)
    assert set(spooled["transaction_id"]) == set(second["transaction_id"])  # resent ones are duplicates only
    assert len(spooled) >= events
    TALLY.outage_survived("Pub/Sub refused, emitter stopped and rerun")


def test_until_idle_counts_only_time_in_which_pubsub_answers(cfg: Config, tmp_path: Path) -> None:
    config = write_config(cfg, tmp_path, outage_backoff_max_seconds=1.0, outage_report_seconds=5.0)
    clients.ensure_subscription(cfg)
    with OutageProxy(SHARED_PUBSUB_PORT) as pubsub:
        spooler = Background(
            command("jobs.spooler", config, "--until-idle", "3", "--quiet"),
            tmp_path / "spooler.log",
            env=service_env(pubsub=pubsub.address),
        )
        with spooler:
            wait_for(lambda: pubsub.connections >= 1, "the spooler to connect", 60, spooler)
            time.sleep(2)  # past its start-up checks, pulling
            pubsub.refuse()
            TALLY.fault("Pub/Sub refused under an idle spooler")
            time.sleep(10)
            assert spooler.running(), spooler.output()  # 10 s without an answer is not idle time
            pubsub.restore()
            restored = time.monotonic()
            assert spooler.wait(timeout=60) == 0, spooler.output()
            took = time.monotonic() - restored
    assert took >= 3, took  # a whole idle period once Pub/Sub answers again
    assert _lines(spooler, "spooler: Pub/Sub unreachable") and _lines(spooler, "spooler: Pub/Sub back after")
    TALLY.outage_survived("Pub/Sub refused, spooler --until-idle")
