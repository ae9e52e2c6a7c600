"""One run at a time across hosts: a lease in the table itself, claimed with CheckAndMutateRow.

The flock in lock.py guards one host. Job processes on different hosts (each with its own lock
file, even its own copy of the spool) share only the table, so the table holds the claim: the
~job row's dcfmeta:lease cell is "<holder>|<expiry, epoch µs>". A process claims it with one
conditional write whose predicate is the exact value it read, so of two processes that read the
same value only one write applies. The holder renews the lease every third of its length while it
runs and clears it when done; a holder that dies stops renewing, and once the expiry has passed
the next process takes the lease over (and resumes the run it left pending).

Expiry is judged by the reader's clock: hosts' clocks must agree to well within the lease length
(job_lease_seconds, 60 s by default). A holder on this very machine (same boot id) whose process no
longer exists is known dead at once, so a job killed and restarted on one host resumes at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.cloud.bigtable import row_filters

from common import rowkeys, store
from common.jobstate import LEASE
from common.timeutil import SECOND_US

_SAFE = re.compile(r"[^A-Za-z0-9.-]")


class LeaseHeld(RuntimeError):
    """Another process holds the job's lease."""


def _boot_id() -> str:
    """This machine's current boot (Linux), or a random tag where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return _RANDOM_BOOT


_RANDOM_BOOT = uuid.uuid4().hex[:12]


def new_holder() -> str:
    """A name for this process: host, pid, this boot of the machine and a random tag."""
    return f"{_SAFE.sub('-', socket.gethostname())[:40]}:{os.getpid()}:{_boot_id()}.{uuid.uuid4().hex[:6]}"


def dead_on_this_machine(holder: str) -> bool:
    """True when `holder` names a process of this boot of this machine that no longer exists."""
    parts = holder.split(":")
    if len(parts) != 3 or parts[2].split(".")[0] != _boot_id() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def parse_lease(value: bytes) -> tuple[str, int]:
    """A lease cell -> (holder, expiry in epoch µs); ("", 0) when empty or unreadable."""
    holder, _, expiry = value.decode(errors="replace").rpartition("|")
    try:
        return holder, int(expiry)
    except ValueError:
        return "", 0


def _exactly(value: bytes | None) -> row_filters.RowFilter:
    """A predicate matching the ~job row's lease cell when it holds exactly `value` (any value: None)."""
    parts: list[row_filters.RowFilter] = [
        row_filters.FamilyNameRegexFilter(store.META),
        row_filters.ColumnQualifierRegexFilter(re.escape(LEASE.decode()).encode()),
        row_filters.CellsColumnLimitFilter(1),
    ]
    if value is not None:
        parts.append(row_filters.ValueRegexFilter(re.escape(value.decode()).encode()))
    return row_filters.RowFilterChain(filters=parts)


