"""Socket helpers for the hostile-client probes against a real `carteiro serve` (ServerProcess):
connecting to a listener (TLS where it is implicit), reading up to a marker with a deadline, the
server's resident memory, and a watcher that keeps measuring how long a fresh client waits for
its greeting while a probe floods another session."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType

from carteiro.testing.server import ServerProcess

IMPLICIT_TLS = ("submissions", "imaps", "pop3s", "web")  # (ServerProcess serves https)


def tls_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(
    srv: ServerProcess, service: str, rcvbuf: int = 0, timeout: float = 10.0
) -> socket.socket:
    """A connection to `service`; `rcvbuf` > 0 shrinks its receive buffer first (before the
    handshake, so the window stays small: a client that reads nothing then holds little)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", srv.ports[service]))
        if service in IMPLICIT_TLS:
            return tls_client().wrap_socket(s)
    except BaseException:
        s.close()
        raise
    return s


def read_until(s: socket.socket, marker: bytes, timeout: float = 10.0) -> bytes:
    """What arrives until `marker` is in it, the connection ends or `timeout` passes."""
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out and time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        out += data
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class GreetingWatch:
    """While in its `with` block, a thread connects to `service` again and again and records
    how long each greeting took (a failure counts as `timeout`): the longest shows whether one
    session kept the server's loop from everyone else."""

    def __init__(self, srv: ServerProcess, service: str, timeout: float = 5.0) -> None:
        self.srv = srv
        self.service = service
        self.timeout = timeout
        self.delays: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                with connect(self.srv, self.service, timeout=self.timeout) as s:
                    got = s.recv(64)
                self.delays.append(time.monotonic() - t0 if got else self.timeout)
            except OSError:
                self.delays.append(self.timeout)
            self._stop.wait(0.05)

    @property
    def worst(self) -> float:
        return max(self.delays, default=0.0)

    def __enter__(self) -> GreetingWatch:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)
