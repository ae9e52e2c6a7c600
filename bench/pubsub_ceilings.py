"""Ceilings for the ingest stage, measured on the same emulator in the same run.

raw_publish_rate
    msgs/s of a plain google-cloud-pubsub PublisherClient (same batching and flow control as the
    emitter) publishing N pre-encoded messages, counted in a done-callback
emitter_rate
    msgs/s of the product's emitter for N transactions (generation, encoding and ledger-free
    publishing), in-process through emitter.cli.emit or as a `python -m emitter` subprocess
raw_pull_ack_rate
    msgs/s of a plain loop of unary Pull + Acknowledge calls (as many threads as the spooler has
    pullers) draining a backlog of N messages
raw_streaming_pull_ack_rate
    msgs/s of a plain streaming-pull subscriber acking in its callback (for reference: the
    emulator paces each stream to ~2,000 msgs/s, which is why the spooler uses unary Pull)
spooler_rate
    msgs/s of the product's spooler draining a backlog of N messages into durable Parquet files

Each function takes a Config whose topic and subscription are scratch ones (`scratch_config`) and
returns a plain number. `measure_all(n)` runs them all on fresh scratch resources and drops them.

  python -m bench.pubsub_ceilings --messages 100000
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.pubsub_v1 import types

from common import clients
from common.config import Config, load_config
from emitter.cli import emit
from emitter.producer import EncodedTransaction, ProducerProcess, SimulationRequest, encoded_batches
from emitter.publish import PublishSettings, TransactionPublisher
from emitter.simulate import Population
from jobs.spooler.spooler import DEFAULT_PULLERS, Spooler

ROOT = Path(__file__).resolve().parent.parent


def scratch_config(base: Config, spool_dir: str | None = None) -> Config:
    """`base` with a fresh topic and subscription (and spool_dir, when given)."""
    tag = uuid.uuid4().hex[:10]
    cfg = replace(base, topic_id=f"bench-{tag}", subscription_id=f"bench-{tag}")
    return replace(cfg, spool_dir=spool_dir) if spool_dir else cfg


def drop(cfg: Config) -> None:
    """Delete the config's subscription and topic (missing ones are fine)."""
    subscriber = clients.subscriber_client(cfg)
    with contextlib.suppress(gexc.GoogleAPICallError):
        subscriber.delete_subscription(subscription=clients.subscription_path(cfg), timeout=10)
    subscriber.close()
    with contextlib.suppress(gexc.GoogleAPICallError):
        clients.publisher_client(cfg).delete_topic(topic=clients.topic_path(cfg), timeout=10)


def _request(cfg: Config, n: int) -> SimulationRequest:
    # A window long enough for n transactions of the configured population, ending now.
    end = datetime.now(UTC)
    return SimulationRequest(Population.from_config(cfg), end - timedelta(days=3650), end, 1.0, n)


def sample_messages(cfg: Config, n: int) -> list[EncodedTransaction]:
    """n of the simulator's own transactions, encoded as the emitter publishes them."""
    return [item for batch in encoded_batches(_request(cfg, n)) for item in batch]


def _raw_publisher(cfg: Config, settings: PublishSettings) -> Any:
    return clients.publisher_client(
        cfg,
        batch_settings=types.BatchSettings(
            max_messages=settings.batch_max_messages,
            max_bytes=settings.batch_max_bytes,
            max_latency=settings.batch_max_latency_seconds,
        ),
        publisher_options=types.PublisherOptions(
            flow_control=types.PublishFlowControl(
                message_limit=settings.max_in_flight_messages,
                byte_limit=settings.max_in_flight_bytes,
                limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
            )
        ),
    )


