"""One run at a time: an flock(2) lock file on this host, which the kernel releases even on
SIGKILL, and the job's lease in the table (lease.py) across hosts."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from common import clients, spool
from common.config import Config
from jobs.aggregate import lease

LOCK_NAME = "_aggregate.lock"  # a leading '_' keeps it out of every spool listing


class RunLocked(RuntimeError):
    """Another aggregation run holds the lock."""


def lock_path(cfg: Config) -> Path:
    """Beside a local spool; for a remote spool (gs://...), under ~/.cache, which guards one host only."""
    if spool.is_local(cfg.spool_dir):
        return spool.local_path(cfg.spool_dir) / LOCK_NAME
    digest = hashlib.sha256(cfg.spool_dir.encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "txn-pipeline" / f"aggregate-{digest}.lock"


@contextlib.contextmanager
def run_lock(
    cfg: Config,
    wait: bool = False,
    say: Callable[[str], None] = lambda line: None,
    on_lost: Callable[[str], None] = lambda cause: None,
) -> Iterator[Path]:
    """Hold this host's lock file, then the job's lease in the table, for the block. Raises
    RunLocked at once when either is taken, unless `wait`. `on_lost` is called (from another
    thread) if the lease is lost while the block runs: see lease.held."""
    with _host_lock(cfg, wait) as path:
        table = clients.ensure_table(cfg)
        try:
            with lease.held(lease.TableLease(table, cfg.job_lease_seconds), wait=wait, say=say, on_lost=on_lost):
                yield path
        except lease.LeaseHeld as exc:
            raise RunLocked(f"{exc}; it will pick up new files too, or pass --wait to run after it") from None


@contextlib.contextmanager
def _host_lock(cfg: Config, wait: bool = False) -> Iterator[Path]:
    """Hold the job's lock file for the block. Raises RunLocked at once when it is taken, unless `wait`."""
    path = lock_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunLocked(
                f"another aggregation run (pid {holder}) holds {path}; it will pick up new files too, "
                "or pass --wait to run after it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
