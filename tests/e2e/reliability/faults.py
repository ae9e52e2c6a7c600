"""Fault injectors: a TCP proxy that cuts or stalls the way to a service, and a private Bigtable
emulator (scripts/emulators.sh on a port of its own) that can be killed and started again empty.
The shared emulators on 8085/8086 are never stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EMULATORS = ROOT / "scripts" / "emulators.sh"
SHARED_PUBSUB_PORT = 8085


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivateBigtable:
    """A Bigtable emulator of this test's own, started by scripts/emulators.sh on a free port with
    its own state directory (the script finds the shared Pub/Sub already up and leaves it alone)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "PUBSUB_PORT": str(SHARED_PUBSUB_PORT),
            "BIGTABLE_PORT": str(self.port),
            "EMULATOR_STATE_DIR": str(state_dir),
        }

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run([str(EMULATORS), "start"], env=self.env, check=True, capture_output=True, timeout=120)
        assert port_open(self.port)
        assert not (self.state_dir / "pubsub.pid").exists(), "the script started a Pub/Sub emulator of its own"

    def kill(self) -> None:
        """SIGKILL the emulator (it keeps everything in memory: a restart starts empty)."""
        pid = int((self.state_dir / "bigtable.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        (self.state_dir / "bigtable.pid").unlink()
        deadline = time.monotonic() + 30
        while port_open(self.port):
            assert time.monotonic() < deadline, "the private Bigtable emulator did not die"
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop it through the script, which stops only what this state directory started."""
        subprocess.run([str(EMULATORS), "stop"], env=self.env, capture_output=True, timeout=60)
