"""Outbound SMTP with aiosmtplib: the queue's `Transport` (carteiro/queue/transport.py).

One call = one MAIL transaction at one hop: connect (or reuse an idle connection to the same hop),
EHLO (HELO when refused), STARTTLS per the hop's policy (RFC 3207), AUTH for a smarthost (RFC 4954),
then MAIL/RCPT/DATA with SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), REQUIRETLS
(RFC 8689) and DSN (RFC 3461) parameters. What the hop cannot take is refused here, before MAIL,
with a 5xx the queue turns into a bounce. Never raises for network trouble: returns a 4xx reply.
"""

from __future__ import annotations

import _ssl
import asyncio
import dataclasses
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from carteiro.net import dane
from carteiro.net.tls import client_context
from carteiro.queue.dsn import xtext_encode
from carteiro.queue.transport import Hop, Reply, SendResult, Transaction

log = logging.getLogger("carteiro.smtp.client")

PLAIN_FALLBACK_TIME = 3600.0  # after a failed opportunistic handshake, plain text for this long


@dataclass(eq=False)
class _Conn:
    smtp: aiosmtplib.SMTP
    hop: Hop
    created: float
    last_used: float
    tls: str = ""
    uses: int = 0
    local_ip: str = ""  # our end of the connection (TLS reports)


class _Reconnect(Exception):
    """A reused connection was found dead before the server said anything: open a new one."""


@dataclass
class ClientStats:
    connections: int = 0
    reused: int = 0
    transactions: int = 0
    tls_fallbacks: int = 0
    by_hop: dict[str, int] = field(default_factory=dict)


def _has_8bit(data: bytes) -> bool:
    return not data.isascii()


def _headers(data: bytes) -> bytes:
    i = data.find(b"\r\n\r\n")
    if i < 0:
        i = data.find(b"\n\n")
    return data if i < 0 else data[:i]


# NUL, a bare CR or LF, or a line over 998 octets (RFC 5321 4.5.3.1.6). The long-line branch
# starts only at a line's first octet: tried from every octet it cost ~500 steps per octet.
_BINARY_UNSAFE = re.compile(rb"\x00|\r(?!\n)|(?<!\r)\n|(?<![^\r\n])[^\r\n]{999}")