def raw_publish_rate(
    cfg: Config, messages: Sequence[EncodedTransaction], settings: PublishSettings | None = None
) -> float:
    """msgs/s publishing `messages` (body and attributes) with a bare PublisherClient."""
    clients.ensure_topic(cfg)
    publisher = _raw_publisher(cfg, settings or PublishSettings())
    topic = clients.topic_path(cfg)
    lock = threading.Lock()
    finished = threading.Event()
    done = [0, 0]  # outcomes, failures

    def on_done(future: Any) -> None:
        failed = future.exception() is not None
        with lock:
            done[0] += 1
            done[1] += failed
            if done[0] == len(messages):
                finished.set()

    started = time.perf_counter()
    for data, attributes, _, _ in messages:
        publisher.publish(topic, data, **attributes).add_done_callback(on_done)
    finished.wait()
    seconds = time.perf_counter() - started
    publisher.stop()
    if done[1]:
        raise RuntimeError(f"{done[1]} of {len(messages)} raw publishes failed")
    return len(messages) / seconds


def emitter_rate(cfg: Config, n: int, in_process: bool = True) -> float:
    """msgs/s of the emitter publishing n simulated transactions to cfg's topic.

    In-process: the same steps as `python -m emitter` (producer process, topic check, publisher,
    emit), timed from the first publish to the last confirmation. Subprocess: the wall time of the
    whole command, interpreter start-up included."""
    clients.ensure_topic(cfg)
    if in_process:
        with ProducerProcess(_request(cfg, n)) as producer:
            publisher = TransactionPublisher(cfg, ensure_topic=True)
            batches = iter(producer)
            # The clock starts at the first publish, not at the producer process's interpreter start-up.
            first = next(batches)
            result = emit(publisher, itertools.chain([first], batches), progress=False)
        if result.counts.published != n:
            raise RuntimeError(f"the emitter published {result.counts.published} of {n}")
        return result.rate
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(cfg.to_dict()))
        emitter_command = [sys.executable, "-m", "emitter", "--config", str(config_path)]
        started = time.perf_counter()
        subprocess.run(
            [*emitter_command, "--start", "-3650d", "--limit", str(n), "--quiet"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return n / (time.perf_counter() - started)


def publish_backlog(cfg: Config, messages: Sequence[EncodedTransaction]) -> None:
    """Create cfg's subscription, then publish `messages` to its topic (a backlog to drain)."""
    clients.ensure_subscription(cfg)
    publisher = TransactionPublisher(cfg, ensure_topic=False)
    for item in messages:
        publisher.publish_encoded(item)
    counts = publisher.close()
    if counts.published != len(messages):
        raise RuntimeError(f"backlog: published {counts.published} of {len(messages)}")


def raw_pull_ack_rate(cfg: Config, n: int, pullers: int = DEFAULT_PULLERS, max_messages: int = 1000) -> float:
    """msgs/s of `pullers` threads doing Pull + Acknowledge until n messages are acked (the
    subscription must hold a backlog of n, see publish_backlog)."""
    subscriber = clients.subscriber_client(cfg)
    path = clients.subscription_path(cfg)
    lock = threading.Lock()
    finished = threading.Event()
    acked = [0]
    ended = [0.0]

    def loop() -> None:
        while not finished.is_set():
            try:
                response = subscriber.pull(subscription=path, max_messages=max_messages, timeout=10.0)
            except gexc.DeadlineExceeded:
                continue
            ack_ids = [m.ack_id for m in types.PullResponse.pb(response).received_messages]
            if ack_ids:
                subscriber.acknowledge(subscription=path, ack_ids=ack_ids)
            with lock:
                acked[0] += len(ack_ids)
                if acked[0] >= n and not finished.is_set():
                    ended[0] = time.perf_counter()
                    finished.set()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(pullers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    subscriber.close()
    return n / (ended[0] - started)


def raw_streaming_pull_ack_rate(cfg: Config, n: int, streams: int = 1, timeout: float = 600.0) -> float:
    """msgs/s of `streams` streaming-pull subscribers acking in their callbacks until n are acked.
    On the emulator, run it on a subscription nothing else will use: a closed stream keeps
    receiving that subscription's messages there."""
    subscriber = clients.subscriber_client(cfg)
    path = clients.subscription_path(cfg)
    lock = threading.Lock()
    finished = threading.Event()
    acked = [0]
    ended = [0.0]

    def callback(message: Any) -> None:
        message.ack()
        with lock:
            acked[0] += 1
            if acked[0] >= n and not finished.is_set():
                ended[0] = time.perf_counter()
                finished.set()

    started = time.perf_counter()
    futures = [
        subscriber.subscribe(path, callback, flow_control=types.FlowControl(max_messages=5000)) for _ in range(streams)
    ]
    completed = finished.wait(timeout)
    for future in futures:
        future.cancel()
    subscriber.close()
    if not completed:
        raise TimeoutError(f"streaming pull acked {acked[0]} of {n} in {timeout:g} s")
    return n / (ended[0] - started)


def spooler_rate(cfg: Config, n: int, pullers: int = DEFAULT_PULLERS) -> float:
    """msgs/s of the spooler draining a backlog of n messages into durable files, timed from its
    pullers' start (as the raw loop is) until the n-th message is written and acked."""
    ended = [0.0]

    def progress(stats: Any) -> None:
        if stats.acked + stats.ack_failures >= n and not ended[0]:
            ended[0] = time.monotonic()
            spooler.stop()

    spooler = Spooler(cfg, pullers=pullers, on_progress=progress)
    stats = spooler.run(poll_seconds=0.05)
    if stats.spooled + stats.dead_lettered < n:
        raise RuntimeError(f"the spooler wrote {stats.spooled + stats.dead_lettered} of {n}")
    return n / (ended[0] - stats.started)


def measure_all(
    base: Config, n: int = 100_000, pullers: int = DEFAULT_PULLERS, streaming: bool = True
) -> dict[str, float]:
    """Every ceiling and stage rate for n messages, each on its own scratch topic/subscription.

    The spooler's roll size is the config's, lowered to split n into equal files, so the last file
    rolls by count rather than waiting for its age."""
    results: dict[str, float] = {"messages": n, "pullers": pullers}
    messages = sample_messages(base, n)
    roll = n // math.ceil(n / base.spool_roll_messages)

    def pull_ack(cfg: Config) -> float:
        publish_backlog(cfg, messages)
        return raw_pull_ack_rate(cfg, n, pullers)

    def spooler(cfg: Config) -> float:
        publish_backlog(cfg, messages)
        return spooler_rate(replace(cfg, spool_roll_messages=roll), n, pullers)

    with tempfile.TemporaryDirectory() as spool_dir:
        for name, work in (
            ("raw_publish", lambda cfg: raw_publish_rate(cfg, messages)),
            ("emitter", lambda cfg: emitter_rate(cfg, n)),
            ("raw_pull_ack", pull_ack),
            ("spooler", spooler),
        ):
            cfg = scratch_config(base, spool_dir=os.path.join(spool_dir, name))
            try:
                results[name] = work(cfg)
            finally:
                drop(cfg)
        if streaming:
            cfg = scratch_config(base)
            try:
                count = min(n, 20_000)  # ~2,000 msgs/s per stream on the emulator
                publish_backlog(cfg, messages[:count])
                results["raw_streaming_pull_ack"] = raw_streaming_pull_ack_rate(cfg, count)
            finally:
                drop(cfg)
    results["emitter_vs_raw_publish"] = results["emitter"] / results["raw_publish"]
    results["spooler_vs_raw_pull_ack"] = results["spooler"] / results["raw_pull_ack"]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pubsub_ceilings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="config file (default: config.json, else config.sample.json)")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per measurement")
    parser.add_argument("--pullers", type=int, default=DEFAULT_PULLERS, help="spooler pullers and raw pull threads")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming-pull reference")
    args = parser.parse_args(argv)
    results = measure_all(load_config(args.config), args.messages, args.pullers, not args.no_streaming)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