class TableLease:
    """The job's lease in one table, for one holder."""

    def __init__(
        self, table: Any, seconds: float, holder: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.table, self.seconds, self.clock = table, float(seconds), clock
        self.holder = holder or new_holder()
        self.value: bytes | None = None  # the cell as we last wrote it, while we hold the lease
        self.lost = threading.Event()

    def now_us(self) -> int:
        return int(self.clock() * SECOND_US)

    def _swap(self, current: bytes | None, new: bytes) -> bool:
        """Write `new` if the lease cell still holds `current` (None: no cell at all)."""
        row = self.table.conditional_row(rowkeys.JOB_KEY, filter_=_exactly(current))
        row.set_cell(store.META, LEASE, new, state=current is not None)
        matched = bool(row.commit())
        return matched if current is not None else not matched

    def current(self) -> tuple[bytes | None, str, int]:
        """(the cell as stored or None, its holder, its expiry in epoch µs)."""
        cells = store.read_row_cells(self.table, rowkeys.JOB_KEY, store.META)
        value = cells.get(LEASE)
        return (value, *parse_lease(value or b""))

    def try_claim(self) -> tuple[str, int] | None:
        """Claim the lease; None when claimed, else (holder, expiry in epoch µs) of whoever has it."""
        value, holder, expiry = self.current()
        if value and holder and holder != self.holder and expiry > self.now_us() and not dead_on_this_machine(holder):
            return holder, expiry
        new = f"{self.holder}|{self.now_us() + int(self.seconds * SECOND_US)}".encode()
        if self._swap(value, new):
            self.value = new
            self.lost.clear()
            return None
        _, holder, expiry = self.current()  # someone else won the race
        return holder, expiry

    def renew(self) -> bool:
        """Push the expiry on; False (and `lost` set) when the lease is no longer ours."""
        if self.value is None:
            return False
        new = f"{self.holder}|{self.now_us() + int(self.seconds * SECOND_US)}".encode()
        if self._swap(self.value, new):
            self.value = new
            return True
        # Not as we wrote it. A cell nobody holds (`--rebuild` empties the whole table, the lease
        # included) is claimed again; one another process holds is lost.
        value, holder, _ = self.current()
        if not holder and self._swap(value, new):
            self.value = new
            return True
        self.value = None
        self.lost.set()
        return False

    def release(self) -> None:
        """Clear the lease if it is still ours."""
        if self.value is not None:
            with contextlib.suppress(Exception):
                self._swap(self.value, b"")
            self.value = None


TAKEN_OVER = "taken over"
UNREACHABLE = "unreachable"


def expiry_of(value: bytes | None) -> int:
    """The expiry (epoch µs) in a lease cell as this holder wrote it; 0 when there is none."""
    return parse_lease(value or b"")[1]


@contextlib.contextmanager
def held(
    lease: TableLease,
    wait: bool = False,
    say: Callable[[str], None] = lambda line: None,
    on_lost: Callable[[str], None] = lambda cause: None,
) -> Iterator[TableLease]:
    """Hold the lease for the block, renewed in the background. Raises LeaseHeld at once when
    another process has it, unless `wait`, which retries until it is free or expires.

    When the lease is lost, `lease.lost` is set and `on_lost(cause)` is called once, from the
    heartbeat thread, with cause TAKEN_OVER (another process holds it now: stop writing at once) or
    UNREACHABLE (Bigtable could not be reached to renew it before its expiry; the run's own Bigtable
    calls fail too, within bigtable_timeout_seconds). A holder that cannot renew gives the lease up
    at its last beat before the expiry, not after it."""
    told = False
    while (other := lease.try_claim()) is not None:
        holder, expiry = other
        left = max(0.0, expiry / SECOND_US - lease.clock())
        if not wait:
            raise LeaseHeld(
                f"another aggregation run ({holder}) holds the job's lease in the table for {left:.0f} s more"
            )
        if not told:
            say(f"aggregate: waiting for the run of {holder} (its lease expires in {left:.0f} s unless renewed)")
            told = True
        time.sleep(min(max(lease.seconds / 6, 0.2), 2.0, left + 0.05))
    stop = threading.Event()
    beat = lease.seconds / 3

    def give_up(cause: str, line: str) -> None:
        say(line)
        lease.value = None
        lease.lost.set()
        on_lost(cause)

    def heartbeat() -> None:
        expiry = expiry_of(lease.value)
        while not stop.wait(beat):
            try:
                if not lease.renew():
                    give_up(
                        TAKEN_OVER, f"aggregate: lost the job's lease ({lease.holder}); another process took it over"
                    )
                    return
                expiry = expiry_of(lease.value)
            except Exception as exc:  # Bigtable unreachable: try again at the next beat, if it comes in time
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                if lease.now_us() + int(beat * SECOND_US) >= expiry:
                    give_up(
                        UNREACHABLE,
                        f"aggregate: gave up the job's lease ({lease.holder}): it could not be renewed "
                        f"before its expiry ({reason})",
                    )
                    return
                say(f"aggregate: could not renew the job's lease: {reason}")

    thread = threading.Thread(target=heartbeat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(timeout=5)
        lease.release()
