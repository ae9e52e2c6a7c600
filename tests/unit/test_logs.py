"""--log-format json in-process: log lines and logging records become JSON objects with time (UTC),
level, logger, process and message; the default stays the plain text lines."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common import logs
from common.cli import log, run


@pytest.fixture
def json_logs() -> Iterator[None]:
    logs.configure("json", "testcmd")
    yield
    logs.configure("text", "testcmd")


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object (fails on a line that is not one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_recent_utc(stamp: str) -> None:
    assert stamp.endswith("Z"), stamp
    when = datetime.fromisoformat(stamp)
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)


def test_log_lines_are_json_objects_with_time_level_logger_and_message(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log("spooler: spooled", 3, "transactions")
    log("error: config key 'users' must be an integer >= 1, got 0")
    log("warning: Pub/Sub unreachable")
    out, err = capsys.readouterr()
    assert out == ""
    first, second, third = parse_lines(err)
    assert_recent_utc(first["time"])
    assert {k: first[k] for k in ("level", "logger", "process", "message")} == {
        "level": "info",
        "logger": "testcmd",
        "process": "testcmd",
        "message": "spooler: spooled 3 transactions",
    }
    assert (second["level"], third["level"]) == ("error", "warning")
    assert second["message"] == "error: config key 'users' must be an integer >= 1, got 0"


def test_python_logging_records_take_the_same_form_with_their_logger_and_fields(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("webapp.errors").warning("backend call failed: %s", "Unavailable", extra={"fields": {"n": 2}})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("webapp.errors").exception("unhandled error")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Connecting to Bigtable emulator at 127.0.0.1:8086", RuntimeWarning, stacklevel=1)
    warning, error, python_warning = parse_lines(capsys.readouterr().err)
    assert (warning["level"], warning["logger"], warning["process"]) == ("warning", "webapp.errors", "testcmd")
    assert (warning["message"], warning["n"]) == ("backend call failed: Unavailable", 2)
    assert error["level"] == "error" and "ValueError: boom" in error["exception"]
    assert (python_warning["level"], python_warning["logger"]) == ("warning", "py.warnings")
    assert "RuntimeWarning: Connecting to Bigtable emulator" in python_warning["message"]


def test_text_format_leaves_the_lines_as_they_were(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("text", "testcmd")
    log("spooler: spooled 3 transactions")
    assert capsys.readouterr().err == "spooler: spooled 3 transactions\n"


def test_a_bug_keeps_its_traceback_inside_one_json_line(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: Sequence[str] | None) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(SystemExit) as info:
        run(main, [])
    assert info.value.code == 1
    (line,) = parse_lines(capsys.readouterr().err)
    assert line["level"] == "error"
    assert "Traceback (most recent call last)" in line["message"] and "RuntimeError: a bug" in line["message"]
