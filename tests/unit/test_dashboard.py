"""The dashboard page as served: self-contained (no CDN), locked down by its CSP, never echoing
user input into the HTML, and the script writing data only as text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import make_config
from flask.testing import FlaskClient

from webapp import create_app

STATIC = Path(__file__).resolve().parents[2] / "webapp" / "static"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    # The page itself reads nothing from Bigtable; the browser test covers it with data.
    return create_app(make_config(tmp_path)).test_client()


def test_the_page_has_every_panel(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for element_id in (
        "user-input",
        "user-options",
        "kpi-sum",
        "kpi-count",
        "kpi-avg",
        "kpi-p50",
        "kpi-p90",
        "kpi-p99",
        "amount-histogram",
        "hourly-chart",
        "txn-table",
        "page-older",
        "page-newer",
        "top-table",
        "minute-chart",
        "health-list",
        "auto-refresh",
        "custom-from",
        "custom-to",
        "currency-select",
        "currency-cards",
        "kpi-currency",
        "top-currency",
        "conflict-count",
        "conflict-table",
    ):
        assert f'id="{element_id}"' in html, element_id
    assert [m for m in re.findall(r'data-range="([^"]+)"', html)] == ["1h", "6h", "24h", "7d", "custom"]


def test_every_script_and_style_is_served_from_here(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    for source in sources:
        assert not re.match(r"^(https?:)?//", source), source
        if source.startswith("/static/"):
            with client.get(source) as response:  # closes the static file it streams
                assert response.status_code == 200, source
    with client.get("/static/vendor/chart.umd.min.js") as response:
        chart = response.get_data(as_text=True)
    assert "Chart.js v4" in chart[:200]
    assert "<script>" not in html.split("</head>")[1]  # no inline script in the body


def test_the_page_is_locked_down_by_its_headers(client: FlaskClient) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "hostile",
    ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>', "</title><svg onload=alert(1)>"],
)
def test_user_input_in_the_url_is_never_echoed_into_the_html(client: FlaskClient, hostile: str) -> None:
    for query in ({"user": hostile}, {"range": hostile}, {"from": hostile, "to": hostile}):
        html = client.get("/", query_string=query).get_data(as_text=True)
        assert hostile not in html
        assert "onerror" not in html and "onload" not in html and "alert(" not in html


def test_the_script_writes_data_only_as_text() -> None:
    script = (STATIC / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "textContent" in script
