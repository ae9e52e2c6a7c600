"""Scale-out ingest: three spoolers on one subscription at once, two of them SIGKILLed mid-run and
restarted while more transactions arrive. Afterwards the spool holds every published transaction,
in files of five writers whose names never clashed, and after the real job runs, Bigtable and the
API (/sum over random ranges) equal the ledger to the cent."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from support.scale import Scale
from support.tally import TALLY

from common import clients, spool
from common.config import Config
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

SEED = 20261207
WRITER = re.compile(r"part-\d{8}T\d{12}Z-(?P<writer>[A-Za-z0-9-]+-\d+-[0-9a-f]{8})-\d+\.parquet")


def _writers(cfg: Config) -> set[str]:
    """host-pid-tag of every writer that has a transaction file in the spool."""
    files = spool.list_files(cfg.spool_dir, spool.TRANSACTIONS)
    found = {WRITER.fullmatch(f.name) for f in files}
    assert None not in found, [f.name for f in files]
    return {m["writer"] for m in found if m}


def test_three_spoolers_two_killed_and_restarted_mid_run_spool_everything_once_counted(
    cfg: Config, tmp_path: Path, scale: Scale
) -> None:
    # A short ack deadline: what a killed spooler held comes back within seconds. Files roll by
    # count, and an open batch waits 5 s: a killed spooler dies holding unacked messages.
    clients.ensure_subscription(cfg, ack_deadline_seconds=10)
    config = write_config(cfg, tmp_path, spool_roll_messages=100, spool_roll_seconds=5)
    start, end = recent_window(hours=20)
    half = scale.crash_events // 2
    first, second = tmp_path / "ledger-1.csv", tmp_path / "ledger-2.csv"
    emit(config, Emission(SEED, 40, start, end, half), first)

    def spooler(name: str) -> Background:
        return Background(command("jobs.spooler", config, "--quiet"), tmp_path / f"spooler-{name}.log")

    spoolers = {name: spooler(name) for name in ("a", "b", "c")}
    try:
        wait_for(lambda: len(_writers(cfg)) >= 2, "two spoolers to write files", timeout=60)
        for name in ("a", "b"):
            spoolers[name].kill()
            TALLY.fault("spooler SIGKILL (one of three)")
            spoolers[name] = spooler(f"{name}-restarted")
        # More arrives while the restarted ones start: they share it with the one left running.
        emit(config, Emission(SEED + 1, 40, start, end, scale.crash_events - half), second)
        ledger = read_ledger(first, second)
        wanted = set(ledger["transaction_id"])
        # What the killed ones held returns after its ack deadline and is spooled by the others.
        wait_for(lambda: wanted <= set(spool_rows(cfg.spool_dir)["transaction_id"]), "every transaction", 90)
        for process in spoolers.values():
            assert process.running(), process.output()[-2000:]
            process.signal_group(signal.SIGTERM)  # flush and exit cleanly
        for process in spoolers.values():
            assert process.wait(timeout=60) == 0, process.output()[-2000:]
    finally:
        for process in spoolers.values():
            process.ensure_stopped()

    spooled = spool_rows(cfg.spool_dir)
    assert set(spooled["transaction_id"]) == wanted  # nothing lost, nothing foreign
    print(f"spool: {len(spooled)} rows, {len(spooled) - len(wanted)} spooled twice after a kill")
    assert len(_writers(cfg)) >= 3  # the killed ones and their successors named their files apart

    run(command("jobs.aggregate", config, "--master", "local[2]"))
    table = clients.ensure_table(cfg)
    reconcile(table, ledger, cfg.late_horizon_hours)
    check_sums(cfg, ledger, scale.sum_ranges, seed=SEED)
