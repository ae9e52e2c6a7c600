"""Who may use the app: loopback only until tokens are set, allowed origins only, a bearer token on
every data route when `read_token` is set, and a rate limit on the POST entry point.

Every check runs in one `before_request` hook, ahead of the handlers, in this order:

1. A client that is not on this machine is refused (403) unless both `ingest_token` and
   `read_token` are set: a server someone bound to every interface without tokens still lets no
   one in. (`check_bind` refuses to start such a server in the first place.)
2. The `Host` header must name this machine's loopback address or a host of `allowed_origins`
   (403): a web page that re-points its own DNS name at this server (DNS rebinding) is refused
   even where no token is set.
3. A POST carrying an `Origin` must come from an allowed origin, or from the page's own loopback
   origin (403): a page on another site cannot publish through the user's browser.
4. The data routes (`/api/v1/...` GETs and `/sum`, `/hour`, `/list`) and `/metrics` need
   `Authorization: Bearer <read_token>` when it is set, the POST `<ingest_token>` (401). The run
   stream (`/api/v1/runs/stream`) takes the read token from the `txn_read_token` cookie too: a
   browser's EventSource cannot send a header, and a cookie, unlike a query parameter, is written
   to no access log. The dashboard sets it for that path only, SameSite=Strict, so no other site's
   page sends it. /metrics
   goes with the data routes, as operators expect of a scrape target: open on this machine while no
   token is set, and once one is, a Prometheus scrape config passes it (`authorization:
   credentials_file: ...`). /health stays open: it says only whether the backends answer.
5. The POST takes only `Content-Type: application/json` (415): the form and text/plain bodies a
   page may send cross-site without asking first are refused.

The POST is also limited per client address (Flask-Limiter, `post_rate_limit`, 429 with
Retry-After), counted before any of the checks so that guessing tokens costs attempts too.
The limit is kept per server process: with gunicorn's N workers a client gets up to N times it.
Tokens are compared in constant time and never written to a log or an answer.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from common.config import Config, ConfigError
from webapp.errors import Unauthorized, error_response

DATA_BLUEPRINTS = frozenset(
    {"api", "legacy", "metrics", "percentiles", "push"}
)  # behind read_token (the POST: ingest_token)
POST_ENDPOINT = "api.post_transaction"
# The run stream (webapp/push.py) takes the read token from this cookie too: EventSource sends no headers.
STREAM_ENDPOINT = "push.runs_stream"
STREAM_TOKEN_COOKIE = "txn_read_token"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Forbidden(PermissionError):
    """A request from where this server does not answer (peer, Host or Origin)."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (a bare host, no port; IPv6 with or without [])."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _local_peer(address: str | None) -> bool:
    """A loopback peer, or none at all (an in-process WSGI call, a Unix socket): this machine."""
    return not address or is_loopback(address)


def check_bind(cfg: Config, host: str) -> None:
    """Refuse to serve on `host` (the address to listen on) when it is not a loopback address and
    the config lacks either token or any allowed origin; raises ConfigError naming what is missing."""
    if is_loopback(host):
        return
    missing = [key for key in ("ingest_token", "read_token") if not getattr(cfg, key)]
    if not cfg.allowed_origins:
        missing.append("allowed_origins")
    if missing:
        raise ConfigError(
            f"refusing to listen on {host}, which is not a loopback address, without "
            f"{', '.join(missing)} in the config (set them, or listen on 127.0.0.1)"
        )


def _split_host(value: str) -> tuple[str, int | None] | None:
    """'Example.com:8080' -> ('example.com', 8080); None when it is not a host[:port]."""
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username is not None:
        return None
    return parts.hostname.lower(), port


class Gate:
    """The checks of one app, built from its config."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.origins = frozenset(cfg.allowed_origins)
        self.hosts: set[tuple[str, int | None]] = set()
        for origin in cfg.allowed_origins:
            parts = urlsplit(origin)
            host = (parts.hostname or "").lower()
            default = _DEFAULT_PORTS[parts.scheme]
            port = parts.port or default
            self.hosts.add((host, port))
            if port == default:
                self.hosts.add((host, None))  # a Host header leaves the default port out

    def host_allowed(self, host_header: str) -> bool:
        split = _split_host(host_header)
        return split is not None and (is_loopback(split[0]) or split in self.hosts)

    def origin_allowed(self, origin: str, host_header: str, scheme: str) -> bool:
        """An allowed origin, or the request's own origin (`scheme`://`host_header`) on a loopback
        host (the local dashboard)."""
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path:
            return False
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        normal = f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")
        if normal in self.origins:
            return True
        same = _split_host(host_header)
        return (
            same is not None
            and parts.scheme == scheme
            and is_loopback(parts.hostname)
            and same == (parts.hostname.lower(), port)
        )

    def check(self) -> None:
        """Raise Forbidden or Unauthorized for the current request, or return to let it through."""
        cfg = self.cfg
        if not _local_peer(request.remote_addr) and not (cfg.ingest_token and cfg.read_token):
            raise Forbidden(
                "this server answers only clients on its own machine until ingest_token and read_token are set"
            )
        if not self.host_allowed(request.host):
            raise Forbidden("the Host header names no allowed origin (config allowed_origins)")
        origin = request.headers.get("Origin")
        if (
            request.method == "POST"
            and origin is not None
            and not self.origin_allowed(origin, request.host, request.scheme)
        ):
            raise Forbidden("cross-origin POST refused: Origin is not in the config's allowed_origins")
        if request.blueprint not in DATA_BLUEPRINTS:
            return
        if request.endpoint == POST_ENDPOINT:
            _require_bearer(cfg.ingest_token)
            if request.mimetype != "application/json":
                raise UnsupportedMediaType("Content-Type must be application/json")
        elif request.endpoint == STREAM_ENDPOINT:
            _require_bearer(cfg.read_token, request.cookies.get(STREAM_TOKEN_COOKIE))
        else:
            _require_bearer(cfg.read_token)


class UnsupportedMediaType(ValueError):
    """A POST body that is not declared application/json."""


def _require_bearer(expected: str, cookie: str | None = None) -> None:
    """Let the request through when no token is expected, or its bearer token (else the `cookie`
    value, where the route takes one) is the expected one; raise Unauthorized otherwise."""
    if not expected:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return
    # The dashboard writes the cookie percent-encoded (a token may hold ';' or ',').
    if cookie is not None and hmac.compare_digest(unquote(cookie).encode(), expected.encode()):
        return
    raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")


def install(app: Flask, cfg: Config, rate_limited: Iterable[Any]) -> Limiter:
    """Put the rate limit on the `rate_limited` blueprints' POSTs and the gate in front of every
    request of `app`; return the Limiter."""
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri="memory://",
    )
    for blueprint in rate_limited:
        limiter.limit(
            cfg.post_rate_limit,
            methods=["POST"],
            error_message=f"too many requests from this address (at most {cfg.post_rate_limit}); retry later",
        )(blueprint)
    gate = Gate(cfg)
    app.before_request(gate.check)

    @app.errorhandler(Forbidden)
    def _forbidden(exc: Forbidden) -> Any:
        return error_response(403, str(exc))

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Any:
        response = error_response(429, exc.description or "too many requests")
        window = limiter.current_limit
        wait_s = math.ceil(window.reset_at - time.time()) if window else 1
        response.headers["Retry-After"] = str(max(1, wait_s))
        return response

    @app.errorhandler(UnsupportedMediaType)
    def _unsupported(exc: UnsupportedMediaType) -> Any:
        return error_response(415, str(exc), parameter="Content-Type")

    return limiter
