"""The OpenAPI document validates and covers every route, and a property-based fuzz of every
operation (schemathesis, valid and invalid inputs) never gets a 5xx and always gets what the
document promises."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import schemathesis
from conftest import cleanup_resources, make_config
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support.ledger import copies
from support.seed import LedgerRow, random_ledger, run_job, spool_frame

from common import clients
from webapp import create_app

# The schema is loaded when the module is collected, from an app that has not touched Bigtable
# yet (create_app connects to nothing); the fixture below fills its table (one job run) before any
# test runs.
# (schemathesis' lazy fixture loader does not work with this pytest.)
CFG = make_config(Path(tempfile.gettempdir()) / "api-fuzz")
APP = create_app(CFG)
# GET /api/v1/runs/stream stays open until its time is up, and the fuzzer reads each answer whole:
# its streams end after half a second here, so every generated request to it is still checked (the
# status, the text/event-stream type, a 400 naming a bad `after` or Last-Event-ID) and none hangs.
APP.extensions["txn_push"].max_stream_seconds = 0.5
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


def fuzz_ledger(end: datetime) -> pd.DataFrame:
    """Two transactions an hour for two days for each user, with amounts of 2, 0 and 3 places, a row
    published days after its event (set aside as late) and a copy of the first transaction under
    another user (a conflict): every shape the document promises."""
    ledger = random_ledger(["u1", "u10", "a.b-c_d"], end - timedelta(days=2), end, 2, currencies=("USD", "JPY", "BHD"))
    first = ledger[0]
    late = LedgerRow("late-1", "u1", 1234, first.event_us - 4 * 86_400_000_000, "BHD", publish_us=first.event_us)
    conflict = copies(spool_frame([first]), "-other", user_id="u10", amount_minor=5, currency="JPY")
    return pd.concat([spool_frame([*ledger, late]), conflict], ignore_index=True)


@pytest.fixture(scope="module", autouse=True)
def fuzz_app(spark: Any, emulators: dict[str, str]) -> Iterator[Flask]:
    run_job(spark, CFG, fuzz_ledger(datetime.now(UTC)))
    clients.ensure_topic(CFG)
    yield APP
    cleanup_resources(CFG)


def test_the_document_is_valid_openapi(fuzz_app: Flask) -> None:
    document = fuzz_app.test_client().get("/openapi.json").get_json()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_the_document_covers_every_json_route(fuzz_app: Flask) -> None:
    document = fuzz_app.test_client().get("/openapi.json").get_json()
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    served = set()
    for rule in fuzz_app.url_map.iter_rules():
        if rule.endpoint in ("static", "dashboard.index", "openapi.openapi_json", "metrics.metrics_text"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        served |= {(path, method.lower()) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert served == documented


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_generated_request_gets_a_server_error(case: Any) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    )
