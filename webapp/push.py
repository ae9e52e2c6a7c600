"""GET /api/v1/runs/stream: the aggregation job's finished runs, pushed as Server-Sent Events.

Each finished run is one event, `event: run`, `id: <run id>`, `data:` its ~run# row as JSON
(common/jobstate.py: the run id, when it finished, its counts). Run ids are the job's own
numbering (1, 2, 3 ...: every finished run has one, in order), so the event id is the resume point:
a browser that reconnects sends `Last-Event-ID` and gets the runs after it, none twice and none
missed. A first connection says where it starts with `?after=<run id>` (the dashboard passes the
`last_run` its /health answer showed); without either it starts at the newest run. When the table
was emptied and rebuilt (`txn-aggregate --rebuild`, which numbers runs from 1 again) a client whose
id is beyond the newest run gets every run of the new table. A comment line every
`push_heartbeat_seconds` keeps proxies from closing an idle stream and finds clients that left.

One poller per server process (RunFeed, a thread started by the first stream and ended when the
last one closes) reads the job's row every `push_poll_seconds` and, when its last run moved, the new
runs' rows; the streams wait on it and serve from its recent runs, so N open streams cost one read
a poll, not N. A client further behind than those reads the table itself.

Every stream holds one of the server's threads (gunicorn's gthread workers: webapp/__main__.py), so
a process serves at most `push_max_streams` at once and answers 503 with Retry-After past it: the
API's other routes keep their threads. A stream ends after MAX_STREAM_SECONDS (the browser
reconnects, possibly to another worker) and at once when the worker is told to stop
(stop_streams, called from webapp/gunicorn_conf.py), so a shutdown does not wait for open tabs.

The read token, when set, is taken from the `Authorization` header as on every data route, or for
this route only from the `txn_read_token` cookie: a browser's EventSource cannot send headers, and a
cookie (unlike a query parameter) is written to no access log. webapp/security.py checks it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from common import jobstate
from common.jobstate import FinishedRun
from webapp import params
from webapp.errors import BadParameter, error_response
from webapp.services import Services, now

bp = Blueprint("push", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

EXTENSION = "txn_push"
STREAM_ENDPOINT = "push.runs_stream"
TOKEN_COOKIE = "txn_read_token"
MAX_STREAM_SECONDS = 600.0
RECENT_RUNS = 256  # runs the poller keeps for the streams; a client further behind reads the table
PAGE_RUNS = 100  # runs one read of the table returns to a client catching up
RETRY_MS = 3000  # how long a browser waits before it reconnects
RETRY_AFTER_S = 5  # what a client refused for want of a stream slot is told to wait

_feeds: weakref.WeakSet[RunFeed] = weakref.WeakSet()


def stop_streams() -> None:
    """End every open stream of this process, and refuse new ones (the worker is shutting down)."""
    for feed in list(_feeds):
        feed.stop()


class RunFeed:
    """One process's view of the job's finished runs, shared by its streams.

    `read_last_run()` gives the id of the last finished run (0: none yet), `read_runs(first, last)`
    the finished runs with ids in [first, last]; both read the table and may raise."""

    def __init__(
        self,
        read_last_run: Callable[[], int],
        read_runs: Callable[[int, int], list[FinishedRun]],
        max_streams: int,
        poll_seconds: float,
    ) -> None:
        self.read_last_run = read_last_run
        self.read_runs = read_runs
        self.max_streams = max_streams
        self.poll_seconds = poll_seconds
        self.max_stream_seconds = MAX_STREAM_SECONDS
        self._cond = threading.Condition()
        self._latest: int | None = None  # None until a poll has answered
        self._recent: deque[FinishedRun] = deque(maxlen=RECENT_RUNS)
        self._open = 0
        self._poller: threading.Thread | None = None
        self._failing = False
        self.stopped = threading.Event()
        _feeds.add(self)

    # --- slots -----------------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        with self._cond:
            return self._open

    def open(self) -> bool:
        """Take a stream slot (and start the poller if it is not running); False when all
        max_streams are taken."""
        with self._cond:
            if self._open >= self.max_streams or self.stopped.is_set():
                return False
            self._open += 1
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll_loop, name="runs-feed", daemon=True)
                self._poller.start()
            return True

    def close(self) -> None:
        """Give a slot back; the poller ends at its next turn once no stream is open."""
        with self._cond:
            self._open -= 1

    def stop(self) -> None:
        """End the streams and the poller (they see it at once)."""
        self.stopped.set()
        with self._cond:
            self._cond.notify_all()

    # --- the poller --------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while True:
            with self._cond:
                if self._open <= 0 or self.stopped.is_set():
                    self._poller = None
                    return
            self.poll()
            with self._cond:
                self._cond.wait_for(lambda: self._open <= 0 or self.stopped.is_set(), timeout=self.poll_seconds)

    def poll(self) -> None:
        """Read the last run once and take in the runs finished since the last poll; an error is
        logged (once while it lasts) and the streams keep their place."""
        try:
            latest = self.read_last_run()
            known = self._latest
            new = self.read_runs(known + 1, latest) if known is not None and latest > known else []
        except Exception as exc:
            if not self._failing:
                log.warning("the runs feed could not read the job's row: %s", exc)
            self._failing = True
            return
        self._failing = False
        with self._cond:
            if self._latest is not None and latest < self._latest:
                self._recent.clear()  # the table was emptied: run ids start again at 1
            self._recent.extend(new)
            self._latest = latest
            self._cond.notify_all()

    # --- what a stream asks ------------------------------------------------------------------------

    def wait_for_news(self, cursor: int | None, timeout: float) -> int | None:
        """Block until the last run differs from `cursor` (None: until a poll has answered), the
        process stops, or `timeout` passes; the last run known then (None: no poll has answered)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self.stopped.is_set() or (self._latest is not None and self._latest != cursor), timeout=timeout
            )
            return self._latest

    def runs(self, first: int, last: int) -> list[FinishedRun]:
        """The finished runs with ids in [first, last]: from the poller's recent runs when they
        hold them all, else from the table (raises what the read raises)."""
        with self._cond:
            held = [run for run in self._recent if first <= run.run_id <= last]
            if held and held[0].run_id == first and held[-1].run_id == last:
                return held
        return self.read_runs(first, last)


