"""The commands, run as subprocesses, turn a bad config value into one line naming the key and
exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: object, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run_command(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("module", ["emitter", "jobs.spooler"])
def test_commands_report_a_bad_config_value_in_one_line_and_exit_2(tmp_path: Path, module: str) -> None:
    path = write(tmp_path, {"spool_roll_messages": 0})
    line = one_error_line(run_command(module, "--config", str(path)))
    assert "'spool_roll_messages'" in line and "integer >= 1" in line
