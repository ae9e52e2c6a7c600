"""Percentiles of amounts over any range: GET /api/v1/users/<id>/percentiles and /api/v1/percentiles.

Per currency, the whole hours of the range come from the job's KLL sketches (one per user-hour, or
per hour for everyone: common.sketches), merged; the partial hours at either edge from the
transaction rows, whose exact amounts are added to the merged sketch. A range that holds no more
values than a sketch keeps exactly is answered exactly (rank_error 0); any other answer states the
sketch's normalized rank error: each value's true rank lies within q +- rank_error (99 % confidence).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import Blueprint, jsonify, request

from common import rowkeys, sketches, store
from common.money import format_minor
from common.timeutil import SECOND_US
from webapp import params, queries
from webapp.cache import Memo, no_memo
from webapp.services import get_table, now, services

bp = Blueprint("percentiles", __name__, url_prefix="/api/v1")

HISTOGRAM_BINS = 10


def _whole_hour_sketches(table: Any, user_id: str | None, first_us: int, end_us: int) -> dict[str, list[bytes]]:
    """Per currency, the serialized sketches of the whole hours [first_us, end_us)."""
    first_s, end_s = first_us // SECOND_US, end_us // SECOND_US
    if user_id is None:
        keys = rowkeys.hour_sketch_range(first_s, end_s)
    else:
        keys = rowkeys.user_sketch_range(user_id, first_s, end_s)
    found: dict[str, list[bytes]] = defaultdict(list)
    for _, cells in store.read_cell_rows(table, store.KLL, *keys):
        for currency, blob in cells.items():
            found[currency.decode()].append(blob)
    return found


def _edge_amounts(table: Any, user_id: str | None, edges: list[tuple[int, int]]) -> dict[str, list[int]]:
    """Per currency, the amounts of the transactions in the partial hours `edges`: the user's rows,
    or (None) everyone's from the time index (16 salted ranges per edge, whatever the number of
    card holders)."""
    if not edges:
        return {}
    found: dict[str, list[int]] = defaultdict(list)
    if user_id is None:
        for low, high in edges:
            for entry in store.read_time_index(table, rowkeys.time_index_ranges(low, high)):
                found[entry.currency].append(entry.amount_minor)
        return found
    ranges = [rowkeys.transaction_range(user_id, low, high) for low, high in edges]
    for txn in store.read_transactions_in(table, ranges):
        found[txn.currency].append(txn.amount_minor)
    return found


def _whole_hours_merged(table: Any, user_id: str | None, first_us: int, end_us: int) -> dict[str, bytes]:
    """Per currency, the whole hours' sketches merged into one, serialized."""
    return {
        currency: bytes(sketches.merged(blobs).serialize())
        for currency, blobs in _whole_hour_sketches(table, user_id, first_us, end_us).items()
    }


def range_answers(
    table: Any, user_id: str | None, start_us: int, end_us: int, qs: tuple[float, ...], memo: Memo = no_memo
) -> dict[str, sketches.Answer]:
    """Per currency present in [start_us, end_us), what the merged sketch says (common.sketches.answer).
    The whole hours' merged sketch goes through `memo` (the app's WholeHourCache)."""
    whole, edges = queries.split_hours(start_us, end_us)
    merged: dict[str, bytes] = {}
    if whole:
        merged = memo(table, ("percentiles", user_id, *whole), lambda: _whole_hours_merged(table, user_id, *whole))
    exact = _edge_amounts(table, user_id, edges)
    return {
        currency: sketches.answer(
            sketches.merged([merged[currency]] if currency in merged else [], exact.get(currency, [])),
            qs,
            HISTOGRAM_BINS,
        )
        for currency in sorted(set(merged) | set(exact))
    }


def answer_json(currency: str, answer: sketches.Answer) -> dict[str, Any]:
    """One currency's answer, amounts as decimal strings in the currency's places."""

    def money(units: int | None) -> str | None:
        return None if units is None else format_minor(units, currency)

    return {
        "currency": currency,
        "count": answer.count,
        "exact": answer.exact,
        "rank_error": answer.rank_error,
        "min": money(answer.min_value),
        "max": money(answer.max_value),
        "quantiles": [{"q": q, "value": money(v)} for q, v in answer.quantiles],
        "histogram": [{"from": money(low), "to": money(high), "count": n} for low, high, n in answer.histogram],
    }


