"""GET /health: is Bigtable and Pub/Sub reachable, when did the job last run, how much waits in the
spool, how fresh the numbers are (webapp/freshness.py: the newest counted transaction's age, the time
since the last run, the backlog in files and rows), how many messages were dead-lettered, how many
conflicting copies the job has found, and how many rows each recent run set aside as late. 200 when
the API can serve, else 503."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, jsonify
from google.api_core import exceptions as gexc

from common import clients, jobstate, rowkeys, spool, store
from common.timeutil import format_rfc3339
from webapp.metrics import count_backend_error
from webapp.services import Services, services

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
PUBSUB_TIMEOUT_S = 2.0
RECENT_RUNS = 10  # runs whose late and conflict counts /health lists


def _bigtable(svc: Services) -> dict[str, Any]:
    # Readable without the read token: names no host or port, and no card holder.
    try:
        store.read_row_cells(svc.table(), rowkeys.JOB_KEY, store.META)
    except gexc.NotFound:
        return {"reachable": True, "table_exists": False, "table": svc.cfg.table_id}
    except gexc.GoogleAPIError as exc:
        count_backend_error("bigtable", exc)
        log.warning("health: Bigtable (%s) did not answer: %s", clients.describe_target(svc.cfg), exc)
        return {"reachable": False, "table": svc.cfg.table_id, "error": exc.__class__.__name__}
    return {"reachable": True, "table_exists": True, "table": svc.cfg.table_id}


def _pubsub(svc: Services) -> dict[str, Any]:
    path = clients.topic_path(svc.cfg)
    try:
        svc.publisher().get_topic(request={"topic": path}, timeout=PUBSUB_TIMEOUT_S, retry=None)
    except gexc.NotFound:
        return {"reachable": True, "topic_exists": False, "topic": svc.cfg.topic_id}
    except gexc.GoogleAPIError as exc:
        count_backend_error("pubsub", exc)
        return {"reachable": False, "topic": svc.cfg.topic_id, "error": exc.__class__.__name__}
    return {"reachable": True, "topic_exists": True, "topic": svc.cfg.topic_id}


def _recent_runs(table: Any, last_run: int) -> list[dict[str, Any]]:
    """The late rows, rows set aside and conflicts of the last RECENT_RUNS runs, newest first, from
    their ~run# summaries (one read)."""
    runs = {rowkeys.run_key(run): run for run in range(max(1, last_run - RECENT_RUNS + 1), last_run + 1)}
    found = store.read_rows_at(table, list(runs), store.META)
    out = []
    for key, run in sorted(runs.items(), key=lambda item: -item[1]):
        raw = found.get(key, {}).get(jobstate.RUN_SUMMARY)
        summary = json.loads(raw) if raw else {}
        out.append(
            {
                "run": run,
                "late_rows": int(summary.get("late_rows", 0)),
                "set_aside": int(summary.get("set_aside", 0)),
                "conflicts": int(summary.get("conflicts", 0)),
            }
        )
    return out


def _job_fields(svc: Services, table_ok: bool) -> dict[str, Any]:
    if not table_ok:
        return {
            "last_job_run": None,
            "spool_backlog": None,
            "freshness": None,
            "conflicts_total": None,
            "recent_runs": None,
        }
    out: dict[str, Any] = {}
    status = None
    try:
        status = jobstate.read_job_status(svc.table())
        out["last_job_run"] = status
        out["conflicts_total"] = int(status.get("conflicts_total") or 0) if status else 0
        out["recent_runs"] = _recent_runs(svc.table(), int(status.get("last_run") or 0)) if status else []
    except Exception as exc:  # bookkeeping must not take the health page down with it
        log.warning("reading the job status failed: %s", exc)
        out.update(last_job_run=None, conflicts_total=None, recent_runs=None)
    try:
        fresh = svc.freshness.measure(svc.cfg, svc.table(), status)
        out["spool_backlog"] = fresh.backlog_files
        out["freshness"] = fresh.as_json(svc.clock())
    except Exception as exc:
        log.warning("measuring the spool backlog and freshness failed: %s", exc)
        out.update(spool_backlog=None, freshness=None)
    return out


def _dead_letter_count(svc: Services) -> int | None:
    if not spool.is_local(svc.cfg.spool_dir):
        return None
    try:
        files = spool.list_files(svc.cfg.spool_dir, spool.DEAD_LETTER)
        return svc.dead_letter_count(files, spool.count_rows)
    except OSError as exc:  # a file removed mid-listing, or unreadable: try again next time
        log.warning("counting dead letters failed: %s", exc)
        return None


def _reason(bigtable: dict[str, Any], pubsub: dict[str, Any]) -> str | None:
    """One line saying what is wrong, or None when nothing is."""
    problems = []
    if not bigtable["reachable"]:
        problems.append("Bigtable unreachable")
    elif not bigtable.get("table_exists"):
        problems.append(f"Bigtable table '{bigtable['table']}' does not exist yet")
    if not pubsub["reachable"]:
        problems.append("Pub/Sub unreachable")
    elif not pubsub.get("topic_exists"):
        problems.append(f"Pub/Sub topic '{pubsub['topic']}' does not exist")
    return "; ".join(problems) or None


@bp.get("/health")
def health() -> Any:
    svc = services()
    bigtable = _bigtable(svc)
    pubsub = _pubsub(svc)
    table_ok = bool(bigtable["reachable"] and bigtable.get("table_exists"))
    healthy = table_ok and pubsub["reachable"] and pubsub.get("topic_exists", False)
    body = {
        "status": "ok" if healthy else "degraded",
        "reason": _reason(bigtable, pubsub),
        "checked_at": format_rfc3339(svc.clock()),
        "bigtable": bigtable,
        "pubsub": pubsub,
        **_job_fields(svc, table_ok),
        "dead_letter_count": _dead_letter_count(svc),
    }
    response = jsonify(body)
    response.status_code = 200 if table_ok else 503
    return response
