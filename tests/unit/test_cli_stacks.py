"""`kill -USR1` on a command prints every thread's stack to stderr and the command goes on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAITER = """
import sys, threading, time
from common.cli import run

def main(argv):
    threading.Thread(target=time.sleep, args=(30,), name="helper", daemon=True).start()
    print("ready", flush=True)
    time.sleep(4)
    return 0

run(main)
"""


def test_sigusr1_prints_every_threads_stack_and_the_command_goes_on() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # not killed by the signal: it ran to its end
    assert err.count("(most recent call first)") >= 2, err  # the main thread and the helper
    assert "in main" in err, err
