"""The queue's control socket in a running server: one JSON request per connection, answered by
QueueService.handle. `carteiro queue ...` and `carteiro deliver` are its clients.

Only a local Unix socket, created with mode 0600 (umask 077): whoever can reach it owns the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from carteiro.queue.service import QueueService

log = logging.getLogger("carteiro.queue")

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


class ControlledQueueService(QueueService):
    """QueueService plus the control socket the CLI talks to."""

    def __init__(self, *args: Any, control_path: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.control_path = control_path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        await super().start()
        path = self.control_path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            log.warning("queue: %s is too long for a socket; queue commands need a restart", path)
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(path))
        finally:
            os.umask(old)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
        await super().stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
                answer = await self.handle(request)
            except ValueError as e:
                answer = {"ok": False, "error": f"bad request: {e}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError) as e:
            log.debug("queue: control client: %s", e)
        except Exception:
            log.exception("queue: control request failed")
        finally:
            writer.close()
