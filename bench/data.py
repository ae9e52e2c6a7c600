"""Synthetic spool files for the benchmark, in exactly the spool's layout and schema."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from common.spool import TRANSACTION_SCHEMA, TRANSACTIONS, new_file_path, write_atomic
from common.timeutil import HOUR_US, SECOND_US


def write_spool(
    spool_dir: str,
    rows: int,
    users: int = 1000,
    hours: int = 48,
    files: int = 10,
    seed: int = 7,
    end: datetime | None = None,
    categories: Sequence[str] = ("grocery",),
    publish_lag_us: int | None = None,
) -> list[Path]:
    """Write `rows` valid transactions over the `hours` before `end` into `files` spool files, each
    in a merchant category drawn from `categories`. Every row is published at `end`, unless
    publish_lag_us is given: then that long after its event (so history older than the late horizon
    is counted, not set aside as late)."""
    rng = np.random.default_rng(seed)
    end_us = int((end or datetime.now(UTC)).timestamp()) * SECOND_US
    start_us = end_us - hours * HOUR_US
    paths = []
    per_file = -(-rows // files)
    user_names = np.array([f"u{i:05d}" for i in range(users)], dtype=object)
    for index in range(files):
        n = min(per_file, rows - index * per_file)
        if n <= 0:
            break
        event = rng.integers(start_us, end_us, n)
        published = np.full(n, end_us) if publish_lag_us is None else event + publish_lag_us
        ids = np.char.add(f"b{seed}-{index}-", np.arange(n).astype(str))
        table = pa.table(
            {
                "transaction_id": pa.array(ids.astype(object), pa.string()),
                "user_id": pa.array(user_names[rng.integers(0, users, n)], pa.string()),
                "amount_minor": pa.array(rng.integers(2000, 10001, n), pa.int64()),
                "currency": pa.array(["USD"] * n, pa.string()),
                "merchant_category": pa.array(_categories(rng, categories, n), pa.string()),
                "event_time": pa.array(event, pa.timestamp("us", tz="UTC")),
                "publish_time": pa.array(published, pa.timestamp("us", tz="UTC")),
                "message_id": pa.array(ids.astype(object), pa.string()),
            },
            schema=TRANSACTION_SCHEMA,
        )
        paths.append(write_atomic(table, new_file_path(spool_dir, TRANSACTIONS)))
    return paths


def _categories(rng: np.random.Generator, categories: Sequence[str], n: int) -> np.ndarray:
    """n categories drawn from `categories`; one category draws nothing, so the other columns'
    random values stay what they were before categories were drawn."""
    if len(categories) == 1:
        return np.full(n, categories[0], dtype=object)
    return np.asarray(categories, dtype=object)[rng.integers(0, len(categories), n)]
