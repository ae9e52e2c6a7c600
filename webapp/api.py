"""The JSON API under /api/v1. Times are event times in UTC; money is a decimal string with its
currency's own places, always beside its currency, and never summed across currencies."""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from flask import Blueprint, jsonify, request
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry

from common import clients
from common.config import late_horizon
from common.jobstate import read_job_status
from common.message import EARLIEST_EVENT, MAX_FUTURE, MessageError, parse_message
from common.money import format_minor, is_currency
from common.rowkeys import parse_transaction_key
from common.store import StoredTransaction
from common.timeutil import HOUR_US, MINUTE_US, format_rfc3339, from_epoch_us, to_epoch_us
from webapp import params, population, queries
from webapp.errors import BackendUnavailable, BadParameter, error_response
from webapp.metrics import count_backend_error
from webapp.services import get_table, now, services

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

# While Pub/Sub is down a POST holds a server thread this long at most, then answers 503.
PUBLISH_TIMEOUT_S = 3.0


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


def by_currency_json(totals: queries.Totals) -> list[dict[str, Any]]:
    """Every currency present, in code order: [{"currency", "sum", "count"}]."""
    return [
        {"currency": currency, "sum": format_minor(total, currency), "count": count}
        for currency, total, count in totals.parts
    ]


def totals_json(totals: queries.Totals, currency: str) -> dict[str, Any]:
    """One currency's sum and count, and every currency's in by_currency."""
    total, count = totals.currency(currency)
    return {
        "currency": currency,
        "sum": format_minor(total, currency),
        "count": count,
        "by_currency": by_currency_json(totals),
    }


def currency_or_default(currency: str | None) -> str:
    """The `currency` parameter, else the config's currency."""
    return currency or services().cfg.currency


def sum_json(user_id: str, span: params.TimeRange, currency: str) -> dict[str, Any]:
    totals = queries.exact_sum(get_table(), user_id, span.start_us, span.end_us, services().whole_hours.total)
    return {"user_id": user_id, **span.as_json(), **totals_json(totals, currency)}


def hourly_json(user_id: str, span: params.TimeRange, currency: str) -> list[dict[str, Any]]:
    return [
        {"hour_start": format_rfc3339(from_epoch_us(hour * 1_000_000)), **totals_json(totals, currency)}
        for hour, totals in queries.hourly(get_table(), user_id, span.start_us, span.end_us)
    ]


def transactions_json(query: params.TransactionsQuery) -> dict[str, Any]:
    user_id, span = query.user_id, query.span
    cursor = None
    if query.page_token is not None:
        try:
            cursor = queries.decode_page_token(query.page_token, user_id)
        except queries.PageTokenError as exc:
            raise BadParameter("page_token", str(exc)) from None
    page, after = queries.transactions_page(get_table(), user_id, span.start_us, span.end_us, query.limit, cursor)
    return {
        "user_id": user_id,
        **span.as_json(),
        "transactions": [transaction_json(txn) for txn in page],
        "next_page_token": queries.encode_page_token(after) if after else None,
    }


# --- per-user routes ----------------------------------------------------------------------------


@bp.get("/users/<user_id>/sum")
def user_sum(user_id: str) -> Any:
    query = params.SumQuery.parse(request.args, now(), user_id=user_id)
    return jsonify(sum_json(query.user_id, query.span, currency_or_default(query.currency)))


@bp.get("/users/<user_id>/transactions")
def user_transactions(user_id: str) -> Any:
    return jsonify(transactions_json(params.TransactionsQuery.parse(request.args, now(), user_id=user_id)))


@bp.get("/users/<user_id>/hourly")
def user_hourly(user_id: str) -> Any:
    query = params.HourlyQuery.parse(request.args, now(), user_id=user_id)
    return jsonify(hourly_json(query.user_id, query.span, currency_or_default(query.currency)))


@bp.get("/users/<user_id>/latest")
def user_latest(user_id: str) -> Any:
    query = params.LatestQuery.parse(request.args, now(), user_id=user_id)
    # Every event the pipeline accepts lies in [2000-01-01, now + 1 day].
    end_us = to_epoch_us(now() + MAX_FUTURE)
    page, _ = queries.transactions_page(get_table(), query.user_id, to_epoch_us(EARLIEST_EVENT), end_us, query.n)
    return jsonify({"user_id": query.user_id, "transactions": [transaction_json(txn) for txn in page]})


