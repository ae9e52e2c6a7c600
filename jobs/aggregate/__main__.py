"""txn-aggregate (or python -m jobs.aggregate): one aggregation run over the spool files not
processed yet, then exit. A run takes at most job_max_files_per_run files (the oldest first), since
its memory follows its input; a larger backlog is counted in several runs, one after another.

    txn-aggregate [--config PATH] [--master URL] [--conf KEY=VALUE ...]
                  [--rebuild] [--every DURATION] [--wait] [--stream]
    spark-submit --master URL jobs/aggregate/__main__.py [same flags]   (the project installed, as
                                                                        scripts/bootstrap.sh does)

Progress and the summary go to stderr. Exit codes: 0 done, 1 the run failed (it stays pending and
the next run resumes it), 2 a bad flag or config value, 3 Bigtable unreachable, 75 another run
holds the lock (try again later).

With --every, a run that fails (Bigtable unreachable, rows that could not be written) is tried
again after a capped exponential backoff (config: outage_backoff_max_seconds, never longer than the
period), with one line per failed run and a summary every outage_report_seconds, until it succeeds;
the loop itself ends only on SIGINT/SIGTERM.

--stream is the live mode: the same loop with a run every stream_poll_seconds (1 s by default), one
warm Spark session, and no line for a poll that found nothing new. Each run has the same lock,
lease, run ids and crash resumption as any other, so the numbers stay exact; failed runs back off
up to outage_backoff_max_seconds.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from argparse import SUPPRESS
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn

from common import clients, logs
from common.cli import (
    EXIT_UNAVAILABLE,
    ArgumentParser,
    UsageError,
    add_config_argument,
    add_log_format_argument,
    command_name,
    configure_logs,
    log,
    non_negative_float,
    run,
)
from common.config import Config, load_config
from common.outage import Backoff, outage_line
from common.timeutil import TimeFormatError, parse_duration
from jobs.aggregate.lock import RunLocked, run_lock

EXIT_FAILED = 1
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run is at work, try again later
COMPACT_EVERY_S = 60.0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=command_name("txn-aggregate", "jobs.aggregate"),
        description="Aggregate the Parquet spool into Bigtable: per-user hourly buckets, per-minute stats, "
        "a per-hour top-spender index and the transaction list. One run processes the spool files not "
        "processed yet and exits.",
    )
    add_config_argument(parser)
    add_log_format_argument(parser)
    parser.add_argument("--master", metavar="URL", help="Spark master, e.g. spark://host:7077 (default: local[*])")
    parser.add_argument("--conf", metavar="KEY=VALUE", action="append", default=[], help="a Spark setting; repeatable")
    parser.add_argument("--rebuild", action="store_true", help="empty the table and reprocess the whole spool")
    parser.add_argument("--every", metavar="DURATION", help="keep running a run every DURATION (e.g. 5m) until stopped")
    parser.add_argument("--wait", action="store_true", help="wait for a run that holds the lock instead of exiting")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="keep one Spark session warm and count new spool files as they appear: a run every "
        "stream_poll_seconds, quiet while nothing is new (the live mode)",
    )
    # For the crash tests only (not in --help): sleep after each written batch, so a test can kill
    # the run when some, but not all, of its rows are in the table.
    parser.add_argument("--pause-after-batch", metavar="SECONDS", type=non_negative_float, default=0.0, help=SUPPRESS)
    # For the benchmark only (not in --help): a one-off run that writes no merchant-category (dcfcat)
    # or sketch (dcfkll) rows, so the benchmark can time the job with and without them on the same
    # spool. Its table's /categories and /percentiles miss that run's transactions, so the benchmark
    # throws the table away; the run's summary records analytics: false.
    parser.add_argument("--no-analytics", dest="analytics", action="store_false", help=SUPPRESS)
    return parser


def parse_conf(pairs: list[str]) -> dict[str, str]:
    """--conf KEY=VALUE values -> dict; raises UsageError for a malformed one."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--conf must be KEY=VALUE such as spark.executor.memory=2g, got {pair!r}")
        conf[key.strip()] = value
    return conf


