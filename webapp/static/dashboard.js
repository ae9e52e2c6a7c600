// The dashboard: plain JS over the JSON API. Every value reaches the page through textContent or
// a property and is never parsed as markup, so a user id or category holding tags stays text.
"use strict";

(function () {
  const RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600 };
  const PAGE_SIZE = 20;
  const refreshSeconds = Number(document.body.dataset.refreshSeconds) || 10;

  const state = {
    user: "",
    range: "1h",
    customFrom: "",
    customTo: "",
    tokens: [null], // tokens[i] opens page i; a null token is the newest page
    page: 0,
    from: "",
    to: "",
    currency: "", // the currency of the cards and the hourly chart ("" = the server's default)
    topCurrency: "", // the currency top spenders are ranked in
    seenCurrencies: new Set(), // every currency any answer has shown, for the selectors
  };
  const charts = {};
  let timer = null;
  let lookupTimer = null;
  // Finished runs are pushed (GET /api/v1/runs/stream); while that stream is open the page polls
  // only to move its relative windows along, and at refreshSeconds again as soon as it fails.
  const STREAM_PATH = "/api/v1/runs/stream";
  const PUSHED_POLL_SECONDS = 60;
  const STREAM_RETRY_SECONDS = 30;
  let stream = null;
  let streamLive = false;
  let lastRun = null; // the last run id this page has shown (from /health, then from the stream)
  let refreshing = null; // the refresh in flight
  let refreshAgain = false; // a run arrived while it ran

  const $ = (id) => document.getElementById(id);

  // --- small helpers -----------------------------------------------------------------------------

  function isoSeconds(date) {
    return date.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function parseMoney(money) {
    // A decimal string as the API writes it, in the currency's own places: "-12.34" -> {units:
    // -1234n, places: 2}, "1000" (JPY) -> {units: 1000n, places: 0}. Exact: BigInt, no float.
    const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(money);
    if (!match) return null;
    const places = match[3] ? match[3].length : 0;
    const units = BigInt(match[2] + (match[3] || ""));
    return { units: match[1] ? -units : units, places };
  }

  function formatMoney(units, places) {
    const sign = units < 0n ? "-" : "";
    const digits = (units < 0n ? -units : units).toString().padStart(places + 1, "0");
    return places ? `${sign}${digits.slice(0, -places)}.${digits.slice(-places)}` : `${sign}${digits}`;
  }

  function averageMoney(sum, count) {
    // The average in the currency's own places, rounded half away from zero, in integer units.
    const total = parseMoney(sum);
    if (!count || !total) return "–";
    const n = BigInt(count);
    const abs = total.units < 0n ? -total.units : total.units;
    const rounded = (2n * abs + n) / (2n * n);
    return formatMoney(total.units < 0n ? -rounded : rounded, total.places);
  }

  function moneyNumber(money) {
    // For drawing only (a chart axis); every figure shown as text stays the API's exact string.
    const value = parseMoney(money);
    return value ? Number(value.units) / 10 ** value.places : 0;
  }

  function noteCurrencies(list) {
    let added = false;
    for (const item of list || []) {
      if (!state.seenCurrencies.has(item.currency)) {
        state.seenCurrencies.add(item.currency);
        added = true;
      }
    }
    if (added) {
      fillCurrencySelect("top-currency", state.topCurrency);
      fillCurrencySelect("everyone-currency", state.topCurrency);
    }
  }

  function fillCurrencySelect(id, chosen, only) {
    // The options of a currency selector: `only` when given, else every currency seen so far.
    const select = $(id);
    const codes = [...(only || state.seenCurrencies)].sort();
    if (chosen && !codes.includes(chosen)) codes.push(chosen);
    const current = [...select.options].map((o) => o.value);
    if (current.join() !== codes.join()) {
      clearChildren(select);
      for (const code of codes) {
        const option = document.createElement("option");
        option.value = code;
        option.textContent = code;
        select.appendChild(option);
      }
    }
    select.value = chosen;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function showMessage(text, isError) {
    const box = $("message");
    box.textContent = text || "";
    box.className = isError ? "error" : "";
  }

  // The read token, when the server asks for one: typed once, kept for this tab's session only,
  // sent as a header to this server alone (never in a URL, so never in a log or the history).
  const TOKEN_KEY = "txn-read-token";
  let pageToken = ""; // where sessionStorage is refused, the token lasts as long as the page

  function readToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || pageToken;
    } catch (err) {
      return pageToken;
    }
  }

  function askForToken() {
    pageToken = "";
    try {
      window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      // storage refused: pageToken alone held it
    }
    const form = $("token-form");
    if (form.hidden) {
      form.hidden = false;
      $("token-input").focus();
    }
  }

  async function getJson(path, params) {
    const url = new URL(path, window.location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: "application/json" };
    const token = readToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, { headers, credentials: "omit" });
    // A refusal of a token already replaced (typed while this request was out) asks for nothing.
    if (response.status === 401 && token === readToken()) askForToken();
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const reason = body && body.error ? body.error : `HTTP ${response.status}`;
      const error = new Error(reason);
      error.status = response.status;
      error.body = body;
      throw error;
    }
    return body;
  }

  function clearChildren(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function drawBars(canvasId, labels, values, label, color, horizontal) {
    if (typeof Chart === "undefined") return;
    const existing = charts[canvasId];
    if (existing) {
      existing.data.labels = labels;
      existing.data.datasets[0].data = values;
      existing.data.datasets[0].label = label;
      existing.update("none");
      return;
    }
    charts[canvasId] = new Chart($(canvasId), {
      type: "bar",
      data: { labels, datasets: [{ label, data: values, backgroundColor: color }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: false } },
        scales: horizontal ? { x: { beginAtZero: true } } : { y: { beginAtZero: true } },
      },
    });
  }

  function drawCategories(canvasId, rows, currency, color) {
    // One currency's categories, highest sum first (the API's order), as horizontal bars.
    const mine = rows.filter((r) => r.currency === currency);
    drawBars(
      canvasId,
      mine.map((r) => r.category),
      mine.map((r) => moneyNumber(r.sum)),
      `Sum per category (${currency})`,
      color,
      true,
    );
  }

  // --- time range --------------------------------------------------------------------------------

  function resolveRange() {
    if (state.range === "custom") {
      if (!state.customFrom || !state.customTo) return null;
      // datetime-local values carry no zone: the page speaks UTC, so read them as UTC.
      const withSeconds = (v) => (v.length === 16 ? `${v}:00` : v);
      return { from: `${withSeconds(state.customFrom)}Z`, to: `${withSeconds(state.customTo)}Z` };
    }
    const end = new Date(Math.floor(Date.now() / 1000) * 1000);
    const start = new Date(end.getTime() - RANGES[state.range] * 1000);
    return { from: isoSeconds(start), to: isoSeconds(end) };
  }

  function markRangeButtons() {
    for (const button of document.querySelectorAll("button.range")) {
      button.classList.toggle("active", button.dataset.range === state.range);
      button.setAttribute("aria-pressed", button.dataset.range === state.range ? "true" : "false");
    }
    $("custom-form").hidden = state.range !== "custom";
  }

  function saveToUrl() {
    const params = new URLSearchParams();
    if (state.user) params.set("user", state.user);
    params.set("range", state.range);
    if (state.currency) params.set("currency", state.currency);
    if (state.range === "custom") {
      params.set("from", state.customFrom);
      params.set("to", state.customTo);
    }
    window.history.replaceState(null, "", `?${params.toString()}`);
  }

  // --- the card holder's panel -------------------------------------------------------------------

  function hourLabel(iso) {
    return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  }

  function renderSum(sum) {
    // The big cards: the chosen currency. Below them, one card per currency the holder used.
    state.currency = sum.currency;
    setText("kpi-currency", sum.currency);
    setText("kpi-sum", sum.sum);
    setText("kpi-count", String(sum.count));
    setText("kpi-avg", averageMoney(sum.sum, sum.count));
    const codes = sum.by_currency.map((c) => c.currency);
    fillCurrencySelect("currency-select", sum.currency, codes.length ? codes : [sum.currency]);
    noteCurrencies(sum.by_currency);
    const box = $("currency-cards");
    clearChildren(box);
    for (const item of sum.by_currency) {
      const card = document.createElement("button");
      card.type = "button";
      card.className = item.currency === sum.currency ? "currency-card chosen" : "currency-card";
      card.dataset.currency = item.currency;
      card.setAttribute("aria-pressed", item.currency === sum.currency ? "true" : "false");
      const head = card.appendChild(document.createElement("span"));
      head.className = "currency-code";
      head.textContent = item.currency;
      const total = card.appendChild(document.createElement("span"));
      total.className = "currency-sum";
      total.textContent = item.sum;
      const detail = card.appendChild(document.createElement("span"));
      detail.className = "currency-detail";
      detail.textContent = `${item.count} transactions, average ${averageMoney(item.sum, item.count)}`;
      card.addEventListener("click", () => chooseCurrency(item.currency));
      box.appendChild(card);
    }
    if (!sum.by_currency.length) {
      const none = box.appendChild(document.createElement("span"));
      none.className = "empty";
      none.textContent = "No transactions in this range.";
    }
  }

  function renderPercentiles(body, currency) {
    // p50/p90/p99 and the amount histogram of the cards' currency, from the job's KLL sketches.
    const found = body.by_currency.find((c) => c.currency === currency);
    const value = (q) => (found ? found.quantiles.find((item) => item.q === q) : null);
    for (const [id, q] of [["kpi-p50", 0.5], ["kpi-p90", 0.9], ["kpi-p99", 0.99]]) {
      const item = value(q);
      setText(id, item && item.value !== null ? item.value : "–");
    }
    let note = "";
    if (found && found.count) {
      note = found.exact
        ? `Percentiles of ${currency} amounts: exact (${found.count} transactions).`
        : `Percentiles of ${currency} amounts: each within ±${(found.rank_error * 100).toFixed(2)} % of rank ` +
          `(${found.count} transactions).`;
    }
    setText("percentile-note", note);
    setText("histogram-currency", found ? `${currency}, transactions per amount range` : "");
    const bins = found ? found.histogram : [];
    drawBars(
      "amount-histogram",
      bins.map((b) => `${b.from}–${b.to}`),
      bins.map((b) => b.count),
      `Transactions (${currency})`,
      "#7a4fb0",
    );
  }

  function chooseCurrency(code) {
    state.currency = code;
    saveToUrl();
    loadUser();
  }

  function renderTransactions(page) {
    const body = $("txn-table").querySelector("tbody");
    clearChildren(body);
    if (!page.transactions.length) {
      const row = document.createElement("tr");
      const td = cell(row, "No transactions in this range.", "empty");
      td.colSpan = 5;
      body.appendChild(row);
    }
    for (const txn of page.transactions) {
      const row = document.createElement("tr");
      cell(row, txn.event_time.slice(0, 19).replace("T", " "));
      cell(row, txn.amount, "num");
      cell(row, txn.currency);
      cell(row, txn.merchant_category);
      cell(row, txn.transaction_id, "mono");
      body.appendChild(row);
    }
    state.tokens[state.page + 1] = page.next_page_token;
    $("page-older").disabled = !page.next_page_token;
    $("page-newer").disabled = state.page === 0;
    setText("page-label", `page ${state.page + 1}`);
  }

  async function loadUser() {
    const panel = $("user-panel");
    if (!state.user) return;
    const range = resolveRange();
    if (!range) {
      showMessage("Pick both ends of the custom range.", true);
      return;
    }
    state.from = range.from;
    state.to = range.to;
    const base = `/api/v1/users/${encodeURIComponent(state.user)}`;
    setText("user-title", state.user);
    setText("range-label", `${range.from} → ${range.to}`);
    panel.dataset.state = "loading";
    try {
      const money = { ...range, currency: state.currency };
      const [sum, hourly, page, categories, percentiles] = await Promise.all([
        getJson(`${base}/sum`, money),
        getJson(`${base}/hourly`, money),
        getJson(`${base}/transactions`, { ...range, limit: PAGE_SIZE, page_token: state.tokens[state.page] }),
        getJson(`${base}/categories`, range),
        getJson(`${base}/percentiles`, { ...range, q: "0.5,0.9,0.99" }),
      ]);
      renderSum(sum);
      renderPercentiles(percentiles, sum.currency);
      drawBars(
        "hourly-chart",
        hourly.map((h) => hourLabel(h.hour_start)),
        hourly.map((h) => moneyNumber(h.sum)),
        `Sum per hour (${sum.currency})`,
        "#2f6fba",
      );
      setText("chart-currency", sum.currency);
      drawCategories("category-chart", categories, sum.currency, "#8e44ad");
      setText("category-currency", sum.currency);
      renderTransactions(page);
      panel.dataset.from = range.from;
      panel.dataset.to = range.to;
      panel.dataset.user = state.user;
      panel.dataset.page = String(state.page);
      panel.dataset.currency = sum.currency;
      panel.dataset.state = "ready";
      showMessage("");
    } catch (err) {
      panel.dataset.state = "error";
      showMessage(err.message, true);
    }
  }

  // --- everyone: totals and categories over the range, latest, top spenders, activity, health ----

  async function loadEveryone() {
    const panel = $("everyone-panel");
    const range = resolveRange();
    if (!range) return;
    setText("everyone-range", `${range.from} → ${range.to}`);
    panel.dataset.state = "loading";
    // /totals spans 31 days at most: a longer custom range shows its last 31 days here.
    const longest = 31 * 86400 * 1000;
    const tooLong = Date.parse(range.to) - Date.parse(range.from) > longest;
    const span = { from: tooLong ? isoSeconds(new Date(Date.parse(range.to) - longest)) : range.from, to: range.to };
    const [hourly, categories, latest] = await Promise.all([
      getJson("/api/v1/totals", { ...span, granularity: "hour", currency: state.topCurrency }),
      getJson("/api/v1/categories", span),
      getJson("/api/v1/transactions/latest", { n: PAGE_SIZE }),
    ]);
    const currency = hourly.length ? hourly[0].currency : state.topCurrency;
    for (const hour of hourly) noteCurrencies(hour.by_currency);
    noteCurrencies(categories);
    noteCurrencies(latest.transactions);
    drawBars(
      "everyone-hourly-chart",
      hourly.map((h) => hourLabel(h.hour_start)),
      hourly.map((h) => moneyNumber(h.sum)),
      `Sum per hour (${currency})`,
      "#17808a",
    );
    setText("everyone-hourly-currency", currency);
    drawCategories("everyone-category-chart", categories, currency, "#c77c1e");
    setText("everyone-category-currency", currency);
    const body = $("latest-table").querySelector("tbody");
    clearChildren(body);
    for (const txn of latest.transactions) {
      const row = document.createElement("tr");
      cell(row, txn.event_time.slice(0, 19).replace("T", " "));
      const link = document.createElement("button");
      link.type = "button";
      link.className = "link";
      link.textContent = txn.user_id;
      link.addEventListener("click", () => chooseUser(txn.user_id));
      row.appendChild(document.createElement("td")).appendChild(link);
      cell(row, txn.amount, "num");
      cell(row, txn.currency);
      cell(row, txn.merchant_category);
      cell(row, txn.transaction_id, "mono");
      body.appendChild(row);
    }
    if (!latest.transactions.length) {
      const row = document.createElement("tr");
      cell(row, "No transactions yet.", "empty").colSpan = 6;
      body.appendChild(row);
    }
    panel.dataset.from = span.from;
    panel.dataset.to = span.to;
    panel.dataset.currency = currency;
    panel.dataset.state = "ready";
  }

  async function loadTop() {
    const rows = await getJson("/api/v1/top-users", { hours: $("top-hours").value, n: 10, currency: state.topCurrency });
    const body = $("top-table").querySelector("tbody");
    clearChildren(body);
    for (const item of rows) {
      const row = document.createElement("tr");
      cell(row, String(item.rank));
      const link = document.createElement("button");
      link.type = "button";
      link.className = "link";
      link.textContent = item.user_id;
      link.addEventListener("click", () => chooseUser(item.user_id));
      row.appendChild(document.createElement("td")).appendChild(link);
      cell(row, item.sum, "num");
      body.appendChild(row);
    }
    if (!rows.length) {
      const row = document.createElement("tr");
      cell(row, "No spending in these hours.", "empty").colSpan = 3;
      body.appendChild(row);
    }
  }

  const SERIES_COLORS = ["#3a9d5d", "#2f6fba", "#c77c1e", "#8e44ad", "#b3261e", "#17808a"];

  async function loadMinutes() {
    // Transactions per minute, one stacked series per currency (counts, never money, are stacked).
    const rows = await getJson("/api/v1/stats/per-minute", { minutes: 60 });
    if (rows.length && !state.topCurrency) {
      state.topCurrency = rows[0].currency; // the server's default currency
      fillCurrencySelect("top-currency", state.topCurrency);
    }
    for (const row of rows) noteCurrencies(row.by_currency);
    const codes = [...new Set(rows.flatMap((m) => m.by_currency.map((c) => c.currency)))].sort();
    const labels = rows.map((m) => m.minute_start.slice(11, 16));
    const datasets = (codes.length ? codes : [rows.length ? rows[0].currency : ""]).map((code, i) => ({
      label: code,
      data: rows.map((m) => (m.by_currency.find((c) => c.currency === code) || { count: 0 }).count),
      backgroundColor: SERIES_COLORS[i % SERIES_COLORS.length],
    }));
    if (typeof Chart === "undefined") return;
    const existing = charts["minute-chart"];
    if (existing) {
      existing.data.labels = labels;
      existing.data.datasets = datasets;
      existing.update("none");
      return;
    }
    charts["minute-chart"] = new Chart($("minute-chart"), {
      type: "bar",
      data: { labels, datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: true, position: "bottom" } },
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
      },
    });
  }

  function versionText(version) {
    return `${version.user_id} ${version.amount} ${version.currency} at ${version.event_time.slice(0, 19).replace("T", " ")}`;
  }

  async function loadConflicts() {
    const found = await getJson("/api/v1/conflicts", { limit: 5 });
    setText("conflict-count", String(found.conflicts_total));
    const body = $("conflict-table").querySelector("tbody");
    clearChildren(body);
    for (const item of found.conflicts) {
      const row = document.createElement("tr");
      cell(row, String(item.run));
      cell(row, item.transaction_id, "mono");
      cell(row, versionText(item.counted));
      cell(row, versionText(item.copy));
      body.appendChild(row);
    }
    if (!found.conflicts.length) {
      const row = document.createElement("tr");
      cell(row, "No conflicting copies.", "empty").colSpan = 4;
      body.appendChild(row);
    }
  }

  function describeLate(runs) {
    if (!runs) return "unknown";
    if (!runs.length) return "none yet";
    return runs
      .slice(0, 3)
      .map((r) => `run ${r.run}: ${r.late_rows}`)
      .join(", ");
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "unknown";
    if (seconds < 120) return `${Math.round(seconds)} s ago`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  function describeFreshness(fresh) {
    if (!fresh) return "unknown";
    return `newest counted transaction published ${ago(fresh.newest_counted_age_seconds)}; last run ${ago(fresh.since_last_run_seconds)}`;
  }

  function describeBacklog(health) {
    const fresh = health.freshness;
    if (!fresh) return health.spool_backlog === null ? "unknown" : `${health.spool_backlog} files`;
    if (fresh.backlog_rows === null) return `${fresh.backlog_files} files`;
    return `${fresh.backlog_files} files, ${fresh.backlog_rows}${fresh.backlog_rows_partial ? "+" : ""} rows`;
  }

  function describeRun(run) {
    if (!run || (!run.last_run && !run.pending)) return "none yet";
    const parts = [`run ${run.last_run}`];
    if (run.last_finished_at) parts.push(`finished ${run.last_finished_at.slice(0, 19).replace("T", " ")}`);
    if (run.pending) parts.push(`run ${run.pending.run_id} in progress`);
    return parts.join(", ");
  }

  async function loadHealth() {
    let health;
    try {
      health = await getJson("/health");
    } catch (err) {
      health = err.body && err.body.status ? err.body : null;
      if (!health) throw err;
    }
    const badge = $("health-badge");
    badge.textContent = health.status;
    badge.className = `badge badge-${health.status === "ok" ? "ok" : "bad"}`;
    const items = [
      ["Bigtable", health.bigtable.reachable ? (health.bigtable.table_exists ? "reachable" : "table missing") : "unreachable"],
      ["Pub/Sub", health.pubsub.reachable ? (health.pubsub.topic_exists ? "reachable" : "topic missing") : "unreachable"],
      ["Last job run", describeRun(health.last_job_run)],
      ["Freshness", describeFreshness(health.freshness)],
      ["Spool backlog", describeBacklog(health)],
      ["Dead letters", health.dead_letter_count === null ? "unknown" : String(health.dead_letter_count)],
      ["Conflicts", health.conflicts_total === null || health.conflicts_total === undefined ? "unknown" : String(health.conflicts_total)],
      ["Late rows", describeLate(health.recent_runs)],
    ];
    const list = $("health-list");
    clearChildren(list);
    for (const [name, value] of items) {
      list.appendChild(document.createElement("dt")).textContent = name;
      list.appendChild(document.createElement("dd")).textContent = value;
    }
    const shown = health.last_job_run ? health.last_job_run.last_run : 0;
    if (lastRun === null && typeof shown === "number") {
      lastRun = shown;
      connectStream(); // runs after the one these figures include are pushed
    }
  }

  async function refreshOnce() {
    // Top spenders wait for the per-minute answer, which names the server's default currency.
    const minutes = loadMinutes();
    const jobs = [
      loadUser(),
      minutes,
      minutes.then(loadTop, loadTop),
      minutes.then(loadEveryone, loadEveryone),
      loadHealth(),
      loadConflicts(),
    ];
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showMessage(failed.reason.message, true);
    setText("updated-at", new Date().toISOString().slice(11, 19) + " UTC");
  }

  // One refresh at a time; runs that arrive meanwhile ask for one more after it, not one each.
  function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = refreshOnce().finally(() => {
      refreshing = null;
      if (refreshAgain) {
        refreshAgain = false;
        refresh();
      }
    });
    return refreshing;
  }

  function schedule() {
    if (timer) window.clearInterval(timer);
    const seconds = streamLive ? PUSHED_POLL_SECONDS : refreshSeconds;
    timer = $("auto-refresh").checked ? window.setInterval(refresh, seconds * 1000) : null;
    setText("live-status", streamLive ? "runs pushed as they finish" : `polling every ${refreshSeconds} s`);
  }

  function setStreamLive(live) {
    if (streamLive === live) return;
    streamLive = live;
    schedule();
  }

  // EventSource sends no headers: the read token goes in a cookie only the stream's path gets,
  // never sent by another site's page (SameSite=Strict), and written to no access log.
  function setStreamCookie() {
    const token = readToken();
    const secure = window.location.protocol === "https:" ? "; Secure" : "";
    const value = token ? encodeURIComponent(token) : "";
    const expiry = token ? "" : "; Max-Age=0";
    document.cookie = `txn_read_token=${value}; Path=${STREAM_PATH}; SameSite=Strict${secure}${expiry}`;
  }

  function connectStream() {
    if (stream || typeof window.EventSource !== "function") return;
    setStreamCookie();
    // `after` places a first connection; a reconnect sends Last-Event-ID, which the server prefers.
    stream = new window.EventSource(`${STREAM_PATH}?after=${encodeURIComponent(lastRun || 0)}`);
    stream.addEventListener("open", () => setStreamLive(true));
    stream.addEventListener("run", (event) => {
      // The server sends each run once, in order (a reconnect resumes after Last-Event-ID).
      lastRun = Number(event.lastEventId);
      setStreamLive(true);
      if ($("auto-refresh").checked) refresh();
    });
    stream.addEventListener("error", () => {
      if (stream.readyState !== window.EventSource.CLOSED) {
        setStreamLive(false); // reconnecting by itself; poll meanwhile
        return;
      }
      // Refused (too many streams, a token asked for, no such route): poll, and try again later.
      stream = null;
      setStreamLive(false);
      window.setTimeout(connectStream, STREAM_RETRY_SECONDS * 1000);
    });
  }

  // --- user picker ---------------------------------------------------------------------------------

  async function suggest(prefix) {
    try {
      const found = await getJson("/api/v1/users", { prefix, limit: 20 });
      const list = $("user-options");
      clearChildren(list);
      for (const id of found.users) {
        const option = document.createElement("option");
        option.value = id;
        list.appendChild(option);
      }
    } catch (err) {
      // A prefix the API refuses simply gives no suggestions; submitting it shows the reason.
    }
  }

  function chooseUser(id) {
    state.user = id.trim();
    state.currency = ""; // the new holder's cards start in the server's default currency
    state.tokens = [null];
    state.page = 0;
    $("user-input").value = state.user;
    saveToUrl();
    loadUser();
  }

  // --- wiring ----------------------------------------------------------------------------------------

  function init() {
    const params = new URLSearchParams(window.location.search);
    const range = params.get("range");
    if (range && (RANGES[range] || range === "custom")) state.range = range;
    const currency = params.get("currency");
    if (currency && /^[A-Z]{3}$/.test(currency)) state.currency = currency;
    if (state.range === "custom") {
      state.customFrom = params.get("from") || "";
      state.customTo = params.get("to") || "";
      $("custom-from").value = state.customFrom;
      $("custom-to").value = state.customTo;
    }
    markRangeButtons();

    $("user-form").addEventListener("submit", (event) => {
      event.preventDefault();
      chooseUser($("user-input").value);
    });
    $("user-input").addEventListener("input", () => {
      window.clearTimeout(lookupTimer);
      lookupTimer = window.setTimeout(() => suggest($("user-input").value.trim()), 200);
    });
    for (const button of document.querySelectorAll("button.range")) {
      button.addEventListener("click", () => {
        state.range = button.dataset.range;
        state.tokens = [null];
        state.page = 0;
        markRangeButtons();
        saveToUrl();
        if (state.range !== "custom") {
          loadUser();
          loadEveryone().catch((err) => showMessage(err.message, true));
        }
      });
    }
    $("custom-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.customFrom = $("custom-from").value;
      state.customTo = $("custom-to").value;
      state.tokens = [null];
      state.page = 0;
      saveToUrl();
      loadUser();
      loadEveryone().catch((err) => showMessage(err.message, true));
    });
    $("page-older").addEventListener("click", () => {
      if (!state.tokens[state.page + 1]) return;
      state.page += 1;
      loadUser();
    });
    $("page-newer").addEventListener("click", () => {
      if (state.page === 0) return;
      state.page -= 1;
      loadUser();
    });
    $("top-hours").addEventListener("change", () => loadTop().catch((err) => showMessage(err.message, true)));
    $("top-currency").addEventListener("change", () => {
      state.topCurrency = $("top-currency").value;
      fillCurrencySelect("everyone-currency", state.topCurrency);
      loadTop().catch((err) => showMessage(err.message, true));
      loadEveryone().catch((err) => showMessage(err.message, true));
    });
    $("everyone-currency").addEventListener("change", () => {
      state.topCurrency = $("everyone-currency").value;
      fillCurrencySelect("top-currency", state.topCurrency);
      loadTop().catch((err) => showMessage(err.message, true));
      loadEveryone().catch((err) => showMessage(err.message, true));
    });
    $("currency-select").addEventListener("change", () => chooseCurrency($("currency-select").value));
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      pageToken = token;
      try {
        window.sessionStorage.setItem(TOKEN_KEY, token);
      } catch (err) {
        // kept in pageToken until the page is left
      }
      $("token-input").value = "";
      $("token-form").hidden = true;
      showMessage("");
      suggest($("user-input").value.trim());
      refresh();
      if (lastRun !== null) connectStream(); // a stream refused for want of the token
    });
    $("auto-refresh").addEventListener("change", schedule);

    suggest("");
    const user = params.get("user");
    if (user) {
      state.user = user;
      $("user-input").value = user;
    }
    refresh();
    schedule();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
