"""The lease's heartbeat (lease.held), on a lease whose table answers as scripted: a holder that
cannot renew gives the lease up at its last beat before the expiry, and says so once."""

from __future__ import annotations

import threading
import time

from jobs.aggregate import lease


class ScriptedLease(lease.TableLease):
    """A lease claimed at once, whose renewals raise, fail or succeed as `renewal` says."""

    def __init__(self, seconds: float, renewal: str) -> None:
        super().__init__(table=None, seconds=seconds, holder="host-a:1:x")
        self.renewal = renewal

    def try_claim(self) -> tuple[str, int] | None:
        self.value = f"{self.holder}|{self.now_us() + int(self.seconds * 1_000_000)}".encode()
        return None

    def renew(self) -> bool:
        if self.renewal == "unreachable":
            raise ConnectionError("503 Bigtable unavailable")
        if self.renewal == "taken":
            return False
        self.value = f"{self.holder}|{self.now_us() + int(self.seconds * 1_000_000)}".encode()
        return True

    def release(self) -> None:
        self.value = None


def hold_for(held: ScriptedLease, seconds: float) -> tuple[list[str], list[tuple[str, float]], int]:
    """Hold `held` for `seconds`; the lines said, (cause, clock reading) at each on_lost call, and
    the expiry of the first claim."""
    lines: list[str] = []
    lost_at: list[tuple[str, float]] = []
    with lease.held(held, say=lines.append, on_lost=lambda cause: lost_at.append((cause, time.time()))):
        first_expiry = lease.expiry_of(held.value)
        threading.Event().wait(seconds)
    return lines, lost_at, first_expiry


def test_an_unreachable_table_makes_the_holder_give_up_before_the_expiry() -> None:
    held = ScriptedLease(seconds=1.5, renewal="unreachable")
    lines, lost_at, expiry = hold_for(held, 2.2)
    assert [cause for cause, _ in lost_at] == [lease.UNREACHABLE]
    assert lost_at[0][1] * 1_000_000 < expiry  # given up before another process could take it over
    assert held.lost.is_set() and held.value is None
    assert any("could not renew the job's lease: 503 Bigtable unavailable" in line for line in lines)
    assert sum("gave up the job's lease" in line for line in lines) == 1


def test_a_lease_taken_over_is_reported_lost_at_once() -> None:
    held = ScriptedLease(seconds=0.6, renewal="taken")
    lines, lost_at, _ = hold_for(held, 0.5)
    assert [cause for cause, _ in lost_at] == [lease.TAKEN_OVER] and held.lost.is_set()
    assert any("another process took it over" in line for line in lines)


def test_a_renewed_lease_is_never_reported_lost() -> None:
    held = ScriptedLease(seconds=0.6, renewal="ok")
    lines, lost_at, expiry = hold_for(held, 1.0)
    assert lost_at == [] and not held.lost.is_set()
    assert lines == []
    assert expiry > 0
