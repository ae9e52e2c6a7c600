"""A TCP proxy in front of an emulator that can make it unreachable on command, for as long as a
test or the soak benchmark wants.

    proxy = OutageProxy(8085)            # listens on 127.0.0.1:<free port>, forwards to :8085
    env["PUBSUB_EMULATOR_HOST"] = proxy.address
    proxy.refuse()                       # as a stopped server: connections refused, open ones reset
    proxy.stall()                        # as a partition: connections stay open, no byte moves
    proxy.restore()                      # back to forwarding
    proxy.close()

The proxy keeps a log of its outages (`outages`: kind, start and end in monotonic seconds), so a
caller can report how long each one lasted. Stopping the emulator itself would also wipe its memory,
which the real services never do; a proxy cuts the route and leaves the data alone.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Outage:
    """One refused or stalled period; `end` is None while it lasts."""

    kind: str
    start: float
    end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


class OutageProxy:
    """Forwards 127.0.0.1:<port> to target_host:target_port until told to refuse or stall."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.forwarded = 0  # bytes sent to the service
        self.connections = 0  # connections accepted
        self.outages: list[Outage] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self._listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def state(self) -> str:
        """'forwarding', 'refusing' or 'stalled'."""
        if self._listener is None:
            return "refusing"
        return "forwarding" if self._flowing.is_set() else "stalled"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: refuse() or close()
                return
            if listener is not self._listener:  # refused meanwhile
                self._close(client, reset=True)
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._close(client, reset=True)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for source, sink, counted in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, counted), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while True:
                self._flowing.wait()
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()  # a stall that began while recv waited holds these bytes
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
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _begin(self, kind: str) -> None:
        if self.outages and self.outages[-1].end is None:
            self.outages[-1].end = time.monotonic()
        self.outages.append(Outage(kind, time.monotonic()))

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() first: close() alone does not wake the thread blocked in accept().
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _reset_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock, reset=True)

    def refuse(self) -> None:
        """Stop accepting and reset every open connection, as a stopped server does."""
        self._begin("refused")
        self._stop_listening()
        self._reset_all()
        self._flowing.set()  # pumps held by an earlier stall see their sockets closed and end

    def stall(self) -> None:
        """Keep connections open (and accept new ones) but move no byte, as a partition does."""
        self._begin("stalled")
        self._flowing.clear()
        if self._listener is None and not self._closed:
            self._listen()

    def restore(self) -> None:
        """Forward again. Connections held through a stall carry on where they stopped."""
        if self.outages and self.outages[-1].end is None:
            self.outages[-1].end = time.monotonic()
        self._flowing.set()
        if self._listener is None and not self._closed:
            self._listen()

    def close(self) -> None:
        self._closed = True
        if self.outages and self.outages[-1].end is None:
            self.outages[-1].end = time.monotonic()
        self._stop_listening()
        self._reset_all()
        self._flowing.set()

    def __enter__(self) -> OutageProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
