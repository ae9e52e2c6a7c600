"""common.procs.Supervised: a command in its own process group, its output in a log file, and
signals that reach exactly the command or its whole group."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from common.procs import Supervised, TimedOut

# A command that starts a helper in its own process group, prints the helper's pid, then runs
# `leader_code`.
HELPER = "import subprocess, sys, time; h = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
HELPER += "print(h.pid, flush=True); "


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _helper_pid(proc: Supervised) -> int:
    deadline = time.monotonic() + 30
    while not proc.output().strip():
        assert time.monotonic() < deadline, "the command never printed its helper's pid"
        time.sleep(0.05)
    return int(proc.output().split()[0])


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_the_output_goes_to_the_log_and_the_exit_code_comes_back(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "cmd.log"
    proc = Supervised(_python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"), log)
    assert proc.wait(30) == 3
    assert not proc.running()
    assert proc.returncode == 3
    assert sorted(log.read_text().split()) == ["err", "out"]


def test_append_keeps_what_the_log_held(tmp_path: Path) -> None:
    log = tmp_path / "cmd.log"
    log.write_text("before\n")
    Supervised(_python("print('after')"), log, append=True).wait(30)
    assert log.read_text() == "before\nafter\n"


def test_the_command_runs_in_a_process_group_of_its_own(tmp_path: Path) -> None:
    with Supervised(_python("import time; time.sleep(60)"), tmp_path / "cmd.log") as proc:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)


def test_signal_group_reaches_the_command_and_its_helpers(tmp_path: Path) -> None:
    proc = Supervised(_python(HELPER + "time.sleep(120)"), tmp_path / "cmd.log")
    helper = _helper_pid(proc)
    proc.signal_group(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert _gone(helper)


def test_signal_reaches_the_command_alone_and_ensure_stopped_clears_the_rest(tmp_path: Path) -> None:
    proc = Supervised(_python(HELPER + "time.sleep(120)"), tmp_path / "cmd.log")
    helper = _helper_pid(proc)
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert psutil.Process(helper).is_running()  # a helper outlives its parent: ...
    assert proc.ensure_stopped(group_grace=0.5) == 1  # ... and is killed once the grace is over
    assert _gone(helper)


def test_a_helper_in_a_process_group_of_its_own_is_stopped_too(tmp_path: Path) -> None:
    # As PySpark's Python worker daemon does: os.setpgid(0, 0) in the helper.
    own_group = HELPER.replace("'import time; time.sleep(120)'", "'import os, time; os.setpgid(0, 0); time.sleep(120)'")
    proc = Supervised(_python(own_group + "time.sleep(120)"), tmp_path / "cmd.log")
    helper = _helper_pid(proc)
    deadline = time.monotonic() + 10
    while os.getpgid(helper) != helper:
        assert time.monotonic() < deadline, "the helper never made its own group"
        time.sleep(0.05)
    groups = proc.helper_groups()
    assert groups == {helper}
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    assert proc.ensure_stopped(group_grace=0.5, helper_groups=groups) == 1
    assert _gone(helper)


def test_wait_past_its_timeout_kills_the_group_and_says_so(tmp_path: Path) -> None:
    proc = Supervised(_python(HELPER + "time.sleep(120)"), tmp_path / "cmd.log")
    helper = _helper_pid(proc)
    with pytest.raises(TimedOut) as timed_out:
        proc.wait(0.5)
    assert timed_out.value.returncode == -signal.SIGKILL
    assert not proc.running()
    assert _gone(helper)


def test_leaving_the_block_stops_whatever_still_runs(tmp_path: Path) -> None:
    with Supervised(_python(HELPER + "time.sleep(120)"), tmp_path / "cmd.log") as proc:
        helper = _helper_pid(proc)
    assert proc.returncode == -signal.SIGKILL
    assert _gone(helper)
