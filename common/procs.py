"""One process supervisor for whatever starts the pipeline's commands as subprocesses: the demo
(scripts/demo.py), the benchmark (bench/) and the reliability suite (tests/reliability/).

Each command runs in its own session, hence its own process group, so a signal reaches exactly
what it is meant for: signal() the command alone (it stops its own helpers, such as the Spark JVM
or the emitter's producer process, in order), signal_group() the command and every helper at
once. Output goes to a log file (or, without one, to this process's terminal). Only the groups a
Supervised started are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class TimedOut(RuntimeError):
    """wait() ran out of time; the group has been killed and the command reaped."""

    def __init__(self, argv: Sequence[str], timeout: float, returncode: int) -> None:
        super().__init__(f"{' '.join(argv)} did not end within {timeout:g} s")
        self.returncode = returncode


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes of a process group."""
    import psutil

    members = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
    return members


class Supervised:
    """A command started in its own process group, its stdout and stderr going to `log` (appended
    to with `append`; stdin is then /dev/null) or, when `log` is None, to this process's own."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        append: bool = False,
    ) -> None:
        self.argv = [str(part) for part in argv]
        self.log = log
        self._handle: IO[bytes] | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(log, "ab" if append else "wb")  # noqa: SIM115 - closed once it has exited
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=self._handle,
            stderr=subprocess.STDOUT if self._handle is not None else None,
            stdin=subprocess.DEVNULL if self._handle is not None else None,
            start_new_session=True,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.ensure_stopped()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited (negative: the signal that ended it), else None."""
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """What the command has written to its log so far ("" without a log)."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log is not None else ""

    def signal(self, sig: int) -> None:
        """Send `sig` to the command alone, if it still runs."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the command's whole process group (the command and its helpers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to exit and return its exit code. After `timeout` seconds, SIGKILL
        its group, reap it and raise TimedOut (carrying the exit code)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            code = self.process.wait()
            self._close()
            raise TimedOut(self.argv, timeout or 0.0, code) from None
        self._close()
        return code

    def helper_groups(self) -> set[int]:
        """Process groups of this command's descendants other than its own (PySpark's Python worker
        daemon makes one of its own), read while the command runs; a group kill misses them."""
        import psutil

        groups: set[int] = set()
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    groups.add(os.getpgid(child.pid))
        return groups - {self.pid}

    def ensure_stopped(self, group_grace: float = 0.0, helper_groups: set[int] | frozenset[int] = frozenset()) -> int:
        """Whatever happened, leave nothing of the group (nor of `helper_groups`, see helper_groups)
        running: SIGKILL the group if the command still runs, then give helpers that outlive it up to
        `group_grace` seconds to exit and SIGKILL the rest. Returns how many helpers had to be killed
        that way."""
        if self.running():
            self.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimedOut):
            self.wait(60)
        groups = {self.pid, *helper_groups}

        def members() -> list[int]:
            return [pid for group in groups for pid in group_members(group)]

        deadline = time.monotonic() + group_grace
        while (left := members()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(left)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