# --- the route -----------------------------------------------------------------------------------


def run_event(run: FinishedRun) -> str:
    """One run as an SSE event: `event: run`, `id: <run id>`, `data: {...}` on one line."""
    data = {"run": run.run_id, "finished_at": run.finished_at, **run.summary}
    data["run"] = run.run_id  # the summary's own run_id is the same number; the event's is the one to trust
    return f"event: run\nid: {run.run_id}\ndata: {json.dumps(data, sort_keys=True, separators=(',', ':'))}\n\n"


def events(feed: RunFeed, cursor: int | None, heartbeat_seconds: float) -> Iterator[str]:
    """The text of one stream: runs after `cursor` (None: after the newest at the time of the
    first poll), keep-alive comments in between, until the stream's time is up or the process stops."""
    deadline = time.monotonic() + feed.max_stream_seconds
    yield f"retry: {RETRY_MS}\n: runs after {'the newest' if cursor is None else cursor}\n\n"
    while not feed.stopped.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        latest = feed.wait_for_news(cursor, min(heartbeat_seconds, left))
        if latest is None or latest == cursor or feed.stopped.is_set():
            if time.monotonic() < deadline and not feed.stopped.is_set():
                yield ": keep-alive\n\n"
            continue
        if cursor is None:
            cursor = latest  # a first connection without a resume point: from now on
            continue
        if cursor > latest:
            cursor = 0  # the table was emptied and rebuilt: every run in it is new to this client
            if latest == 0:
                continue
        last = min(latest, cursor + PAGE_RUNS)
        try:
            found = feed.runs(cursor + 1, last)
        except Exception as exc:
            log.warning("reading runs %d-%d for a stream failed: %s", cursor + 1, last, exc)
            yield ": the job's runs could not be read; retrying\n\n"
            feed.stopped.wait(min(heartbeat_seconds, max(0.0, deadline - time.monotonic())))
            continue
        for run in found:
            yield run_event(run)
        cursor = last


def _resume_point() -> int | None:
    """Last-Event-ID (a reconnecting browser), else the `after` parameter, else None."""
    header = request.headers.get("Last-Event-ID", "").strip()
    if header:
        if not (header.isascii() and header.isdigit() and len(header) <= 9):
            raise BadParameter("Last-Event-ID", f"must be a run id (1-9 digits), got {header[:40]!r}")
        return int(header)
    return params.RunsStreamQuery.parse(request.args, now()).after


@bp.get("/runs/stream")
def runs_stream() -> Any:
    feed: RunFeed = current_app.extensions[EXTENSION]
    cursor = _resume_point()
    if not feed.open():
        response = error_response(
            503,
            f"this server process already serves {feed.max_streams} run streams (config push_max_streams); "
            "retry later or poll the API",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            feed.close()

    try:
        heartbeat = current_app.extensions["txn"].cfg.push_heartbeat_seconds
        response = Response(events(feed, cursor, heartbeat), mimetype="text/event-stream")
        response.call_on_close(release)
    except BaseException:
        release()
        raise
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes
    return response


def install(app: Flask, svc: Services) -> RunFeed:
    """Serve the stream on `app`, with one RunFeed over `svc`'s table (no thread until a stream opens)."""

    def last_run() -> int:
        status = jobstate.read_job_status(svc.table())
        return int(status.get("last_run") or 0) if status else 0

    feed = RunFeed(
        last_run,
        lambda first, last: jobstate.read_runs(svc.table(), first, last),
        svc.cfg.push_max_streams,
        svc.cfg.push_poll_seconds,
    )
    app.extensions[EXTENSION] = feed
    app.register_blueprint(bp)
    return feed