def categories_json(by_category: population.ByCategory, currency: str | None) -> list[dict[str, Any]]:
    """[{"category", "currency", "sum", "count"}], currency by currency, the highest sum first in each."""
    return [
        {"category": category, "currency": cur, "sum": format_minor(total, cur), "count": count}
        for category, cur, total, count in population.ranked(by_category)
        if currency is None or cur == currency
    ]


@bp.get("/users/<user_id>/categories")
def user_categories(user_id: str) -> Any:
    query = params.UserCategoriesQuery.parse(request.args, now(), user_id=user_id)
    span = query.span
    found = population.user_categories(
        get_table(), query.user_id, span.start_us, span.end_us, services().whole_hours.remember
    )
    return jsonify(categories_json(found, query.currency))


# --- all users ----------------------------------------------------------------------------------


@bp.get("/categories")
def categories() -> Any:
    query = params.CategoriesQuery.parse(request.args, now())
    found = population.everyone_categories(
        get_table(), query.span.start_us, query.span.end_us, services().whole_hours.remember
    )
    return jsonify(categories_json(found, query.currency))


@bp.get("/totals")
def totals() -> Any:
    """Every user's count and sum per hour (or minute) and currency over [from, to)."""
    query = params.TotalsQuery.parse(request.args, now())
    currency = currency_or_default(query.currency)
    step_us, name = (HOUR_US, "hour_start") if query.granularity == "hour" else (MINUTE_US, "minute_start")
    rows = population.everyone_totals(get_table(), query.span.start_us, query.span.end_us, step_us)
    return jsonify(
        [{name: format_rfc3339(from_epoch_us(at * 1_000_000)), **totals_json(found, currency)} for at, found in rows]
    )


@bp.get("/transactions/latest")
def latest_transactions() -> Any:
    """The latest n transactions of every card holder, newest first, from the job's time index."""
    query = params.AllLatestQuery.parse(request.args, now())
    end_us = to_epoch_us(now() + MAX_FUTURE)
    page = population.latest(get_table(), to_epoch_us(EARLIEST_EVENT), end_us, query.n)
    return jsonify({"transactions": [transaction_json(txn) for txn in page]})


@bp.get("/top-users")
def top_users() -> Any:
    query = params.TopUsersQuery.parse(request.args, now())
    currency = currency_or_default(query.currency)
    ranked = queries.top_users(get_table(), to_epoch_us(now()), query.hours, query.n, currency)
    return jsonify(
        [
            {"rank": i + 1, "user_id": user, "currency": currency, "sum": format_minor(units, currency)}
            for i, (user, units) in enumerate(ranked)
        ]
    )


@bp.get("/stats/per-minute")
def stats_per_minute() -> Any:
    query = params.PerMinuteQuery.parse(request.args, now())
    currency = currency_or_default(query.currency)
    rows = queries.per_minute(get_table(), to_epoch_us(now()), query.minutes)
    return jsonify(
        [
            {"minute_start": format_rfc3339(from_epoch_us(minute * 1_000_000)), **totals_json(totals, currency)}
            for minute, totals in rows
        ]
    )


# --- what the job set aside or found in conflict ------------------------------------------------


def _version_json(version: dict[str, Any]) -> dict[str, Any]:
    """One copy of a transaction id as a conflict row records it, with its amount in its currency."""
    currency = str(version.get("currency", ""))
    units = int(version.get("amount_minor", 0))
    publish_us = int(version.get("publish_us", 0))
    return {
        "user_id": version.get("user_id", ""),
        "amount": format_minor(units, currency) if is_currency(currency) else str(units),
        "currency": currency,
        "event_time": format_rfc3339(from_epoch_us(int(version.get("event_us", 0)))),
        "publish_time": format_rfc3339(from_epoch_us(publish_us)) if publish_us else None,
        "message_id": version.get("message_id", ""),
    }


