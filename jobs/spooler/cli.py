"""`python -m jobs.spooler`: pull transactions from Pub/Sub into the Parquet spool.

Valid transactions go to <spool_dir>/transactions/, rejected messages (with the reason) to
<spool_dir>/dead-letter/; messages are acked only once the file holding them is durable. Runs
until SIGINT/SIGTERM (which flush and exit cleanly) or, with --until-idle, until the subscription
has been quiet that long (time in which Pub/Sub does not answer does not count).

With `spooler_metrics_port` set in the config, it serves its counts for Prometheus on that port at
/metrics (jobs/spooler/metrics.py lists them).

Pub/Sub unreachable, or a spool_dir that is full or read-only, is waited out with a capped backoff
(config: outage_backoff_max_seconds) and a line on stderr every outage_report_seconds. Exit codes:
0 done, 1 stopped while messages could not be written (they stay unacked), 2 a bad flag or config
value, 3 Pub/Sub unreachable at start.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from types import FrameType

from tqdm import tqdm

from common import logs
from common.cli import ArgumentParser, add_config_argument, add_log_format_argument, command_name, configure_logs, log
from common.config import load_config
from jobs.spooler.spooler import DEFAULT_PULLERS, Spooler, SpoolerStats


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _pullers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds > 0"
_pullers.__name__ = "integer 1..64"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=command_name("txn-spool", "jobs.spooler"), description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_config_argument(parser)
    add_log_format_argument(parser)
    parser.add_argument(
        "--until-idle", type=_seconds, metavar="SECONDS", help="exit once no message has arrived for this long"
    )
    parser.add_argument(
        "--pullers",
        type=_pullers,
        default=DEFAULT_PULLERS,
        metavar="K",
        help=f"concurrent Pull requests (default {DEFAULT_PULLERS})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the summary line stays)")
    return parser


def summary(stats: SpoolerStats) -> str:
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(stats.reasons.items()))
    return (
        f"spooler: spooled {stats.spooled} transactions, dead-lettered {stats.dead_lettered}"
        + (f" ({reasons})" if reasons else "")
        + f", {stats.files} files, in {stats.seconds:.1f} s ({stats.rate:,.0f} msgs/s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args, "spooler")
    cfg = load_config(args.config)

    bar: tqdm[None] | None = None

    def progress(stats: SpoolerStats) -> None:
        if bar is None:
            return
        bar.set_postfix(dead_lettered=stats.dead_lettered, files=stats.files, refresh=False)
        bar.update(stats.spooled + stats.dead_lettered - bar.n)

    spooler = Spooler(cfg, pullers=args.pullers, until_idle=args.until_idle, on_progress=progress)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        spooler.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    server = None
    if cfg.spooler_metrics_port:  # first: a port already taken is a config error, said before starting
        server = spooler.metrics.serve(cfg.spooler_metrics_host, cfg.spooler_metrics_port)
    idle = f", exits after {args.until_idle:g} s idle" if args.until_idle else ", until stopped"
    log(f"spooler: {cfg.subscription_id} -> {cfg.spool_dir} ({args.pullers} pullers{idle})")
    if server is not None:
        log(f"spooler: metrics on http://{cfg.spooler_metrics_host}:{cfg.spooler_metrics_port}/metrics")
    bar = tqdm(unit=" msg", desc="spooled", disable=args.quiet or logs.is_json(), mininterval=0.5)
    try:
        stats = spooler.run()
    finally:
        bar.close()
        if server is not None:
            server.shutdown()
    log(summary(stats))
    if spooler.unwritten:
        log(
            f"error: {spooler.unwritten} messages could not be written to the spool "
            f"({spooler.write_backoff.last_reason}); they were not acked, and Pub/Sub delivers them again"
        )
        return 1
    return 0