class SMTPClientTransport:
    def __init__(
        self,
        local_hostname: str,
        *,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
        idle_time: float = 5.0,
        max_reuse: int = 100,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local_hostname = local_hostname
        self.connect_timeout = connect_timeout
        # RFC 5321 4.5.3.2 wants 5 minutes for most replies and 10 for the end of data.
        self.command_timeout = command_timeout
        self.idle_time = idle_time  # Postfix caches connections for 2 s by default
        self.max_reuse = max_reuse
        self.max_age = max_age
        self.clock = clock
        self._idle: dict[tuple[object, ...], list[_Conn]] = {}
        self._plain_only: dict[tuple[str, int], float] = {}
        self._contexts: dict[tuple[bool, str], ssl.SSLContext] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.stats = ClientStats()

    # ---- the Transport Protocol -------------------------------------------------------------

    def has_idle(self, hop: Hop) -> bool:
        return bool(self._idle.get(hop.key))

    async def send(self, hop: Hop, txn: Transaction) -> SendResult:
        conn = self._take_idle(hop)
        if conn is not None:
            self.stats.reused += 1
            try:
                return dataclasses.replace(
                    await self._transaction(conn, txn, reused=True), reused=True
                )
            except _Reconnect:
                log.debug("smtp: idle connection to %s[%s] was gone", hop.host, hop.address)
        opened = await self._open(hop)
        if isinstance(opened, SendResult):
            return opened
        try:
            res = await self._transaction(opened, txn, reused=False)
            return res if res.tls else dataclasses.replace(res, local_ip=opened.local_ip)
        except _Reconnect:  # pragma: no cover - only raised for reused connections
            return SendResult(Reply(451, "4.4.2", "lost connection"), try_next=True)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        conns = [c for lst in self._idle.values() for c in lst]
        self._idle.clear()
        await asyncio.gather(*(self._quit(c) for c in conns), return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # ---- connections ------------------------------------------------------------------------

    def _context(self, verify: bool, cafile: str) -> ssl.SSLContext:
        key = (verify, cafile)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = client_context(verify=verify, cafile=cafile or None)
        return ctx

    def _take_idle(self, hop: Hop) -> _Conn | None:
        lst = self._idle.get(hop.key)
        now = self.clock()
        while lst:
            conn = lst.pop()
            if conn.smtp.is_connected and now - conn.last_used <= self.idle_time:
                if not lst:
                    self._idle.pop(hop.key, None)
                return conn
            self._discard(conn)
        self._idle.pop(hop.key, None)
        return None

    def _release(self, conn: _Conn) -> None:
        now = self.clock()
        if (
            not conn.smtp.is_connected
            or conn.uses >= self.max_reuse
            or now - conn.created >= self.max_age
        ):
            self._discard(conn)
            return
        conn.last_used = now
        self._idle.setdefault(conn.hop.key, []).append(conn)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while self._idle:
            await asyncio.sleep(max(self.idle_time / 2, 0.05))
            now = self.clock()
            for key in list(self._idle):
                keep = []
                for c in self._idle[key]:
                    if c.smtp.is_connected and now - c.last_used <= self.idle_time:
                        keep.append(c)
                    else:
                        self._discard(c)
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]

    def _discard(self, conn: _Conn) -> None:
        if not conn.smtp.is_connected:
            return
        task = asyncio.get_running_loop().create_task(self._quit(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _quit(self, conn: _Conn) -> None:
        try:
            if conn.smtp.is_connected:
                await conn.smtp.quit(timeout=5)
        except (TimeoutError, SMTPException, OSError) as e:
            log.debug("smtp: QUIT to %s: %s", conn.hop.host, e)
        finally:
            conn.smtp.close()

    def _where(self, hop: Hop) -> str:
        return f"{hop.host}[{hop.address}]:{hop.port}"

    def _required(self, hop: Hop) -> str:
        """Who requires TLS here, for a refusal's text: " (MTA-STS policy of d)" or nothing."""
        return f" ({hop.required_by})" if hop.required_by else ""

    async def _open(self, hop: Hop, plain: bool = False) -> _Conn | SendResult:
        now = self.clock()
        if not plain and hop.tls == "opportunistic" and not hop.verify:
            until = self._plain_only.get((hop.address, hop.port))
            plain = until is not None and until > now
        ctx = self._context(hop.verify, hop.cafile)
        implicit = hop.tls == "implicit"
        smtp = aiosmtplib.SMTP(
            # Implicit TLS checks the certificate against the name we connect to.
            hostname=hop.host if implicit and hop.verify else hop.address,
            port=hop.port,
            local_hostname=self.local_hostname,
            timeout=self.command_timeout,
            use_tls=implicit,
            start_tls=False,
            tls_context=ctx if implicit else None,
        )
        where = self._where(hop)
        try:
            await smtp.connect(timeout=self.connect_timeout)
        except SMTPConnectResponseError as e:
            # RFC 5321 3.1: a 554 (or 421) greeting; another MX may do better.
            return SendResult(Reply.parse(e.code, e.message), try_next=True, remote_said=True)
        except SMTPConnectTimeoutError:
            return SendResult(Reply(451, "4.4.1", f"connect to {where}: timed out"), try_next=True)
        except ssl.SSLError as e:
            return SendResult(
                Reply(451, "4.7.5", f"TLS with {where} failed: {e}{self._required(hop)}"),
                try_next=True,
            )
        except (SMTPException, OSError) as e:
            return SendResult(
                Reply(451, "4.4.1", f"connect to {where}: {_reason(e)}"), try_next=True
            )
        self.stats.connections += 1
        conn = _Conn(smtp, hop, now, now, local_ip=self._local_ip(smtp))
        err: SendResult | str | None
        try:
            err = await self._hello(conn)
            if err is None and not implicit and hop.tls != "none" and not plain:
                err = await self._starttls(conn)
                if err == "fallback":
                    smtp.close()
                    self.stats.tls_fallbacks += 1
                    self._plain_only[(hop.address, hop.port)] = now + PLAIN_FALLBACK_TIME
                    log.warning("smtp: TLS with %s failed; retrying in plain text", where)
                    return await self._open(hop, plain=True)
            if err is None and implicit:
                conn.tls = self._tls_version(smtp)
            if err is None and hop.username:
                err = await self._auth(conn)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            err = SendResult(
                Reply(451, "4.4.2", f"lost connection with {where}: {_reason(e)}"), try_next=True
            )
        if isinstance(err, SendResult):
            if err.session_error is not None and err.session_error.status in ("4.7.4", "4.7.5"):
                err = dataclasses.replace(err, local_ip=conn.local_ip)
            smtp.close()
            return err
        return conn

    def _local_ip(self, smtp: aiosmtplib.SMTP) -> str:
        try:
            name = smtp.get_transport_info("sockname")
        except (SMTPServerDisconnected, AttributeError):
            return ""
        return str(name[0]) if isinstance(name, tuple) and name else ""

    async def _hello(self, conn: _Conn) -> SendResult | None:
        smtp = conn.smtp
        try:
            await smtp.ehlo()
        except SMTPHeloError as e:
            # RFC 5321 4.1.4 / 3.2: a server that does not know EHLO gets HELO.
            if not smtp.is_connected or e.code not in (500, 501, 502, 504, 550):
                return SendResult(Reply.parse(e.code, e.message), try_next=True, remote_said=True)
            try:
                await smtp.helo()
            except SMTPResponseException as e2:
                return SendResult(Reply.parse(e2.code, e2.message), try_next=True, remote_said=True)
        return None

    def _tls_version(self, smtp: aiosmtplib.SMTP) -> str:
        try:
            obj = smtp.get_transport_info("ssl_object")
        except SMTPServerDisconnected:
            return ""
        return str(obj.version()) if obj is not None else ""

    async def _starttls(self, conn: _Conn) -> SendResult | str | None:
        hop, smtp = conn.hop, conn.smtp
        required = hop.tls == "starttls" or hop.verify
        where = self._where(hop)
        if not smtp.supports_extension("starttls"):
            if required:
                return SendResult(
                    Reply(
                        451,
                        "4.7.4",
                        f"TLS is required, but was not offered by {where}{self._required(hop)}",
                    ),
                    try_next=True,
                )
            return None
        try:
            await smtp.starttls(
                server_hostname=hop.host,
                tls_context=self._context(hop.verify, hop.cafile),
                timeout=self.connect_timeout,
            )
            if hop.tlsa:
                why = dane.verify(_peer_chain(smtp), hop.tlsa, hop.host)
                if why:
                    return SendResult(
                        Reply(451, "4.7.5", f"DANE: {where}: {why}{self._required(hop)}"),
                        try_next=True,
                    )
            # RFC 3207 4.2: forget what the server said before TLS and ask again.
            await smtp.ehlo()
        except (TimeoutError, ssl.SSLError, SMTPException, OSError) as e:
            if not required:
                return "fallback"
            return SendResult(
                Reply(451, "4.7.5", f"TLS with {where} failed: {_reason(e)}{self._required(hop)}"),
                try_next=True,
            )
        conn.tls = self._tls_version(smtp)
        return None

    async def _auth(self, conn: _Conn) -> SendResult | None:
        hop, smtp = conn.hop, conn.smtp
        where = self._where(hop)
        if not conn.tls and hop.tls != "none":
            # RFC 4954 4: no password over an unencrypted connection unless configured so.
            return SendResult(
                Reply(451, "4.7.0", f"not sending the password to {where} without TLS"),
                try_next=True,
            )
        try:
            await smtp.login(hop.username, hop.password)
        except SMTPAuthenticationError as e:
            # A refused login is our configuration's fault: keep the mail, retry later.
            return SendResult(
                Reply(451, "4.7.0", f"authentication at {where} failed: {e.code} {e.message}"),
                try_next=True,
            )
        except SMTPException as e:
            return SendResult(Reply(451, "4.7.0", f"authentication at {where}: {e}"), try_next=True)
        return None

    # ---- the transaction --------------------------------------------------------------------

    def _refuse(self, conn: _Conn, code: int, status: str, text: str) -> SendResult:
        # Nothing was sent: the connection is still good for other messages.
        self._release(conn)
        return SendResult(Reply(code, status, text))

    async def _transaction(self, conn: _Conn, txn: Transaction, reused: bool) -> SendResult:
        smtp, hop = conn.smtp, conn.hop
        where = self._where(hop)
        ext = smtp.esmtp_extensions
        size = len(txn.message)
        if "size" in ext and ext["size"].strip().isdigit():
            limit = int(ext["size"].strip())
            # RFC 1870 6: a declared limit of 0 means no fixed limit.
            if limit and size > limit:
                return self._refuse(
                    conn, 552, "5.3.4", f"message size {size} exceeds size limit {limit} of {where}"
                )
        eight_bit = _has_8bit(txn.message)
        mail_opts: list[bytes] = []
        if "size" in ext:
            mail_opts.append(f"SIZE={size}".encode())
        if txn.body == "BINARYMIME" and _BINARY_UNSAFE.search(txn.message):
            # We do not speak BDAT (RFC 3030), and DATA cannot carry this.
            return self._refuse(
                conn, 554, "5.6.3", f"binary content cannot be sent to {where} without CHUNKING"
            )
        if eight_bit:
            if "8bitmime" not in ext:
                # RFC 6152 3: no 8-bit data to a server that did not offer 8BITMIME; we do not
                # downgrade (it would break the DKIM signature), we bounce.
                return self._refuse(
                    conn, 554, "5.6.3", f"8-bit message, but {where} does not offer 8BITMIME"
                )
            mail_opts.append(b"BODY=8BITMIME")
        addrs_utf8 = not txn.mail_from.isascii() or any(
            not r.address.isascii() for r in txn.recipients
        )
        use_utf8 = False
        if txn.smtputf8 or addrs_utf8:
            needs = addrs_utf8 or not _headers(txn.message).isascii()
            if "smtputf8" in ext:
                use_utf8 = True
                mail_opts.append(b"SMTPUTF8")
            elif needs:
                # RFC 6531 3.2: an internationalised message is not sent to a server without
                # SMTPUTF8.
                return self._refuse(
                    conn, 550, "5.6.7", f"SMTPUTF8 is required, but was not offered by {where}"
                )
        if txn.requiretls:
            # RFC 8689 4.2.1: only over TLS, and only to a server offering REQUIRETLS.
            if not conn.tls or "requiretls" not in ext:
                return self._refuse(
                    conn, 550, "5.7.30", f"REQUIRETLS support required, not offered by {where}"
                )
            mail_opts.append(b"REQUIRETLS")
        dsn = "dsn" in ext
        if dsn:
            if txn.ret:
                mail_opts.append(f"RET={txn.ret}".encode())
            if txn.envid:
                mail_opts.append(f"ENVID={txn.envid}".encode())
        enc = "utf-8" if use_utf8 else "ascii"
        try:
            r = await smtp.execute_command(
                b"MAIL", b"FROM:<" + txn.mail_from.encode(enc) + b">", *mail_opts
            )
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            smtp.close()
            if reused:
                raise _Reconnect from e
            return SendResult(
                Reply(451, "4.4.2", f"lost connection with {where}: {_reason(e)}"), try_next=True
            )
        if r.code == 421 and reused:
            smtp.close()
            raise _Reconnect
        if r.code != 250:
            reply = Reply.parse(r.code, r.message)
            await self._rset_and_release(conn)
            # A temporary MAIL refusal is about this host: try the next MX (RFC 5321 5.1).
            return SendResult(reply, try_next=reply.temporary, remote_said=True, tls=conn.tls)
        replies: list[Reply] = []
        try:
            for rc in txn.recipients:
                rcpt_opts: list[bytes] = []
                if dsn and rc.notify:
                    rcpt_opts.append(("NOTIFY=" + ",".join(rc.notify)).encode())
                if dsn and rc.orcpt:
                    rcpt_opts.append(f"ORCPT={_orcpt(rc.orcpt)}".encode())
                r = await smtp.execute_command(
                    b"RCPT", b"TO:<" + rc.address.encode(enc) + b">", *rcpt_opts
                )
                replies.append(Reply.parse(r.code, r.message))
                if r.code == 421:
                    raise SMTPServerDisconnected(r.message)
            if not any(rep.ok for rep in replies):
                await self._rset_and_release(conn)
                return SendResult(recipients=tuple(replies), remote_dsn=dsn, tls=conn.tls)
            try:
                r = await smtp.data(txn.message)
                data_reply = Reply.parse(r.code, r.message)
            except SMTPDataError as e:
                data_reply = Reply.parse(e.code, e.message)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as e:
            smtp.close()
            return SendResult(
                Reply(451, "4.4.2", f"lost connection with {where}: {_reason(e)}"), try_next=True
            )
        self.stats.transactions += 1
        conn.uses += 1
        if data_reply.code == 421:
            smtp.close()
        self._release(conn)
        return SendResult(
            recipients=tuple(data_reply if rep.ok else rep for rep in replies),
            remote_dsn=dsn,
            tls=conn.tls,
        )

    async def _rset_and_release(self, conn: _Conn) -> None:
        try:
            if conn.smtp.is_connected:
                await conn.smtp.rset()
        except (SMTPException, OSError) as e:
            log.debug("smtp: RSET: %s", e)
            conn.smtp.close()
        self._release(conn)


def _orcpt(orcpt: str) -> str:
    """RFC 3461 4.2: ORCPT=addr-type;xtext. Passed on as received; encoded only when it is not
    already xtext."""
    atype, _, addr = orcpt.partition(";")
    if all("!" <= c <= "~" and c != "=" for c in addr):
        return f"{atype};{addr}"
    return f"{atype};{xtext_encode(addr)}"


def _peer_chain(smtp: aiosmtplib.SMTP) -> list[bytes]:
    """The certificates the server sent, its own first (DER), for DANE: Python 3.11's ssl
    module has the chain only on the object under SSLObject (public from 3.13)."""
    obj = smtp.get_transport_info("ssl_object")
    if obj is None:
        return []
    inner = getattr(obj, "_sslobj", None)
    get_chain = getattr(inner, "get_unverified_chain", None) or getattr(
        obj, "get_unverified_chain", None
    )
    if get_chain is not None:
        certs = get_chain() or []
        return [c.public_bytes(_ssl.ENCODING_DER) for c in certs]
    leaf = obj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__