@bp.get("/late")
def late() -> Any:
    """Transactions the job set aside as late (published beyond the late horizon), by publish time."""
    query = params.LateQuery.parse(request.args, now())
    span = query.span
    try:
        from_key = queries.decode_key_token(query.page_token) if query.page_token is not None else None
        rows, after = queries.late_page(get_table(), span.start_us, span.end_us, query.limit, from_key)
    except queries.PageTokenError as exc:
        raise BadParameter("page_token", str(exc)) from None
    return jsonify(
        {
            **span.as_json(),
            "late": [
                {
                    "transaction_id": row["transaction_id"],
                    "user_id": row["user_id"],
                    "amount": format_minor(row["amount_minor"], row["currency"])
                    if is_currency(row["currency"])
                    else str(row["amount_minor"]),
                    "currency": row["currency"],
                    "event_time": row["event_time"],
                    "publish_time": row["publish_time"],
                    "run": row["run"],
                }
                for row in rows
            ],
            "next_page_token": queries.encode_key_token(after) if after else None,
        }
    )


@bp.get("/conflicts")
def conflicts() -> Any:
    """The latest copies whose user, amount, currency or event time differ from the counted copy."""
    limit = params.ConflictsQuery.parse(request.args, now()).limit
    table = get_table()
    status = read_job_status(table) or {}
    pending = status.get("pending") or {}
    last_run = max(int(status.get("last_run") or 0), int(pending.get("run_id") or 0))
    rows = queries.latest_conflicts(table, last_run, limit)
    return jsonify(
        {
            "conflicts_total": int(status.get("conflicts_total") or 0),
            "conflicts": [
                {
                    "run": row["run"],
                    "transaction_id": row["transaction_id"],
                    "reason": row["reason"],
                    "counted": _version_json(row["counted"]),
                    "copy": _version_json(row["copy"]),
                }
                for row in rows
            ],
        }
    )


@bp.get("/users")
def users() -> Any:
    query = params.UsersQuery.parse(request.args, now())
    return jsonify({"prefix": query.prefix, "users": queries.user_ids(get_table(), query.prefix, query.limit)})


# --- the receipts entry point -------------------------------------------------------------------


@bp.post("/transactions")
def post_transaction() -> Any:
    """Validate one transaction like the spooler does and publish it. The token, origin and
    content-type checks ran before this (webapp/security.py)."""
    cfg = services().cfg
    received_at = now()
    try:
        txn = parse_message(
            request.get_data(cache=False),
            now=received_at,
            max_bytes=cfg.max_payload_bytes,
            max_abs_amount=cfg.max_abs_amount,
        )
    except MessageError as exc:
        return error_response(400, f"body: {exc.detail}", parameter="body", reason=exc.reason)
    # The job counts a transaction only when it was published within the late horizon of its event
    # time (jobs/aggregate/transforms.flag_late); this one is published now.
    lag_s = (received_at - txn.event_time).total_seconds()
    if lag_s > late_horizon(cfg):
        return error_response(
            422,
            f"body: 'event_time' {format_rfc3339(txn.event_time)} is {lag_s / 3600:.1f} h old, beyond the "
            f"late horizon of {cfg.late_horizon_hours} h: it would never be counted",
            parameter="body",
            reason="late",
        )
    # The client's own retry would keep an unreachable Pub/Sub busy for a minute; give up with it.
    retry = gretry.Retry(timeout=PUBLISH_TIMEOUT_S, initial=0.1, maximum=1.0)
    try:
        future = (
            services()
            .publisher()
            .publish(clients.topic_path(cfg), txn.encode(), retry=retry, timeout=PUBLISH_TIMEOUT_S, **txn.attributes())
        )
        message_id = future.result(timeout=PUBLISH_TIMEOUT_S + 1.0)
    except gexc.NotFound as exc:
        count_backend_error("pubsub", exc)
        raise BackendUnavailable(f"Pub/Sub topic '{cfg.topic_id}' does not exist") from None
    except (gexc.GoogleAPIError, concurrent.futures.TimeoutError) as exc:
        count_backend_error("pubsub", exc)
        log.warning("publish to %s failed: %r", clients.describe_target(cfg), exc)
        raise BackendUnavailable(
            f"Pub/Sub unreachable: no answer within {PUBLISH_TIMEOUT_S:g} s; try again shortly"
        ) from None
    response = jsonify({"transaction_id": txn.transaction_id, "message_id": message_id})
    response.status_code = 202
    return response
