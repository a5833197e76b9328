"""TCP listeners shared by every server: TLS (implicit and STARTTLS), connection limits, peer info.

The only place (with net/tls.py) that touches sockets and ssl. A server gives a handler coroutine
that takes a Connection; this module enforces per-IP and total connection caps before the handler
runs, and one catch point logs a handler's unexpected exception and closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from carteiro.core.hostport import parse_hostport
from carteiro.core.metrics import Metrics

log = logging.getLogger("carteiro.net")

# the protocol each listener's service speaks (metrics labels)
PROTOCOL_OF = {
    "smtp": "smtp",
    "submission": "smtp",
    "submissions": "smtp",
    "imap": "imap",
    "imaps": "imap",
    "pop3": "pop3",
    "pop3s": "pop3",
    "sieve": "managesieve",
    "lmtp": "lmtp",
    "odmr": "odmr",
}
READ_LIMIT = 1 << 20  # the streams' buffer limit (asyncio's `limit`)
UNIX_PREFIX = "unix:"  # a listen address "unix:/path" is a Unix stream socket
TRUSTED_KEY = "trusted "  # per_ip counts trusted peers under this prefix, uncapped
# Seconds a session may go on answering input it already holds before it lets the loop run
# others (Connection.turn_over): a client that pipelines thousands of cheap commands in one
# write never makes a read wait, so without a turn its session kept the one thread for seconds
# and no other client got even a greeting meanwhile (docs/architecture.md, "Fairness").
TURN = 0.01
CLOSE_GRACE = 5.0  # seconds a closing connection may take to send what is left (Connection.close)


class Reader(asyncio.StreamReader):
    """asyncio's StreamReader, with read() taking its bytes out through a memoryview: Python
    3.11's `bytes(self._buffer[:n])` copies each read twice, the first time into a new bytearray
    (12.5 us for 64 KB here, against 1.4 through a memoryview; Python 3.12 does it this way). A
    100 KB message comes in two reads. The rest (readline, readexactly, EOF, limits) is asyncio's.

    `turn` is when the session last let the loop run others: a read that had to wait for the
    client, or Connection.yield_turn. A read served from the buffer does not count."""

    turn = 0.0  # time.monotonic()

    async def read(self, n: int = -1) -> bytes:
        if n <= 0 or self._exception is not None:  # type: ignore[attr-defined]
            return await super().read(n)  # (b"", read to EOF, or the stored exception)
        buf: bytearray = self._buffer  # type: ignore[attr-defined]
        if not buf and not self._eof:  # type: ignore[attr-defined]
            await self._wait_for_data("read")  # type: ignore[attr-defined]
            self.turn = time.monotonic()
        data = bytes(memoryview(buf)[:n])
        del buf[:n]
        self._maybe_resume_transport()  # type: ignore[attr-defined]
        return data


def _streams(
    callback: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> Callable[[], asyncio.StreamReaderProtocol]:
    """asyncio.start_server's protocol factory, with our Reader."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(Reader(limit=READ_LIMIT, loop=loop), callback, loop)

    return factory


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
        self.metrics: Metrics | None = None  # set by the listener: counts STARTTLS upgrades
        peer = writer.get_extra_info("peername") or ("", 0)
        local = writer.get_extra_info("sockname") or ("", 0)
        if isinstance(peer, (str, bytes)):  # a Unix socket: no address, no port (a tuple of
            peer = ("", 0)  # types, not a union: three times cheaper, once per connection)
        if isinstance(local, (str, bytes)):
            local = ("", 0)
        self.peer_ip: str = str(peer[0])
        self.peer_port: int = int(peer[1])
        self.local_ip: str = str(local[0])
        self.local_port: int = int(local[1])
        self.tls: TLSInfo | None = self._tls_info()
        # The peer may speak for another client (net/trust.py); client_ip/client_port are that
        # client once it has (IMAP ID x-originating-ip), else the peer itself.
        self.trusted = False
        self.client_ip: str = self.peer_ip
        self.client_port: int = self.peer_port
        self._leave: Callable[[], None] | None = None  # set by the listener: see leave_ip_cap

    def leave_ip_cap(self) -> None:
        """Stop counting this connection in its listener's per-address cap (once; the listener
        calls it at the end in any case). A session calls it once it has logged in: the cap
        is against floods of unauthenticated connections, and logged-in sessions are counted
        per account and address instead (UserIPCounter), as Dovecot does, so an office behind
        one NAT address is not refused once its users' clients together pass the cap."""
        leave = self._leave
        if leave is not None:
            self._leave = None
            leave()

    def _tls_info(self) -> TLSInfo | None:
        obj = self.writer.get_extra_info("ssl_object")
        if obj is None:
            return None
        cipher = obj.cipher() or ("", "", 0)
        return TLSInfo(
            version=str(obj.version() or ""), cipher=str(cipher[0]), bits=int(cipher[2] or 0)
        )

    def turn_over(self) -> bool:
        """True once the session has run TURN seconds on input it already held, without letting
        the loop run others: it should `await yield_turn()` before its next command. (Not a
        coroutine: checked after every command, and almost always False.)"""
        reader = self.reader
        return not isinstance(reader, Reader) or time.monotonic() - reader.turn > TURN

    async def yield_turn(self) -> None:
        """Let every other ready session and the listeners run once, then go on. Raises
        ConnectionResetError when the connection was lost meanwhile: the rest of what the
        client pipelined has nobody to answer (and a closed transport refuses writes)."""
        await asyncio.sleep(0)
        reader = self.reader
        if isinstance(reader, Reader):
            reader.turn = time.monotonic()
        if self.writer.transport.is_closing():
            raise ConnectionResetError("the client went away")

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
        if self.metrics is not None and self.tls is not None:
            protocol = PROTOCOL_OF.get(self.service, self.service)
            self.metrics.tls_connections.labels(protocol, self.tls.version).inc()
        return discarded

    async def close(self) -> None:
        writer = self.writer
        if writer.is_closing():
            return
        try:
            if self.tls is None and not writer.transport.get_write_buffer_size():
                # nothing left to send and no TLS shutdown: the transport closes at once, so
                # no timer (one per connection) guards the wait
                writer.close()
                await writer.wait_closed()
                return
            writer.close()
            # (timeout, not wait_for, which would start one more task per connection)
            async with asyncio.timeout(CLOSE_GRACE):
                await writer.wait_closed()
        except TimeoutError:
            # The client reads neither the rest of our output nor the TLS close: a closing
            # transport waits for its buffer to drain, for as long as the peer acknowledges
            # zero-window probes (for ever), holding the socket and the buffer after the
            # session and its connection slot are gone. Drop them.
            writer.transport.abort()
        except (OSError, ssl.SSLError):
            pass


