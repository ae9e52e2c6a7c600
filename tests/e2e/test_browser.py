"""The dashboard in headless Chromium, served by ./run_server.sh (gunicorn) over a seeded table:
pick a user and a range, and the cards, the chart and the table show what the API returns (and
what the ledger says). A screenshot lands in tests/artifacts/."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from conftest import cleanup_resources, make_config
from playwright.sync_api import Page, sync_playwright
from support.seed import LedgerRow, random_ledger, run_job

from common import clients
from common.config import Config

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<img src=x onerror="window.__pwned=1">'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _us(value: datetime) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def ledger() -> list[LedgerRow]:
    end = datetime.now(UTC)
    rows = random_ledger(["alice", "bob", "carol", "dave"], end - timedelta(days=3), end, 3, seed=11)
    rows += [
        LedgerRow(f"alice-now-{i}", "alice", 1234 + i, _us(end - timedelta(minutes=i)), "USD", "food & drink")
        for i in range(3)
    ]
    # alice also spends yen and dinars, bob yen: each currency shown on its own.
    rows += [
        LedgerRow(f"alice-jpy-{i}", "alice", 500 + 37 * i, _us(end - timedelta(hours=i, minutes=5)), "JPY")
        for i in range(12)
    ]
    rows += [
        LedgerRow(f"alice-bhd-{i}", "alice", 1234 + i, _us(end - timedelta(hours=3 * i + 1)), "BHD") for i in range(4)
    ]
    rows += [LedgerRow(f"bob-jpy-{i}", "bob", 9000 + i, _us(end - timedelta(minutes=20 + i)), "JPY") for i in range(2)]
    return rows


@pytest.fixture(scope="module")
def seeded(
    spark: Any, emulators: dict[str, str], tmp_path_factory: pytest.TempPathFactory, ledger: list[LedgerRow]
) -> Iterator[Config]:
    """A table filled by one aggregation job run over the ledger, shared by both servers."""
    cfg = make_config(tmp_path_factory.mktemp("browser-table"))
    run_job(spark, cfg, ledger)
    clients.ensure_topic(cfg)
    yield cfg
    cleanup_resources(cfg)


def _serve(cfg: Config, tmp: Path) -> Iterator[tuple[str, Path]]:
    """./run_server.sh with `cfg` on a free port; yields its base URL and its log file."""
    config_path = tmp / "config.json"
    # Every page.goto leaves a run stream that the server finds gone only at its next keep-alive;
    # a short keep-alive hands those slots back before a test opens a stream of its own.
    config_path.write_text(json.dumps({**cfg.to_dict(), "push_heartbeat_seconds": 2.0}))
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "CONFIG": str(config_path), "WORKERS": "1", "THREADS": "6"}
    log_path = tmp / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(ROOT / "run_server.sh")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # gunicorn start-up on a loaded 2-core machine
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or too busy to answer in 2 s
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield base, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(seeded: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """./run_server.sh on a free port over the seeded table; yields its base URL."""
    for base, _log in _serve(seeded, tmp_path_factory.mktemp("browser")):
        yield base


@pytest.fixture(scope="module")
def browser_page(server: str) -> Iterator[tuple[Page, list[str]]]:
    """A Chromium page that may reach only this server; yields it and the foreign URLs it tried."""
    foreign: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})

        def only_local(route: Any) -> None:
            if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        yield page, foreign
        browser.close()


def _wait_ready(page: Page, user: str, span_s: int | None = None, page_index: int = 0) -> dict[str, str]:
    page.wait_for_function(
        """([user, span, index]) => {
            const p = document.getElementById('user-panel').dataset;
            if (p.state !== 'ready' || p.user !== user || p.page !== String(index)) return false;
            return span === null || (Date.parse(p.to) - Date.parse(p.from)) === span * 1000;
        }""",
        arg=[user, span_s, page_index],
        timeout=15_000,
    )
    panel = page.locator("#user-panel")
    return {"from": panel.get_attribute("data-from") or "", "to": panel.get_attribute("data-to") or ""}


def _average(total: str, count: int) -> str:
    if not count:
        return "\N{EN DASH}"  # the dashboard's placeholder
    return str((Decimal(total) / count).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _chart(page: Page, canvas: str) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(
        "(id) => { const c = Chart.getChart(id); return {labels: c.data.labels, data: c.data.datasets[0].data}; }",
        canvas,
    )
    return found


def _as_money(values: list[float], places: int) -> list[Decimal]:
    return [Decimal(str(v)).quantize(Decimal(1).scaleb(-places)) for v in values]


def test_the_landing_page_shows_everyone_before_a_card_holder_is_picked(
    server: str, browser_page: tuple[Page, list[str]], ledger: list[LedgerRow]
) -> None:
    page, foreign = browser_page
    page.goto(f"{server}/?range=24h")
    page.wait_for_function("() => document.getElementById('everyone-panel').dataset.state === 'ready'", timeout=15_000)
    panel = page.locator("#everyone-panel")
    span = {"from": panel.get_attribute("data-from") or "", "to": panel.get_attribute("data-to") or ""}
    currency = panel.get_attribute("data-currency")
    assert currency == "USD"  # the server's default
    assert page.locator("#user-title").text_content() == "No card holder chosen"

    totals = requests.get(f"{server}/api/v1/totals", params={**span, "granularity": "hour"}, timeout=10).json()
    chart = _chart(page, "everyone-hourly-chart")
    assert len(chart["labels"]) == len(totals) >= 24
    assert _as_money(chart["data"], 2) == [Decimal(h["sum"]) for h in totals]
    low, high = _us(_parse(span["from"])), _us(_parse(span["to"]))
    inside = [r for r in ledger if low <= r.event_us < high]
    usd = [r for r in inside if r.currency == "USD"]
    assert sum(Decimal(h["sum"]) for h in totals) == Decimal(sum(r.amount_minor for r in usd)) / 100

    categories = requests.get(f"{server}/api/v1/categories", params=span, timeout=10).json()
    chart = _chart(page, "everyone-category-chart")
    shown = [c for c in categories if c["currency"] == "USD"]
    assert chart["labels"] == [c["category"] for c in shown] and len(shown) >= 2
    assert _as_money(chart["data"], 2) == [Decimal(c["sum"]) for c in shown]
    by_category: dict[str, int] = {}
    for r in usd:
        by_category[r.category] = by_category.get(r.category, 0) + r.amount_minor
    assert {c["category"]: Decimal(c["sum"]) for c in shown} == {k: Decimal(v) / 100 for k, v in by_category.items()}

    latest = requests.get(f"{server}/api/v1/transactions/latest", params={"n": 20}, timeout=10).json()
    newest = sorted(ledger, key=lambda r: (-r.event_us, r.user_id, r.transaction_id))[:20]
    assert [t["transaction_id"] for t in latest["transactions"]] == [r.transaction_id for r in newest]
    cells = page.locator("#latest-table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.children].map(td => td.textContent))"
    )
    assert [(c[1], c[2], c[5]) for c in cells] == [
        (t["user_id"], t["amount"], t["transaction_id"]) for t in latest["transactions"]
    ]
    page.wait_for_function("() => document.querySelectorAll('#top-table tbody tr td:nth-child(2)').length > 0")
    assert page.evaluate("() => Chart.getChart('minute-chart').data.labels.length") == 60
    assert foreign == []


def _check_percentiles(page: Page, api: str, span: dict[str, str], amounts: list[int]) -> None:
    """The p50/p90/p99 cards and the amount histogram show the API's USD answer, and that answer is
    the ledger's: fewer amounts than a sketch keeps exactly, so exact inclusive quantiles (the
    smallest amount with at least q of them at or below it) and exact counts per bin."""
    body = requests.get(f"{api}/percentiles", params={**span, "q": "0.5,0.9,0.99"}, timeout=10).json()
    usd = next(c for c in body["by_currency"] if c["currency"] == "USD")
    ordered = sorted(amounts)
    assert usd["count"] == len(ordered) and usd["exact"] and usd["rank_error"] == 0
    expected = [Decimal(ordered[math.ceil(round(q * len(ordered), 9)) - 1]) / 100 for q in (0.5, 0.9, 0.99)]
    assert [Decimal(item["value"]) for item in usd["quantiles"]] == expected
    cards = [page.locator(f"#kpi-p{p}").text_content() for p in (50, 90, 99)]
    assert cards == [item["value"] for item in usd["quantiles"]]
    assert "exact" in (page.locator("#percentile-note").text_content() or "")

    histogram = _chart(page, "amount-histogram")
    bins = usd["histogram"]
    assert histogram["labels"] == [f"{b['from']}\N{EN DASH}{b['to']}" for b in bins] and len(bins) >= 5
    assert histogram["data"] == [b["count"] for b in bins]
    in_bins = [sum(1 for a in ordered if Decimal(b["from"]) * 100 <= a < Decimal(b["to"]) * 100) for b in bins]
    assert in_bins == [b["count"] for b in bins] and sum(in_bins) == len(ordered)


def test_picking_a_user_and_a_range_shows_the_apis_numbers(
    server: str, browser_page: tuple[Page, list[str]], ledger: list[LedgerRow]
) -> None:
    page, foreign = browser_page
    ledger = [r for r in ledger if r.currency == "USD"]  # the cards start in the default currency
    page.goto(f"{server}/")
    page.locator("#user-input").fill("ali")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#user-options option')].some(o => o.value === 'alice')"
    )
    page.locator("#user-input").fill("alice")
    page.locator("#show-user").click()
    _wait_ready(page, "alice", 3600)
    page.locator("button.range[data-range='24h']").click()
    span = _wait_ready(page, "alice", 24 * 3600)

    api = f"{server}/api/v1/users/alice"
    total = requests.get(f"{api}/sum", params=span, timeout=10).json()
    hourly = requests.get(f"{api}/hourly", params=span, timeout=10).json()
    first = requests.get(f"{api}/transactions", params={**span, "limit": 20}, timeout=10).json()

    # The API agrees with the ledger ...
    rows = [
        r for r in ledger if r.user_id == "alice" and _us(_parse(span["from"])) <= r.event_us < _us(_parse(span["to"]))
    ]
    assert Decimal(total["sum"]) == Decimal(sum(r.amount_minor for r in rows)) / 100
    assert total["count"] == len(rows) > 20
    # ... and the page shows the API's numbers.
    assert page.locator("#kpi-sum").text_content() == total["sum"]
    assert page.locator("#kpi-count").text_content() == str(total["count"])
    assert page.locator("#kpi-avg").text_content() == _average(total["sum"], total["count"])
    chart = page.evaluate(
        "() => { const c = Chart.getChart('hourly-chart');"
        " return {labels: c.data.labels, data: c.data.datasets[0].data}; }"
    )
    assert len(chart["labels"]) == len(hourly) >= 24
    assert [Decimal(str(v)).quantize(Decimal("0.01")) for v in chart["data"]] == [Decimal(h["sum"]) for h in hourly]
    cells = page.locator("#txn-table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.children].map(td => td.textContent))"
    )
    assert [c[4] for c in cells] == [t["transaction_id"] for t in first["transactions"]]
    assert [c[1] for c in cells] == [t["amount"] for t in first["transactions"]]
    assert "food & drink" in [c[3] for c in cells]  # shown as text, ampersand and all
    categories = requests.get(f"{api}/categories", params=span, timeout=10).json()
    shown = [c for c in categories if c["currency"] == "USD"]
    category_chart = _chart(page, "category-chart")
    assert category_chart["labels"] == [c["category"] for c in shown] and shown
    assert _as_money(category_chart["data"], 2) == [Decimal(c["sum"]) for c in shown]
    assert sum(Decimal(c["sum"]) for c in shown) == Decimal(total["sum"])
    _check_percentiles(page, api, span, [r.amount_minor for r in rows])

    # The next page is the API's next page.
    page.locator("#page-older").click()
    _wait_ready(page, "alice", 24 * 3600, page_index=1)
    second = requests.get(
        f"{api}/transactions", params={**span, "limit": 20, "page_token": first["next_page_token"]}, timeout=10
    ).json()
    ids = page.locator("#txn-table tbody tr td:nth-child(5)").all_text_contents()
    assert ids == [t["transaction_id"] for t in second["transactions"]]

    # Everyone's panels are filled too.
    page.wait_for_function("() => document.querySelectorAll('#top-table tbody tr').length > 0")
    top = requests.get(f"{server}/api/v1/top-users", params={"hours": 3, "n": 10}, timeout=10).json()
    shown = page.locator("#top-table tbody tr td:nth-child(2)").all_text_contents()
    assert shown == [t["user_id"] for t in top]
    assert page.evaluate("() => Chart.getChart('minute-chart').data.labels.length") == 60
    page.wait_for_function("() => document.getElementById('health-list').textContent.includes('reachable')")
    assert page.locator("#health-badge").text_content() == "ok"

    # A custom range, typed as UTC.
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    start = end - timedelta(hours=30, minutes=15, seconds=7)
    page.locator("button.range[data-range='custom']").click()
    page.locator("#custom-from").fill(start.strftime("%Y-%m-%dT%H:%M:%S"))
    page.locator("#custom-to").fill(end.strftime("%Y-%m-%dT%H:%M:%S"))
    page.locator("#custom-form button[type=submit]").click()
    custom = _wait_ready(page, "alice", int((end - start).total_seconds()))
    assert _parse(custom["from"]) == start and _parse(custom["to"]) == end
    custom_total = requests.get(f"{api}/sum", params=custom, timeout=10).json()
    assert page.locator("#kpi-sum").text_content() == custom_total["sum"]
    in_custom = [r for r in ledger if r.user_id == "alice" and _us(start) <= r.event_us < _us(end)]
    assert custom_total["count"] == len(in_custom)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("button.range[data-range='24h']").click()
    _wait_ready(page, "alice", 24 * 3600, page_index=0)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert foreign == []  # the page needed nothing from the internet


def test_every_currency_is_shown_on_its_own(
    server: str, browser_page: tuple[Page, list[str]], ledger: list[LedgerRow]
) -> None:
    page, _ = browser_page
    page.goto(f"{server}/?user=alice&range=24h")
    span = _wait_ready(page, "alice", 24 * 3600)
    api = f"{server}/api/v1/users/alice"
    total = requests.get(f"{api}/sum", params=span, timeout=10).json()
    start, end = _us(_parse(span["from"])), _us(_parse(span["to"]))
    counts: dict[str, int] = {}
    for row in ledger:
        if row.user_id == "alice" and start <= row.event_us < end:
            counts[row.currency] = counts.get(row.currency, 0) + 1
    assert [(c["currency"], c["count"]) for c in total["by_currency"]] == sorted(counts.items())
    assert sorted(counts) == ["BHD", "JPY", "USD"]
    # One card per currency, each with the API's exact sum; the big cards in the default currency.
    cards = page.locator("#currency-cards .currency-card").evaluate_all(
        "cards => cards.map(c => [c.dataset.currency, c.querySelector('.currency-sum').textContent])"
    )
    assert cards == [[c["currency"], c["sum"]] for c in total["by_currency"]]
    assert page.locator("#kpi-currency").text_content() == "USD"
    # Choosing yen: the cards and the chart show yen, in whole yen.
    page.locator("#currency-cards .currency-card[data-currency='JPY']").click()
    page.wait_for_function(
        "() => { const p = document.getElementById('user-panel').dataset;"
        " return p.state === 'ready' && p.currency === 'JPY'; }"
    )
    yen = requests.get(f"{api}/sum", params={**span, "currency": "JPY"}, timeout=10).json()
    yen_rows = [r for r in ledger if r.user_id == "alice" and r.currency == "JPY" and start <= r.event_us < end]
    assert yen["sum"] == str(sum(r.amount_minor for r in yen_rows)) and "." not in yen["sum"]
    assert page.locator("#kpi-sum").text_content() == yen["sum"]
    assert page.locator("#kpi-count").text_content() == str(len(yen_rows))
    assert page.locator("#currency-select").input_value() == "JPY"
    hourly = requests.get(f"{api}/hourly", params={**span, "currency": "JPY"}, timeout=10).json()
    chart = page.evaluate("() => Chart.getChart('hourly-chart').data.datasets[0].data")
    assert [Decimal(str(v)) for v in chart] == [Decimal(h["sum"]) for h in hourly]
    # Top spenders rank within the chosen currency.
    page.locator("#top-currency").select_option("JPY")
    top = requests.get(f"{server}/api/v1/top-users", params={"hours": 3, "n": 10, "currency": "JPY"}, timeout=10).json()
    assert [t["user_id"] for t in top] == ["bob", "alice"]
    page.wait_for_function(
        "(ids) => [...document.querySelectorAll('#top-table tbody tr td:nth-child(2)')].map(td => td.textContent)"
        ".join() === ids",
        arg=",".join(t["user_id"] for t in top),
    )
    shown = page.locator("#top-table tbody tr td:nth-child(3)").all_text_contents()
    assert shown == [t["sum"] for t in top]
    assert page.locator("#conflict-count").text_content() == "0"


def test_a_user_id_with_markup_stays_text(server: str, browser_page: tuple[Page, list[str]]) -> None:
    page, _ = browser_page
    page.goto(f"{server}/?" + requests.compat.urlencode({"user": HOSTILE, "range": "6h"}))
    page.wait_for_function("() => document.getElementById('user-panel').dataset.state === 'error'")
    assert page.locator("#user-title").text_content() == HOSTILE
    assert "user_id" in (page.locator("#message").text_content() or "")
    assert page.evaluate("() => window.__pwned") is None
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0


# --- a server with a read token -------------------------------------------------------------------

READ_TOKEN = "dashboard-read-t0ken-0123456789"


@pytest.fixture(scope="module")
def guarded_server(seeded: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The same table served with a read token."""
    tmp = tmp_path_factory.mktemp("browser-guarded")
    cfg = replace(seeded, read_token=READ_TOKEN, ingest_token="dashboard-ingest-t0ken-0123456789")
    yield from _serve(cfg, tmp)


