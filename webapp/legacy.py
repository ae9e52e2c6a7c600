"""The original system's routes, kept for its clients: /list, /hour and /sum with the user in the
query string (`user_id`, `from` default -1h, `to` default now, `currency` default the config's).
Same answers as /api/v1."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from webapp import api, params
from webapp.services import now

bp = Blueprint("legacy", __name__)


@bp.get("/sum")
def legacy_sum() -> Any:
    query = params.SumQuery.parse(request.args, now())
    return jsonify(api.sum_json(query.user_id, query.span, api.currency_or_default(query.currency)))


@bp.get("/hour")
def legacy_hour() -> Any:
    query = params.HourlyQuery.parse(request.args, now())
    return jsonify(api.hourly_json(query.user_id, query.span, api.currency_or_default(query.currency)))


@bp.get("/list")
def legacy_list() -> Any:
    return jsonify(api.transactions_json(params.TransactionsQuery.parse(request.args, now())))
