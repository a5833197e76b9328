"""Webmail sessions: who is logged in, their pooled IMAP connections, CSRF tokens, idle timeout,
and login throttling per client address and per account.

A session lives in this process's memory only (the cookie carries a random 256-bit token, never
the password). The password stays here for as long as the session does, because every new IMAP
connection and every SMTP submission logs in with it (as Roundcube does); logout and the idle
timeout drop it together with the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from carteiro.web.imap import Endpoint, IMAPConnection, IMAPUnavailable

MAX_CONNECTIONS = 2  # per session for commands; IDLE for live updates has its own
MAX_SESSIONS_PER_ACCOUNT = 10  # more logins end the oldest (each holds an IMAP connection)
MAX_LOGINS_IN_FLIGHT_PER_IP = 2  # password checks at once from one browser address
MESSAGE_CACHE = 4  # raw messages kept per session (view, then its images and attachments)


@dataclass
class WebSession:
    token: str
    user: str
    password: str
    csrf: str
    endpoint: Endpoint
    last_seen: float
    conns: list[IMAPConnection] = field(default_factory=list)
    listeners: int = 0  # open server-sent-event streams
    messages: OrderedDict[tuple[str, int], bytes] = field(default_factory=OrderedDict)
    transcript_wanted: bool = False
    client_ip: str = ""
    _opening: int = 0

    @contextlib.asynccontextmanager
    async def imap(self) -> AsyncIterator[IMAPConnection]:
        """A logged-in connection of this session's pool, for one request's commands."""
        conn = await self._acquire()
        try:
            yield conn
        finally:
            conn.lock.release()
            if conn.closed and conn in self.conns:
                self.conns.remove(conn)

    async def _acquire(self) -> IMAPConnection:
        self.conns = [c for c in self.conns if not c.closed]
        for c in self.conns:
            if not c.lock.locked():
                await c.lock.acquire()
                return c
        if len(self.conns) + self._opening < MAX_CONNECTIONS:
            self._opening += 1
            try:
                c = await open_connection(self.endpoint, self.user, self.password, self.client_ip)
            finally:
                self._opening -= 1
            await c.lock.acquire()
            self.conns.append(c)
            return c
        # All busy: wait for the first (requests of one user are few at a time).
        if not self.conns:
            return await self._acquire()
        c = self.conns[0]
        await c.lock.acquire()
        if c.closed:
            c.lock.release()
            return await self._acquire()
        return c

    def transcript(self) -> list[str]:
        lines: list[str] = []
        for c in self.conns:
            lines.extend(c.transcript)
        return lines

    def cached(self, folder: str, uid: int) -> bytes | None:
        raw = self.messages.get((folder, uid))
        if raw is not None:
            self.messages.move_to_end((folder, uid))
        return raw

    def cache(self, folder: str, uid: int, raw: bytes) -> None:
        self.messages[(folder, uid)] = raw
        while len(self.messages) > MESSAGE_CACHE:
            self.messages.popitem(last=False)

    def check_csrf(self, token: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), token.encode())

    async def close(self) -> None:
        conns, self.conns = self.conns, []
        self.password = ""
        self.messages.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def open_connection(
    endpoint: Endpoint, user: str, password: str, client_ip: str = ""
) -> IMAPConnection:
    conn = IMAPConnection(endpoint)
    await conn.connect()
    try:
        await conn.login(user, password, client_ip)
    except BaseException:
        await conn.close()
        raise
    return conn


class LoginThrottle:
    """Failures per client address and per account in a sliding window. Past `max_failures` an
    address is refused for `block_time` (5: below the IMAP server's own 10, so that one browser
    address is stopped here before the server, which sees all of us as one address, blocks it); an account gets a growing delay instead (never a lockout,
    which would let anyone lock a victim out), as the IMAP server's own throttle does."""

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 600.0,
        block_time: float = 900.0,
        account_free: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.block_time = block_time
        self.account_free = account_free
        self.clock = clock
        self.ip_failures: dict[str, list[float]] = {}
        self.account_failures: dict[str, list[float]] = {}

    def _recent(self, table: dict[str, list[float]], key: str) -> list[float]:
        now = self.clock()
        times = [t for t in table.get(key, ()) if now - t < max(self.window, self.block_time)]
        if times:
            table[key] = times
        else:
            table.pop(key, None)
        return times

    def wait(self, ip: str, account: str) -> float:
        """Seconds before this attempt may be tried (0: now)."""
        now = self.clock()
        ipf = [t for t in self._recent(self.ip_failures, ip) if now - t < self.window]
        if len(ipf) >= self.max_failures:
            return max(0.0, ipf[-1] + self.block_time - now)
        acf = [t for t in self._recent(self.account_failures, account) if now - t < self.window]
        over = len(acf) - self.account_free
        if over >= 0:
            return max(0.0, acf[-1] + min(2.0**over, 60.0) - now)
        return 0.0

    def failed(self, ip: str, account: str) -> None:
        now = self.clock()
        self.ip_failures.setdefault(ip, []).append(now)
        self.account_failures.setdefault(account, []).append(now)
        # Bounded memory: forget the oldest address when too many are tracked.
        for table in (self.ip_failures, self.account_failures):
            if len(table) > 100_000:
                table.pop(next(iter(table)))

    def succeeded(self, ip: str, account: str) -> None:
        self.account_failures.pop(account, None)


