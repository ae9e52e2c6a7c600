"""`python -m emitter`: simulate card holders and publish their transactions to Pub/Sub.

Simulation mode (default) publishes every transaction of a window of simulated time
(--start/--end, default the config's, i.e. the last 48 hours) as fast as Pub/Sub takes them.
Live mode (--live) starts now and paces transactions by the wall clock, --speedup times faster
than the configured spending periods, until SIGINT/SIGTERM.
The topic and the spooler's subscription are created when missing, so nothing published before
the spooler first runs is lost.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import FrameType

from tqdm import tqdm

from common import clients, logs
from common.cli import (
    ArgumentParser,
    UsageError,
    add_config_argument,
    add_log_format_argument,
    command_name,
    configure_logs,
    log,
    non_negative_int,
    positive_int,
)
from common.config import Config, load_config
from common.timeutil import TimeFormatError, format_rfc3339, from_epoch_us, parse_time, utcnow
from emitter.producer import EncodedTransaction, ProducerProcess, SimulationRequest
from emitter.publish import Ledger, PublishCounts, TransactionPublisher
from emitter.simulate import Population

EXIT_PUBLISH_FAILED = 1
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class EmitResult:
    """The outcome of one emitter run."""

    counts: PublishCounts
    seconds: float
    stopped_early: bool
    first_event: datetime | None
    last_event: datetime | None

    @property
    def rate(self) -> float:
        return self.counts.published / self.seconds if self.seconds > 0 else 0.0


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


# argparse names the expected form from the converter's __name__.
_positive_float.__name__ = "number > 0"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=command_name("txn-emit", "emitter"), description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_config_argument(parser)
    add_log_format_argument(parser)
    parser.add_argument("--users", type=positive_int, metavar="N", help="number of card holders (config: users)")
    parser.add_argument(
        "--seed", type=non_negative_int, metavar="S", help="random seed; the same seed gives the same data"
    )
    parser.add_argument("--start", metavar="TIME", help="window start: -48h, ISO-8601 or epoch (config)")
    parser.add_argument("--end", metavar="TIME", help="window end: now, -1h, ISO-8601 or epoch (config)")
    parser.add_argument("--live", action="store_true", help="pace by the wall clock from now until stopped")
    parser.add_argument("--speedup", type=_positive_float, metavar="X", help="live mode speed-up (config)")
    parser.add_argument("--ledger", metavar="PATH", help="write every published transaction to this CSV")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="stop after N transactions")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the summary line stays)")
    parser.allow_dash_values("--start", "--end")
    return parser


STOP_GRACE_SECONDS = 10.0  # after a stop, how long unconfirmed messages may still be confirmed


def _watch_progress(publisher: TransactionPublisher, bar: tqdm[None], done: threading.Event) -> None:
    """Keep the bar current, and show while messages wait on Pub/Sub and for how long (the
    publisher's backoff also says it on stderr every `outage_report_seconds`)."""
    shown = False
    while not done.wait(0.5):
        waiting = publisher.waiting_seconds()
        if waiting >= 2.0:
            bar.set_postfix_str(f"waiting on Pub/Sub for {waiting:.0f} s, {publisher.unconfirmed:,} unconfirmed")
            shown = True
        elif shown:
            bar.set_postfix_str("")
            shown = False
        bar.update(publisher.published - bar.n)


def emit(
    publisher: TransactionPublisher,
    batches: Iterable[list[EncodedTransaction]],
    stop: threading.Event | None = None,
    paced: bool = False,
    progress: bool = True,
    give_up: threading.Event | None = None,
) -> EmitResult:
    """Publish every encoded transaction of `batches` until they run out or `stop` is set; wait for
    every outcome; return the counts. `paced` holds each one back until the wall clock reaches its
    event time (live mode). Shows a progress bar with the rate unless `progress` is False.
    Through an outage the wait for outcomes lasts as long as it takes; once `stop` is set it lasts
    at most STOP_GRACE_SECONDS, or until `give_up` is set (what is left is reported unconfirmed).
    The time (and so the rate) runs from the first batch's arrival to the last confirmation."""
    stop = stop or threading.Event()
    give_up = give_up or threading.Event()
    bar = tqdm(unit=" msg", desc="published", disable=not progress, smoothing=0.1, mininterval=0.5)
    watching = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(publisher, bar, watching), daemon=True)
    watcher.start()
    first_us: int | None = None
    last_us: int | None = None
    started: float | None = None
    publish = publisher.publish_encoded
    try:
        for batch in batches:
            if stop.is_set():
                break
            if first_us is None and batch:
                first_us = batch[0][2]
                started = time.perf_counter()
            for item in batch:
                if paced:
                    delay = item[2] / 1e6 - time.time()
                    if delay > 0 and stop.wait(delay):
                        break
                elif stop.is_set():
                    break
                if not publish(item, stop):
                    break
                last_us = item[2]
    finally:
        if not stop.is_set():  # ran to the end: wait out an outage, however long, unless stopped
            publisher.wait(give_up=stop)
        counts = publisher.close(timeout=STOP_GRACE_SECONDS, give_up=give_up)
        watching.set()
        watcher.join()
        seconds = time.perf_counter() - started if started is not None else 0.0
        bar.update(counts.published - bar.n)
        bar.close()
    return EmitResult(
        counts,
        seconds,
        stop.is_set(),
        from_epoch_us(first_us) if first_us is not None else None,
        from_epoch_us(last_us) if last_us is not None else None,
    )


