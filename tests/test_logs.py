"""--log-format json: every command's stderr lines are JSON objects with time (UTC), level, logger,
process and message; the default stays the plain text lines."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common import logs
from common.cli import log, run

ROOT = Path(__file__).resolve().parent.parent


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


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("module", "process"),
    [("emitter", "emitter"), ("jobs.spooler", "spooler"), ("jobs.aggregate", "aggregate"), ("bench", "bench")],
)
def test_every_command_writes_its_error_as_one_json_line(tmp_path: Path, module: str, process: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"users": 0}))
    result = _command("-m", module, "--config", str(config), "--log-format", "json")
    assert result.returncode == 2, result.stderr
    (line,) = parse_lines(result.stderr)
    assert_recent_utc(line["time"])
    assert (line["level"], line["logger"], line["process"]) == ("error", process, process)
    assert line["message"] == "error: config key 'users' must be an integer >= 1, got 0"


def test_the_web_servers_config_check_logs_json(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"table_id": "metrics-check"}))
    result = _command("-m", "webapp", "--check", "--config", str(config), "--log-format", "json")
    assert result.returncode == 0, result.stderr
    (line,) = parse_lines(result.stderr)
    assert (line["level"], line["process"]) == ("info", "webapp")
    assert line["message"].startswith("config ok: table 'metrics-check'")
    refused = _command("-m", "webapp", "--check", "--config", str(config), "--host", "0.0.0.0", "--log-format", "json")
    assert refused.returncode == 2
    (error,) = parse_lines(refused.stderr)
    assert error["level"] == "error" and "refusing to listen on 0.0.0.0" in error["message"]


def test_a_bug_keeps_its_traceback_inside_one_json_line(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: Sequence[str] | None) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(SystemExit) as info:
        run(main, [])
    assert info.value.code == 1
    (line,) = parse_lines(capsys.readouterr().err)
    assert line["level"] == "error"
    assert "Traceback (most recent call last)" in line["message"] and "RuntimeError: a bug" in line["message"]


def test_lines_of_a_child_process_on_stderr_are_wrapped_as_json(tmp_path: Path) -> None:
    script = (
        "import subprocess\n"
        "from common import logs\n"
        "from common.cli import log\n"
        "logs.configure('json', 'aggregate')\n"
        "logs.wrap_foreign_stderr('spark')\n"
        "log('before the child')\n"
        "subprocess.run(['sh', '-c', 'echo \"26/11/30 19:53:18 WARN NativeCodeLoader: no native\" >&2; "
        "echo Setting default log level to WARN >&2'], check=True)\n"
        "log('after the child')\n"
    )
    result = _command("-c", script)
    assert result.returncode == 0, result.stderr
    lines = parse_lines(result.stderr)
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("aggregate", "info", "before the child"),
        ("spark", "warning", "26/11/30 19:53:18 WARN NativeCodeLoader: no native"),
        ("spark", "info", "Setting default log level to WARN"),
        ("aggregate", "info", "after the child"),
    ]
    assert all(line["process"] == "aggregate" for line in lines)
