"""The Flask dashboard and JSON API over Bigtable range scans.

`create_app(config)` builds the app; nothing here connects to anything at import time. The
Bigtable table handle and the Pub/Sub publisher are made once per app, on first use, and reached
through `webapp.services`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from common.config import Config, from_dict, load_config
from common.timeutil import utcnow


def _resolve_config(config: Config | dict[str, Any] | str | Path | None) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return from_dict(config)
    return load_config(config or os.environ.get("CONFIG") or None)


def create_app(
    config: Config | dict[str, Any] | str | Path | None = None,
    clock: Callable[[], datetime] | None = None,
    table: Any = None,
) -> Flask:
    """Build the app from a Config, a config dict, a config file path, or (None) the CONFIG
    environment variable / the default config file. `clock` (aware UTC) replaces the wall clock
    for relative times, the top-spender hours and the per-minute window. `table` replaces the
    Bigtable table the config names: any object with the Table reads and writes common.store uses
    (the tests' in-memory table)."""
    from webapp.api import bp as api_bp
    from webapp.dashboard import bp as dashboard_bp
    from webapp.errors import register as register_error_handlers
    from webapp.health import bp as health_bp
    from webapp.legacy import bp as legacy_bp
    from webapp.metrics import install as install_metrics
    from webapp.openapi import bp as openapi_bp
    from webapp.percentiles import bp as percentiles_bp
    from webapp.push import install as install_push
    from webapp.security import install as install_security
    from webapp.services import Services

    cfg = _resolve_config(config)
    app = Flask(__name__)
    # A path with '//' (a user id holding an encoded '/') is a 404 in JSON, not the HTML 308 redirect
    # werkzeug's routing answers it with by default, which no error handler sees.
    app.url_map.merge_slashes = False
    # Room for a body the message parser can refuse by name; anything larger is cut off at 413.
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_payload_bytes * 4 + 1024
    svc = app.extensions["txn"] = Services(cfg, clock or utcnow, table)
    json_provider = DefaultJSONProvider(app)
    json_provider.sort_keys = False  # JSON keys in the order the handlers build them
    app.json = json_provider
    # GET /metrics, and every request timed and counted (first, so the time includes the checks).
    install_metrics(app, svc)

    for blueprint in (api_bp, percentiles_bp, legacy_bp, health_bp, openapi_bp, dashboard_bp):
        app.register_blueprint(blueprint)
    install_push(app, svc)  # GET /api/v1/runs/stream: finished runs as Server-Sent Events
    register_error_handlers(app)
    # Who may ask what: webapp/security.py. The POST rate limit is counted before the checks.
    install_security(app, cfg, rate_limited=[api_bp])

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app
