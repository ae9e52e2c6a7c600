"""Pure generation of simulated card transactions; no I/O.

Each user spends as a Poisson process: inter-arrival times are exponential with that user's mean
spending period. Users differ: a user's mean period is min + Exp(mean - min), so no user spends
more often than `min_spending_period_seconds` and the population's mean period is exactly
`mean_spending_period_seconds`. Amounts are uniform in whole cents on [amount_min, amount_max].

Everything is drawn from one random.Random(seed) in a fixed order, so a seed always gives the same
transactions, however fast they are published. Users are merged in event-time order through a heap
of one pending event per user: memory is O(users), never O(events).
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from common.config import Config
from common.message import Transaction
from common.timeutil import from_epoch_us, to_epoch_us

MERCHANT_CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "transport",
    "online",
    "entertainment",
    "health",
    "travel",
)


@dataclass(frozen=True)
class Population:
    """What the simulation needs from the config: who spends, how often and how much."""

    users: int
    mean_period_seconds: float
    min_period_seconds: float
    amount_min_cents: int
    amount_max_cents: int
    currency: str
    seed: int

    @classmethod
    def from_config(cls, cfg: Config) -> Population:
        return cls(
            users=cfg.users,
            mean_period_seconds=float(cfg.mean_spending_period_seconds),
            min_period_seconds=float(cfg.min_spending_period_seconds),
            amount_min_cents=cfg.amount_min_cents,
            amount_max_cents=cfg.amount_max_cents,
            currency=cfg.currency,
            seed=cfg.seed,
        )


def user_ids(count: int) -> list[str]:
    """["u0001", "u0002", ...]: zero-padded to at least four digits so ids sort in number order."""
    width = max(4, len(str(count)))
    return [f"u{i:0{width}d}" for i in range(1, count + 1)]


def draw_periods(population: Population, rng: random.Random) -> list[float]:
    """Each user's mean spending period in seconds: min + Exp(mean - min)."""
    spread = population.mean_period_seconds - population.min_period_seconds
    if spread <= 0:
        return [population.min_period_seconds] * population.users
    return [population.min_period_seconds + rng.expovariate(1.0 / spread) for _ in range(population.users)]


def simulate(
    population: Population,
    start: datetime,
    end: datetime | None,
    time_scale: float = 1.0,
) -> Iterator[Transaction]:
    """Transactions with start <= event_time < end (end None: forever), in event-time order.

    `time_scale` divides every inter-arrival time: 60 plays an hour of spending in a minute, with
    event times on that faster clock (the live mode's speed-up).
    """
    rng = random.Random(population.seed)
    ids = user_ids(population.users)
    # Per user, the rate of the exponential gap on the (possibly faster) clock, in 1/microseconds.
    rates = [time_scale / (period * 1e6) for period in draw_periods(population, rng)]
    start_us = to_epoch_us(start)
    end_us = to_epoch_us(end) if end is not None else None
    # Event times are kept as float microseconds since `start` so the sum of gaps does not drift,
    # and rounded down to whole microseconds only when a transaction is made.
    heap = [(rng.expovariate(rate), index) for index, rate in enumerate(rates)]
    heapq.heapify(heap)
    low, high = population.amount_min_cents, population.amount_max_cents
    currency = population.currency
    expovariate, randint, choice, getrandbits = rng.expovariate, rng.randint, rng.choice, rng.getrandbits
    while heap:
        offset, index = heap[0]
        event_us = start_us + int(offset)
        if end_us is not None and event_us >= end_us:
            return
        heapq.heapreplace(heap, (offset + expovariate(rates[index]), index))
        yield Transaction(
            transaction_id=str(uuid.UUID(int=getrandbits(128), version=4)),
            user_id=ids[index],
            amount_minor=randint(low, high),
            currency=currency,
            event_time=from_epoch_us(event_us),
            merchant_category=choice(MERCHANT_CATEGORIES),
        )
