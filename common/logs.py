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

import atexit
import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from common.timeutil import format_rfc3339

FORMATS = ("text", "json")
# A level leading the line ("WARNING: ...") or after a date and time ("26/11/30 20:05:03 WARN ...", log4j).
_FOREIGN_LEVEL = re.compile(r"^(?:\S+ \S+ )?(ERROR|FATAL|SEVERE|WARN|WARNING|INFO|DEBUG|TRACE)\b")
_LEVELS = {"FATAL": "error", "SEVERE": "error", "WARN": "warning", "TRACE": "debug"}
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


def wrap_foreign_stderr(logger: str) -> None:
    """In json, pass every line written to file descriptor 2 on as JSON: this process's own lines as
    they are, any other (a child process such as Spark's JVM, which inherits the descriptor and
    writes its start-up lines before any log setting applies) wrapped as a message of `logger`, its
    level read from the line. Nothing to do in text. The lines still in the pipe at exit are
    written out (atexit)."""
    if not is_json():
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    flushed = threading.Event()
    marker = b"\x00txn-stderr-flushed\x00"

    def relay() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line == marker:
                    flushed.set()
                else:
                    os.write(original, _as_json_line(line.decode("utf-8", "replace"), logger).encode() + b"\n")
        if pending:
            os.write(original, _as_json_line(pending.decode("utf-8", "replace"), logger).encode() + b"\n")

    thread = threading.Thread(target=relay, name="stderr-json", daemon=True)
    thread.start()

    def restore() -> None:
        # Everything written before the marker is relayed once the relay reaches it (a child still
        # holding the pipe would keep it from ever seeing the end).
        sys.stderr.flush()
        os.write(2, marker + b"\n")
        flushed.wait(timeout=5.0)
        os.dup2(original, 2)

    atexit.register(restore)


def _as_json_line(line: str, logger: str) -> str:
    stripped = line.rstrip("\r")
    if stripped.startswith("{"):
        try:
            if isinstance(json.loads(stripped), dict):
                return stripped
        except ValueError:
            pass
    found = _FOREIGN_LEVEL.match(stripped)
    word = found.group(1) if found else "INFO"
    return json_line(stripped, _LEVELS.get(word, word.lower()), logger)
