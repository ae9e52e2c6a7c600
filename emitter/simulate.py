"""Pure generation of simulated card transactions; no I/O.

Each user spends as a Poisson process: inter-arrival times are exponential with that user's mean
spending period. Users differ: a user's mean period is min + Exp(mean - min), so no user spends
more often than `min_spending_period_seconds` and the population's mean period is exactly
`mean_spending_period_seconds`. Each transaction's currency is drawn from the currency mix by
weight, and its amount is uniform in that currency's minor units over the currency's range.

Everything is drawn from one random.Random(seed) in a fixed order, so a seed always gives the same
transactions, however fast they are published. Users are merged in event-time order through a heap
of one pending event per user: memory is O(users), never O(events).

Transaction ids are not drawn: the id of a user's n-th transaction is a name-based UUID (version 5)
of that user id and n, in a namespace that is itself a UUID 5 of everything that determines the
transactions' content (the generator's version, seed, absolute window start, clock speed-up,
population, spending periods, currency mix and amount ranges). Equal ids therefore mean equal
content: the same command over the same absolute window reproduces its ids exactly (a true
duplicate), while a shifted window or any other change gives new ones.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from common.config import Config, currency_ranges
from common.message import Transaction
from common.money import to_minor
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

# Part of every id's namespace: change it whenever the same inputs would draw different
# transactions (another drawing order, new categories), so old ids never name new content.
GENERATOR_VERSION = 2
# The root namespace of every simulated transaction id (a fixed random UUID).
TRANSACTION_ID_NAMESPACE = uuid.UUID("8f9a8945-8b86-4858-8c4e-2f8fcd48c0f5")


@dataclass(frozen=True)
class CurrencySpend:
    """One currency of the mix: its weight and its amount range, in minor units, both inclusive."""

    currency: str
    weight: float
    min_minor: int
    max_minor: int


@dataclass(frozen=True)
class Population:
    """What the simulation needs from the config: who spends, how often, how much and in what.

    Without a `mix`, every transaction is in `currency` with amounts amount_min_minor..amount_max_minor;
    with one, each transaction's currency is drawn from the mix by weight."""

    users: int
    mean_period_seconds: float
    min_period_seconds: float
    amount_min_minor: int
    amount_max_minor: int
    currency: str
    seed: int
    mix: tuple[CurrencySpend, ...] = ()

    @classmethod
    def from_config(cls, cfg: Config) -> Population:
        ranges = currency_ranges(cfg)
        low, high = ranges.get(cfg.currency) or (
            to_minor(cfg.amount_min, cfg.currency),
            to_minor(cfg.amount_max, cfg.currency),
        )
        # Sorted by code, so the order of the config's keys does not change the draws.
        mix = tuple(
            CurrencySpend(code, float(weight), *ranges[code]) for code, weight in sorted(cfg.currency_mix.items())
        )
        return cls(
            users=cfg.users,
            mean_period_seconds=float(cfg.mean_spending_period_seconds),
            min_period_seconds=float(cfg.min_spending_period_seconds),
            amount_min_minor=low,
            amount_max_minor=high,
            currency=cfg.currency,
            seed=cfg.seed,
            mix=mix,
        )

    def spends(self) -> tuple[CurrencySpend, ...]:
        """The currencies transactions are drawn in, with their weights and ranges."""
        return self.mix or (CurrencySpend(self.currency, 1.0, self.amount_min_minor, self.amount_max_minor),)


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


def id_namespace(population: Population, start: datetime, time_scale: float = 1.0) -> uuid.UUID:
    """The UUID namespace of one simulation's transaction ids: a UUID 5 of every input that shapes
    the transactions (the window's end is not one: it only cuts the same stream shorter)."""
    fingerprint = {
        "generator": GENERATOR_VERSION,
        "seed": population.seed,
        "start_us": to_epoch_us(start),
        "time_scale": time_scale,
        "users": population.users,
        "mean_period_seconds": population.mean_period_seconds,
        "min_period_seconds": population.min_period_seconds,
        "spends": [[s.currency, s.weight, s.min_minor, s.max_minor] for s in population.spends()],
    }
    return uuid.uuid5(TRANSACTION_ID_NAMESPACE, json.dumps(fingerprint, sort_keys=True, separators=(",", ":")))


def transaction_id(namespace: uuid.UUID, user_id: str, position: int) -> str:
    """The id of `user_id`'s transaction number `position` (0 for the first in the window)."""
    return str(uuid.uuid5(namespace, f"{user_id}/{position}"))


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
    # uuid.uuid5(namespace, name) is SHA-1 over namespace bytes + name: the namespace part is hashed
    # once here and copied per transaction: the same ids in less than half the time of uuid5().
    namespace_hash = hashlib.sha1(id_namespace(population, start, time_scale).bytes, usedforsecurity=False)
    positions = [0] * population.users
    spends = population.spends()
    currencies = [s.currency for s in spends]
    lows = [s.min_minor for s in spends]
    highs = [s.max_minor for s in spends]
    cumulative = list(itertools.accumulate(s.weight for s in spends))
    total_weight, last = cumulative[-1], len(spends) - 1
    # Event times are kept as float microseconds since `start` so the sum of gaps does not drift,
    # and rounded down to whole microseconds only when a transaction is made.
    heap = [(rng.expovariate(rate), index) for index, rate in enumerate(rates)]
    heapq.heapify(heap)
    expovariate, randint, choice, uniform01 = rng.expovariate, rng.randint, rng.choice, rng.random
    make_uuid = uuid.UUID
    while heap:
        offset, index = heap[0]
        event_us = start_us + int(offset)
        if end_us is not None and event_us >= end_us:
            return
        heapq.heapreplace(heap, (offset + expovariate(rates[index]), index))
        user_id = ids[index]
        digest = namespace_hash.copy()
        digest.update(f"{user_id}/{positions[index]}".encode())
        positions[index] += 1
        # One currency needs no draw. min(): random() * total may round up to the total itself.
        pick = min(bisect.bisect(cumulative, uniform01() * total_weight), last) if last else 0
        yield Transaction(
            transaction_id=str(make_uuid(bytes=digest.digest()[:16], version=5)),
            user_id=user_id,
            amount_minor=randint(lows[pick], highs[pick]),
            currency=currencies[pick],
            event_time=from_epoch_us(event_us),
            merchant_category=choice(MERCHANT_CATEGORIES),
        )
