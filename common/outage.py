"""Riding out an outage: what counts as one, capped exponential backoff, and the line that says so.

Every long-running command (the emitter, the spooler, the `--every` job) waits out an unreachable
Pub/Sub or Bigtable the same way: retry with a delay that doubles up to `outage_backoff_max_seconds`,
say on stderr that it is waiting (at most once per `outage_report_seconds`), and say so again when
the service answers. `is_outage` is the one place that decides whether an error means "the service
could not be reached", including errors that reach the driver as text only (a Bigtable error raised
inside a Spark executor arrives as a PythonException or Py4JJavaError).
"""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable

from google.api_core import exceptions as gexc

from common.clients import ServiceUnavailable

# gRPC status names and client exception names that mean "not reachable right now".
_OUTAGE_MARKERS = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "ServiceUnavailable",
    "DeadlineExceeded",
    "RetryError",
    "failed to connect to all addresses",
    "Connection refused",
    "Connection reset",
    "Socket closed",
)
_OUTAGE_TYPES = (
    ServiceUnavailable,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    gexc.Unknown,
    gexc.Aborted,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.Cancelled,
    ConnectionError,
    TimeoutError,
)


def names_outage(text: str) -> bool:
    """True when an error's text names a service that could not be reached (a gRPC status, or the
    words of a refused or reset connection), as errors that crossed a process boundary do."""
    return any(marker in text for marker in _OUTAGE_MARKERS)


def is_outage(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) means a service could not be reached, judged by
    its type or, for errors that crossed a process boundary as text, by the gRPC status it names."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGE_TYPES):
            return True
        if names_outage(f"{current.__class__.__name__}: {current}"):
            return True
        current = current.__cause__ or current.__context__
    return False


def outage_line(exc: BaseException, limit: int = 200) -> str:
    """The line of `exc`'s text that names the outage (an executor's error carries a whole remote
    traceback), else its first line; shortened to `limit` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if names_outage(line)]
    line = (telling or lines or [exc.__class__.__name__])[-1 if telling else 0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_os_error(exc: OSError, what: str) -> str:
    """One line for a failed write under `what` (a config key): full, read-only, or the OS's words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{what} is full"
    if exc.errno == errno.EROFS:
        return f"{what} is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{what} is not writable"
    return f"{what}: {exc.strerror or exc}"


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The error's class and the first line of its message, shortened (for a RetryError, those of
    the last error it retried)."""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        exc = exc.cause
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Backoff:
    """Capped exponential backoff for one kind of failure, with a periodic report.

    `failed(reason)` records a failure and returns how long to wait before the next attempt (0.5 s,
    then doubling up to `cap`, with a little jitter so several retriers do not march in step); the
    first failure and then one every `report_every` seconds are reported through `say` as
    "<name>: <service> unreachable for N s (<reason>); retrying with backoff up to M s".
    `succeeded()` ends the outage (reported as "<service> back after N s"). Thread-safe: pullers
    may share one."""

    def __init__(
        self,
        name: str,
        service: str,
        say: Callable[[str], None],
        cap: float = 60.0,
        report_every: float = 60.0,
        initial: float = 0.5,
        problem: str = "{service} unreachable for {since:.0f} s ({reason})",
        recovered: str = "{service} back after {since:.0f} s",
    ) -> None:
        """`problem` and `recovered` word the lines; they may use {service}, {since} and (problem
        only) {reason}."""
        self.name, self.service, self.say = name, service, say
        self.cap, self.report_every, self.initial = cap, report_every, initial
        self.problem, self.recovered = problem, recovered
        self._lock = threading.Lock()
        self._since: float | None = None
        self._reported: float | None = None
        self._failures = 0
        self.outages = 0  # outages seen (each ended or still going)
        self.last_reason = ""

    @property
    def down_for(self) -> float:
        """Seconds since the current outage began (0 when the service answers)."""
        with self._lock:
            return 0.0 if self._since is None else time.monotonic() - self._since

    @property
    def down(self) -> bool:
        return self._since is not None

    def delay(self) -> float:
        """The wait before the next attempt, at the current failure count."""
        with self._lock:
            return self._delay_locked()

    def _delay_locked(self) -> float:
        base = min(self.cap, self.initial * (2 ** min(self._failures - 1, 30))) if self._failures else 0.0
        return base * random.uniform(0.8, 1.0)

    def failed(self, reason: str) -> float:
        """Record one failed attempt; report when due; return the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
                self.outages += 1
            self._failures += 1
            self.last_reason = reason
            due = self._reported is None or now - self._reported >= self.report_every
            if due:
                self._reported = now
            wait = self._delay_locked()
            since = now - self._since
        if due:
            problem = self.problem.format(service=self.service, since=since, reason=reason)
            self.say(f"{self.name}: {problem}; retrying with backoff up to {self.cap:g} s")
        return wait

    def succeeded(self) -> None:
        """The service answered: end the outage, reporting its length if one was going on."""
        with self._lock:
            since, self._since, self._failures, self._reported = self._since, None, 0, None
        if since is not None:
            recovered = self.recovered.format(service=self.service, since=time.monotonic() - since)
            self.say(f"{self.name}: {recovered}")
