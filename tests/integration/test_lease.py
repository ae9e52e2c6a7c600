"""The job's lease in the table, on the Bigtable emulator: one holder at a time across processes
and hosts, renewed while held, taken over once it expires."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from common import clients
from common.config import Config
from jobs.aggregate import lease


def test_one_holder_at_a_time_then_the_next_after_release(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    first, second = lease.TableLease(table, 30, "host-a:1:x"), lease.TableLease(table, 30, "host-b:2:y")
    assert first.try_claim() is None
    held_by = second.try_claim()
    assert held_by is not None and held_by[0] == "host-a:1:x"
    assert first.renew()
    first.release()
    assert second.try_claim() is None
    assert first.try_claim() is not None


def test_of_many_processes_claiming_at_once_exactly_one_wins(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    leases = [lease.TableLease(clients.bigtable_table(cfg), 30, f"host-{i}:{i}:z") for i in range(8)]
    results: list[Any] = [None] * len(leases)
    start = threading.Barrier(len(leases))

    def claim(i: int) -> None:
        start.wait()
        results[i] = leases[i].try_claim()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert all(r[0] == f"host-{winners[0]}:{winners[0]}:z" for r in results if r is not None)
    assert table is not None


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it_lost(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    dead, next_one = lease.TableLease(table, 1.0, "host-a:1:x"), lease.TableLease(table, 30, "host-b:2:y")
    assert dead.try_claim() is None
    assert next_one.try_claim() is not None
    time.sleep(1.2)  # the holder died: nobody renewed it
    assert next_one.try_claim() is None
    assert not dead.renew() and dead.lost.is_set()


def test_held_renews_in_the_background_and_waits_or_refuses(cfg: Config) -> None:
    table = clients.ensure_table(cfg)
    holder, other = lease.TableLease(table, 1.5, "host-a:1:x"), lease.TableLease(table, 1.5, "host-b:2:y")
    with lease.held(holder):
        time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
        with pytest.raises(lease.LeaseHeld, match="host-a:1:x"), lease.held(other):
            pass
    waited: list[float] = []

    def wait_for_it() -> None:
        with lease.held(other, wait=True):
            waited.append(time.monotonic())

    with lease.held(holder):
        thread = threading.Thread(target=wait_for_it)
        thread.start()
        time.sleep(2.0)
        assert waited == []  # still held: the heartbeat renews it past its 1.5 s
        released = time.monotonic()
    thread.join(timeout=10)
    assert len(waited) == 1 and waited[0] >= released


def test_a_dead_holder_on_this_machine_is_taken_over_at_once_but_not_one_elsewhere(cfg: Config) -> None:
    import subprocess

    table = clients.ensure_table(cfg)
    ended = subprocess.Popen(["true"])
    ended.wait()  # a pid that existed on this machine and has ended
    host, _, boot = lease.new_holder().split(":")
    dead_here = f"{host}:{ended.pid}:{boot}"
    dead_elsewhere = f"{host}:{ended.pid}:0123456789ab.xyz"  # same name and pid, another machine
    assert lease.dead_on_this_machine(dead_here) and not lease.dead_on_this_machine(dead_elsewhere)
    assert not lease.dead_on_this_machine(lease.new_holder())  # this very process

    other = lease.TableLease(table, 60, "next:1:z")
    elsewhere = lease.TableLease(table, 60, dead_elsewhere)
    assert elsewhere.try_claim() is None
    assert other.try_claim() is not None  # another machine's holder: wait for its lease to expire
    elsewhere.release()
    assert lease.TableLease(table, 60, dead_here).try_claim() is None
    assert other.try_claim() is None  # its process is gone from this machine: taken over at once


def test_a_lease_emptied_with_the_table_is_claimed_again_but_one_taken_is_lost(cfg: Config) -> None:
    from jobs.aggregate.job import truncate_table

    table = clients.ensure_table(cfg)
    holder = lease.TableLease(table, 30, "host-a:1:x")
    assert holder.try_claim() is None
    truncate_table(cfg)  # what --rebuild does while holding the lease
    assert holder.renew() and not holder.lost.is_set()
    assert lease.TableLease(table, 30, "host-b:2:y").try_claim() is not None  # held again, by host-a
    holder.release()
    taker = lease.TableLease(table, 30, "host-b:2:y")
    assert taker.try_claim() is None
    holder.value = b"host-a:1:x|1"  # as if it still thought it held the lease
    assert not holder.renew() and holder.lost.is_set()
