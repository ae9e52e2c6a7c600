"""gunicorn settings txn-serve loads (`--config python:webapp.gunicorn_conf`): metrics that add up
across workers, and JSON log lines with LOG_FORMAT=json.

Metrics: each worker writes its counts to files under PROMETHEUS_MULTIPROC_DIR, and /metrics adds
up every worker's (webapp/metrics.py). The variable must be set before any worker imports
prometheus_client: txn-serve (webapp/__main__.py) sets it; when gunicorn is started some other way this module
sets one of its own. The directory is emptied when the server starts (counts of an earlier server
would otherwise be added in), and the files of a worker that exits are dropped.

Run streams (webapp/push.py): a worker told to stop (SIGTERM, SIGINT, SIGQUIT) ends its open
streams at once, so its graceful shutdown does not wait out graceful-timeout for browser tabs that
would keep them open; the browsers reconnect and resume from their last run.

Logs: with LOG_FORMAT=json, gunicorn's own lines, the access log and the app's logging records are
each one JSON object (common/logs.py); the access line carries method, route path, status, bytes and
duration_ms as fields of their own.
"""

from __future__ import annotations

import glob
import logging
import os
import signal
import tempfile
from typing import Any

from gunicorn import glogging

from common import logs

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

if not os.environ.get(MULTIPROC_ENV):
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="txn-metrics-")


def on_starting(server: Any) -> None:
    """Empty the metrics directory (in the master, before any worker starts)."""
    directory = os.environ[MULTIPROC_ENV]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live-gauge files of a worker that exited (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Chain stop_streams before the worker's own handlers of the signals that stop it."""
    from webapp.push import stop_streams

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(signum)

        def handler(number: int, frame: Any, previous: Any = previous) -> None:
            stop_streams()
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, handler)


class JsonLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no type information
    """gunicorn's logger writing one JSON object per line (error log and access log)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = logs.JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
        logs.configure("json", "webapp")  # the app's own loggers (webapp.*) and the libraries'

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = str(getattr(resp, "status", "") or "").split(" ", 1)[0]
        fields = {
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO", "") + (f"?{query}" if (query := environ.get("QUERY_STRING")) else ""),
            "status": int(status) if status.isdigit() else None,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
        }
        self.access_log.log(
            logging.INFO, "%s %s %s", fields["method"], fields["path"], status, extra={"fields": fields}
        )


if os.environ.get("LOG_FORMAT") == "json":
    logger_class = JsonLogger
