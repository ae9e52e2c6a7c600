"""The emitter's producer process: closing it never reads a pipe that may end in half a batch."""

from __future__ import annotations

import os
import struct
import threading
from datetime import UTC, datetime

from emitter.producer import ProducerProcess, SimulationRequest
from emitter.simulate import Population

POPULATION = Population(
    users=5,
    mean_period_seconds=60.0,
    min_period_seconds=1.0,
    amount_min_minor=100,
    amount_max_minor=200,
    currency="USD",
    seed=7,
)


def test_close_returns_when_the_pipe_ends_in_half_a_message() -> None:
    producer = ProducerProcess(SimulationRequest(POPULATION, datetime(2026, 3, 1, tzinfo=UTC), None, limit=0))
    producer._process.join(timeout=60)  # done at once (limit 0): its last message waits in the pipe
    assert producer._process.exitcode == 0
    # What a child stopped mid-send leaves: a length prefix promising more bytes than follow.
    os.write(producer._queue._writer.fileno(), struct.pack("!i", 4096) + b"half a batch")  # type: ignore[attr-defined]
    closer = threading.Thread(target=producer.close, daemon=True)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive(), "close() waited on the half-written message"
