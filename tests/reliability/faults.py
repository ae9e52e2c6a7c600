"""Fault injectors: a TCP proxy that cuts or stalls the way to a service, and a private Bigtable
emulator (scripts/emulators.sh on a port of its own) that can be killed and started again empty.
The shared emulators on 8085/8086 are never stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a service. `refuse()` makes the service unreachable the way a
    stopped server is (the port refuses connections and open ones are reset); `stall()` the way a
    network partition is (connections stay open, no byte moves either way). `restore()` ends either.
    `forwarded` counts the bytes sent to the service, so a test can cut it mid-stream."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.forwarded = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: refuse()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink, counted in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, counted), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while True:
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # a stall that began while this recv waited holds the bytes
                sink.sendall(data)
                if counted:
                    self.forwarded += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._close(sock)

    def _close(self, sock: socket.socket, reset: bool = False) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            if reset:  # RST rather than FIN: the peer sees the connection die
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def refuse(self) -> None:
        """Stop accepting and reset every open connection."""
        if self._listener is not None:
            # shutdown() first: close() alone does not wake the thread blocked in accept(), which
            # would go on accepting on the old socket.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock, reset=True)
        self._flowing.set()

    def stall(self) -> None:
        """Keep connections open but move no byte."""
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.refuse()


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
