"""GET /api/v1/runs/stream on an in-memory table: each finished run is one event whose id is its
run id, a reconnect with Last-Event-ID resumes after it, streams past push_max_streams get 503 until
one closes, and the read token comes from the header or the stream's cookie. The runs are recorded
with common.jobstate as the job records them; the expected events are written out by hand."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.memtable import MemoryTable
from werkzeug.test import TestResponse

from common import jobstate
from common.config import from_dict
from webapp import create_app
from webapp.push import EXTENSION, RunFeed, stop_streams

START = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
TOKEN = "read-token-0123456789"


def finish_runs(table: MemoryTable, count: int) -> None:
    """`count` more runs, finished the way the job finishes them: run n reads 10 * n rows."""
    for _ in range(count):
        status = jobstate.read_job_status(table)
        run = jobstate.begin_run(table, status, [], START)
        summary = {"run_id": run.run_id, "rows": 10 * run.run_id, "files": 1}
        jobstate.finish_run(table, run, summary, START + timedelta(minutes=run.run_id))


def make_app(table: MemoryTable, **cfg: Any) -> Flask:
    config = {"project_id": "test-project", "bigtable_emulator_host": "127.0.0.1:9", "push_poll_seconds": 0.05}
    app = create_app(from_dict({**config, **cfg}), table=table)
    app.config["TESTING"] = True
    return app


class Events:
    """The events of one open stream, read by a thread as they come. close() hangs up the way a
    server does when a client has gone: on the reading thread, at the next chunk (the streams in
    these tests send a keep-alive comment every 0.2 s)."""

    def __init__(self, response: TestResponse) -> None:
        self.response = response
        self.text = ""
        self._lock = threading.Lock()
        self._hang_up = threading.Event()
        self._chunks: Iterator[bytes] = iter(response.response)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for chunk in self._chunks:
            with self._lock:
                self.text += chunk.decode() if isinstance(chunk, bytes) else chunk
            if self._hang_up.is_set():
                break
        self.response.close()

    def runs(self) -> list[tuple[int, dict[str, Any]]]:
        """(id, data) of every run event so far."""
        with self._lock:
            blocks = self.text.split("\n\n")
        found = []
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":"))
            if fields.get("event") == "run":
                found.append((int(fields["id"]), json.loads(fields["data"])))
        return found

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[int, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.runs()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.runs()

    def close(self) -> None:
        self._hang_up.set()
        self._reader.join(timeout=5)
        assert not self._reader.is_alive()


@pytest.fixture
def table() -> MemoryTable:
    found = MemoryTable()
    finish_runs(found, 3)
    return found


@pytest.fixture
def app(table: MemoryTable) -> Iterator[Flask]:
    app = make_app(table, push_heartbeat_seconds=0.2)
    yield app
    app.extensions[EXTENSION].stop()


def open_stream(client: FlaskClient, **kwargs: Any) -> Events:
    response = client.get("/api/v1/runs/stream", buffered=False, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/event-stream"
    return Events(response)


def test_a_run_that_finishes_is_pushed_with_its_id(app: Flask, table: MemoryTable) -> None:
    stream = open_stream(app.test_client(), query_string={"after": "3"})
    time.sleep(0.2)
    assert stream.runs() == []  # nothing after run 3 yet
    finish_runs(table, 2)
    runs = stream.wait_for(2)
    stream.close()
    assert [(run_id, data["run"], data["rows"], data["finished_at"]) for run_id, data in runs] == [
        (4, 4, 40, "2026-03-15T10:04:00Z"),
        (5, 5, 50, "2026-03-15T10:05:00Z"),
    ]


def test_a_reconnect_resumes_after_its_last_event_id(app: Flask, table: MemoryTable) -> None:
    client = app.test_client()
    first = open_stream(client, query_string={"after": "0"})
    assert [run_id for run_id, _ in first.wait_for(3)] == [1, 2, 3]
    first.close()
    finish_runs(table, 2)  # while the client is away
    # The browser reconnects to the same URL (its stale `after`) and sends the last id it saw.
    again = open_stream(client, query_string={"after": "0"}, headers={"Last-Event-ID": "3"})
    finish_runs(table, 1)
    runs = again.wait_for(3)
    time.sleep(0.2)
    again.close()
    assert [run_id for run_id, _ in again.runs()] == [4, 5, 6]  # none missed, none twice
    assert [data["rows"] for _, data in runs] == [40, 50, 60]


def test_a_fresh_stream_starts_at_the_newest_run(app: Flask, table: MemoryTable) -> None:
    stream = open_stream(app.test_client())
    time.sleep(0.3)
    finish_runs(table, 1)
    runs = stream.wait_for(1)
    stream.close()
    assert [run_id for run_id, _ in runs] == [4]


def test_a_client_beyond_the_newest_run_gets_the_rebuilt_tables_runs(app: Flask) -> None:
    stream = open_stream(app.test_client(), headers={"Last-Event-ID": "40"})
    runs = stream.wait_for(3)
    stream.close()
    assert [run_id for run_id, _ in runs] == [1, 2, 3]


def test_an_idle_stream_gets_keep_alive_comments(app: Flask) -> None:
    stream = open_stream(app.test_client(), query_string={"after": "3"})
    time.sleep(0.7)
    stream.close()
    assert stream.text.startswith("retry: ")
    assert stream.text.count(": keep-alive\n\n") >= 2


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"query_string": {"after": "x"}}, "after"),
        ({"query_string": {"after": "-1"}}, "after"),
        ({"headers": {"Last-Event-ID": "run-3"}}, "Last-Event-ID"),
    ],
)
def test_a_bad_resume_point_is_400_naming_it(app: Flask, kwargs: dict[str, Any], named: str) -> None:
    response = app.test_client().get("/api/v1/runs/stream", **kwargs)
    assert response.status_code == 400
    assert response.get_json()["parameter"] == named
    assert app.extensions[EXTENSION].open_streams == 0


def test_streams_past_the_cap_get_503_until_one_closes(table: MemoryTable) -> None:
    app = make_app(table, push_max_streams=2, push_heartbeat_seconds=0.2)
    client = app.test_client()
    streams = [open_stream(client, query_string={"after": "3"}) for _ in range(2)]
    refused = client.get("/api/v1/runs/stream")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "push_max_streams" in refused.get_json()["error"]
    assert client.get("/api/v1/users").status_code == 200  # the other routes still answer
    streams[0].close()
    assert app.extensions[EXTENSION].open_streams == 1
    third = open_stream(client, query_string={"after": "3"})
    finish_runs(table, 1)
    assert [run_id for run_id, _ in third.wait_for(1)] == [4]
    assert [run_id for run_id, _ in streams[1].wait_for(1)] == [4]  # both share the one poller
    for stream in (streams[1], third):
        stream.close()
    assert app.extensions[EXTENSION].open_streams == 0
    app.extensions[EXTENSION].stop()


def test_the_read_token_comes_from_the_header_or_the_streams_cookie(table: MemoryTable) -> None:
    app = make_app(table, read_token=TOKEN, ingest_token=TOKEN + "-ingest", push_heartbeat_seconds=0.2)
    client = app.test_client()
    assert client.get("/api/v1/runs/stream").status_code == 401
    open_stream(client, headers={"Authorization": f"Bearer {TOKEN}"}).close()
    client.set_cookie("txn_read_token", "wrong-token-0123456789")
    assert client.get("/api/v1/runs/stream").status_code == 401
    client.set_cookie("txn_read_token", TOKEN)
    open_stream(client).close()
    assert client.get("/api/v1/users").status_code == 401  # the cookie opens the stream only
    app.extensions[EXTENSION].stop()


def test_stopping_the_worker_ends_open_streams(table: MemoryTable) -> None:
    app = make_app(table, push_heartbeat_seconds=30)
    stream = open_stream(app.test_client(), query_string={"after": "3"})
    time.sleep(0.1)
    started = time.monotonic()
    stop_streams()
    stream.close()  # returns once the stream has ended: without waiting for a heartbeat
    assert time.monotonic() - started < 5


def test_one_poll_serves_every_stream() -> None:
    reads: list[int] = []
    feed = RunFeed(lambda: reads.append(1) or 7, lambda first, last: [], max_streams=3, poll_seconds=60)
    try:
        assert feed.open() and feed.open()
        assert feed.wait_for_news(None, 2.0) == 7
        assert feed.wait_for_news(7, 0.1) == 7
        assert len(reads) == 1
    finally:
        feed.stop()
