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
    user_id = params.required_user_id(request.args)
    span = params.time_range(request.args, now(), api.SUM_MAX_SPAN)
    return jsonify(api.sum_json(user_id, span, api.currency_arg(request.args)))


@bp.get("/hour")
def legacy_hour() -> Any:
    user_id = params.required_user_id(request.args)
    span = params.time_range(request.args, now(), api.HOURLY_MAX_SPAN)
    return jsonify(api.hourly_json(user_id, span, api.currency_arg(request.args)))


@bp.get("/list")
def legacy_list() -> Any:
    user_id = params.required_user_id(request.args)
    span = params.time_range(request.args, now(), api.TRANSACTIONS_MAX_SPAN)
    return jsonify(api.transactions_json(user_id, span, request.args))
