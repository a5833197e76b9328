"""An asyncio ManageSieve client (RFC 5804) for the webmail's filter settings: STARTTLS (or
implicit TLS), AUTHENTICATE PLAIN with the user's own credentials, and the script commands. It
reads the server's answers with the sans-IO tokenizer of proto/managesieve, so it works against
any ManageSieve server (carteiro's, Dovecot Pigeonhole). One connection per page request.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from types import TracebackType

from carteiro.proto.managesieve import Atom, Line, LineError, NeedData, Receiver, string
from carteiro.web.imap import Endpoint

MAX_SCRIPT = 1 << 20  # what we accept back from GETSCRIPT


class SieveUnavailable(Exception):
    """The ManageSieve server cannot be reached, refused TLS, or dropped the connection."""


class SieveAuthFailed(Exception):
    """AUTHENTICATE was refused (the session's password no longer works here)."""


class SieveNo(Exception):
    """A NO answer: the server's human-readable text and response code (RFC 5804 1.3)."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True)
class Answer:
    lines: list[tuple[object, ...]]  # the data lines before OK
    code: str
    text: str


def _text(tok: object) -> str:
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "replace")
    if isinstance(tok, Atom):
        return tok.value
    return str(tok)


class ManageSieve:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.receiver = Receiver(max_line=64 * 1024, max_literal=MAX_SCRIPT + 1024)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.capabilities: dict[str, str] = {}

    @classmethod
    async def login(cls, endpoint: Endpoint, user: str, password: str) -> ManageSieve:
        c = cls(endpoint)
        try:
            await c._connect()
            await c._authenticate(user, password)
        except BaseException:
            await c.close()
            raise
        return c

    async def __aenter__(self) -> ManageSieve:
        return self

    async def __aexit__(
        self,
        t: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if t is None:
            try:
                await self._command(b"LOGOUT")
            except (SieveNo, SieveUnavailable):
                pass
        await self.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (OSError, TimeoutError, asyncio.CancelledError):
                pass
            self.writer = None

    # ---- wire ---------------------------------------------------------------------------------

    async def _connect(self) -> None:
        ep = self.endpoint
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    ep.host, ep.port, ssl=ep.ssl_context() if ep.tls == "implicit" else None
                ),
                ep.timeout,
            )
        except (OSError, TimeoutError) as e:
            raise SieveUnavailable(f"cannot reach {ep.host}:{ep.port}: {e}") from e
        # RFC 5804 1.7: the greeting is the capability list
        self._caps(await self._answer())
        if ep.tls == "starttls":
            if "STARTTLS" not in self.capabilities:
                raise SieveUnavailable("the ManageSieve server does not offer STARTTLS")
            await self._command(b"STARTTLS")
            assert self.writer is not None
            try:
                await asyncio.wait_for(
                    self.writer.start_tls(ep.ssl_context(), server_hostname=ep.host), ep.timeout
                )
            except (OSError, TimeoutError) as e:
                raise SieveUnavailable(f"TLS with {ep.host}:{ep.port} failed: {e}") from e
            self.receiver.clear()
            # RFC 5804 2.2: the server sends the capabilities again over TLS
            self._caps(await self._answer())

    def _caps(self, a: Answer) -> None:
        self.capabilities = {}
        for line in a.lines:
            if line:
                name = _text(line[0]).upper()
                self.capabilities[name] = _text(line[1]) if len(line) > 1 else ""

    async def _authenticate(self, user: str, password: str) -> None:
        mechs = self.capabilities.get("SASL", "").upper().split()
        if "PLAIN" not in mechs:
            raise SieveUnavailable("the ManageSieve server offers no SASL PLAIN")
        # RFC 4616: authzid NUL authcid NUL passwd, as the initial response (RFC 5804 2.1)
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        try:
            await self._command(b'AUTHENTICATE "PLAIN" ' + string(token))
        except SieveNo as e:
            raise SieveAuthFailed(e.text) from e

    async def _command(self, line: bytes, literal: bytes | None = None) -> Answer:
        if self.writer is None:
            raise SieveUnavailable("not connected")
        data = line
        if literal is not None:
            # RFC 5804 4: a non-synchronizing literal; every server must accept {n+}
            data += b" {%d+}\r\n" % len(literal) + literal
        self.writer.write(data + b"\r\n")
        try:
            await self.writer.drain()
        except OSError as e:
            raise SieveUnavailable(f"the ManageSieve server dropped the connection: {e}") from e
        return await self._answer()

    async def _answer(self) -> Answer:
        """Data lines up to OK (returned), NO (raised) or BYE (the connection ends)."""
        lines: list[tuple[object, ...]] = []
        while True:
            ev = self.receiver.next_event()
            if isinstance(ev, NeedData):
                assert self.reader is not None
                try:
                    got = await asyncio.wait_for(self.reader.read(65536), self.endpoint.timeout)
                except (OSError, TimeoutError) as e:
                    raise SieveUnavailable(f"the ManageSieve server did not answer: {e}") from e
                if not got:
                    raise SieveUnavailable("the ManageSieve server closed the connection")
                self.receiver.receive_data(got)
                continue
            if isinstance(ev, LineError):
                raise SieveUnavailable(
                    f"unreadable answer from the ManageSieve server: {ev.reason}"
                )
            assert isinstance(ev, Line)
            toks = ev.tokens
            if toks and isinstance(toks[0], Atom) and toks[0].value in ("OK", "NO", "BYE"):
                code, text = _code_and_text(toks[1:])
                if toks[0].value == "OK":
                    return Answer(lines, code, text)
                if toks[0].value == "NO":
                    raise SieveNo(text or "refused", code)
                await self.close()
                raise SieveUnavailable(f"the ManageSieve server ended the session: {text}")
            lines.append(toks)

    # ---- commands (RFC 5804 2.3-2.11) ---------------------------------------------------------

    async def list_scripts(self) -> list[tuple[str, bool]]:
        a = await self._command(b"LISTSCRIPTS")
        out = []
        for line in a.lines:
            if line and isinstance(line[0], bytes):
                active = len(line) > 1 and _text(line[1]).upper() == "ACTIVE"
                out.append((_text(line[0]), active))
        return out

    async def get_script(self, name: str) -> str:
        a = await self._command(b"GETSCRIPT " + string(name))
        for line in a.lines:
            if line and isinstance(line[0], bytes):
                return line[0].decode("utf-8", "replace")
        return ""

    async def put_script(self, name: str, text: str) -> str:
        """Store the script (the server checks it first); the OK's text may carry warnings."""
        a = await self._command(b"PUTSCRIPT " + string(name), text.encode("utf-8"))
        return a.text if a.code.upper() == "WARNINGS" else ""

    async def check_script(self, text: str) -> str:
        a = await self._command(b"CHECKSCRIPT", text.encode("utf-8"))
        return a.text if a.code.upper() == "WARNINGS" else ""

    async def set_active(self, name: str) -> None:
        """An empty name deactivates every script (RFC 5804 2.8)."""
        await self._command(b"SETACTIVE " + string(name))

    async def delete_script(self, name: str) -> None:
        await self._command(b"DELETESCRIPT " + string(name))


def _code_and_text(toks: tuple[object, ...]) -> tuple[str, str]:
    """`(CODE ...) "text"`: the tokenizer sees "(CODE" and ")" as atoms, any string between."""
    code = ""
    i = 0
    if toks and isinstance(toks[0], Atom) and toks[0].value.startswith("("):
        parts = []
        while i < len(toks):
            t = _text(toks[i])
            parts.append(t)
            i += 1
            if t.endswith(")"):
                break
        code = " ".join(parts).strip("() ").split(" ")[0]
    text = next((_text(t) for t in toks[i:] if isinstance(t, bytes)), "")
    return code, text


__all__ = ["ManageSieve", "SieveAuthFailed", "SieveNo", "SieveUnavailable"]
