"""Errors as JSON: a bad parameter is 400 naming it, an unreachable backend is 503, and nothing a
user sends turns into a 500."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from google.api_core import exceptions as gexc
from werkzeug.exceptions import HTTPException

from common.clients import describe_target
from webapp.metrics import count_backend_error
from webapp.services import services

log = logging.getLogger(__name__)


class BadParameter(ValueError):
    """A query, path or body parameter that is missing or wrong; `name` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter '{name}': {message}")
        self.name = name


class Unauthorized(PermissionError):
    """A request without the configured bearer token (the message never holds a token)."""


class BackendUnavailable(RuntimeError):
    """Bigtable or Pub/Sub did not answer."""


def error_response(status: int, message: str, **extra: Any) -> Any:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def _backend_message(exc: Exception) -> str:
    if isinstance(exc, gexc.NotFound):
        cfg = services().cfg
        return (
            f"Bigtable table '{cfg.table_id}' (instance '{cfg.instance_id}') does not exist yet; "
            "run the ingest job first"
        )
    # The answer names no host or port (the log does): whoever asks learns only that it is down.
    if isinstance(exc, (gexc.DeadlineExceeded, gexc.RetryError)):
        return "Bigtable unreachable: no answer in time; try again shortly"
    return f"Bigtable unreachable ({exc.__class__.__name__}); try again shortly"


def register(app: Flask) -> None:
    """Install the JSON error handlers on `app`."""

    @app.errorhandler(BadParameter)
    def _bad_parameter(exc: BadParameter) -> Any:
        return error_response(400, str(exc), parameter=exc.name)

    @app.errorhandler(Unauthorized)
    def _unauthorized(exc: Unauthorized) -> Any:
        response = error_response(401, str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="transactions"'
        return response

    @app.errorhandler(BackendUnavailable)
    def _unavailable(exc: BackendUnavailable) -> Any:
        return error_response(503, str(exc))

    @app.errorhandler(gexc.GoogleAPIError)
    def _google_error(exc: gexc.GoogleAPIError) -> Any:
        # The API's Google calls that reach here are Bigtable reads (a publish raises BackendUnavailable).
        count_backend_error("bigtable", exc)
        log.warning("backend call failed (%s): %s", describe_target(services().cfg), exc)
        return error_response(503, _backend_message(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return error_response(500, "internal error; see the server log")