Handler = Callable[[Connection], Awaitable[None]]
Refuse = Callable[[asyncio.StreamWriter, str], Awaitable[None]]
Trusts = Callable[[str, int], bool]  # (peer address, peer port): may speak for other clients


class UserIPCounter:
    """Logged-in sessions per (account, client address) of one protocol (Dovecot's
    mail_max_userip_connections): `take` gives the function that frees the place, or None when
    the account already has `limit` sessions from that address (0: no limit)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def take(self, account: str, ip: str, limit: int) -> Callable[[], None] | None:
        key = (account, ip)
        if limit and self.counts[key] >= limit:
            return None
        self.counts[key] += 1
        done = False

        def free() -> None:
            nonlocal done
            if not done:
                done = True
                self.counts[key] -= 1
                if self.counts[key] <= 0:
                    del self.counts[key]

        return free


class Listener:
    """One service on one address. Per-IP and total caps; `refuse` writes the protocol's own
    "too many connections" reply (421 / BYE / -ERR) before closing. A peer `trusted` says may
    speak for other clients (a webmail, a proxy) is exempt from the per-IP cap, not the total."""

    def __init__(
        self,
        service: str,
        address: str,
        handler: Handler,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 1000,
        max_per_ip: int = 20,
        refuse: Refuse | None = None,
        trusted: Trusts | None = None,
    ) -> None:
        self.service = service
        self.address = address
        self.handler = handler
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.refuse = refuse
        self.metrics: Metrics | None = None  # set by the composition root
        self.trusted = trusted
        self.per_ip: Counter[str] = Counter()
        self.active: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.servers: list[asyncio.Server] = []
        self.bound: tuple[str, int] | None = None
        self._socks: list[socket.socket] = []
        self._tls_accepting: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()
        # (metrics, connections, connections_active children): labels() per connection takes
        # a lock and a lookup; the children are fixed for a listener's service
        self._counted: tuple[Metrics, Any, Any] | None = None

    def follow(self, fresh: Listener) -> None:
        """A reload (SIGHUP): connections accepted from now on go to `fresh`'s handler (servers
        built from the new configuration) under its caps; open connections keep the handler
        they began with. The address and the TLS context stay (a restart changes those)."""
        self.handler = fresh.handler
        self.refuse = fresh.refuse
        self.max_connections = fresh.max_connections
        self.max_per_ip = fresh.max_per_ip
        self.trusted = fresh.trusted

    def prebind(self) -> None:
        """Bind the listening sockets now, without serving yet."""
        if not self._socks:
            self.adopt(bind_address(self.service, self.address))

    def adopt(self, socks: list[socket.socket]) -> None:
        """Serve on sockets bound earlier (`carteiro serve` started as root binds every port
        first, then drops to its configured user)."""
        self._socks = socks
        name = socks[0].getsockname()
        self.bound = (str(name[0]), int(name[1]))

    async def _start_unix(self, path: str) -> None:
        """A Unix stream socket (LMTP from an MTA on this host). Mode 0666, like a loopback TCP
        port: restrict who may connect with the permissions of the directory holding it."""
        if self.ssl_context is not None:
            raise ListenError(f"{self.service}: implicit TLS on a Unix socket is not supported")
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)  # left by a previous run
            loop = asyncio.get_running_loop()
            server = await loop.create_unix_server(_streams(self._accept), path=path, backlog=1024)
            os.chmod(path, 0o666)
        except OSError as e:
            raise ListenError(
                f"{self.service}: cannot listen on {self.address}: {e.strerror or e}"
            ) from None
        self.servers.append(server)
        self.server = server
        self.bound = (path, 0)

    async def start(self) -> None:
        if self.address.startswith(UNIX_PREFIX):
            await self._start_unix(self.address[len(UNIX_PREFIX) :])
            return
        self.prebind()
        if self.ssl_context is not None:
            # Implicit TLS: count the client at accept, before its handshake. asyncio's own TLS
            # server handshakes before any callback runs, so every half-open handshake (30 s
            # each) would escape the per-IP cap; accepting here, then wrapping the socket with
            # connect_accepted_socket, puts the cap in front of the handshake.
            for lsock in self._socks:
                lsock.setblocking(False)
                self._tls_accepting.append(asyncio.create_task(self._tls_accept_loop(lsock)))
            return
        loop = asyncio.get_running_loop()
        for lsock in self._socks:
            server = await loop.create_server(_streams(self._accept), sock=lsock, backlog=1024)
            self.servers.append(server)
        self.server = self.servers[0]

    async def _tls_accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(lsock)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and the like: back off a moment, keep listening
                log.warning("%s: accept failed: %s", self.service, e)
                await asyncio.sleep(0.1)
                continue
            ip = self._ip_key(str(addr[0]), int(addr[1]))
            busy = len(self.active) + len(self._handshakes)
            if busy >= self.max_connections or self._over_ip_cap(ip):
                # no handshake for a client over its cap: closing costs nothing
                log.warning("%s: refusing %s: too many connections", self.service, ip)
                if self.metrics is not None:
                    self.metrics.connections_refused.labels(self.service).inc()
                conn.close()
                continue
            self.per_ip[ip] += 1
            task = asyncio.create_task(self._tls_handshake(conn, ip))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _tls_handshake(self, conn: socket.socket, ip: str) -> None:
        loop = asyncio.get_running_loop()
        reader = Reader(limit=READ_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self.ssl_context, ssl_handshake_timeout=30.0
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, EOFError) as e:
            log.debug("%s: %s: TLS handshake failed: %r", self.service, ip, e)
            self._release(ip)
            conn.close()
            return
        except BaseException:
            self._release(ip)
            conn.close()
            raise
        task = asyncio.current_task()
        if task is not None:
            self._handshakes.discard(task)  # a session now, counted in `active`
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._serve(reader, writer, ip)

    def _ip_key(self, ip: str, port: int) -> str:
        """What per_ip counts a client under: its address, or apart (uncapped) for a trusted
        peer, whose connections then leave the cap of other clients at that address alone."""
        if self.trusted is not None and self.trusted(ip, port):
            return TRUSTED_KEY + ip
        return ip

    def _over_ip_cap(self, key: str) -> bool:
        return self.per_ip[key] >= self.max_per_ip and not key.startswith(TRUSTED_KEY)

    def _release(self, ip: str) -> None:
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        port = int(peer[1]) if isinstance(peer, tuple) else 0
        ip = self._ip_key(str(peer[0]), port)
        if len(self.active) >= self.max_connections or self._over_ip_cap(ip):
            log.warning("%s: refusing %s: too many connections", self.service, ip)
            if self.metrics is not None:
                self.metrics.connections_refused.labels(self.service).inc()
            try:
                if self.refuse is not None:
                    await asyncio.wait_for(self.refuse(writer, ip), 5)
            except (TimeoutError, OSError, ssl.SSLError):
                pass
            writer.close()
            return
        self.per_ip[ip] += 1
        await self._serve(reader, writer, ip)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        """Run the handler for a client already counted in per_ip."""
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        conn = Connection(reader, writer, self.service)
        m = self.metrics
        active = None
        if m is not None:
            conn.metrics = m
            counted = self._counted
            protocol = PROTOCOL_OF.get(self.service, self.service)
            if counted is None or counted[0] is not m:
                counted = self._counted = (
                    m,
                    m.connections.labels(protocol, self.service),
                    m.connections_active.labels(self.service),
                )
            counted[1].inc()
            active = counted[2]
            active.inc()
            if conn.tls is not None:
                m.tls_connections.labels(protocol, conn.tls.version).inc()
        conn.trusted = ip.startswith(TRUSTED_KEY)
        conn._leave = partial(self._release, ip)
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
            conn.leave_ip_cap()
            if active is not None:
                active.dec()
            await conn.close()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; give in-flight sessions `grace` seconds, then cancel them."""
        for server in self.servers:
            server.close()
        for t in self._tls_accepting:
            t.cancel()
        if self._tls_accepting:
            await asyncio.gather(*self._tls_accepting, return_exceptions=True)
            self._tls_accepting.clear()
        for lsock in self._socks:
            with contextlib.suppress(OSError):
                lsock.close()
        for t in list(self._handshakes):
            t.cancel()
        if self.active:
            _, pending = await asyncio.wait(list(self.active), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except TimeoutError:
                pass


def bind_address(service: str, address: str) -> list[socket.socket]:
    """The listening sockets for `address`, or ListenError in one line naming the service."""
    host, port = parse_hostport(address)
    try:
        return _bind(host, port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"{service}: {address} is already in use") from None
        hint = ""
        if e.errno == errno.EACCES and port < 1024:
            hint = (
                " (a port below 1024 needs root or CAP_NET_BIND_SERVICE: "
                "see contrib/carteiro.service)"
            )
        raise ListenError(
            f"{service}: cannot listen on {address}: {e.strerror or e}{hint}"
        ) from None


def _bind(host: str, port: int) -> list[socket.socket]:
    """One listening socket per address the host resolves to (as asyncio.start_server binds:
    IPv6 ones v6-only, so IPv4 peers keep plain addresses)."""
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, _type, _proto, _name, addr in socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            key = (family, addr[:2])
            if key in seen:
                continue
            seen.add(key)
            socks.append(socket.create_server(addr[:2], family=family, backlog=1024))
    except BaseException:
        for lsock in socks:
            lsock.close()
        raise
    return socks