class SessionStore:
    def __init__(
        self,
        endpoint: Endpoint,
        idle_timeout: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.sessions: dict[str, WebSession] = {}
        self.throttle = LoginThrottle(clock=clock)
        self.in_flight: dict[str, int] = {}

    def busy(self, client_ip: str) -> bool:
        """Too many logins from this address are being checked now: parallel guesses would
        outrun the failure count, and hold the IMAP server's slots for everyone behind us."""
        return self.in_flight.get(client_ip, 0) >= MAX_LOGINS_IN_FLIGHT_PER_IP

    async def login(self, user: str, password: str, client_ip: str = "") -> WebSession:
        """Check the password by IMAP LOGIN; the connection becomes the session's first."""
        self.in_flight[client_ip] = self.in_flight.get(client_ip, 0) + 1
        try:
            conn = await open_connection(self.endpoint, user, password, client_ip)
        finally:
            self.in_flight[client_ip] -= 1
            if not self.in_flight[client_ip]:
                del self.in_flight[client_ip]
        mine = [t for t, x in self.sessions.items() if x.user.lower() == user.lower()]
        for t in mine[: max(0, len(mine) - MAX_SESSIONS_PER_ACCOUNT + 1)]:
            await self.logout(t)  # oldest first: dicts keep insertion order
        s = WebSession(
            token=secrets.token_urlsafe(32),
            user=user,
            password=password,
            csrf=secrets.token_urlsafe(32),
            endpoint=self.endpoint,
            last_seen=self.clock(),
            conns=[conn],
            client_ip=client_ip,
        )
        self.sessions[s.token] = s
        return s

    def get(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        s = self.sessions.get(token)
        if s is None:
            return None
        now = self.clock()
        if now - s.last_seen > self.idle_timeout and s.listeners == 0:
            self.sessions.pop(token, None)
            asyncio.get_running_loop().create_task(s.close())
            return None
        s.last_seen = now
        return s

    async def logout(self, token: str) -> None:
        s = self.sessions.pop(token, None)
        if s is not None:
            await s.close()

    async def reap(self) -> None:
        """Close the sessions idle past the timeout (run every minute)."""
        now = self.clock()
        old = [
            t
            for t, s in self.sessions.items()
            if now - s.last_seen > self.idle_timeout and s.listeners == 0
        ]
        for t in old:
            await self.logout(t)

    async def close(self) -> None:
        for t in list(self.sessions):
            await self.logout(t)


__all__ = ["IMAPUnavailable", "LoginThrottle", "SessionStore", "WebSession"]