def check_analytics(analytics: bool, repeating: bool) -> None:
    """--no-analytics is the benchmark's one-off run: refused by name with --every or --stream, where
    it would leave a live table without categories and percentiles."""
    if not analytics and repeating:
        raise UsageError("--no-analytics is for the benchmark's one-off runs; give it without --every or --stream")


def parse_every(text: str | None) -> float | None:
    """--every DURATION -> seconds (None when not given); raises UsageError unless positive."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text).total_seconds()
    except TimeFormatError:
        seconds = -1
    if seconds <= 0:
        raise UsageError(f"--every must be a positive duration such as 30s, 5m or 1h, got {text!r}")
    return seconds


class Runner:
    """Runs under the lock; the SparkSession is built on the first run and kept for the next ones."""

    def __init__(
        self,
        cfg: Config,
        master: str | None,
        conf: dict[str, str],
        pause_after_batch_s: float = 0.0,
        analytics: bool = True,
    ) -> None:
        self.cfg, self.master, self.conf = cfg, master, conf
        self.pause_after_batch_s = pause_after_batch_s
        self.analytics = analytics
        self.spark: Any = None
        self.more = False  # the last run left new files (job_max_files_per_run) for the next one
        self.lease_lost = threading.Event()
        self.quiet_idle = False  # --stream: no line for a poll that found nothing new
        self.compacted_at: float | None = None

    def on_lease_lost(self, cause: str) -> None:
        """Called from the lease's heartbeat. Taken over: another process now runs the job, so this
        one stops writing at once (its Spark jobs are cancelled; the run stays pending for the new
        holder). Unreachable: Bigtable is away, and the run's own calls end it as an outage."""
        from jobs.aggregate.lease import TAKEN_OVER

        if cause != TAKEN_OVER:
            return
        self.lease_lost.set()
        if self.spark is not None:
            self.spark.sparkContext.cancelAllJobs()

    def run_once(self, rebuild: bool, wait: bool) -> int:
        self.lease_lost.clear()
        try:
            return self._run_once(rebuild, wait)
        except Exception:
            if not self.lease_lost.is_set():
                raise
        log("error: another process took the job's lease over, so this run stopped; it stays pending")
        return EXIT_FAILED

    def _run_once(self, rebuild: bool, wait: bool) -> int:
        from common.jobstate import JobStateError
        from common.spool import SpoolSchemaError
        from jobs.aggregate import job
        from jobs.aggregate.session import get_spark

        try:
            with run_lock(self.cfg, wait=wait, say=log, on_lost=self.on_lease_lost):
                if self.spark is None:
                    self.spark = get_spark(self.master, extra_conf=self.conf)
                say = _quiet_when_idle if self.quiet_idle else log
                summary = job.run_once(
                    self.spark,
                    self.cfg,
                    rebuild=rebuild,
                    say=say,
                    pause_after_batch_s=self.pause_after_batch_s,
                    analytics=self.analytics,
                )
                self.more = summary.files_left > 0
                if not self.more:
                    self.compact()
        except RunLocked as exc:
            log(f"error: {exc}")
            return EXIT_LOCKED
        except (SpoolSchemaError, JobStateError, job.LoadFailed) as exc:
            if self.lease_lost.is_set():
                raise
            if job.service_error(exc):  # rows that failed because Bigtable could not be reached
                log(f"error: Bigtable: {outage_line(exc)}")
                return EXIT_UNAVAILABLE
            log(f"error: {exc}")
            return EXIT_FAILED
        except Exception as exc:
            # A Bigtable error raised inside an executor reaches here as a PythonException or a
            # Py4JJavaError: is_outage reads the gRPC status from its text.
            if self.lease_lost.is_set() or not job.service_error(exc):
                raise
            log(f"error: Bigtable: {outage_line(exc)}")
            return EXIT_UNAVAILABLE
        return 0

    def compact(self) -> None:
        """Merge small processed spool files (jobs/aggregate/compact.py), at most once every
        COMPACT_EVERY_S in a loop. A failure is said, not raised: the run itself succeeded."""
        from jobs.aggregate.compact import compact

        now = time.monotonic()
        if self.compacted_at is not None and now - self.compacted_at < COMPACT_EVERY_S:
            return
        self.compacted_at = now
        try:
            compact(self.cfg, clients.bigtable_table(self.cfg), say=log)
        except Exception as exc:
            log(f"warning: compaction of the spool failed, the next one tries again: {outage_line(exc)}")

    def stop(self) -> None:
        if self.spark is not None:
            self.spark.stop()


