"""Log lines for people (the default) or for log shippers (`--log-format json`).

Every command writes its progress and summary lines on stderr through `common.cli.log`. In the
default `text` format they are the plain lines they have always been. In `json` each line is one
JSON object:

    {"time": "2026-11-30T19:06:36.123456Z", "level": "info", "logger": "spooler",
     "process": "spooler", "pid": 4242, "message": "spooler: spooled 10 transactions, ..."}

`time` is UTC, `level` is "error" or "warning" for lines that start so and "info" otherwise,
`logger` names the command (or the Python logger of a `logging` record), `process` the command.
In json, Python `logging` records and warnings (the web app's own, the client libraries') go through
the same formatter, and the progress bars are off, so every line on stderr parses.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from common.timeutil import format_rfc3339

FORMATS = ("text", "json")
_settings = {"format": "text", "process": os.path.basename(sys.argv[0] or "python")}


def configure(log_format: str, process: str) -> None:
    """Write log lines in `log_format` ("text" or "json") from now on, naming `process` (the
    command) in them. In json, Python logging records at INFO and above take the same form; in text,
    logging is left as it is."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    _settings.update(format=log_format, process=process)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    # Python warnings (a library's RuntimeWarning) become logging records, and so JSON lines too.
    logging.captureWarnings(log_format == "json")
    if log_format == "json":
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def is_json() -> bool:
    """True when lines are written as JSON (progress bars should then stay off)."""
    return _settings["format"] == "json"


def process_name() -> str:
    return _settings["process"]


def level_of(message: str) -> str:
    """The level of a `log` line: "error" or "warning" when it starts so, else "info"."""
    head = message.lstrip().lower()
    if head.startswith("error"):
        return "error"
    if head.startswith("warning"):
        return "warning"
    return "info"


def json_line(message: str, level: str, logger: str, at: datetime | None = None, **fields: Any) -> str:
    """One log line as a JSON object (no newline); `fields` are added after the standard keys."""
    record = {
        "time": format_rfc3339(at or datetime.now(UTC)),
        "level": level,
        "logger": logger,
        "process": _settings["process"],
        "pid": os.getpid(),
        "message": message,
    }
    record.update({key: value for key, value in fields.items() if value is not None})
    return json.dumps(record, ensure_ascii=False, default=str)


def write(message: str, level: str | None = None) -> None:
    """Write one line on stderr: `message` itself in text, a JSON object in json."""
    if is_json():
        message = json_line(message, level or level_of(message), _settings["process"])
    print(message, file=sys.stderr, flush=True)


class JsonFormatter(logging.Formatter):
    """A logging record as one JSON line; a record's `fields` dict (logging's `extra`) is added."""

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        fields = getattr(record, "fields", None) or {}
        return json_line(
            record.getMessage(),
            record.levelname.lower(),
            record.name,
            datetime.fromtimestamp(record.created, UTC),
            **fields,
            exception=exception,
        )


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)
