"""The OpenAPI 3.0 document of the JSON API, served at /openapi.json."""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, jsonify

from webapp import params, percentiles

bp = Blueprint("openapi", __name__)

MONEY = {
    "type": "string",
    "pattern": r"^-?[0-9]+(\.[0-9]{1,4})?$",
    "example": "42.17",
    "description": "A decimal string with the currency's own number of places: 1000 JPY, 10.00 USD, 1.234 BHD.",
}
CURRENCY_CODE = {"type": "string", "pattern": "^[A-Z]{3}$", "example": "USD"}
TIME = {"type": "string", "format": "date-time", "example": "2026-11-21T08:00:00Z"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def parameters(query: type[params.Query], path: str) -> list[dict[str, Any]]:
    """The OpenAPI parameters of the route at `path`, read off its parameter model (the one its
    handler parses with): a name in the path template ({user_id}) is a path parameter, any other a
    query parameter."""
    schema = params.json_schema(query)
    required = set(schema.get("required", ()))
    found = []
    for name, field in schema["properties"].items():
        field = _openapi_3_0(copy.deepcopy(field))
        where = "path" if f"{{{name}}}" in path else "query"
        parameter = {"name": name, "in": where, "required": where == "path" or name in required}
        if "description" in field:
            parameter["description"] = field.pop("description")
        found.append({**parameter, "schema": field})
    return found


def _openapi_3_0(field: dict[str, Any]) -> dict[str, Any]:
    """A pydantic field schema as OpenAPI 3.0 has it: no titles, and no null type (an optional
    query parameter is one that may be absent, never null)."""
    field.pop("title", None)
    if "anyOf" in field:
        (kind,) = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
        if field.get("default") is None:
            field.pop("default", None)
        field = {**kind, **field}
    return field


CATEGORY_ORDER = "Currency by currency (code order), the highest sum first within each, ties by category."

# Every answer may be a 403: a client off this machine while the server has no tokens, or a Host
# header that names no allowed origin (webapp/security.py).
FORBIDDEN = _json(
    _ref("Error"),
    "Refused: the Host header names no allowed origin, or the client is not on the server's machine "
    "and the server has no tokens configured.",
)
ERRORS = {
    "400": _json(_ref("Error"), "A parameter is missing or wrong; `parameter` names it."),
    "401": _json(_ref("Error"), "Missing or wrong read token (only when the config sets read_token)."),
    "403": FORBIDDEN,
    "503": _json(_ref("Error"), "Bigtable is unreachable or the table does not exist yet (one line, no address)."),
    "default": _json(_ref("Error"), "Any other error (404, 405, 413)."),
}
# The data routes take the read token when the config sets one, and nothing otherwise.
READ_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {}]


def _get(summary: str, query: type[params.Query], ok: dict[str, Any], description: str = "") -> Any:
    """A GET operation; `query` is the route's parameter model, turned into parameters once the
    path is known (document())."""
    return {
        "get": {
            "summary": summary,
            "description": description or summary,
            "query": query,
            "security": READ_SECURITY,
            "responses": {"200": ok, **ERRORS},
        }
    }


def _sum_op() -> Any:
    return _get(
        "Exact sum and count of a user's transactions in [from, to)",
        params.SumQuery,
        _json(_ref("Sum"), "The exact sum in the chosen currency, and in every currency present."),
        "Whole hours come from the per-hour counters, the partial hours at either edge from the "
        "transaction rows, so the answer is exact for any range. `sum`/`count` are those of the "
        "`currency` parameter; `by_currency` lists every currency present in the range.",
    )


def _hourly_op() -> Any:
    return _get(
        "A user's total per hour over [from, to)",
        params.HourlyQuery,
        _json({"type": "array", "items": _ref("HourTotal")}, "Every hour overlapping the range, oldest first."),
        "Each entry totals the part of its hour that lies inside [from, to); hours without "
        "transactions are present with zero, so the entries add up to the exact sum.",
    )


def _list_op() -> Any:
    return _get(
        "A user's transactions in [from, to), newest first, paginated",
        params.TransactionsQuery,
        _json(_ref("TransactionPage"), "One page; next_page_token is null on the last."),
    )