def percentiles_json(user_id: str | None, query: params.PercentilesQuery) -> dict[str, Any]:
    span = query.span
    answers = range_answers(get_table(), user_id, span.start_us, span.end_us, query.q, services().whole_hours.remember)
    head = {"user_id": user_id} if user_id is not None else {}
    return {
        **head,
        **span.as_json(),
        "q": list(query.q),
        "by_currency": [answer_json(currency, answer) for currency, answer in answers.items()],
    }


@bp.get("/users/<user_id>/percentiles")
def user_percentiles(user_id: str) -> Any:
    query = params.UserPercentilesQuery.parse(request.args, now(), user_id=user_id)
    return jsonify(percentiles_json(query.user_id, query))


@bp.get("/percentiles")
def all_percentiles() -> Any:
    return jsonify(percentiles_json(None, params.PercentilesQuery.parse(request.args, now())))


# --- the OpenAPI document's part (webapp/openapi.py adds it) --------------------------------------

DESCRIPTION = (
    "Per currency present in the range: the requested quantiles of the amounts, their count, extremes "
    "and a histogram. Whole hours come from the job's mergeable KLL sketches (K = 200), the partial hours "
    "at either edge from the transaction rows (their exact amounts added to the merged sketch). Each "
    "value is an amount that occurred; its rank among the range's amounts lies within q +- rank_error "
    "(the sketch's normalized rank error, about 0.0133, at 99 % confidence). A range holding no more "
    "values than the sketch keeps exactly is answered exactly: exact is true and rank_error 0. "
    "The histogram's counts are estimates within count x 2 x rank_error."
)


def openapi_schemas(money: dict[str, Any], time: dict[str, Any], currency: dict[str, Any]) -> dict[str, Any]:
    """The response schemas, built from the document's shared pieces."""
    nullable_money = {**money, "nullable": True}
    return {
        "CurrencyPercentiles": {
            "type": "object",
            "required": ["currency", "count", "exact", "rank_error", "min", "max", "quantiles", "histogram"],
            "properties": {
                "currency": currency,
                "count": {"type": "integer", "minimum": 0},
                "exact": {"type": "boolean", "description": "True when every value is in the sketch."},
                "rank_error": {"type": "number", "minimum": 0, "maximum": 1},
                "min": nullable_money,
                "max": nullable_money,
                "quantiles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["q", "value"],
                        "properties": {"q": {"type": "number", "minimum": 0, "maximum": 1}, "value": nullable_money},
                    },
                },
                "histogram": {
                    "type": "array",
                    "description": "Bins [from, to) of about equal width from min to max, with estimated counts.",
                    "items": {
                        "type": "object",
                        "required": ["from", "to", "count"],
                        "properties": {"from": money, "to": money, "count": {"type": "integer", "minimum": 0}},
                    },
                },
            },
        },
        "Percentiles": {
            "type": "object",
            "required": ["from", "to", "q", "by_currency"],
            "properties": {
                "user_id": {"type": "string", "description": "Only on the per-user route."},
                "from": time,
                "to": time,
                "q": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
                "by_currency": {"type": "array", "items": {"$ref": "#/components/schemas/CurrencyPercentiles"}},
            },
        },
    }


def openapi_paths(get: Any, json_response: Any) -> dict[str, Any]:
    """The two routes, with openapi._get and openapi._json."""
    ok = json_response({"$ref": "#/components/schemas/Percentiles"}, "Every currency present, in code order.")
    return {
        "/api/v1/users/{user_id}/percentiles": get(
            "Quantiles of a user's amounts in [from, to), per currency", params.UserPercentilesQuery, ok, DESCRIPTION
        ),
        "/api/v1/percentiles": get(
            "Quantiles of all users' amounts in [from, to), per currency", params.PercentilesQuery, ok, DESCRIPTION
        ),
    }
