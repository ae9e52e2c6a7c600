"""Query parameters: each route's model parses the query string relative to the request's clock,
refuses a wrong value in one line naming it, and the OpenAPI document states exactly the bounds the
handlers enforce. (Refusals never reach Bigtable, so none is needed here; the answers to valid
requests are in tests/integration/test_api.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config
from flask.testing import FlaskClient

from webapp import create_app, params
from webapp.errors import BadParameter

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return create_app(make_config(tmp_path)).test_client()


def test_relative_times_count_from_the_given_now() -> None:
    query = params.SumQuery.parse({"from": "-2h", "to": "-30m"}, NOW, user_id="u1")
    assert (query.start, query.end) == (NOW - timedelta(hours=2), NOW - timedelta(minutes=30))
    assert query.span.as_json() == {"from": "2026-11-30T10:00:00Z", "to": "2026-11-30T11:30:00Z"}


def test_absent_and_empty_values_take_each_routes_defaults() -> None:
    page = params.TransactionsQuery.parse({"limit": "", "from": "", "page_token": ""}, NOW, user_id="u1")
    assert (page.start, page.end, page.limit, page.page_token) == (NOW - timedelta(hours=1), NOW, 50, None)
    late = params.LateQuery.parse({}, NOW)
    assert (late.start, late.limit) == (NOW - timedelta(days=7), 100)
    assert params.SumQuery.parse({}, NOW, user_id="u1").currency is None  # the handler's: the config's


def test_the_path_value_wins_over_the_query_string() -> None:
    assert params.SumQuery.parse({"user_id": "u2"}, NOW, user_id="u1").user_id == "u1"
    assert params.SumQuery.parse({"user_id": "u2"}, NOW).user_id == "u2"


@pytest.mark.parametrize(
    ("model", "args", "name", "words"),
    [
        (
            params.TransactionsQuery,
            {"user_id": "u1", "limit": "+5"},
            "limit",
            "must be an integer from 1 to 500, got '+5'",
        ),
        (params.TransactionsQuery, {"user_id": "u1", "limit": " 5"}, "limit", "must be an integer from 1 to 500"),
        (params.TransactionsQuery, {"user_id": "u1", "limit": "5_0"}, "limit", "must be an integer from 1 to 500"),
        (params.TransactionsQuery, {"user_id": "u1", "limit": "5.0"}, "limit", "must be an integer from 1 to 500"),
        (params.TransactionsQuery, {"user_id": "u1", "limit": "\u0663"}, "limit", "must be an integer from 1 to 500"),
        (params.TransactionsQuery, {"user_id": "u1", "limit": "501"}, "limit", "must be an integer from 1 to 500"),
        (params.LatestQuery, {"user_id": "u1", "n": "0"}, "n", "must be an integer from 1 to 100"),
        (params.SumQuery, {}, "user_id", "is required"),
        (params.SumQuery, {"user_id": "a b"}, "user_id", "must match [A-Za-z0-9_.-]{1,64}, got 'a b'"),
        (params.SumQuery, {"user_id": "u1", "from": "-367d"}, "from", "may span at most 366 days"),
        (params.HourlyQuery, {"user_id": "u1", "from": "-32d"}, "from", "may span at most 31 days"),
        (params.LateQuery, {"from": "-32d"}, "from", "may span at most 31 days"),
        (params.SumQuery, {"user_id": "u1", "to": "-2h"}, "from", "2026-11-30T11:00:00Z is after 'to'"),
        (params.SumQuery, {"user_id": "u1", "from": "lunch"}, "from", "expected a time such as -1h"),
        (params.SumQuery, {"user_id": "u1", "to": "1900-01-01T00:00:00Z"}, "to", "between 1970-01-01 and 2200"),
        (params.SumQuery, {"user_id": "u1", "currency": "XYZ"}, "currency", "an ISO 4217 currency code"),
        (params.TopUsersQuery, {"currency": "usd"}, "currency", "an ISO 4217 currency code"),
        (params.UsersQuery, {"prefix": "<b>"}, "prefix", "must match [A-Za-z0-9_.-]{0,64}, got '<b>'"),
    ],
)
def test_a_wrong_value_is_refused_in_one_line_naming_it(
    model: type[params.Query], args: dict[str, str], name: str, words: str
) -> None:
    with pytest.raises(BadParameter) as info:
        model.parse(args, NOW)
    assert info.value.name == name
    assert str(info.value).startswith(f"parameter '{name}': ") and words in str(info.value)
    assert "\n" not in str(info.value)


def _document(client: FlaskClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").get_json()
    return document


def test_the_documented_bounds_are_the_enforced_ones(client: FlaskClient) -> None:
    """Each documented integer parameter: one past either end is a 400 naming it."""
    checked = 0
    for path, operations in _document(client)["paths"].items():
        documented = operations.get("get", {}).get("parameters", [])
        needed = {p["name"]: "u1" for p in documented if p["in"] == "query" and p["required"]}
        for parameter in documented:
            schema = parameter["schema"]
            if schema.get("type") != "integer":
                continue
            for wrong in (schema["minimum"] - 1, schema["maximum"] + 1):
                url = path.replace("{user_id}", "u1")
                response = client.get(url, query_string={**needed, parameter["name"]: str(wrong)})
                assert response.status_code == 400, (url, parameter["name"], wrong)
                assert response.get_json()["parameter"] == parameter["name"]
                checked += 1
    assert checked == 2 * 11  # limit on five routes (/list too), n on three, hours, minutes, after


def test_the_document_has_the_bounds_the_api_promises(client: FlaskClient) -> None:
    paths = _document(client)["paths"]

    def bounds(path: str, name: str) -> tuple[int, int, int]:
        (schema,) = [p["schema"] for p in paths[path]["get"]["parameters"] if p["name"] == name]
        return schema["minimum"], schema["maximum"], schema["default"]

    assert bounds("/api/v1/users/{user_id}/transactions", "limit") == (1, 500, 50)
    assert bounds("/api/v1/users/{user_id}/latest", "n") == (1, 100, 5)
    assert bounds("/api/v1/top-users", "hours") == (1, 168, 3)
    assert bounds("/api/v1/stats/per-minute", "minutes") == (1, 1440, 60)
    assert bounds("/api/v1/late", "limit") == (1, 500, 100)
    assert bounds("/api/v1/conflicts", "limit") == (1, 100, 10)
    assert bounds("/api/v1/users", "limit") == (1, 500, 20)
    where = {p["name"]: p["in"] for p in paths["/api/v1/users/{user_id}/sum"]["get"]["parameters"]}
    assert where == {"user_id": "path", "from": "query", "to": "query", "currency": "query"}
    legacy = {p["name"]: (p["in"], p["required"]) for p in paths["/sum"]["get"]["parameters"]}
    assert legacy["user_id"] == ("query", True) and legacy["currency"] == ("query", False)
