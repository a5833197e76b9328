"""Connection limits for the webmail's HTTP server: what carteiro's own listeners (net/listener.py)
give SMTP, IMAP and POP3, uvicorn does not: it waits for a request's header section and for a
request body as long as the client likes (a client sending a byte every few seconds holds a
descriptor for ever: "slowloris") and takes any number of connections from one address.

`guarded_protocol` makes a subclass of uvicorn's h11 protocol per server with:
- a deadline for each request's header section, counted from the connection (or the first octet
  of the next request on a kept-alive connection): past it, 408 and close;
- a deadline between two reads of a request body (an upload may be slow, not stalled);
- a cap on connections per client address and in all (past it, 503 and close at once); a
  connection whose request shows a valid session leaves the address's cap and counts per account
  and address instead (`leave_ip_cap`, called by the app), as IMAP's logged-in sessions do;
- a bound on the pipelined requests read ahead of the one being answered (_BoundedFlow);
- a deadline for a client that stops reading its response (nginx's send_timeout): past it with
  the transport's buffer full, the connection is dropped.
Once a request is read, the response may take as long as it needs (the mailbox's live updates
are one long response), as long as the client takes what is sent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import h11
from starlette.types import Scope
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class WebLimits:
    header_timeout: float = 20.0  # seconds for a request's header section
    body_timeout: float = 30.0  # seconds without a read while a request body is incomplete
    send_timeout: float = 60.0  # seconds a response may wait for the client to take more of it
    max_connections_per_ip: int = 50  # 0: no cap (behind a proxy, every client is the proxy)
    max_userip_connections: int = 20  # connections with a session, per account and address
    max_connections: int = 1000


_CLOSE = b"Connection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\n" + _CLOSE
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\n" + _CLOSE


MAX_READ_AHEAD = 64 * 1024  # octets of pipelined requests held behind the one being answered


class _BoundedFlow(FlowControl):
    """uvicorn pauses reading when a pipelined request waits behind the one being answered, but
    resumes it whenever the response's task waits in receive() for a disconnect (Starlette's
    FileResponse does, for every static file; so do streaming responses), and keeps all it reads
    meanwhile in h11's buffer: a client that pipelined GET /static/app.js and read nothing had
    the server take in 120 MB in two seconds. Reading stays paused while that buffer holds
    MAX_READ_AHEAD: it has whole requests to answer first (h11 refuses an unfinished head past
    16 KB), and the end of each response resumes it again once they are taken."""

    def __init__(self, transport: asyncio.Transport, conn: h11.Connection) -> None:
        super().__init__(transport)
        self._conn = conn

    def resume_reading(self) -> None:
        if self.read_paused and len(self._conn.trailing_data[0]) >= MAX_READ_AHEAD:
            return
        super().resume_reading()


# Each counted connection by (client, server) address pairs, as the ASGI scope gives them: how a
# request's handler finds its connection (leave_ip_cap)
_OPEN: dict[tuple[Any, Any], _Guarded] = {}


def leave_ip_cap(scope: Scope, account: str) -> None:
    """The request of `scope` showed a valid session of `account`: its connection stops counting
    in its address's cap (which is there against floods of connections nobody logged in on) and
    counts per account and address instead, up to `max_userip_connections` (past that it stays
    where it was). Once per connection; a no-op where there is no per-address cap."""
    conn = _OPEN.get((scope.get("client"), scope.get("server")))
    if conn is not None:
        conn.leave_ip_cap(account)


class _Guarded(H11Protocol):
    limits: WebLimits = WebLimits()
    per_ip: Counter[str]
    per_user: Counter[tuple[str, str]]  # connections that left the address's cap
    total: list[int]  # [open connections], shared by the server's protocols

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ip: str | None = None  # counted under this address (None: not counted)
        self._user: tuple[str, str] | None = None  # counted per (account, address) instead
        self._key: tuple[Any, Any] | None = None  # its entry in _OPEN
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = ""  # "" | "head" | "body": what the timer waits for
        self._send_timer: asyncio.TimerHandle | None = None  # armed while writing is paused

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _BoundedFlow(transport, self.conn)
        ip = self.client[0] if self.client else ""
        limits = self.limits
        per_ip = limits.max_connections_per_ip
        if self.total[0] >= limits.max_connections or (per_ip and self.per_ip[ip] >= per_ip):
            transport.write(_BUSY)
            transport.close()
            return
        self._ip = ip
        self.per_ip[ip] += 1
        self.total[0] += 1
        if per_ip:
            self._key = (self.client, self.server)
            _OPEN[self._key] = self
        self._wait("head")

    def leave_ip_cap(self, account: str) -> None:
        ip = self._ip
        if ip is None or self._user is not None:
            return
        user = (account, ip)
        limit = self.limits.max_userip_connections
        if limit and self.per_user[user] >= limit:
            return  # stays in the address's cap
        self._drop(self.per_ip, ip)
        self.per_user[user] += 1
        self._user = user

    @staticmethod
    def _drop(counter: Counter[Any], key: Any) -> None:
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]

    def connection_lost(self, exc: Exception | None) -> None:
        self._wait("")
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self._key is not None:
            if _OPEN.get(self._key) is self:  # (not a later connection's of the same addresses)
                del _OPEN[self._key]
            self._key = None
        if self._ip is not None:
            if self._user is not None:
                self._drop(self.per_user, self._user)
                self._user = None
            else:
                self._drop(self.per_ip, self._ip)
            self.total[0] -= 1
            self._ip = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ip is None:
            return  # refused: its 503 is on the way out
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # the next request, if any: uvicorn's keep-alive timer covers a quiet connection, and
        # data_received arms the head deadline at the next request's first octet
        if self._waiting:
            self._wait("")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._stalled)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().resume_writing()

    def _stalled(self) -> None:
        """The client took nothing of its response for send_timeout: drop the connection (no
        reply: it would not be read), with what waits to be sent."""
        self._send_timer = None
        if not self.transport.is_closing():
            self.transport.abort()

    def _follow(self) -> None:
        """Arm the timer for what the connection now waits for (after a read)."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._waiting != "head" and self.conn.trailing_data[0]:
                self._wait("head")  # part of a next request's head has come
        elif state is h11.SEND_BODY:
            self._wait("body")  # re-armed at each read
        elif self._waiting:
            self._wait("")  # the request is read: the response takes what it takes

    def _wait(self, what: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting = what
        if what:
            delay = self.limits.header_timeout if what == "head" else self.limits.body_timeout
            self._timer = self.loop.call_later(delay, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self._waiting = ""
        if self.transport.is_closing():
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # nothing of a response sent
            self.transport.write(_TIMEOUT)
        self.transport.close()


def guarded_protocol(limits: WebLimits) -> type[H11Protocol]:
    """A protocol class for uvicorn.Config(http=...) with its own counters and `limits`."""
    return type(
        "GuardedH11Protocol",
        (_Guarded,),
        {"limits": limits, "per_ip": Counter(), "per_user": Counter(), "total": [0]},
    )
