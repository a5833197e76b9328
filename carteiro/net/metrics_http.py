"""The metrics listener (`[listen] metrics`): GET /metrics (Prometheus text format) and
GET /healthz (JSON; 200 when healthy, 503 with the reasons otherwise).

A minimal HTTP/1.1 responder on the shared Listener (connection caps, one catch point): one request
per connection, request head at most 8 KiB read within 10 s, nothing but GET and HEAD. Meant for a
scraper on a trusted network; it exposes counts, never a message, an address or a secret.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from carteiro.core.metrics import Metrics
from carteiro.net.listener import Connection, Listener

MAX_HEAD = 8192
READ_TIMEOUT = 10.0
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Health = Callable[[], Awaitable[dict[str, Any]]]


def _response(status: str, ctype: str, body: bytes, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + body


class MetricsHTTP:
    def __init__(self, metrics: Metrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health

    async def handle(self, conn: Connection) -> None:
        head = bytearray()
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                while b"\r\n\r\n" not in head and len(head) <= MAX_HEAD:
                    chunk = await conn.reader.read(4096)
                    if not chunk:
                        return
                    head += chunk
        except TimeoutError:
            return
        if b"\r\n\r\n" not in head:
            too_big = "431 Request Header Fields Too Large"
            conn.writer.write(_response(too_big, "text/plain", b"", False))
            await conn.writer.drain()
            return
        line = bytes(head).split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            conn.writer.write(_response("400 Bad Request", "text/plain", b"bad request\n", False))
        elif parts[0] not in ("GET", "HEAD"):
            conn.writer.write(_response("405 Method Not Allowed", "text/plain", b"", False))
        else:
            conn.writer.write(await self._answer(parts[1].split("?", 1)[0], parts[0] == "HEAD"))
        await conn.writer.drain()

    async def _answer(self, path: str, head_only: bool) -> bytes:
        if path == "/metrics":
            body = await asyncio.to_thread(self.metrics.render)
            return _response("200 OK", PROM_TYPE, body, head_only)
        if path in ("/healthz", "/health"):
            report = await self.health()
            status = "200 OK" if report.get("ok") else "503 Service Unavailable"
            body = json.dumps(report, indent=1).encode() + b"\n"
            return _response(status, "application/json", body, head_only)
        body = b"not found: try /metrics or /healthz\n"
        return _response("404 Not Found", "text/plain", body, head_only)


def metrics_listener(address: str, metrics: Metrics, health: Health) -> Listener:
    server = MetricsHTTP(metrics, health)
    # a scraper and an operator's curl: a handful of connections is plenty
    return Listener("metrics", address, server.handle, max_connections=64, max_per_ip=16)
