"""A spool in Cloud Storage, on the Cloud Storage emulator (gcp-storage-emulator, started by
scripts/emulators.sh): the spooler writes gs:// objects that an independent reader (the storage
JSON API over plain HTTP, then Parquet) finds equal to what was published; the spool's listing
rule finds the same objects; a write into a missing bucket fails in one line and leaves nothing;
and the job, whose Spark here has no Cloud Storage connector, refuses a gs:// spool in one line."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from common import clients, spool
from common.config import Config, from_dict
from common.message import Transaction
from jobs.spooler.spooler import Spooler

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(
    r"(transactions|dead-letter)/dt=\d{4}-\d\d-\d\d/part-\d{8}T\d{12}Z-[A-Za-z0-9-]+-\d+-[0-9a-f]{8}-\d+\.parquet"
)


def _api(emulators: dict[str, str]) -> str:
    return emulators["STORAGE_EMULATOR_HOST"].rstrip("/") + "/storage/v1"


@pytest.fixture
def bucket(emulators: dict[str, str]) -> Iterator[str]:
    """A bucket of this test's own, made and emptied through the JSON API."""
    name = f"spool-{uuid.uuid4().hex[:12]}"
    made = requests.post(f"{_api(emulators)}/b", params={"project": "test-project"}, json={"name": name}, timeout=10)
    assert made.status_code == 200, made.text
    yield name
    for item in _objects(emulators, name):
        requests.delete(f"{_api(emulators)}/b/{name}/o/{quote(item, safe='')}", timeout=10)
    requests.delete(f"{_api(emulators)}/b/{name}", timeout=10)


def _objects(emulators: dict[str, str], bucket: str, prefix: str = "") -> list[str]:
    """Every object name in the bucket under prefix, through the JSON API."""
    names, token = [], ""
    while True:
        page = requests.get(
            f"{_api(emulators)}/b/{bucket}/o", params={"prefix": prefix, "pageToken": token}, timeout=10
        ).json()
        names += [item["name"] for item in page.get("items", [])]
        token = page.get("nextPageToken", "")
        if not token:
            return sorted(names)


def _download(emulators: dict[str, str], bucket: str, name: str) -> pa.Table:
    response = requests.get(
        f"{_api(emulators)}/b/{bucket}/o/{quote(name, safe='')}", params={"alt": "media"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return pq.read_table(io.BytesIO(response.content))


def _publish(cfg: Config, count: int) -> pd.DataFrame:
    """Publish `count` transactions in three currencies and two malformed messages (bad JSON, bad
    UTF-8); return the transactions as sent."""
    clients.ensure_subscription(cfg, ack_deadline_seconds=10)
    publisher = clients.publisher_client(cfg)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    sent = []
    for i in range(count):
        currency = ("USD", "EUR", "JPY")[i % 3]
        txn = Transaction(str(uuid.uuid4()), f"u{i % 7}", 100 + 37 * i, currency, start + timedelta(seconds=i), "fuel")
        sent.append(txn)
    futures = [publisher.publish(clients.topic_path(cfg), t.encode()) for t in sent]
    futures += [publisher.publish(clients.topic_path(cfg), body) for body in (b"{not json", b"\xff\xfe")]
    for future in futures:
        future.result(timeout=60)
    return pd.DataFrame(
        {
            "transaction_id": [t.transaction_id for t in sent],
            "user_id": [t.user_id for t in sent],
            "amount_minor": [t.amount_minor for t in sent],
            "currency": [t.currency for t in sent],
            "event_time": pd.to_datetime([t.event_time for t in sent], utc=True),
        }
    )


def test_the_spooler_writes_a_gs_spool_that_an_independent_reader_finds_equal_to_what_was_published(
    cfg: Config, emulators: dict[str, str], bucket: str
) -> None:
    spool_dir = f"gs://{bucket}/lake/spool"
    gs_cfg = from_dict({**cfg.to_dict(), "spool_dir": spool_dir, "spool_roll_messages": 120})
    published = _publish(gs_cfg, 500)

    stats = Spooler(gs_cfg, until_idle=2.0, say=lambda line: None).run()
    # At least once: a message redelivered before its ack lands is spooled again (the job counts it once).
    assert stats.spooled >= 500 and stats.dead_lettered >= 2
    assert stats.acked == stats.spooled + stats.dead_lettered

    names = _objects(emulators, bucket)
    relative = [n.removeprefix("lake/spool/") for n in names]
    assert all(NAME.fullmatch(r) for r in relative), relative  # no temp or partial object either
    tx_names = [n for n in names if "/transactions/" in n]
    assert len(tx_names) >= 500 // 120
    spooled = pd.concat([_download(emulators, bucket, n).to_pandas() for n in tx_names], ignore_index=True)
    assert len(spooled) == stats.spooled
    got = spooled[["transaction_id", "user_id", "amount_minor", "currency", "event_time"]].drop_duplicates()
    pd.testing.assert_frame_equal(
        got.sort_values("transaction_id").reset_index(drop=True),
        published.sort_values("transaction_id").reset_index(drop=True),
        check_dtype=False,
    )
    dead = pd.concat([_download(emulators, bucket, n).to_pandas() for n in names if "/dead-letter/" in n])
    assert set(dead["reason"]) == {"bad_encoding", "bad_json"}

    # The listing rule the job and /health apply, over the same bucket, finds exactly these objects.
    listed, folders = spool.list_spool(spool_dir, spool.TRANSACTIONS)
    assert listed == sorted(n.removeprefix("lake/spool/") for n in tx_names)
    assert set(folders) == {r.split("/")[1] for r in relative if r.startswith("transactions/")}


def test_a_write_into_a_missing_bucket_fails_in_one_line_and_leaves_no_object(
    emulators: dict[str, str], bucket: str
) -> None:
    table = pa.table({"transaction_id": ["t1"]})
    with pytest.raises(OSError) as info:
        spool.write_file(table, "gs://no-such-bucket-here/spool", spool.new_file_name(spool.TRANSACTIONS))
    assert str(info.value).startswith("[Errno") and "Cloud Storage: NOT_FOUND" in str(info.value)
    assert "\n" not in str(info.value)
    written = spool.write_file(table, f"gs://{bucket}/s", spool.new_file_name(spool.TRANSACTIONS))
    assert _objects(emulators, bucket) == [written.removeprefix(f"{bucket}/")]


def test_the_job_refuses_a_gs_spool_in_one_line_when_spark_has_no_cloud_storage_connector(
    cfg: Config, bucket: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**cfg.to_dict(), "spool_dir": f"gs://{bucket}/spool"}), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "jobs.aggregate", "--config", str(config), "--master", "local[1]"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: config key 'spool_dir' is gs://{bucket}/spool, but this Spark has no Cloud Storage connector "
        "for Hadoop on its classpath: run the job where it is (Dataproc has it), or add the gcs-connector jar "
        "with --conf spark.jars=..."
    ), result.stderr[-3000:]