def _runs_stream_op() -> Any:
    operation = _get(
        "The aggregation job's finished runs, pushed as Server-Sent Events",
        params.RunsStreamQuery,
        {
            "description": "An open text/event-stream: one `event: run` per finished run, its `id:` the run id "
            "and its `data:` the run's counts as JSON ({run, finished_at, files, rows, ...}); a comment "
            "line every push_heartbeat_seconds in between. The stream ends after at most ten minutes "
            "(browsers reconnect and resume).",
            "content": {"text/event-stream": {"schema": _ref("RunEvent")}},
        },
        "A reconnecting client sends `Last-Event-ID` (browsers do) and gets the runs after it, none "
        "twice; a first connection may say where to start with `after`. The read token, when the "
        "config sets one, goes in the Authorization header, or in the `txn_read_token` cookie (a "
        "browser's EventSource sends no headers). Each server process serves at most "
        "push_max_streams streams at once.",
    )["get"]
    operation["parameters"] = [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "The id of the last event the client received: the stream resumes after that run.",
            "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"},
        }
    ]
    operation["responses"]["503"] = {
        **_json(_ref("Error"), "This server process already serves push_max_streams streams; wait Retry-After."),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    }
    return {"get": operation}


def document() -> dict[str, Any]:
    """The whole OpenAPI document as a dict."""
    transaction = {
        "type": "object",
        "required": ["transaction_id", "user_id", "amount", "currency", "merchant_category", "event_time"],
        "properties": {
            "transaction_id": {"type": "string"},
            "user_id": {"type": "string"},
            "amount": MONEY,
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "merchant_category": {"type": "string"},
            "event_time": TIME,
        },
    }
    totals = {
        "currency": CURRENCY_CODE,
        "sum": MONEY,
        "count": {"type": "integer", "minimum": 0},
        "by_currency": {
            "type": "array",
            "items": _ref("CurrencyTotal"),
            "description": "Every currency present, in code order, each on its own.",
        },
    }
    version = {
        "type": "object",
        "required": ["user_id", "amount", "currency", "event_time", "publish_time", "message_id"],
        "properties": {
            "user_id": {"type": "string"},
            "amount": MONEY,
            "currency": {"type": "string"},
            "event_time": TIME,
            "publish_time": {**TIME, "nullable": True},
            "message_id": {"type": "string"},
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "parameter": {"type": "string", "description": "The parameter at fault."},
                "reason": {"type": "string", "description": "The message parser's reject reason."},
            },
        },
        "CurrencyTotal": {
            "type": "object",
            "required": ["currency", "sum", "count"],
            "properties": {"currency": CURRENCY_CODE, "sum": MONEY, "count": {"type": "integer", "minimum": 0}},
        },
        "Sum": {
            "type": "object",
            "required": ["user_id", "from", "to", "currency", "sum", "count", "by_currency"],
            "properties": {
                "user_id": {"type": "string"},
                "from": TIME,
                "to": TIME,
                **totals,
            },
        },
        "HourTotal": {
            "type": "object",
            "required": ["hour_start", "currency", "sum", "count", "by_currency"],
            "properties": {"hour_start": TIME, **totals},
        },
        "MinuteTotal": {
            "type": "object",
            "required": ["minute_start", "currency", "sum", "count", "by_currency"],
            "properties": {"minute_start": TIME, **totals},
        },
        "Transaction": transaction,
        "TransactionPage": {
            "type": "object",
            "required": ["user_id", "from", "to", "transactions", "next_page_token"],
            "properties": {
                "user_id": {"type": "string"},
                "from": TIME,
                "to": TIME,
                "transactions": {"type": "array", "items": _ref("Transaction")},
                "next_page_token": {"type": "string", "nullable": True},
            },
        },
        "Latest": {
            "type": "object",
            "required": ["user_id", "transactions"],
            "properties": {
                "user_id": {"type": "string"},
                "transactions": {"type": "array", "items": _ref("Transaction")},
            },
        },
        "TopUser": {
            "type": "object",
            "required": ["rank", "user_id", "currency", "sum"],
            "properties": {
                "rank": {"type": "integer", "minimum": 1},
                "user_id": {"type": "string"},
                "currency": CURRENCY_CODE,
                "sum": MONEY,
            },
        },
        "LateRow": {
            "type": "object",
            "required": ["transaction_id", "user_id", "amount", "currency", "event_time", "publish_time", "run"],
            "properties": {
                "transaction_id": {"type": "string"},
                "user_id": {"type": "string"},
                "amount": MONEY,
                "currency": {"type": "string"},
                "event_time": TIME,
                "publish_time": TIME,
                "run": {"type": "integer", "minimum": 0, "description": "The job run that set it aside."},
            },
        },
        "LatePage": {
            "type": "object",
            "required": ["from", "to", "late", "next_page_token"],
            "properties": {
                "from": TIME,
                "to": TIME,
                "late": {"type": "array", "items": _ref("LateRow")},
                "next_page_token": {"type": "string", "nullable": True},
            },
        },
        "Version": version,
        "Conflict": {
            "type": "object",
            "required": ["run", "transaction_id", "reason", "counted", "copy"],
            "properties": {
                "run": {"type": "integer", "minimum": 0, "description": "The job run that found the copy."},
                "transaction_id": {"type": "string"},
                "reason": {"type": "string", "example": "conflicting_duplicate"},
                "counted": _ref("Version"),
                "copy": _ref("Version"),
            },
        },
        "Conflicts": {
            "type": "object",
            "required": ["conflicts_total", "conflicts"],
            "properties": {
                "conflicts_total": {"type": "integer", "minimum": 0},
                "conflicts": {"type": "array", "items": _ref("Conflict")},
            },
        },
        "CategoryTotal": {
            "type": "object",
            "required": ["category", "currency", "sum", "count"],
            "properties": {
                "category": {"type": "string"},
                "currency": CURRENCY_CODE,
                "sum": MONEY,
                "count": {"type": "integer", "minimum": 0},
            },
        },
        "StepTotal": {
            "type": "object",
            "required": ["currency", "sum", "count", "by_currency"],
            "properties": {
                "hour_start": {**TIME, "description": "With granularity=hour."},
                "minute_start": {**TIME, "description": "With granularity=minute."},
                **totals,
            },
        },
        "AllLatest": {
            "type": "object",
            "required": ["transactions"],
            "properties": {"transactions": {"type": "array", "items": _ref("Transaction")}},
        },
        "Users": {
            "type": "object",
            "required": ["prefix", "users"],
            "properties": {"prefix": {"type": "string"}, "users": {"type": "array", "items": {"type": "string"}}},
        },
        "Accepted": {
            "type": "object",
            "required": ["transaction_id", "message_id"],
            "properties": {"transaction_id": {"type": "string"}, "message_id": {"type": "string"}},
        },
        "NewTransaction": {
            "type": "object",
            "required": ["transaction_id", "user_id", "amount", "event_time"],
            "properties": {
                "schema_version": {"type": "integer", "enum": [1]},
                "transaction_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
                "user_id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                "amount": MONEY,
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": "USD"},
                "event_time": TIME,
                "merchant_category": {"type": "string", "default": "unknown"},
            },
        },
        "RunEvent": {
            "type": "object",
            "description": "One event of the run stream (keep-alive comments are not events).",
            "required": ["event", "id", "data"],
            "properties": {
                "event": {"type": "string", "enum": ["run"]},
                "id": {"type": "string", "pattern": "^[0-9]{1,10}$", "description": "The run id."},
                "data": {
                    "type": "string",
                    "description": "The run as JSON: run, finished_at (RFC 3339, null for runs recorded before "
                    "runs kept it), and its counts (files, rows, rows_written, late_rows, conflicts, seconds ...).",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": [
                "status",
                "checked_at",
                "bigtable",
                "pubsub",
                "last_job_run",
                "spool_backlog",
                "dead_letter_count",
            ],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "reason": {"type": "string", "nullable": True, "description": "What is wrong, in one line."},
                "checked_at": TIME,
                "bigtable": {
                    "type": "object",
                    "required": ["reachable"],
                    "properties": {"reachable": {"type": "boolean"}, "table_exists": {"type": "boolean"}},
                },
                "pubsub": {
                    "type": "object",
                    "required": ["reachable"],
                    "properties": {"reachable": {"type": "boolean"}, "topic_exists": {"type": "boolean"}},
                },
                "last_job_run": {"type": "object", "nullable": True, "description": "The last job run, if any."},
                "conflicts_total": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Conflicting copies found by every finished run.",
                },
                "recent_runs": {
                    "type": "array",
                    "nullable": True,
                    "description": "The last runs, newest first: rows each set aside as late, rows set aside "
                    "otherwise, and conflicting copies found.",
                    "items": {
                        "type": "object",
                        "required": ["run", "late_rows", "set_aside", "conflicts"],
                        "properties": {
                            "run": {"type": "integer", "minimum": 1},
                            "late_rows": {"type": "integer", "minimum": 0},
                            "set_aside": {"type": "integer", "minimum": 0},
                            "conflicts": {"type": "integer", "minimum": 0},
                        },
                    },
                },
                "spool_backlog": {"type": "integer", "nullable": True},
                "freshness": {
                    "type": "object",
                    "nullable": True,
                    "description": "How fresh the served numbers are; null when the spool or the job's rows "
                    "could not be read. Times and ages are null where unknown.",
                    "required": [
                        "newest_counted_publish_time",
                        "newest_counted_age_seconds",
                        "last_run_finished_at",
                        "since_last_run_seconds",
                        "backlog_files",
                        "backlog_rows",
                        "backlog_rows_partial",
                    ],
                    "properties": {
                        "newest_counted_publish_time": {
                            **TIME,
                            "nullable": True,
                            "description": "The newest publish time in the newest spool file a finished run processed.",
                        },
                        "newest_counted_age_seconds": {"type": "number", "minimum": 0, "nullable": True},
                        "last_run_finished_at": {
                            **TIME,
                            "nullable": True,
                            "description": "When the job last finished a run (one with nothing new included).",
                        },
                        "since_last_run_seconds": {"type": "number", "minimum": 0, "nullable": True},
                        "backlog_files": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "Spool files the next run would process.",
                        },
                        "backlog_rows": {
                            "type": "integer",
                            "minimum": 0,
                            "nullable": True,
                            "description": "Their rows, from the Parquet footers (null: the spool is not local).",
                        },
                        "backlog_rows_partial": {
                            "type": "boolean",
                            "description": "True when backlog_rows counts only the footers read so far "
                            "(each /health call reads a bounded number more).",
                        },
                    },
                },
                "dead_letter_count": {"type": "integer", "nullable": True},
            },
        },
    }
    paths: dict[str, Any] = {
        "/api/v1/users/{user_id}/sum": _sum_op(),
        "/api/v1/users/{user_id}/transactions": _list_op(),
        "/api/v1/users/{user_id}/hourly": _hourly_op(),
        "/api/v1/users/{user_id}/latest": _get(
            "A user's latest n transactions, newest first",
            params.LatestQuery,
            _json(_ref("Latest"), "The latest transactions."),
        ),
        "/api/v1/users/{user_id}/categories": _get(
            "A user's sum and count per merchant category and currency in [from, to)",
            params.UserCategoriesQuery,
            _json({"type": "array", "items": _ref("CategoryTotal")}, CATEGORY_ORDER),
            "Exact for any range: whole hours from the job's per-category counters, the partial hours "
            "at either edge from the transaction rows.",
        ),
        "/api/v1/categories": _get(
            "Everyone's sum and count per merchant category and currency in [from, to)",
            params.CategoriesQuery,
            _json({"type": "array", "items": _ref("CategoryTotal")}, CATEGORY_ORDER),
            "Exact for any range: whole hours and then whole minutes from the job's per-category "
            "counters, the seconds left at either edge from its time index of transactions.",
        ),
        "/api/v1/totals": _get(
            "Everyone's count and sum per hour (or minute) in [from, to)",
            params.TotalsQuery,
            _json({"type": "array", "items": _ref("StepTotal")}, "Every hour (minute) overlapping the range."),
            "Each entry totals the part of its hour (minute) inside [from, to), zero where none, so the "
            "entries add up to the range's exact total. `sum`/`count` are those of the `currency` "
            "parameter; `by_currency` lists every currency present.",
        ),
        "/api/v1/transactions/latest": _get(
            "The latest n transactions of every card holder, newest first",
            params.AllLatestQuery,
            _json(_ref("AllLatest"), "Newest event time first; ties by user id, then transaction id."),
            "Read from the head of the job's time index, never by scanning the table.",
        ),
        "/api/v1/top-users": _get(
            "The users with the highest total in the last N hours",
            params.TopUsersQuery,
            _json({"type": "array", "items": _ref("TopUser")}, "Highest total first, ties by user id."),
            "Totals over whole hours of event time: the current (partial) hour and the hours-1 whole "
            "hours before it, so hours=3 at 10:20 covers 08:00-10:20. Ranked within one currency "
            "(the `currency` parameter); spending in other currencies is not counted.",
        ),
        "/api/v1/stats/per-minute": _get(
            "All users' count and sum per minute",
            params.PerMinuteQuery,
            _json({"type": "array", "items": _ref("MinuteTotal")}, "Oldest minute first, zero where none."),
        ),
        "/api/v1/late": _get(
            "Transactions the job set aside as late, by publish time",
            params.LateQuery,
            _json(_ref("LatePage"), "One page, oldest publish time first; next_page_token is null on the last."),
            "Rows published more than late_horizon_hours after their event time are not counted; the "
            "job keeps each one here, with the run that set it aside.",
        ),
        "/api/v1/conflicts": _get(
            "The latest conflicting copies of counted transactions",
            params.ConflictsQuery,
            _json(_ref("Conflicts"), "Those found by the newest run first, and the total over every run."),
            "A copy whose user, amount, currency or event time differs from the copy that was counted: "
            "the counted one stays, both are kept here.",
        ),
        "/api/v1/users": _get(
            "User ids starting with a prefix, for the user picker",
            params.UsersQuery,
            _json(_ref("Users"), "Matching ids in order."),
        ),
        "/api/v1/transactions": {
            "post": {
                "summary": "Submit one transaction (the receipts entry point)",
                "description": "Validated exactly as the spooler validates Pub/Sub messages (the legacy "
                "'user_id,amount,epoch_seconds' line is accepted too), then published to the topic. "
                "Needs 'Authorization: Bearer <ingest_token>' when the config sets one, "
                "'Content-Type: application/json', and an Origin (when sent) from the config's "
                "allowed_origins or the page's own loopback address. An event time older than the "
                "late horizon (late_horizon_hours) is refused with 422: the job would never count it. "
                "Limited per client address (post_rate_limit).",
                "security": [{"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewTransaction")}},
                },
                "responses": {
                    "202": _json(_ref("Accepted"), "Published."),
                    "400": _json(_ref("Error"), "The body was refused; `reason` is the parser's reason."),
                    "401": _json(_ref("Error"), "Missing or wrong bearer token."),
                    "403": _json(_ref("Error"), "Cross-origin POST, or a Host or client the server does not serve."),
                    "415": _json(_ref("Error"), "The Content-Type is not application/json."),
                    "422": _json(_ref("Error"), "The event time is beyond the late horizon; `reason` is 'late'."),
                    "429": {
                        **_json(_ref("Error"), "Too many POSTs from this address; wait Retry-After seconds."),
                        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                    },
                    "503": _json(
                        _ref("Error"),
                        "Pub/Sub did not answer within a few seconds, or the topic does not exist (no address).",
                    ),
                    "default": _json(_ref("Error"), "Any other error (413 for an oversized body)."),
                },
            }
        },
        "/api/v1/runs/stream": _runs_stream_op(),
        "/health": {
            "get": {
                "summary": "Pipeline health",
                "description": "200 when Bigtable can serve the API, 503 otherwise; status 'degraded' when "
                "Bigtable or Pub/Sub is unreachable, `reason` one line saying what is wrong. Needs no "
                "token: it names no card holder, host or port.",
                "parameters": [],
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "Healthy enough to serve."),
                    "403": FORBIDDEN,
                    "503": _json(_ref("Health"), "Bigtable unreachable or the table missing."),
                },
            }
        },
        "/sum": _sum_op(),
        "/hour": _hourly_op(),
        "/list": _list_op(),
    }
    schemas.update(percentiles.openapi_schemas(MONEY, TIME, CURRENCY_CODE))
    paths.update(percentiles.openapi_paths(_get, _json))
    for path, operations in paths.items():
        for operation in operations.values():
            if "query" in operation:
                operation["parameters"] = parameters(operation.pop("query"), path) + operation.get("parameters", [])
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Transaction analytics API",
            "version": "1.0.0",
            "description": "Per-user sums, hourly totals and transaction lists from Bigtable range "
            "scans. Times are event times in UTC; money is a decimal string with its currency's own "
            "places, always beside its currency, and never added across currencies.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The config's read_token on the GET data routes, its ingest_token on "
                    "the POST; a route needs none while its token is not set.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return jsonify(document())
