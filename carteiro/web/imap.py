"""An asyncio IMAP client connection for the webmail: TLS (implicit or STARTTLS), LOGIN, tagged
commands with their untagged answers, APPEND literals, IDLE, and a transcript of the last lines.

It speaks only the wire protocol (via proto.imap.client), so it works against any IMAP server.
Passwords never enter the transcript. One command at a time per connection (callers hold `lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from carteiro.proto.imap.client import Response, ResponseError, ResponseReader, quote

TRANSCRIPT_LINES = 60

Vouch = Callable[[socket.socket], Callable[[], None]]
"""Given the bound socket a connection will come from, has the server trust that one socket to
pass its client's address; returns the function that withdraws the trust."""


class IMAPError(Exception):
    """A NO/BAD answer: `status` and the server's text (shown to the user)."""

    def __init__(self, status: str, text: str, code: str = "") -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text
        self.code = code  # the response code's atom (RFC 5530), upper case


class IMAPUnavailable(Exception):
    """The server cannot be reached or dropped the connection."""


class AuthFailed(Exception):
    """LOGIN was refused (wrong address or password, or the account is blocked)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a server: tls is "implicit", "starttls" or "none"."""

    host: str
    port: int
    tls: str = "starttls"
    cafile: str = ""
    verify: bool = True  # False: encrypt but accept any certificate (loopback to ourselves)
    timeout: float = 30.0
    # Inside `carteiro serve`: the server trusts exactly our sockets (app.py); None elsewhere
    vouch: Vouch | None = field(default=None, compare=False, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile or None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class IMAPConnection:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = ResponseReader()
        self.capabilities: set[str] = set()
        self.transcript: deque[str] = deque(maxlen=TRANSCRIPT_LINES)
        self.lock = asyncio.Lock()
        self.selected: str | None = None
        self.exists = 0  # of the selected folder, kept by EXISTS/EXPUNGE (RFC 9051 7.4.1, 7.3.1)
        self.closed = False
        self._tag = 0
        self._withdraw: Callable[[], None] | None = None

    # ---- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        ep = self.endpoint
        try:
            self.reader, self.writer = await asyncio.wait_for(self._open(), ep.timeout)
            greeting = await self._response()
            if greeting.tag != "*" or greeting.status()[0] not in ("OK", "PREAUTH"):
                raise IMAPUnavailable(f"the IMAP server refused us: {greeting.text!r}")
            await self.command("CAPABILITY")
            if ep.tls == "starttls":
                if "STARTTLS" not in self.capabilities:
                    raise IMAPUnavailable("the IMAP server does not offer STARTTLS")
                await self.command("STARTTLS")
                assert self.writer is not None
                await self.writer.start_tls(ep.ssl_context(), server_hostname=ep.host)
                self.capabilities.clear()
                await self.command("CAPABILITY")
        except (TimeoutError, OSError, ssl.SSLError, ResponseError) as e:
            await self.close()
            raise IMAPUnavailable(f"cannot reach the IMAP server: {e or type(e).__name__}") from e

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ep = self.endpoint
        tls = ep.ssl_context() if ep.tls == "implicit" else None
        name = ep.host if ep.tls == "implicit" else None
        if ep.vouch is None:
            return await asyncio.open_connection(ep.host, ep.port, ssl=tls, server_hostname=name)
        # Bound before connecting, so the server already trusts the source when it accepts
        # (its per-IP cap is checked then); the kernel lets no one else use that pair meanwhile.
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"{ep.host} has no address")
        for family, kind, proto, _, addr in infos:  # in order, as open_connection tries them
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.bind((addr[0], 0))  # the server's own address: a local one
                self._withdraw = ep.vouch(sock)
                await loop.sock_connect(sock, addr)
            except OSError as e:
                sock.close()
                self._unvouch()
                error = e
                continue
            except BaseException:
                sock.close()
                self._unvouch()
                raise
            try:
                return await asyncio.open_connection(sock=sock, ssl=tls, server_hostname=name)
            except BaseException:
                sock.close()
                self._unvouch()
                raise
        raise error

    def _unvouch(self) -> None:
        if self._withdraw is not None:
            self._withdraw()
            self._withdraw = None

    async def login(self, user: str, password: str, client_ip: str = "") -> None:
        if client_ip and "ID" in self.capabilities:
            # RFC 2971 with Dovecot's x-originating-ip: a server that trusts us (Dovecot's
            # login_trusted_networks) then throttles and logs the browser's address, not ours.
            try:
                await self.command("ID", f'("x-originating-ip" {quote(client_ip)})')
            except IMAPError:
                pass
        try:
            # RFC 9051 6.2.3: LOGIN arguments are astrings; a literal carries anything a quoted
            # string cannot (non-ASCII passwords).
            _, done = await self.command(
                "LOGIN", self.astring(user), self.astring(password), secret=True
            )
        except IMAPError as e:
            # RFC 5530 3: UNAVAILABLE is the server's trouble, not a wrong password.
            if e.code == "UNAVAILABLE":
                await self.close()
                raise IMAPUnavailable(f"the IMAP server cannot log us in now: {e.text}") from e
            raise AuthFailed(e.text) from e
        # Capabilities change after login (RFC 9051 6.2.3); the OK may carry them already.
        if not done.code().upper().startswith("CAPABILITY"):
            await self.command("CAPABILITY")

    async def close(self) -> None:
        already = self.closed  # (a BYE sets it: the socket itself may still be open)
        self.closed = True
        w = self.writer
        try:
            if w is not None and not w.is_closing():
                with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
                    if not already:
                        self._trace("C", "LOGOUT")
                        w.write(b"x LOGOUT\r\n")
                    w.close()
                    await asyncio.wait_for(w.wait_closed(), 2)
        finally:
            self._unvouch()  # the pair is free again: anyone may reuse it now

    # ---- commands -----------------------------------------------------------------------------

    def astring(self, s: str) -> str | bytes:
        """A quoted string when it can be one, else a literal (returned as bytes)."""
        if s.isascii() and "\r" not in s and "\n" not in s and len(s) < 1000:
            return quote(s)
        return s.encode("utf-8")

    def mailbox(self, name: str) -> str | bytes:
        from carteiro.proto.imap.utf7 import encode

        # RFC 3501 5.1.3: modified UTF-7 unless UTF8=ACCEPT was enabled (we do not enable it).
        return self.astring(encode(name))

    async def command(
        self, name: str, *args: str | bytes, secret: bool = False
    ) -> tuple[list[Response], Response]:
        """Send one command; bytes arguments go as literals. Returns (untagged, tagged) and raises
        IMAPError on NO/BAD, IMAPUnavailable when the connection fails."""
        if self.closed or self.writer is None:
            raise IMAPUnavailable("the IMAP connection is closed")
        self._tag += 1
        tag = f"W{self._tag}"
        parts: list[bytes] = [f"{tag} {name}".encode()]
        shown = f"{tag} {name}" if not secret else f"{tag} {name} {args[0]!s} ****"
        try:
            for a in args:
                if isinstance(a, bytes):
                    plus = "LITERAL+" in self.capabilities or (
                        "LITERAL-" in self.capabilities and len(a) <= 4096
                    )
                    parts.append(f" {{{len(a)}{'+' if plus else ''}}}".encode())
                    if plus:
                        parts.append(b"\r\n" + a)
                    else:
                        await self._send(b"".join(parts) + b"\r\n")
                        parts = []
                        cont = await self._until_continuation()
                        if cont is not None:
                            raise cont
                        parts.append(a)
                else:
                    parts.append(b" " + a.encode("utf-8"))
                if not secret:
                    shown += f" {{{len(a)}}}" if isinstance(a, bytes) else f" {a}"
            self._trace("C", shown)
            await self._send(b"".join(parts) + b"\r\n")
            untagged: list[Response] = []
            while True:
                r = await self._response()
                if r.tag == tag:
                    status, text = r.status()
                    code = r.code()
                    if code.upper().startswith("CAPABILITY "):
                        self.capabilities = {c.upper() for c in code.split()[1:]}
                    if status != "OK":
                        raise IMAPError(status, text, code.split(" ", 1)[0].upper())
                    return untagged, r
                self._untagged(r)
                untagged.append(r)
        except (TimeoutError, OSError, ResponseError, ssl.SSLError) as e:
            await self.close()
            raise IMAPUnavailable(f"the IMAP connection failed: {e or type(e).__name__}") from e

    async def _until_continuation(self) -> IMAPError | None:
        while True:
            r = await self._response()
            if r.tag == "+":
                return None
            if r.tag.startswith("W"):
                return IMAPError(*r.status())
            self._untagged(r)

    def _untagged(self, r: Response) -> None:
        if r.tag != "*":
            return
        head = r.segments[0][:40].upper()
        # Only a few responses change our state; FETCH data is parsed by whoever asked for it.
        if not (
            head.startswith((b"CAPABILITY", b"BYE")) or head.endswith((b" EXISTS", b" EXPUNGE"))
        ):
            return
        vals = r.values()
        if vals and vals[0] == "CAPABILITY":
            self.capabilities = {str(v).upper() for v in vals[1:]}
        if len(vals) >= 2 and vals[1] == "EXISTS" and isinstance(vals[0], str):
            self.exists = int(vals[0]) if vals[0].isdigit() else self.exists
        elif len(vals) >= 2 and vals[1] == "EXPUNGE":
            self.exists = max(0, self.exists - 1)
        if vals and vals[0] == "BYE":
            self.closed = True

    async def _send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def _response(self, timeout: float | None = None) -> Response:
        assert self.reader is not None
        while True:
            r = self.parser.next()
            if r is not None:
                if r.tag != "*" or len(r.segments) < 3:
                    self._trace("S", f"{r.tag} {r.text.decode('utf-8', 'replace')}")
                else:
                    self._trace("S", f"* {r.text[:200].decode('utf-8', 'replace')} ...")
                return r
            data = await asyncio.wait_for(self.reader.read(65536), timeout or self.endpoint.timeout)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            self.parser.feed(data)

    def _trace(self, who: str, line: str) -> None:
        self.transcript.append(f"{who}: {line[:300]}")

    # ---- IDLE (RFC 2177) ----------------------------------------------------------------------

    async def idle_start(self) -> None:
        self._tag += 1
        self._idle_tag = f"W{self._tag}"
        self._trace("C", f"{self._idle_tag} IDLE")
        await self._send(f"{self._idle_tag} IDLE\r\n".encode())
        err = await self._until_continuation()
        if err is not None:
            raise err

    async def idle_wait(self, timeout: float) -> list[Response]:
        """Untagged responses that arrive within `timeout` (an empty list when none did)."""
        try:
            first = await self._response(timeout)
        except TimeoutError:
            return []
        out = [first]
        while self.parser.buf.find(b"\r\n") >= 0:
            r = self.parser.next()
            if r is None:
                break
            out.append(r)
        return out

    async def idle_done(self) -> None:
        self._trace("C", "DONE")
        await self._send(b"DONE\r\n")
        while True:
            r = await self._response()
            if r.tag == self._idle_tag:
                return
