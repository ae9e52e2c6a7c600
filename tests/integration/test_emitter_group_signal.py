"""A SIGTERM to the emitter's whole process group (what `timeout`, systemd or a container stop send)
stops it cleanly: its producer process ignores the signal and lets the emitter stop it, so no
half-written batch is left in the pipe for the emitter to wait on forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common.config import Config

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_to_the_process_group_stops_the_live_emitter_and_its_producer(cfg: Config, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg.to_dict()))
    live = subprocess.Popen(
        [sys.executable, "-m", "emitter", "--config", str(config), "--live", "--speedup", "3600", "--quiet"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not psutil.Process(live.pid).children() and time.monotonic() < deadline:
            time.sleep(0.2)
        helpers = psutil.Process(live.pid).children(recursive=True)
        assert helpers, "the producer process did not start"
        time.sleep(3)  # publishing, with full batches queued between the two processes
        os.killpg(live.pid, signal.SIGTERM)
        _, stderr = live.communicate(timeout=30)
    finally:
        if live.poll() is None:
            os.killpg(live.pid, signal.SIGKILL)
            live.wait()
    assert live.returncode == 0, stderr
    assert "stopped by signal" in stderr.splitlines()[-1]
    _gone, alive = psutil.wait_procs(helpers, timeout=10)
    assert alive == []
