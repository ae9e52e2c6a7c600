"""The dashboard page at /. The page is static HTML plus plain JS that reads the JSON API; no data
is rendered into the HTML, and the script writes every value with textContent."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, make_response, render_template

bp = Blueprint("dashboard", __name__)

# Scripts, styles and data only from this server: the page works offline and injected markup
# cannot run script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
REFRESH_SECONDS = 10


@bp.get("/")
def index() -> Any:
    response = make_response(render_template("dashboard.html", refresh_seconds=REFRESH_SECONDS))
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response
