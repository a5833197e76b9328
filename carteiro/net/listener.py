"""TCP listeners shared by every server: TLS (implicit and STARTTLS), connection limits, peer info.

The only place (with net/tls.py) that touches sockets and ssl. A server gives a handler coroutine
that takes a Connection; this module enforces per-IP and total connection caps before the handler
runs, and one catch point logs a handler's unexpected exception and closes that connection only.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from carteiro.core.hostport import parse_hostport

log = logging.getLogger("carteiro.net")


class ListenError(Exception):
    """A listener could not start (port in use, bad address); the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class TLSInfo:
    version: str
    cipher: str
    bits: int


class Connection:
    """One accepted client: streams, peer address and TLS state."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        service: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.service = service
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or ("", 0)
        self.peer_ip: str = str(peer[0])
        self.peer_port: int = int(peer[1])
        self.local_ip: str = str(local[0])
        self.local_port: int = int(local[1])
        self.tls: TLSInfo | None = self._tls_info()

    def _tls_info(self) -> TLSInfo | None:
        obj = self.writer.get_extra_info("ssl_object")
        if obj is None:
            return None
        cipher = obj.cipher() or ("", "", 0)
        return TLSInfo(
            version=str(obj.version() or ""), cipher=str(cipher[0]), bits=int(cipher[2] or 0)
        )

    async def start_tls(self, context: ssl.SSLContext, handshake_timeout: float = 30.0) -> int:
        """Upgrade to TLS (STARTTLS/STLS). Returns how many plaintext octets the client had
        pipelined after the command; they are discarded, never read as commands after the
        handshake (the CVE-2011-0411 class). The caller must also drop its parser's buffer."""
        buf: bytearray = self.reader._buffer  # type: ignore[attr-defined]  # asyncio has no public accessor
        discarded = len(buf)
        buf.clear()
        await self.writer.drain()
        await self.writer.start_tls(context, ssl_handshake_timeout=handshake_timeout)
        self.tls = self._tls_info()
        return discarded

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (TimeoutError, OSError, ssl.SSLError):
            pass


Handler = Callable[[Connection], Awaitable[None]]
Refuse = Callable[[asyncio.StreamWriter, str], Awaitable[None]]


class Listener:
    """One service on one address. Per-IP and total caps; `refuse` writes the protocol's own
    "too many connections" reply (421 / BYE / -ERR) before closing."""

    def __init__(
        self,
        service: str,
        address: str,
        handler: Handler,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 1000,
        max_per_ip: int = 20,
        refuse: Refuse | None = None,
    ) -> None:
        self.service = service
        self.address = address
        self.handler = handler
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.refuse = refuse
        self.per_ip: Counter[str] = Counter()
        self.active: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self) -> None:
        host, port = parse_hostport(self.address)
        try:
            self.server = await asyncio.start_server(
                self._accept,
                host or None,
                port,
                ssl=self.ssl_context,
                reuse_address=True,
                limit=1 << 20,
                ssl_handshake_timeout=30.0 if self.ssl_context else None,
                backlog=1024,
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ListenError(f"{self.service}: {self.address} is already in use") from None
            raise ListenError(
                f"{self.service}: cannot listen on {self.address}: {e.strerror or e}"
            ) from None
        sock = self.server.sockets[0].getsockname()
        self.bound = (str(sock[0]), int(sock[1]))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername") or ("?", 0)
        ip = str(peer[0])
        if len(self.active) >= self.max_connections or self.per_ip[ip] >= self.max_per_ip:
            log.warning("%s: refusing %s: too many connections", self.service, ip)
            try:
                if self.refuse is not None:
                    await asyncio.wait_for(self.refuse(writer, ip), 5)
            except (TimeoutError, OSError, ssl.SSLError):
                pass
            writer.close()
            return
        self.per_ip[ip] += 1
        self.active.add(task)
        conn = Connection(reader, writer, self.service)
        try:
            await self.handler(conn)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            log.debug("%s: %s: connection ended: %r", self.service, ip, e)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: %s: unexpected error; closing this connection", self.service, ip)
        finally:
            self.active.discard(task)
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]
            await conn.close()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; give in-flight sessions `grace` seconds, then cancel them."""
        if self.server is not None:
            self.server.close()
        if self.active:
            _, pending = await asyncio.wait(list(self.active), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 5)
            except TimeoutError:
                pass
