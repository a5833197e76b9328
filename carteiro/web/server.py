"""Serving the webmail ASGI app with uvicorn inside our own event loop (`carteiro serve`) or on its
own (`carteiro web`). We bind the socket ourselves so a busy port fails fast with a clear error
(uvicorn would exit the process), and leave signal handling to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from carteiro.core.hostport import parse_hostport
from carteiro.web.guard import WebLimits, guarded_protocol

log = logging.getLogger("carteiro.web")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host process owns SIGTERM/SIGINT; it stops us with stop().
        yield


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class WebServer:
    def __init__(
        self,
        app: ASGIApp,
        listen: str,
        cert: Path | None = None,
        key: Path | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or WebLimits()
        self.listen = listen
        self.cert = cert
        self.key = key
        self.bound: tuple[str, int] | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def https(self) -> bool:
        return self.cert is not None

    async def start(self) -> None:
        """Bind and serve; raises OSError (with the address) when the port cannot be had."""
        host, port = parse_hostport(self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:  # (the words of every other listener's refusal)
                raise OSError(e.errno, f"web: {self.listen} is already in use") from e
            raise OSError(e.errno, f"web: cannot listen on {self.listen}: {e.strerror}") from e
        sock.listen(512)
        sock.setblocking(False)
        self.bound = sock.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=guarded_protocol(self.limits),  # header/body deadlines, connection caps
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=3,
            ssl_certfile=str(self.cert) if self.cert else None,
            ssl_keyfile=str(self.key) if self.key else None,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"web: the server on {self.listen} did not start")
            if loop.time() > deadline:
                raise OSError(f"web: the server on {self.listen} did not start in time")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 10)
        except (TimeoutError, asyncio.CancelledError):
            self._server.force_exit = True
        self._server = None
