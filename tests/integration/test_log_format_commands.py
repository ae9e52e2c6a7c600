"""--log-format json on the commands themselves (subprocesses): each one's error is one JSON line
naming the key, the server's config check logs JSON, and a child process's stderr lines (Spark's
JVM) are wrapped as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object (fails on a line that is not one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_recent_utc(stamp: str) -> None:
    assert stamp.endswith("Z"), stamp
    when = datetime.fromisoformat(stamp)
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)


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