def describe_currencies(population: Population) -> str:
    """The currencies spent: "USD", or the mix with each one's share, "EUR 15%, JPY 5%, USD 80%"."""
    spends = population.spends()
    if len(spends) == 1:
        return spends[0].currency
    total = sum(spend.weight for spend in spends)
    return ", ".join(f"{spend.currency} {spend.weight / total:.0%}" for spend in spends)


def _time_flag(flag: str, value: str | None, default: str, now: datetime) -> datetime:
    try:
        return parse_time(value or default, now)
    except TimeFormatError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _window(args: argparse.Namespace, cfg: Config, now: datetime) -> tuple[datetime, datetime | None, float]:
    if args.live:
        if args.start or args.end:
            raise UsageError("--start/--end do not apply with --live, which starts now and runs until stopped")
        return now, None, float(cfg.live_speedup)
    start = _time_flag("--start", args.start, cfg.simulation_start, now)
    end = _time_flag("--end", args.end, cfg.simulation_end, now)
    if start >= end:
        raise UsageError(
            f"--start ({format_rfc3339(start)}) must be before --end ({format_rfc3339(end)}), "
            "e.g. --start -48h --end now"
        )
    return start, end, 1.0


def _unconfirmed_message(
    args: argparse.Namespace, cfg: Config, counts: PublishCounts, start: datetime, end: datetime | None
) -> str:
    """What was left unconfirmed when the emitter stopped, and (simulation mode) how to send it."""
    line = (
        f"emitter: {counts.unconfirmed:,} transactions were not confirmed by Pub/Sub "
        f"({counts.published:,} were; the ledger lists only those)"
    )
    if end is None:
        return line + "; live transactions cannot be generated again"
    again = [
        "python -m emitter",
        *(["--config", args.config] if args.config else []),
        f"--users {cfg.users} --seed {cfg.seed} --start {format_rfc3339(start)} --end {format_rfc3339(end)}",
        *([f"--limit {args.limit}"] if args.limit else []),
        *(["--ledger NEW.csv"] if args.ledger else []),
    ]
    return (
        line + f"; to send them, run the same seed over the same window: {' '.join(again)} "
        "(the transactions already confirmed are sent again as duplicates and count once)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args, "emitter")
    cfg = load_config(args.config, {"users": args.users, "seed": args.seed, "live_speedup": args.speedup})
    start, end, time_scale = _window(args, cfg, utcnow())
    request = SimulationRequest(Population.from_config(cfg), start, end, time_scale, args.limit)
    stop = threading.Event()
    give_up = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # The first signal stops emitting (what is unconfirmed gets a few seconds more); a second
        # one stops waiting for Pub/Sub.
        if stop.is_set():
            give_up.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # The producer starts first so its start-up overlaps the topic check.
        with ProducerProcess(request) as producer:
            # The spooler's subscription too: Pub/Sub keeps messages only for subscriptions that exist
            # when they are published. Unreachable Pub/Sub: one clear line and exit 3.
            clients.ensure_subscription(cfg, timeout=5.0)
            ledger = Ledger(args.ledger) if args.ledger else None
            publisher = TransactionPublisher(cfg, ledger=ledger, ensure_topic=False)
            mode = f"live, {time_scale:g}x" if end is None else f"{format_rfc3339(start)} .. {format_rfc3339(end)}"
            currencies = describe_currencies(request.population)
            log(f"emitter: {cfg.users} users, seed {cfg.seed}, in {currencies}, {mode} -> {publisher.topic}")
            result = emit(
                publisher,
                producer,
                stop,
                paced=end is None,
                progress=not (args.quiet or logs.is_json()),
                give_up=give_up,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = result.counts
    span = ""
    if result.first_event and result.last_event:
        span = f", event times {format_rfc3339(result.first_event)} .. {format_rfc3339(result.last_event)}"
    log(
        f"emitter: published {counts.published} transactions, {counts.failed} failed, "
        f"in {result.seconds:.1f} s ({result.rate:,.0f} msgs/s){span}"
        + (f"; ledger {ledger.path}" if ledger else "")
        + ("; stopped by signal" if result.stopped_early else "")
    )
    if counts.failed:
        log(f"error: {counts.failed} transactions could not be published; first error: {counts.first_error}")
        return EXIT_PUBLISH_FAILED
    if counts.unconfirmed:
        log(_unconfirmed_message(args, cfg, counts, start, end))
        return EXIT_INTERRUPTED if end is not None else EXIT_PUBLISH_FAILED
    if result.stopped_early and end is not None:
        return EXIT_INTERRUPTED
    return 0
