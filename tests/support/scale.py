"""How hard the reliability suite pushes: the default settings, or HEAVY with pytest --heavy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """How hard the suite pushes: data sizes, fault counts and fuzz cases."""

    heavy: bool
    seeds: tuple[int, ...]  # reconciliation runs, one emitter seed each
    events: int  # transactions per seed
    sum_ranges: int  # random /sum ranges checked per seed
    crash_events: int
    spooler_kills: int
    job_kills: int
    redelivery_events: int
    outage_seconds: float
    examples: int  # hypothesis examples per property
    api_examples: int  # generated API requests per fuzz test


DEFAULT = Scale(
    heavy=False,
    seeds=(1, 2),
    events=6_000,
    sum_ranges=120,
    crash_events=3_000,
    spooler_kills=2,
    job_kills=3,
    redelivery_events=3_000,
    outage_seconds=6.0,
    examples=300,
    api_examples=150,
)
HEAVY = Scale(
    heavy=True,
    seeds=(1, 2, 3, 4),
    events=100_000,
    sum_ranges=1_000,
    crash_events=20_000,
    spooler_kills=8,
    job_kills=6,
    redelivery_events=20_000,
    outage_seconds=20.0,
    examples=3_000,
    api_examples=1_500,
)
