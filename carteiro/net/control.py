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
    """QueueService plus the control socket the CLI talks to, and the pickup socket (mode 0666:
    any local user's `carteiro-sendmail` may say "look at the maildrop now"; it can ask nothing
    else, and learns only the queue ids of the drops that scan queued)."""

    def __init__(
        self, *args: Any, control_path: Path, pickup_path: Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.control_path = control_path
        self.pickup_path = pickup_path
        self._server: asyncio.AbstractServer | None = None
        self._pickup_server: asyncio.AbstractServer | None = None

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
        pickup = self.pickup_path
        if pickup is not None and self.pickup is not None:
            if len(os.fsencode(pickup)) > MAX_SOCKET_PATH:
                log.warning("queue: %s is too long for a socket; pickup polls only", pickup)
                return
            with contextlib.suppress(FileNotFoundError):
                pickup.unlink()
            self._pickup_server = await asyncio.start_unix_server(
                self._pickup_client, path=str(pickup)
            )
            os.chmod(pickup, 0o666)

    async def _pickup_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line.strip() == b"pickup":
                picked = await self.pickup_now()
                answer = {"ok": True, "queued": [list(p) for p in picked]}
            else:
                answer = {"ok": False, "error": "say pickup"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError) as e:
            log.debug("queue: pickup client: %s", e)
        except Exception:
            log.exception("queue: pickup request failed")
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._pickup_server is not None:
            self._pickup_server.close()
            await self._pickup_server.wait_closed()
            self._pickup_server = None
            if self.pickup_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.pickup_path.unlink()
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