def _quiet_when_idle(line: str) -> None:
    """log, but for the summary of a run that found no new file (in --stream, one a second)."""
    from jobs.aggregate.job import IDLE_LINE  # here, like every import of Spark code: --help stays fast

    if not line.startswith(IDLE_LINE):
        log(line)


def run_every(runner: Runner, seconds: float, wait: bool, backoff_cap: float | None = None) -> int:
    """A run every `seconds` (measured start to start) until SIGINT or SIGTERM; a second signal
    interrupts the run in progress, which the next invocation resumes. Failed runs are retried after
    a backoff capped at `backoff_cap` (default: outage_backoff_max_seconds, never longer than the
    period)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log(f"aggregate: {signal.Signals(signum).name}: stopping after the current run")
        stop.set()

    previous: dict[signal.Signals, Callable[..., Any] | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    cfg = runner.cfg
    backoff = Backoff(
        "aggregate",
        "Bigtable",
        log,
        cap=backoff_cap if backoff_cap is not None else min(cfg.outage_backoff_max_seconds, seconds),
        report_every=cfg.outage_report_seconds,
        initial=min(1.0, seconds),
        problem="runs failing for {since:.0f} s ({reason})",
        recovered="a run succeeded again after {since:.0f} s of failures",
    )
    code = 0
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                code = runner.run_once(rebuild=False, wait=wait)
            except Exception as exc:  # a bug, not an outage: say it all, keep the schedule
                log(traceback.format_exc().rstrip())
                log(f"error: the run failed: {outage_line(exc)}")
                code = EXIT_FAILED
            if code == EXIT_LOCKED:
                log("aggregate: skipped this run; trying again at the next one")
            if code in (0, EXIT_LOCKED):
                if backoff.down:
                    backoff.succeeded()
                if code == 0 and runner.more:
                    continue  # a backlog in slices: the next slice at once
                stop.wait(max(0.0, seconds - (time.monotonic() - started)))
            else:
                # Failed (it stays pending): the next attempt comes after the backoff, from now.
                reason = "Bigtable unreachable" if code == EXIT_UNAVAILABLE else f"exit {code}"
                stop.wait(backoff.failed(reason))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if code in (0, EXIT_LOCKED) else code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args, "aggregate")
    cfg = load_config(args.config)
    conf = parse_conf(args.conf)
    every = parse_every(args.every)
    if every is not None and args.rebuild:
        raise UsageError("--rebuild is a one-off; run it without --every")
    if args.stream and (every is not None or args.rebuild):
        raise UsageError("--stream runs continuously: give it without --every or --rebuild")
    check_analytics(args.analytics, every is not None or args.stream)
    logs.wrap_foreign_stderr("spark")  # with --log-format json, the JVM's own lines become JSON too
    clients.apply_emulator_env(cfg)  # before Spark starts, so the executors inherit it
    runner = Runner(cfg, args.master, conf, args.pause_after_batch, args.analytics)
    try:
        if args.stream:
            runner.quiet_idle = True
            return run_every(runner, cfg.stream_poll_seconds, wait=True, backoff_cap=cfg.outage_backoff_max_seconds)
        if every is not None:
            return run_every(runner, every, args.wait)
        code = runner.run_once(rebuild=args.rebuild, wait=args.wait)
        while code == 0 and runner.more:  # a backlog larger than one run: the next slice
            code = runner.run_once(rebuild=False, wait=args.wait)
        return code
    finally:
        runner.stop()


def console() -> NoReturn:
    """The `txn-aggregate` command: the same as `python -m jobs.aggregate`."""
    run(main)


if __name__ == "__main__":
    console()
