"""The JSON API under /api/v1. Times are event times in UTC; money is a decimal string."""

from __future__ import annotations

import concurrent.futures
import hmac
from datetime import timedelta
from typing import Any

from flask import Blueprint, jsonify, request
from google.api_core import exceptions as gexc

from common import clients
from common.message import EARLIEST_EVENT, MAX_FUTURE, MessageError, parse_message
from common.money import format_minor
from common.rowkeys import parse_transaction_key
from common.store import StoredTransaction
from common.timeutil import format_rfc3339, from_epoch_us, to_epoch_us
from webapp import params, queries
from webapp.errors import BackendUnavailable, BadParameter, Unauthorized, error_response
from webapp.services import get_table, now, services

bp = Blueprint("api", __name__, url_prefix="/api/v1")

SUM_MAX_SPAN = timedelta(days=366)
HOURLY_MAX_SPAN = timedelta(days=31)
TRANSACTIONS_MAX_SPAN = timedelta(days=366)
PUBLISH_TIMEOUT_S = 10.0


# --- shapes shared with the original routes ---------------------------------------------------


def transaction_json(txn: StoredTransaction) -> dict[str, Any]:
    user_id, event_us, transaction_id = parse_transaction_key(txn.key)
    return {
        "transaction_id": transaction_id,
        "user_id": user_id,
        "amount": format_minor(txn.amount_minor, txn.currency),
        "currency": txn.currency,
        "merchant_category": txn.category,
        "event_time": format_rfc3339(from_epoch_us(event_us)),
    }


def sum_json(user_id: str, span: params.TimeRange) -> dict[str, Any]:
    totals = queries.exact_sum(get_table(), user_id, span.start_us, span.end_us, services().whole_hours.total)
    return {
        "user_id": user_id,
        **span.as_json(),
        "sum": format_minor(totals.sum_cents, "USD"),
        "count": totals.count,
    }


def hourly_json(user_id: str, span: params.TimeRange) -> list[dict[str, Any]]:
    return [
        {
            "hour_start": format_rfc3339(from_epoch_us(hour * 1_000_000)),
            "sum": format_minor(totals.sum_cents, "USD"),
            "count": totals.count,
        }
        for hour, totals in queries.hourly(get_table(), user_id, span.start_us, span.end_us)
    ]


def transactions_json(user_id: str, span: params.TimeRange, args: Any) -> dict[str, Any]:
    limit = params.int_arg(args, "limit", 50, 1, 500)
    token = args.get("page_token") or None
    cursor = None
    if token is not None:
        try:
            cursor = queries.decode_page_token(token, user_id)
        except queries.PageTokenError as exc:
            raise BadParameter("page_token", str(exc)) from None
    page, after = queries.transactions_page(get_table(), user_id, span.start_us, span.end_us, limit, cursor)
    return {
        "user_id": user_id,
        **span.as_json(),
        "transactions": [transaction_json(txn) for txn in page],
        "next_page_token": queries.encode_page_token(after) if after else None,
    }


# --- per-user routes ----------------------------------------------------------------------------


@bp.get("/users/<user_id>/sum")
def user_sum(user_id: str) -> Any:
    user_id = params.user_id(user_id)
    return jsonify(sum_json(user_id, params.time_range(request.args, now(), SUM_MAX_SPAN)))


@bp.get("/users/<user_id>/transactions")
def user_transactions(user_id: str) -> Any:
    user_id = params.user_id(user_id)
    span = params.time_range(request.args, now(), TRANSACTIONS_MAX_SPAN)
    return jsonify(transactions_json(user_id, span, request.args))


@bp.get("/users/<user_id>/hourly")
def user_hourly(user_id: str) -> Any:
    user_id = params.user_id(user_id)
    return jsonify(hourly_json(user_id, params.time_range(request.args, now(), HOURLY_MAX_SPAN)))


@bp.get("/users/<user_id>/latest")
def user_latest(user_id: str) -> Any:
    user_id = params.user_id(user_id)
    n = params.int_arg(request.args, "n", 5, 1, 100)
    # Every event the pipeline accepts lies in [2000-01-01, now + 1 day].
    end_us = to_epoch_us(now() + MAX_FUTURE)
    page, _ = queries.transactions_page(get_table(), user_id, to_epoch_us(EARLIEST_EVENT), end_us, n)
    return jsonify({"user_id": user_id, "transactions": [transaction_json(txn) for txn in page]})


# --- all users ----------------------------------------------------------------------------------


@bp.get("/top-users")
def top_users() -> Any:
    hours = params.int_arg(request.args, "hours", 3, 1, 168)
    n = params.int_arg(request.args, "n", 10, 1, 100)
    current = now()
    ranked = queries.top_users(get_table(), to_epoch_us(current), hours, n)
    return jsonify(
        [{"rank": i + 1, "user_id": user, "sum": format_minor(cents, "USD")} for i, (user, cents) in enumerate(ranked)]
    )


@bp.get("/stats/per-minute")
def stats_per_minute() -> Any:
    minutes = params.int_arg(request.args, "minutes", 60, 1, 1440)
    rows = queries.per_minute(get_table(), to_epoch_us(now()), minutes)
    return jsonify(
        [
            {
                "minute_start": format_rfc3339(from_epoch_us(minute * 1_000_000)),
                "sum": format_minor(totals.sum_cents, "USD"),
                "count": totals.count,
            }
            for minute, totals in rows
        ]
    )


@bp.get("/users")
def users() -> Any:
    prefix = params.user_prefix(request.args)
    limit = params.int_arg(request.args, "limit", 20, 1, 500)
    return jsonify({"prefix": prefix, "users": queries.user_ids(get_table(), prefix, limit)})


# --- the receipts entry point -------------------------------------------------------------------


def _check_token() -> None:
    expected = services().cfg.ingest_token
    if not expected:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")


@bp.post("/transactions")
def post_transaction() -> Any:
    _check_token()
    cfg = services().cfg
    try:
        txn = parse_message(
            request.get_data(cache=False),
            now=now(),
            max_bytes=cfg.max_payload_bytes,
            max_abs_cents=cfg.max_abs_amount_minor,
        )
    except MessageError as exc:
        return error_response(400, f"body: {exc.detail}", parameter="body", reason=exc.reason)
    try:
        future = services().publisher().publish(clients.topic_path(cfg), txn.encode(), **txn.attributes())
        message_id = future.result(timeout=PUBLISH_TIMEOUT_S)
    except gexc.NotFound:
        raise BackendUnavailable(f"Pub/Sub topic '{cfg.topic_id}' does not exist") from None
    except (gexc.GoogleAPIError, concurrent.futures.TimeoutError) as exc:
        raise BackendUnavailable(
            f"Pub/Sub unreachable ({clients.describe_target(cfg)}): {exc.__class__.__name__}"
        ) from None
    response = jsonify({"transaction_id": txn.transaction_id, "message_id": message_id})
    response.status_code = 202
    return response