def test_the_dashboard_asks_for_the_read_token_once_per_session(
    guarded_server: tuple[str, Path], browser_page: tuple[Page, list[str]]
) -> None:
    base, log_path = guarded_server
    browser = browser_page[0].context.browser
    assert browser is not None
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    urls: list[str] = []
    context.on("request", lambda request: urls.append(request.url))
    try:
        page = context.new_page()
        page.goto(f"{base}/?user=alice&range=24h")
        # Refused without the token: the page asks for it and shows the reason.
        page.wait_for_function("() => !document.getElementById('token-form').hidden")
        page.wait_for_function("() => document.getElementById('user-panel').dataset.state === 'error'")
        assert "Bearer" in (page.locator("#message").text_content() or "")
        # A wrong one is refused and asked for again.
        page.locator("#token-input").fill("not-the-token-0123456789")
        page.locator("#token-form button[type=submit]").click()
        page.wait_for_function("() => !document.getElementById('token-form').hidden")
        page.wait_for_function("() => document.getElementById('user-panel').dataset.state === 'error'")
        # The right one opens the data.
        page.locator("#token-input").fill(READ_TOKEN)
        page.locator("#token-form button[type=submit]").click()
        span = _wait_ready(page, "alice", 24 * 3600)
        assert page.locator("#token-form").is_hidden()
        auth = {"Authorization": f"Bearer {READ_TOKEN}"}
        total = requests.get(f"{base}/api/v1/users/alice/sum", params=span, headers=auth, timeout=10).json()
        assert page.locator("#kpi-count").text_content() == str(total["count"]) != "0"
        page.wait_for_function("() => document.querySelectorAll('#top-table tbody tr').length > 0")
        # Kept for the session: a reload asks nothing.
        page.reload()
        _wait_ready(page, "alice", 24 * 3600)
        assert page.locator("#token-form").is_hidden()
    finally:
        context.close()
    # A new session asks again.
    fresh = browser.new_context()
    try:
        page = fresh.new_page()
        page.goto(f"{base}/?user=alice&range=1h")
        page.wait_for_function("() => !document.getElementById('token-form').hidden")
    finally:
        fresh.close()
    # The token travelled in a header only: never in a URL, so never in the server's access log.
    assert urls and not any(READ_TOKEN in url for url in urls)
    assert any("/api/v1/users/alice/sum" in url for url in urls)
    log = log_path.read_text()
    assert "/api/v1/users/alice/sum" in log and READ_TOKEN not in log


