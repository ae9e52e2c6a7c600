"""A pull that brings more bytes than the spooler has room for: what does not fit is handed back
unread, so held bytes pass their limit by at most one message whatever a pull brings."""

from __future__ import annotations

from pathlib import Path

from google.pubsub_v1 import types

from common.config import from_dict
from jobs.spooler.spooler import Spooler


def pulled(sizes: list[int]) -> list[types.ReceivedMessage]:
    """Received messages of these payload sizes (oversize ones: dead letters kept whole)."""
    return [
        types.ReceivedMessage(
            ack_id=f"ack-{index}", message=types.PubsubMessage(data=b"x" * size, message_id=str(index))
        )
        for index, size in enumerate(sizes)
    ]


def received_pb(messages: list[types.ReceivedMessage]) -> list[object]:
    return [types.ReceivedMessage.pb(m) for m in messages]


def test_messages_beyond_the_room_are_handed_back_and_held_bytes_stay_within_one_message(tmp_path: Path) -> None:
    spooler = Spooler(from_dict({"spool_dir": str(tmp_path)}), pullers=1)
    spooler.max_held_bytes = 1_000_000
    big = 200_000  # over max_payload_bytes: each is a dead letter, kept whole
    largest, returned = spooler._accept(received_pb(pulled([100] * 3 + [big] * 40)))

    # 3 x 100 bytes, then big ones until the held bytes reach 1,000,000: the fifth big one passes it.
    kept = 3 + 5
    assert returned == [f"ack-{i}" for i in range(kept, 43)]
    assert (spooler.stats.received, spooler.stats.returned) == (kept, 43 - kept)
    assert spooler._outstanding == kept
    assert 1_000_000 <= spooler.stats.peak_held_bytes <= 1_000_000 + big + 1_000
    assert largest == big

    # Full: a further pull keeps nothing.
    _, again = spooler._accept(received_pb(pulled([100, 100])))
    assert again == ["ack-0", "ack-1"] and spooler.stats.received == kept


def test_a_pull_that_fits_is_kept_whole(tmp_path: Path) -> None:
    spooler = Spooler(from_dict({"spool_dir": str(tmp_path)}), pullers=1)
    _, returned = spooler._accept(received_pb(pulled([300] * 50)))
    assert returned == [] and spooler.stats.received == 50 and spooler.stats.returned == 0
