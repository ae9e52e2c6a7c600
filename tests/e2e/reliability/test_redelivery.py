"""Redelivery: on a subscription with a short ack deadline, a rival consumer nacks some messages
and sits on others past their deadline, a spooler is frozen (SIGSTOP) with a batch pulled and not
yet written until Pub/Sub hands that batch to another spooler, then thawed to write it anyway; and
a tenth of the emitter's transactions is published a second time. The job, running every second
throughout, counts each transaction once: Bigtable and /sum equal the ledger."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

from google.api_core import exceptions as gexc
from support.scale import Scale
from support.tally import TALLY

from common import clients
from common.config import Config
from emitter.producer import SimulationRequest, encoded_batches
from emitter.publish import TransactionPublisher
from emitter.simulate import Population
from reliability.pipeline import (
    Background,
    Emission,
    all_counted,
    check_sums,
    command,
    emit,
    read_ledger,
    recent_window,
    reconcile,
    spool_rows,
    wait_for,
    write_config,
)

ACK_DEADLINE_SECONDS = 10  # the shortest Pub/Sub allows


class RivalConsumer(threading.Thread):
    """Pulls from the spooler's subscription and never acks: hands every message straight back (a
    nack, ack deadline 0) except the first `holds`, which it keeps until their deadline runs out.
    Stops once three pulls in a row find nothing: every message is then leased to someone."""

    def __init__(self, cfg: Config, holds: int) -> None:
        super().__init__(daemon=True, name="rival-consumer")
        self.cfg, self.holds = cfg, holds
        self.nacked = self.held = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        subscriber = clients.subscriber_client(self.cfg)
        path = clients.subscription_path(self.cfg)
        empty = 0
        try:
            while empty < 3:
                try:
                    response = subscriber.pull(subscription=path, max_messages=50, timeout=2)
                except gexc.DeadlineExceeded:
                    response = None
                received = list(response.received_messages) if response else []
                if not received:
                    empty += 1
                    time.sleep(0.3)
                    continue
                empty = 0
                keep = max(0, min(len(received), self.holds - self.held))
                self.held += keep
                nack = [item.ack_id for item in received[keep:]]
                if nack:
                    subscriber.modify_ack_deadline(subscription=path, ack_ids=nack, ack_deadline_seconds=0)
                    self.nacked += len(nack)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            subscriber.close()


def republish_a_sample(cfg: Config, emission: Emission, ledger_ids: set[str], seed: int) -> int:
    """Publish a tenth of the emitter's transactions again, byte for byte (the simulation is seeded,
    so it is made again exactly); returns how many."""
    population = Population.from_config(replace(cfg, users=emission.users, seed=emission.seed))
    request = SimulationRequest(population, emission.start, emission.end, 1.0, emission.limit)
    copies = [item for batch in encoded_batches(request) for item in batch]
    assert {item[3][0] for item in copies} == ledger_ids  # the same transactions the emitter published
    again = random.Random(seed).sample(copies, len(copies) // 10)
    publisher = TransactionPublisher(cfg)
    for item in again:
        publisher.publish_encoded(item)
    assert publisher.close().published == len(again)
    return len(again)


def test_redelivered_and_republished_transactions_are_counted_once(cfg: Config, tmp_path: Path, scale: Scale) -> None:
    clients.ensure_subscription(cfg, ack_deadline_seconds=ACK_DEADLINE_SECONDS)
    config = write_config(cfg, tmp_path, spool_roll_messages=500)
    # This spooler's batch never rolls by itself: it holds what it pulls until stopped.
    holding = write_config(cfg, tmp_path, "holding.json", spool_roll_messages=1_000_000, spool_roll_seconds=3600.0)
    table = clients.ensure_table(cfg)
    start, end = recent_window(hours=30)
    events = scale.redelivery_events
    emission = Emission(21, max(20, events // 150), start, end, events)
    ledger_path = tmp_path / "ledger.csv"
    emit(config, emission, ledger_path)
    ledger = read_ledger(ledger_path)
    twice = republish_a_sample(cfg, emission, set(ledger["transaction_id"]), seed=21)
    TALLY.fault("transaction published twice", twice)

    job = Background(command("jobs.aggregate", config, "--every", "1s", "--master", "local[1]"), tmp_path / "job.log")
    holder = Background(command("jobs.spooler", holding, "--quiet"), tmp_path / "holder.log")
    try:
        rival = RivalConsumer(cfg, holds=events // 20)
        rival.start()
        rival.join(timeout=120)
        assert not rival.is_alive() and rival.error is None, rival.error
        TALLY.fault("message nacked", rival.nacked)
        TALLY.fault("message held past its ack deadline", rival.held)

        # The holder has everything else pulled and unwritten. Frozen past the ack deadline, it
        # loses its leases and Pub/Sub hands the messages to the next spooler.
        holder.signal_group(signal.SIGSTOP)
        TALLY.fault("spooler frozen past the ack deadline")
        with Background(command("jobs.spooler", config, "--until-idle", "15", "--quiet"), tmp_path / "s2.log") as other:
            assert other.wait(timeout=300) == 0, other.output()
        wait_for(lambda: all_counted(cfg, table), "the job to count the second spooler's files", watch=job)
        runs_before = len(re.findall(r"^run \d+", job.output(), re.M))

        # Thawed, the holder writes its batch anyway: the same messages, spooled a second time.
        holder.signal_group(signal.SIGCONT)
        holder.signal(signal.SIGTERM)
        assert holder.wait(timeout=120) == 0, holder.output()
        wait_for(lambda: all_counted(cfg, table), "the job to count the thawed spooler's file", watch=job)
    finally:
        holder.ensure_stopped()
        job.signal(signal.SIGTERM)
        code = job.wait(timeout=300)
    assert code == 0, job.output()[-4000:]

    spooled = spool_rows(cfg.spool_dir)
    again_by_message = len(spooled) - spooled["message_id"].nunique()
    print(
        f"spool: {len(spooled)} rows for {len(ledger)} transactions; {twice} published twice, "
        f"{again_by_message} messages spooled twice after redelivery; rival nacked {rival.nacked}, held {rival.held}"
    )
    assert set(spooled["transaction_id"]) == set(ledger["transaction_id"])
    assert len(spooled) - spooled["transaction_id"].nunique() >= twice
    assert again_by_message > 0  # the frozen spooler's batch really was delivered twice
    later = job.output().split("\n")
    late_runs = [line for line in later if re.match(r"^run \d+", line)][runs_before:]
    assert any(re.search(r" [1-9][\d,]* already counted", line) for line in late_runs), late_runs
    reconcile(table, ledger, cfg.late_horizon_hours)
    check_sums(cfg, ledger, scale.sum_ranges // 2, seed=21)