def test_a_finished_run_reaches_the_page_by_push_before_any_poll(
    spark: Any, seeded: Config, server: str, browser_page: tuple[Page, list[str]]
) -> None:
    browser = browser_page[0].context.browser
    assert browser is not None
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    sums: list[str] = []
    context.on("request", lambda request: sums.append(request.url) if "/users/erin/sum" in request.url else None)
    try:
        page = context.new_page()
        page.goto(f"{server}/?user=erin&range=1h")
        _wait_ready(page, "erin", 3600)
        assert page.locator("#kpi-count").text_content() == "0"  # erin has spent nothing yet
        page.wait_for_function("() => document.getElementById('live-status').textContent.includes('pushed')")
        health = page.locator("#health-list").text_content() or ""
        assert "Freshness" in health and "last run" in health
        polled = len(sums)
        now = datetime.now(UTC)
        run_job(
            spark, seeded, [LedgerRow(f"erin-{i}", "erin", 700 + i, _us(now - timedelta(minutes=i))) for i in (1, 2)]
        )
        finished = time.monotonic()
        # While the stream is open the page polls once a minute: an update within seconds is the push.
        page.wait_for_function("() => document.getElementById('kpi-count').textContent === '2'", timeout=8_000)
        assert time.monotonic() - finished < 8
        assert page.locator("#kpi-sum").text_content() == "14.03"
        assert len(sums) == polled + 1  # one refresh, for the one run
    finally:
        context.close()
