"""The SMTP server: listeners for the MX (`smtp`), `submission` (STARTTLS + AUTH) and `submissions`
(implicit TLS, RFC 8314) roles, and one session per connection over the sans-IO machine.

The session is policy: who may relay (authenticated users and [smtp] relay_networks only, never an
open relay), who a recipient is (aliases, catch-all, plus-addressing through mail.deliver), which
sender an authenticated user may use. Message data streams to a temp file and is acknowledged only
once delivered to the store or spooled for the queue, both durable. Replies are written in batches
(RFC 2920): flushed when the machine needs more input.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import ipaddress
import logging
import os
import shutil
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteiro.core.address import AddressError, parse_address
from carteiro.core.nexthop import address_entry, is_lmtp_address, is_lmtp_domain, transport_table
from carteiro.core.ratelimit import RateLimiter
from carteiro.directory.accounts import Resolution
from carteiro.directory.throttle import Refused
from carteiro.mail.deliver import DeliveryError, LocalDelivery, Target
from carteiro.mailauth.arc import Sealer
from carteiro.mailauth.dkim_keys import key_path
from carteiro.mailauth.greylist import Greylist
from carteiro.net.listener import Connection, Listener
from carteiro.net.trace import Tracer
from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply, multiline
from carteiro.proto.smtp.server import (
    AuthLine,
    BodyData,
    ChunkEnd,
    ConnectionClosed,
    DataEnd,
    Event,
    Invalid,
    Limits,
    Mode,
    NeedData,
    ServerMachine,
)
from carteiro.queue import dsn
from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.servers.context import ServerContext, sieve_filter, spool_outbound
from carteiro.servers.smtp.auth import SaslExchange, mechanisms
from carteiro.servers.smtp.authcheck import Rewritten, SessionChecks, in_networks, rewrite
from carteiro.servers.smtp.message import (
    HEAD_MAX,
    DateCache,
    MessageWriter,
    clean_tmp,
    header_end,
    header_names,
    new_id,
    received_header,
    return_path,
    with_protocol,
    without_prefix,
)
from carteiro.servers.storage_errors import log_storage_full, storage_full

log = logging.getLogger("carteiro.smtp")

ROLES = ("smtp", "submission", "submissions")
SUBMISSION_ROLES = ("submission", "submissions")  # RFC 6409: AUTH first; missing fields added
READ_SIZE = 256 * 1024
FLUSH_AT = 64 * 1024  # write pending replies once this much is waiting, even mid-pipeline
# After closing on a client that is still sending (mid-data), read and drop its input this long
# first: closing with unread input sends a TCP reset, which can destroy our last reply unread.
LINGER_TIME = 2.0
LINGER_MAX = 4 * 1024 * 1024
PEER_CACHE_MAX = 4096  # client addresses whose network membership is remembered
# (plain names: `Mode.DATA` costs five times a global on Python 3.11, and read() runs per command)
_DATA, _CHUNK, _CLOSED = Mode.DATA, Mode.CHUNK, Mode.CLOSED
# 4xx replies that are no error of the client's (SMTPConfig.max_errors): the server's trouble
# (4.3.x; its DNS lookups for SPF, reverse DNS and DMARC failing for now: 4.7.24, 4.7.25,
# 4.4.3), a full mailbox (4.2.2), and 452 4.5.3, which asks for the rest of the recipients in
# another transaction (RFC 5321 4.5.3.1.10), which a bulk sender's pipelined RCPTs can meet often
_UNCHARGED = frozenset(
    {"4.3.0", "4.3.1", "4.3.2", "4.3.5", "4.4.3", "4.7.24", "4.7.25", "4.2.2", "4.5.3"}
)
# commands never refused for what they are, counted towards max_junk_commands (Session._junk)
_JUNK = (C.Helo, C.Rset, C.Noop, C.Help, C.Vrfy, C.Expn, C.Etrn)

# the metrics' names of the commands every session sends (others: the class name, upper-cased)
_NAMES: dict[type, str] = {C.Helo: "HELO", C.Quit: "QUIT", C.Rset: "RSET", C.Noop: "NOOP"}


@dataclass
class Recipient:
    address: str  # as accepted (postmaster resolved to a domain)
    notify: tuple[str, ...]
    orcpt: str | None
    local: tuple[tuple[str, str], ...]  # (account, detail)
    remote: tuple[str, ...]


@dataclass
class Transaction:
    mail: C.Mail
    id: str = field(default_factory=new_id)
    recipients: list[Recipient] = field(default_factory=list)
    writer: MessageWriter | None = None
    return_path_len: int = 0
    failed: Reply | None = None  # writing the message failed: the end of data gets this
    started: float = field(default_factory=time.time)
    # of the client's data as received: with the envelope it names this delivery, so that a
    # client resending after a lost 250 (or our crash before it) gets no second copy
    digest: Any = field(default_factory=hashlib.sha256)
    head: bytearray | None = field(default_factory=bytearray)  # until the header section ends
    has_message_id: bool = False
    keep_head: bool = False  # submission: the header section is kept to check From
    header_block: bytes | None = None
    list_recipients: list[str] = field(default_factory=list)  # mailing list addresses
    header: bytes | None = None  # the header section, kept when a list is a recipient

    def note_body(self, data: bytes) -> None:
        self.digest.update(data)
        head = self.head
        if head is None:
            return
        if not head:
            # the first piece (usually the whole header section): looked at where it is, not
            # copied (it is the whole message, or 64 KB of one)
            end = header_end(data)
            if end >= 0:
                self.head = None
                self._header(data[:end])
            elif len(data) > HEAD_MAX:
                self.head = None
            else:
                head += data
            return
        head += data
        end = header_end(head)
        if end >= 0 or len(head) > HEAD_MAX:
            self.head = None
            if end >= 0:
                self._header(bytes(head[:end]))

    def _header(self, block: bytes) -> None:
        self.has_message_id = b"message-id" in header_names(block)
        if self.keep_head:
            self.header_block = block
        if self.list_recipients:
            self.header = block

    def delivery_id(self) -> str | None:
        """Names this delivery when the message can be told apart from another: it carries a
        Message-ID (RFC 5322 3.6.4; our own, added at submission, does not count: it is new each
        time). A message without one (a test script's fixed text sent twice) is never merged."""
        if not self.has_message_id:
            return None
        h = hashlib.sha256(b"carteiro-delivery\0")
        h.update(self.mail.reverse_path.encode("utf-8", "surrogateescape"))
        for address in sorted({r.address for r in self.recipients}):
            h.update(b"\0" + address.encode("utf-8", "surrogateescape"))
        h.update(b"\0" + self.digest.digest())
        return h.hexdigest()[:40]

    @property
    def has_local(self) -> bool:
        return any(r.local for r in self.recipients)


class SMTPServer:
    """Shared by every session of every SMTP listener in this process."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.cfg = cfg.smtp
        self.hostname = cfg.hostname
        self.limits = Limits(
            max_line_length=cfg.smtp.max_line_length,
            max_message_size=cfg.smtp.max_message_size,
            max_recipients=cfg.smtp.max_recipients,
            bare_newline=cfg.smtp.bare_newline,
        )
        self.relay_networks = [
            ipaddress.ip_network(n, strict=False) for n in cfg.smtp.relay_networks
        ]
        self.checker = ctx.mailauth
        self.authserv_id = cfg.mailauth.authserv_id or cfg.hostname
        self.auth_ignore = [
            ipaddress.ip_network(n, strict=False) for n in cfg.mailauth.ignore_networks
        ]
        self.sealer: Sealer | None = None
        if self.checker is not None and cfg.mailauth.arc_seal:
            first = cfg.domains or ctx.directory.domains()
            if first:
                self.sealer = self._sealer(first[0], cfg.dkim.selector)
        lim = cfg.limits
        self.limits_cfg = lim
        self.greylist = (
            Greylist(cfg.data_dir, lim.greylist_delay)
            if lim.greylist and self.checker is not None
            else None
        )
        # the counters outlive a reload (SIGHUP): only their limits change
        self.connections_per_ip = self._limiter(
            "connections_per_ip", lim.connections_per_minute_per_ip
        )
        self.messages_per_ip = self._limiter("messages_per_ip", lim.messages_per_minute_per_ip)
        self.recipients_per_ip = self._limiter(
            "recipients_per_ip", lim.recipients_per_minute_per_ip
        )
        self.messages_per_user = self._limiter(
            "messages_per_user", lim.messages_per_minute_per_user
        )
        self.recipients_per_user = self._limiter(
            "recipients_per_user", lim.recipients_per_minute_per_user
        )
        # domains handed over LMTP (an external Mailman 3): accepted for anyone, like held ones
        self.transport = transport_table(cfg.transport)
        self.tmp_dir = cfg.data_dir / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        clean_tmp(self.tmp_dir, older_than=3600.0)  # ours, left by a crash
        self.delivery = LocalDelivery(
            ctx.store,
            ctx.directory,
            cfg.path(cfg.smtp.mbox_dir),
            plus_folders=cfg.smtp.plus_folder_delivery,
            mbox_lock_timeout=cfg.smtp.mbox_lock_timeout,
            sieve=sieve_filter(cfg),
            outbound=spool_outbound(ctx.spool),
        )
        self.trace = ctx.tracing("smtp")
        m = ctx.metrics
        # the label children each accepted message counts (labels() takes a lock and a lookup)
        self.sent_local = m.deliveries.labels("sent", "local")
        self.local_seconds = m.delivery_seconds.labels("local")
        self.received: dict[str, Any] = {}  # by role (LMTP and ODMR sessions are ours too)
        self.dates = DateCache()
        # RFC 5321 4.3.1: no enhanced code in the greeting
        self.greeting = Reply(220, "", f"{self.hostname} ESMTP carteiro")
        self._ehlo: dict[tuple[bool, bool, bool], tuple[str, ...]] = {}
        self._peers: dict[str, tuple[bool, bool]] = {}  # peer_class() answers
        self.idle: set[Session] = set()  # sessions waiting for a command (closed at shutdown)
        self._watcher: asyncio.Task[None] | None = None

    def _sealer(self, domain: str, selector: str) -> Sealer | None:
        """One ARC sealer per key file for every server and reload: loading an RSA key costs
        ~80 ms of CPU (OpenSSL checks it), which a reload must not spend on the event loop for
        each SMTP, LMTP and ODMR server. A key file replaced since is loaded again."""
        path = key_path(self.ctx.config.data_dir, domain, selector)
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            stamp = 0
        data_dir, authserv_id = self.ctx.config.data_dir, self.authserv_id
        return self.ctx.keep(
            f"arc.sealer {path} {stamp} {authserv_id}",
            lambda: Sealer.for_domain(data_dir, domain, selector, authserv_id),
        )

    def _limiter(self, name: str, limit: int) -> RateLimiter:
        limiter = self.ctx.keep(f"{type(self).__name__}.{name}", lambda: RateLimiter(limit))
        limiter.limit = limit
        return limiter

    async def _close_idle_at_shutdown(self) -> None:
        await self.ctx.shutdown.wait()
        for session in list(self.idle):
            session.shutdown_now()

    def peer_class(self, ip: str) -> tuple[bool, bool]:
        """(in relay_networks, in mailauth's ignore_networks) of a client address, remembered:
        parsing the address and testing each network costs ~20 us a connection, and a busy
        MX sees the same few peers again and again. Both lists are fixed for this object."""
        known = self._peers.get(ip)
        if known is None:
            if len(self._peers) >= PEER_CACHE_MAX:
                self._peers.clear()
            known = self._peers[ip] = (
                self.in_relay_networks(ip),
                in_networks(ip, self.auth_ignore),
            )
        return known

    def in_relay_networks(self, ip: str) -> bool:
        if not self.relay_networks:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.relay_networks)

    def ehlo_keywords(self, starttls: bool, auth: bool, etrn: bool = False) -> tuple[str, ...]:
        """The EHLO keywords (the same tuple each time, so its rendering is remembered)."""
        known = self._ehlo.get((starttls, auth, etrn))
        if known is not None:
            return known
        ext = [
            "PIPELINING",
            f"SIZE {self.cfg.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "DSN",
        ]
        if etrn:
            ext.append("ETRN")  # RFC 1985
        if starttls:
            ext.append("STARTTLS")
        if auth:
            ext.append("AUTH " + " ".join(mechanisms()))
        ext.append("HELP")
        known = self._ehlo[starttls, auth, etrn] = tuple(ext)
        return known

    def postmaster(self) -> str:
        domains = self.ctx.config.domains or self.ctx.directory.domains()
        return f"postmaster@{domains[0] if domains else self.hostname}"

    async def handle(self, conn: Connection) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._close_idle_at_shutdown())
        await Session(self, conn).run()


def listeners(ctx: ServerContext) -> list[Listener]:
    server = SMTPServer(ctx)
    cfg = ctx.config
    out: list[Listener] = []
    for role in ROLES:
        address = getattr(cfg.listen, role)
        if not address:
            continue
        out.append(
            Listener(
                role,
                address,
                server.handle,
                ssl_context=ctx.tls if role == "submissions" else None,
                max_connections=cfg.smtp.max_connections,
                max_per_ip=cfg.smtp.max_connections_per_ip,
                refuse=_refuse,
            )
        )
    return out


async def _refuse(writer: asyncio.StreamWriter, ip: str) -> None:
    writer.write(R.R_421_TOO_MANY_CONNECTIONS.render())
    await writer.drain()


class Session:
    PROTOCOL = "smtp"  # names the session in transcripts (--trace)

    def __init__(self, server: SMTPServer, conn: Connection) -> None:
        self.server = server
        self.ctx = server.ctx
        self.cfg = server.cfg
        self.conn = conn
        self.role = conn.service
        self.machine = ServerMachine(server.limits, tls=conn.tls is not None)
        self.tracer = Tracer(
            self.PROTOCOL,
            server.trace,
            f"[{conn.peer_ip}]:{conn.peer_port} on {self.role}" if server.trace else "",
        )
        self.out: list[bytes] = []
        self.out_size = 0
        self.errors = 0
        self.junk = 0  # NOOP, RSET, ... (see _junk)
        self.auth_user: str | None = None
        self.sasl: SaslExchange | None = None
        self.txn: Transaction | None = None
        self.relay_client, ignored = server.peer_class(conn.peer_ip)
        # Mail authentication on the MX role for clients that are not ours (docs/mailauth.md)
        self.checks: SessionChecks | None = None
        ours = self.relay_client or ignored
        self.limit_ip = not ours  # per-address rate limits (authenticated: per account)
        if server.checker is not None and self.role == "smtp" and not ours:
            self.checks = SessionChecks(
                server.checker, conn.peer_ip, self.ctx.dmarc_recorder, server.greylist
            )
        self.metrics = server.ctx.metrics
        self.done = False
        self.data_deadline: float | None = None  # loop time by which the content must be in
        self.linger = False  # closing while the client still sends message data
        # One lazy timer per session instead of asyncio.timeout() per read (a timer armed and
        # cancelled twice per message): it fires at the expiry it was armed for; if the session
        # read since, it re-arms for the new expiry, else it cancels the waiting read.
        self._task: asyncio.Task[object] | None = None  # the task running the session
        self._reading: asyncio.Task[object] | None = None  # our task, while it waits in read()
        self._expires = 0.0  # loop time at which the pending read times out
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's loop, once running

    # ---- I/O ----------------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        self.metrics.reply("smtp", str(reply.code))
        data = self.machine.send(reply)
        if self.tracer.enabled:
            self.tracer.server(data)
        self.out.append(data)
        self.out_size += len(data)
        code = reply.code
        if code >= 500 or (code >= 400 and code != 421 and reply.status not in _UNCHARGED):
            self._charge()
        if self.machine.mode is _CLOSED:
            self.done = True

    def _charge(self) -> None:
        """One more error in this session (SMTPConfig.max_errors says which): at the limit,
        421 and close."""
        self.errors += 1
        if self.errors >= self.cfg.max_errors and not self.machine.closed:
            # (one line an operator's fail2ban can match, as Postfix's "too many errors after")
            word = self.machine.last_line.split(b" ", 1)[0][:16]
            log.info(
                "smtp [%s]: too many errors after %s; closing",
                self.conn.peer_ip,
                "".join(chr(c) if chr(c).isalnum() else "?" for c in word),  # (a client's bytes)
            )
            self.reply(R.R_421_TOO_MANY_ERRORS)

    def _junk(self) -> None:
        """A command that is never refused for what it is (NOOP, RSET, HELP, VRFY, EXPN, ETRN,
        HELO/EHLO): past max_junk_commands each counts as an error, after its reply, as in
        Postfix (smtpd_junk_command_limit), so that they cannot hold a session for ever."""
        self.junk += 1
        limit = self.cfg.max_junk_commands
        if limit and self.junk > limit and not self.machine.closed:
            self._charge()

    async def flush(self) -> None:
        if self.out and self._write_out():
            await self._drain()

    def _write_out(self) -> bool:
        """Hand the pending replies to the transport; True when its buffer is over the limit
        (the client does not read): then drain before reading on. (Not a coroutine: the loop
        calls it before each read, and a coroutine call costs more than the write's Python.)"""
        out = self.out
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        self.out_size = 0
        writer = self.conn.writer
        writer.write(data)
        transport = writer.transport
        buffered = transport.get_write_buffer_size()  # (0 but for a slow reader)
        return bool(buffered) and buffered > transport.get_write_buffer_limits()[1]

    async def _drain(self) -> None:
        # a client that never reads its replies must not hold the session forever
        async with asyncio.timeout(self.cfg.idle_timeout):
            await self.conn.writer.drain()

    async def read(self) -> bytes | None:
        mode = self.machine.mode
        in_data = mode is _DATA or mode is _CHUNK
        if not in_data and self.ctx.shutdown.is_set():
            self.reply(R.R_421_SHUTDOWN)  # RFC 5321 3.8: 421 when the service is going away
            return None
        timeout = self.cfg.data_timeout if in_data else self.cfg.idle_timeout
        # One deadline for the whole content of a message (DATA to its end, or the first BDAT
        # to LAST, commands between chunks included): a per-read timeout alone lets a sender
        # that trickles, or one that streams discarded data, hold the session for ever.
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        if self.machine.body_kind is None:
            self.data_deadline = None
        elif self.data_deadline is None:
            self.data_deadline = now + self.cfg.data_deadline
        deadline = self.data_deadline
        by_deadline = False  # the deadline comes before the per-read timeout
        if deadline is not None:
            if deadline <= now:
                self._data_too_slow()
                return None
            if deadline - now < timeout:
                timeout, by_deadline = deadline - now, True
        self._expires = expires = now + timeout
        timer = self._timer
        if timer is None or timer.when() > expires:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(expires, self._read_timer)
        if not in_data:
            self.server.idle.add(self)
        task = self._task
        self._reading = task
        try:
            return await self.conn.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            # ours (the timer's) only when nobody else cancelled the task as well
            if not self._timed_out or task is None or task.uncancel() > 0:
                raise
            if by_deadline:
                self._data_too_slow()
                return None
            # RFC 5321 4.5.3.2.7: the server may close after its timeout, with 421
            self.tracer.note("timeout")
            self.reply(R.R_421_TIMEOUT)
            return None
        finally:
            self._reading = None
            self._timed_out = False
            self.server.idle.discard(self)

    def _read_timer(self) -> None:
        self._timer = None
        task = self._reading
        if task is None:
            return  # not reading: the next read() arms the timer again
        loop = asyncio.get_running_loop()
        if self._expires - loop.time() > 0.001:  # read since: its expiry is later
            self._timer = loop.call_at(self._expires, self._read_timer)
            return
        self._timed_out = True
        task.cancel()

    async def _linger(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if self.conn.writer.can_write_eof():
                self.conn.writer.write_eof()  # FIN after the reply: the client sees it, then EOF
        dropped = 0
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(LINGER_TIME):
                while dropped < LINGER_MAX:
                    data = await self.conn.reader.read(READ_SIZE)
                    if not data:
                        break
                    dropped += len(data)

    def _data_too_slow(self) -> None:
        # RFC 5321 4.5.3.2: closing after a timeout, with 421 (temporary: the client may try
        # again, perhaps over a better path)
        self.tracer.note(f"message data not complete after {self.cfg.data_deadline:g} s")
        self.linger = True
        self.reply(R.R_421_DATA_DEADLINE)

    def shutdown_now(self) -> None:
        """The server is stopping and this session waits for a command: say 421 and close; the
        pending read then ends."""
        if self.machine.closed:
            return
        self.tracer.note("server shutting down")
        with contextlib.suppress(Exception):
            self.conn.writer.write(self.machine.send(R.R_421_SHUTDOWN))
            self.conn.writer.close()
        self.done = True

    async def run(self) -> None:
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        try:
            if self.limit_ip and not self.server.connections_per_ip.allow(self.conn.peer_ip):
                log.warning(
                    "smtp [%s]: over %d connections a minute; refused",
                    self.conn.peer_ip,
                    self.server.connections_per_ip.limit,
                )
                self.reply(R.R_421_CONNECTION_RATE)
                await self.flush()
                return
            if self.checks is not None and not await self._pregreet_ok():
                await self.flush()
                return
            self.reply(self.server.greeting)
            machine = self.machine
            conn = self.conn
            while not self.done:
                ev = machine.next_event()
                if isinstance(ev, NeedData):
                    if self.out and self._write_out():
                        await self._drain()
                    data = await self.read()
                    if data is None:
                        break
                    machine.receive_data(data)
                    continue
                await self.handle(ev)
                if self.out_size >= FLUSH_AT:
                    await self.flush()
                if conn.turn_over():  # a pipelined flood: let the other sessions run
                    await conn.yield_turn()
            await self.flush()
            if self.linger:
                self._abort_transaction()  # its temp file goes now, not after the linger
                await self._linger()
        except asyncio.CancelledError:
            # Shutdown past the grace period: say so if we can, without waiting.
            with contextlib.suppress(Exception):
                if not self.machine.closed:
                    self.conn.writer.write(R.R_421_SHUTDOWN.render())
            raise
        finally:
            if self._timer is not None:
                self._timer.cancel()  # it holds the session: let it go with the connection
                self._timer = None
            self._abort_transaction()
            if self.checks is not None:
                self.checks.close()
            self.tracer.note("closed")

    async def _pregreet_ok(self) -> bool:
        """RFC 5321 4.3.1: the client waits for the greeting. One that talks first is a bot
        that does not (postscreen's pregreet test): refused, and logged."""
        wait = self.server.limits_cfg.pregreet_wait
        if wait <= 0:
            return True
        try:
            data = await asyncio.wait_for(self.conn.reader.read(READ_SIZE), wait)
        except TimeoutError:
            return True
        if not data:
            self.done = True
            return False
        log.warning("smtp [%s]: talked before the greeting; refused", self.conn.peer_ip)
        self.tracer.note(f"client sent {len(data)} octets before the greeting")
        self.reply(R.R_554_PREGREET)
        self.done = True
        return False

    def _rate_refusal(self, kind: str) -> Reply | None:
        """Messages (at MAIL) or recipients (at RCPT) per minute, per account when
        authenticated, else per client address; over the limit: 451 4.7.1, logged."""
        server = self.server
        if self.auth_user is not None:
            limiter = server.messages_per_user if kind == "messages" else server.recipients_per_user
            key = self.auth_user
        elif self.limit_ip:
            limiter = server.messages_per_ip if kind == "messages" else server.recipients_per_ip
            key = self.conn.peer_ip
        else:
            return None
        if limiter.allow(key):
            return None
        log.warning("smtp: %s over %d %s a minute; refused for now", key, limiter.limit, kind)
        return Reply(451, "4.7.1", f"Too many {kind} from you; try again later")

    # ---- events -------------------------------------------------------------------------------

    async def handle(self, ev: Event) -> None:
        kind = type(ev)
        if self.checks is not None and (kind is C.Mail or kind is C.Rcpt):
            if isinstance(ev, C.Rcpt):
                grey = self.server.greylist is not None and self._deliverable(ev.forward_path)
                refusal = await self.checks.rcpt_refusal(ev.forward_path, grey)
            else:
                refusal = await self.checks.mail_refusal()
            if refusal is not None:
                self.tracer.client(self.machine.last_line)
                log.info(
                    "smtp [%s]: %s refused: %s", self.conn.peer_ip, kind.__name__, refusal.text
                )
                self.reply(Reply(refusal.code, refusal.status, refusal.text))
                return
        if kind is C.Mail or kind is C.Rcpt or kind is C.Data:
            # the commands of every message, straight to their handler (the chains below and
            # in _command cost ~30 isinstance tests per message)
            if self.tracer.enabled:
                self.tracer.client(self.machine.last_line)
            self.metrics.command("smtp", kind.__name__.upper())
            if isinstance(ev, C.Mail):
                self._mail(ev)
            elif isinstance(ev, C.Rcpt):
                self._rcpt(ev)
            else:
                self._data()
        elif isinstance(ev, BodyData):
            self._body(ev.data)
        elif isinstance(ev, DataEnd):
            self.tracer.note(f"<{ev.size} octets of message data>")
            await self._end_of_data(ev.problem)
        elif isinstance(ev, ConnectionClosed):
            self.tracer.note("client closed the connection")
            self.done = True
        elif isinstance(ev, Invalid):
            if self.machine.mode in (Mode.DATA, Mode.CHUNK):
                self.tracer.note("too much message data past the size limit")
                self.linger = ev.fatal
            else:
                self.tracer.client(self.machine.last_line)
            if self.sasl is not None:
                self.sasl = None
            self.reply(ev.reply)
            if ev.fatal and not self.machine.closed:
                self.done = True
        elif isinstance(ev, AuthLine):
            self.tracer.mask_next_client_line()
            self.tracer.client(ev.data)
            await self._auth_step(ev.data)
        elif isinstance(ev, ChunkEnd):
            self.tracer.client(self.machine.last_line)
            self.tracer.note(f"<BDAT chunk of {ev.size} octets>")
            self.metrics.command("smtp", "BDAT")
            await self._chunk_end(ev)
        else:
            if self.tracer.enabled:
                self.tracer.client(self.machine.last_line, secret=isinstance(ev, C.Auth))
            self.metrics.command("smtp", _NAMES.get(kind) or kind.__name__.upper())
            await self._command(ev)

    async def _command(self, cmd: C.Command) -> None:
        if isinstance(cmd, C.Helo):
            self._helo(cmd)
        elif isinstance(cmd, C.Quit):
            self.reply(R.R_221_BYE)
        elif isinstance(cmd, C.Rset):
            self._abort_transaction()
            self.reply(R.R_250_RESET)
        elif isinstance(cmd, C.Mail):
            self._mail(cmd)
        elif isinstance(cmd, C.Rcpt):
            self._rcpt(cmd)
        elif isinstance(cmd, C.Data):
            self._data()
        elif isinstance(cmd, C.Noop):
            self.reply(R.R_250_OK)
        elif isinstance(cmd, C.Help):
            self.reply(R.R_214_HELP)
        elif isinstance(cmd, C.Vrfy):
            self._vrfy(cmd)
        elif isinstance(cmd, C.Expn):
            self._expn(cmd)
        elif isinstance(cmd, C.StartTLS):
            await self._starttls()
        elif isinstance(cmd, C.Auth):
            await self._auth(cmd)
        elif isinstance(cmd, C.Etrn):
            await self._etrn(cmd)
        else:  # pragma: no cover - the machine emits Bdat as chunk events
            self.reply(R.R_502_NOT_IMPLEMENTED)
        if isinstance(cmd, _JUNK):
            self._junk()

    # ---- EHLO / HELO --------------------------------------------------------------------------

    def _starttls_offered(self) -> bool:
        return self.role != "submissions" and self.conn.tls is None

    def _auth_offered(self) -> bool:
        if self.role == "smtp":
            return False
        return self.conn.tls is not None or not self.cfg.require_tls_for_auth

    def _helo(self, cmd: C.Helo) -> None:
        self._abort_transaction()
        if self.checks is not None:
            self.checks.greeted(cmd.name)
        greet = f"{self.server.hostname} Hello {cmd.name} [{self.conn.peer_ip}]"
        if not cmd.extended:
            self.reply(Reply(250, "", greet))
            return
        # VRFY/EXPN are not EHLO keywords (RFC 5321 3.5.2)
        key = (self._starttls_offered(), self._auth_offered() and self.auth_user is None)
        etrn = self.role == "smtp" and self.ctx.held is not None
        self.reply(multiline(250, greet, self.server.ehlo_keywords(*key, etrn)))

    # ---- MAIL ---------------------------------------------------------------------------------

    def _mail(self, cmd: C.Mail) -> None:
        if self.role in SUBMISSION_ROLES and self.auth_user is None:
            # RFC 6409 4.3 / RFC 4954 6: submission needs authentication first
            if self.conn.tls is None and self.cfg.require_tls_for_auth:
                self.reply(R.R_530_STARTTLS_FIRST)
            else:
                self.reply(R.R_530_AUTH_REQUIRED)
            return
        if self.auth_user is not None and cmd.reverse_path and not self._owns(cmd.reverse_path):
            self.reply(
                R.R_553_SENDER_NOT_OWNED.with_text(
                    f"<{cmd.reverse_path}>: sender address is not owned by {self.auth_user}"
                )
            )
            return
        limited = self._rate_refusal("messages")
        if limited is not None:
            self.reply(limited)
            return
        if cmd.size is not None and not self._room_for(cmd.size):
            # RFC 1870 6.1: a SIZE the server cannot hold now is "452 insufficient system
            # storage" at MAIL, before the client sends it all (as Postfix's queue_minfree).
            log.warning(
                "smtp: MAIL refused, no room for SIZE=%d in %s", cmd.size, self.server.tmp_dir
            )
            self.reply(R.R_452_STORAGE)
            return
        self.txn = Transaction(cmd, keep_head=self.auth_user is not None)
        if self.checks is not None:
            self.checks.mail(self.machine.helo or "", cmd.reverse_path)
        self.reply(R.R_250_SENDER_OK.with_text(f"Sender <{cmd.reverse_path}> OK"))

    def _room_for(self, size: int) -> bool:
        try:
            return shutil.disk_usage(self.server.tmp_dir).free >= size
        except OSError as e:  # cannot tell: let the writes decide
            log.warning("smtp: cannot read the free space of %s: %s", self.server.tmp_dir, e)
            return True

    def _owns(self, address: str) -> bool:
        """RFC 6409 6.1: the authenticated account, one of its aliases, or their +detail forms."""
        assert self.auth_user is not None
        try:
            addr = parse_address(address)
        except AddressError:
            return False
        base, _, _detail = addr.local.partition("+")
        candidates = {addr.canonical, f"{base.lower()}@{addr.domain}"}
        if self.auth_user in candidates:
            return True
        try:
            owned = set(self.ctx.directory.aliases_of(self.auth_user))
        except Exception:
            log.exception("smtp: cannot read aliases of %s", self.auth_user)
            return False
        return bool(candidates & owned)

    # ---- RCPT ---------------------------------------------------------------------------------

    def _may_relay(self) -> bool:
        return self.auth_user is not None or self.relay_client

    def _rcpt(self, cmd: C.Rcpt) -> None:
        txn = self.txn
        assert txn is not None  # the machine refuses RCPT outside a transaction
        limited = self._rate_refusal("recipients")
        if limited is not None:
            self.reply(limited)
            return
        address = cmd.forward_path
        if address == "postmaster":
            address = self.server.postmaster()
        domain = address.rpartition("@")[2]
        # a null client has no local mailboxes: our users' mail for any domain is relayed
        local_domain = not self.ctx.config.relay.null_client and self.ctx.directory.is_local_domain(
            domain
        )
        # an address with a [transport] entry of its own (a list handed to Mailman 3) is
        # delivered there, not here: in one of our domains it is accepted like a local one
        own_route = address_entry(self.server.transport, address) is not None
        if not local_domain or own_route:
            # a held domain (ETRN/ATRN) or one handed over LMTP (a list manager: docs/lists.md)
            # is accepted from anyone, as Postfix's relay_domains; other domains need a relay right
            if (
                not self._may_relay()
                and not local_domain
                and not self._held(domain)
                and not self._handed_off(domain, address)
            ):
                self.reply(R.R_554_RELAY_DENIED.with_text(f"<{address}>: Relay access denied"))
                return
            txn.recipients.append(Recipient(address, cmd.notify, cmd.orcpt, (), (address,)))
            self.reply(R.R_250_RCPT_OK.with_text(f"Recipient <{address}> OK"))
            return
        lists = self.ctx.lists
        if lists is not None and lists.owns(address):
            # a mailing list address: queued as it is; the list engine expands it after this
            # session got its 250, so a big list never holds the client (docs/lists.md)
            txn.list_recipients.append(address)
            txn.recipients.append(Recipient(address, cmd.notify, cmd.orcpt, (), (address,)))
            self.reply(R.R_250_RCPT_OK.with_text(f"Recipient <{address}> OK"))
            return
        try:
            res = self._resolve_rcpt(address)
        except DeliveryError as e:
            if e.status == "5.1.1":
                self.reply(R.R_550_NO_SUCH_USER.with_text(f"<{address}>: no such user here"))
            elif e.status == "4.3.1":
                self.reply(R.R_452_STORAGE)  # RFC 5321 4.5.3.1.10 allows 452 at RCPT
            elif e.temporary:
                self.reply(R.R_451_LOCAL_ERROR)
            else:
                self.reply(Reply(550, e.status, f"<{address}>: {e.reason}"))
            return
        except Exception as e:
            self.reply(self._local_error(e, f"smtp: resolving {address}"))
            return
        txn.recipients.append(
            Recipient(address, cmd.notify, cmd.orcpt, res.local_accounts, res.remote)
        )
        self.reply(R.R_250_RCPT_OK.with_text(f"Recipient <{address}> OK"))

    def _deliverable(self, address: str) -> bool:
        """Whether RCPT would accept `address` (greylisting then applies; an address we would
        refuse gets its 5xx at once instead of a 451 first)."""
        if address == "postmaster":
            return True
        if not self.ctx.directory.is_local_domain(address.rpartition("@")[2]):
            return False
        try:
            self._resolve_rcpt(address)
        except Exception:
            return False
        return True

    def _held(self, domain: str) -> bool:
        return self.role == "smtp" and self.ctx.directory.is_held_domain(domain)

    def _handed_off(self, domain: str, address: str) -> bool:
        t = self.server.transport
        return self.role == "smtp" and (is_lmtp_domain(t, domain) or is_lmtp_address(t, address))

    def _resolve_rcpt(self, address: str) -> Resolution:
        try:
            return self.server.delivery.resolve(address)
        except DeliveryError as e:
            local = address.rpartition("@")[0]
            if e.status != "5.1.1" or local.lower() != "postmaster":
                raise
        # RFC 5321 4.5.1: "postmaster" (any case) MUST be accepted for every domain we serve.
        # Without its own alias it is the primary domain's postmaster, else the first account.
        primary = self.server.postmaster()
        if address.lower() != primary:
            with contextlib.suppress(DeliveryError):
                return self.server.delivery.resolve(primary)
        users = self.ctx.directory.users()
        if not users:
            raise DeliveryError("no account to receive postmaster mail", False, "5.1.1")
        log.warning(
            "%s has no alias: delivering to %s (choose with: carteiro alias add %s ACCOUNT)",
            primary,
            users[0],
            primary,
        )
        return self.server.delivery.resolve(users[0])

    # ---- VRFY / EXPN (RFC 5321 3.5, 7.3) ------------------------------------------------------

    def _vrfy(self, cmd: C.Vrfy) -> None:
        if not (self.cfg.vrfy_for_authenticated and self.auth_user):
            self.reply(R.R_252_VRFY)  # no user enumeration
            return
        arg = cmd.argument.strip("<>")
        try:
            res = self.server.delivery.resolve(arg)
        except DeliveryError:
            self.reply(R.R_550_NO_SUCH_USER.with_text(f"<{arg}>: no such user here"))
            return
        except Exception:
            self.reply(R.R_501_SYNTAX.with_text("Syntax: VRFY address"))
            return
        if res.local_accounts:
            self.reply(Reply(250, "2.1.5", f"<{res.local_accounts[0][0]}>"))
        else:
            self.reply(R.R_252_VRFY)

    def _expn(self, cmd: C.Expn) -> None:
        if not (self.cfg.expn_for_authenticated and self.auth_user):
            self.reply(R.R_502_EXPN)
            return
        arg = cmd.argument.strip("<>")
        try:
            res = self.server.delivery.resolve(arg)
        except Exception:
            self.reply(R.R_550_NO_SUCH_USER.with_text(f"<{arg}>: no such list here"))
            return
        members = [f"<{a}>" for a, _ in res.local_accounts] + [f"<{a}>" for a in res.remote]
        self.reply(Reply(250, "2.1.5", members[0], tuple(members[1:])))

    # ---- ETRN (RFC 1985) ----------------------------------------------------------------------

    async def _etrn(self, cmd: C.Etrn) -> None:
        node = f"{'@' if cmd.subdomains else ''}{cmd.node}"
        if self.role != "smtp" or self.ctx.held is None:
            self.reply(R.R_502_NOT_IMPLEMENTED.with_text("ETRN not available on this port"))
            return
        if not self.ctx.directory.is_held_domain(cmd.node):
            # RFC 1985 5: 459 for a node we do not hold mail for (no open relay flushing)
            # (the enhanced code of the same class: RFC 3463 2, 4.X.X is transient)
            self.reply(Reply(459, "4.7.1", f"Node {node} not allowed: not a held domain here"))
            return
        try:
            n = await self.ctx.held.etrn(cmd.node, cmd.subdomains)
        except Exception as e:
            self.reply(self._local_error(e, f"smtp: ETRN {node}"))
            return
        self.tracer.note(f"ETRN {node}: {n} message(s)")
        if n == 0:
            self.reply(Reply(251, "2.0.0", f"OK, no messages waiting for node {node}"))
        else:
            self.reply(Reply(253, "2.0.0", f"OK, {n} pending messages for node {node} started"))

    # ---- STARTTLS (RFC 3207) ------------------------------------------------------------------

    async def _starttls(self) -> None:
        if not self._starttls_offered():
            self.reply(R.R_502_NOT_IMPLEMENTED.with_text("STARTTLS not available"))
            return
        self.reply(R.R_220_TLS_GO)  # the machine drops anything pipelined after the command
        await self.flush()
        self._abort_transaction()
        try:
            discarded = await self.conn.start_tls(self.ctx.tls)
        except (ssl.SSLError, OSError, TimeoutError) as e:
            self.tracer.note(f"TLS handshake failed: {e}")
            self.done = True
            return
        if discarded:
            self.tracer.note(f"discarded {discarded} octets pipelined before the TLS handshake")
        self.machine.tls_started()
        self.auth_user = None
        tls = self.conn.tls
        self.tracer.note(f"TLS started: {tls.version if tls else '?'} {tls.cipher if tls else ''}")

    # ---- AUTH (RFC 4954) ----------------------------------------------------------------------

    async def _auth(self, cmd: C.Auth) -> None:
        if self.role == "smtp":
            self.reply(R.R_502_NOT_IMPLEMENTED.with_text("AUTH not available on this port"))
            return
        if self.conn.tls is None and self.cfg.require_tls_for_auth:
            self.reply(R.R_538_ENCRYPTION_REQUIRED)
            return
        if self.ctx.throttle.blocked(self.conn.peer_ip):
            self.reply(R.R_454_AUTH_BLOCKED)
            return
        if cmd.mechanism not in mechanisms():
            self.reply(R.R_504_AUTH_MECH)
            return
        self.sasl = SaslExchange(cmd.mechanism)
        await self._auth_continue(self.sasl.start(cmd.initial_response))

    async def _auth_step(self, line: bytes) -> None:
        if self.sasl is None:  # pragma: no cover - the machine only reads lines after 334
            self.reply(R.R_503_NEED_HELO)
            return
        await self._auth_continue(self.sasl.respond(line))

    async def _auth_continue(self, step: Reply | tuple[str, str]) -> None:
        if isinstance(step, Reply):
            if step.code != 334:
                self.sasl = None
            self.reply(step)
            return
        self.sasl = None
        username, password = step
        # Reserved before the check, counted as a failure until it succeeds: parallel guesses
        # cannot outrun the throttle (directory/throttle.py).
        slot = await self.ctx.throttle.reserve(self.conn.peer_ip, username)
        if isinstance(slot, Refused):
            self.metrics.auth_failures.labels("smtp").inc()
            self.reply(R.R_454_AUTH_BLOCKED.with_text(slot.text))  # RFC 4954 6: 454 4.7.0
            return
        try:
            try:
                account = await self.ctx.directory.verify(username, password)
            except Exception:
                log.exception("smtp: password check failed")
                self.reply(R.R_454_AUTH_TEMP)
                return
            if account is None:
                delay = slot.failure()
                self.metrics.auth_failures.labels("smtp").inc()
                log.info("smtp: %s: authentication failed", self.conn.peer_ip)
                self.tracer.note(f"authentication failed; waiting {delay:.1f}s")
                if delay:
                    await self.flush()
                    await asyncio.sleep(delay)
                self.reply(R.R_535_AUTH_FAILED)
                return
            slot.success(account)
        finally:
            slot.release()
        self.auth_user = account
        self.tracer.note(f"authenticated as {account}")
        self.reply(R.R_235_AUTH_OK)

    # ---- DATA / BDAT --------------------------------------------------------------------------

    def _open_writer(self, txn: Transaction) -> MessageWriter:
        tls = self.conn.tls
        tls_text = f"{tls.version} {tls.cipher} {tls.bits} bits" if tls else None
        rcpt = txn.recipients[0].address if len(txn.recipients) == 1 else None
        received = received_header(
            helo=self.machine.helo or "",
            peer_ip=self.conn.peer_ip,
            hostname=self.server.hostname,
            protocol=self._protocol(txn),
            txn_id=txn.id,
            tls=tls_text,
            auth_user=self.auth_user,
            recipient=rcpt,
            date=self.server.dates.now(),
        )
        prefix = received
        if txn.has_local:
            rp = return_path(txn.mail.reverse_path)
            txn.return_path_len = len(rp)
            prefix = rp + received
        add_missing = (
            (self.server.hostname, self.server.dates.now())
            if self.role in SUBMISSION_ROLES
            else None
        )
        writer = MessageWriter(self.server.tmp_dir, prefix, add_missing, self.cfg.memory_buffer_max)
        txn.writer = writer
        return writer

    def _protocol(self, txn: Transaction) -> str:
        """The Received: line's "with" (RFC 3848)."""
        tls, auth = self.conn.tls is not None, self.auth_user is not None
        return with_protocol(self.machine.esmtp, tls, auth, txn.mail.smtputf8)

    def _data(self) -> None:
        txn = self.txn
        assert txn is not None
        try:
            self._open_writer(txn)
        except OSError as e:
            self.reply(self._write_error(e, txn, "a temp file for DATA"))
            return
        self.reply(R.R_354_DATA)

    def _body(self, data: bytes) -> None:
        txn = self.txn
        if txn is None or txn.failed:
            return
        txn.note_body(data)
        try:
            writer = txn.writer or self._open_writer(txn)
            writer.write(data)
        except OSError as e:
            txn.failed = self._write_error(e, txn, "message data")
            self._drop_writer(txn)

    async def _chunk_end(self, ev: ChunkEnd) -> None:
        txn = self.txn
        if ev.problem is not None:
            if ev.last:
                self._abort_transaction()
            elif txn is not None and self.machine.transaction_failed:
                self._drop_writer(txn)  # the rest of its content will be swallowed
            self.reply(ev.problem)
            return
        if not ev.last:
            if txn is not None and txn.failed is not None:
                self.reply(txn.failed)  # the machine fails the rest of the transaction with it
            else:
                self.reply(R.R_250_CHUNK_OK.with_text(f"{ev.size} octets received"))
            return
        await self._end_of_data(None)

    async def _end_of_data(self, problem: Reply | None) -> None:
        txn, self.txn = self.txn, None
        self.data_deadline = None
        if txn is None:  # pragma: no cover - the machine only ends data inside a transaction
            self.reply(problem or R.R_503_NEED_MAIL)
            return
        if problem is not None or txn.failed is not None:
            self._drop_writer(txn)
            self.reply(problem or txn.failed or R.R_451_LOCAL_ERROR)
            return
        try:
            writer = txn.writer or self._open_writer(txn)
            source = writer.finish()
        except OSError as e:
            self._drop_writer(txn)
            self.reply(self._write_error(e, txn, "message data"))
            return
        if self.auth_user is not None:
            refused = self._foreign_author(txn)
            if refused is not None:
                self._drop_writer(txn)
                self.reply(refused)
                return
        rewritten: Rewritten | None = None
        try:
            quarantine = False
            header = b""
            if self.checks is not None:
                verdict = await self.checks.verdict(source, writer.prefix_len, writer.size)
                header = verdict.header
                log.info(
                    "smtp %s: %s -> %s",
                    txn.id,
                    b" ".join(header.split()[1:]).decode("utf-8", "replace"),
                    verdict.action,
                )
                if verdict.refusal is not None and verdict.action in ("reject", "defer"):
                    r = verdict.refusal
                    self.reply(Reply(r.code, r.status, r.text))
                    return
                quarantine = verdict.action == "quarantine"
            if header or await self._may_carry_forged(source, writer.prefix_len):
                try:
                    rewritten = await self._rewrite(source, txn, writer.prefix_len, header)
                except OSError as e:
                    self.reply(self._write_error(e, txn, "message data"))
                    return
                source = rewritten.source
            # The parser let through only lines that end in CRLF (bare CR/LF rejected or made
            # CRLF) and the header lines added here end so too: the store need not look again.
            # A rewritten header block is another module's text: the store checks that one.
            self.reply(await self._deliver(txn, source, quarantine, crlf=rewritten is None))
        finally:
            if rewritten is not None:
                rewritten.discard()
            self._drop_writer(txn)

    def _foreign_author(self, txn: Transaction) -> Reply | None:
        """RFC 6409 8.1 lets a submission server check the message: an authenticated user may
        write From: only with addresses they own (their account, aliases, +detail forms), as
        MAIL FROM already must. 550 5.7.1 otherwise."""
        block = txn.header_block
        if block is None:
            return None  # no end of header within HEAD_MAX: nothing we can read as From
        values = [v.decode("utf-8", "replace") for name, v in _fields(block) if name == b"from"]
        for _display, addr in email.utils.getaddresses(values):
            if addr and not self._owns(addr):
                log.warning("smtp %s: %s wrote From: <%s>; refused", txn.id, self.auth_user, addr)
                return Reply(550, "5.7.1", f"From: <{addr}> is not an address of {self.auth_user}")
        return None

    async def _may_carry_forged(self, source: bytes | Path, prefix_len: int) -> bool:
        """Whether the client's header section holds an Authentication-Results field (then it
        is rewritten without the ones claiming our authserv-id)."""
        if isinstance(source, bytes):
            return _names_results(source, prefix_len)
        head = await asyncio.to_thread(_read_at, source, prefix_len, HEAD_MAX)
        end = header_end(head)
        # (find, not `in`: a bytes `in` first tries its operand as an int, raising inside)
        return (head if end < 0 else head[:end]).lower().find(b"authentication-results") >= 0

    async def _rewrite(
        self, source: bytes | Path, txn: Transaction, prefix_len: int, header: bytes
    ) -> Rewritten:
        args = (
            source,
            txn.return_path_len,
            prefix_len,
            header,
            self.server.authserv_id,
            self.server.tmp_dir,
        )
        if isinstance(source, bytes):
            return rewrite(*args)
        return await asyncio.to_thread(rewrite, *args)

    async def _deliver(
        self,
        txn: Transaction,
        source: bytes | Path,
        quarantine: bool = False,
        crlf: bool = False,
    ) -> Reply:
        """Local recipients into the store (one transaction), remote ones into the queue's
        spool; both or neither. Returns the reply for the end of data."""
        local = [acct for r in txn.recipients for acct in r.local]
        remote: list[QueuedRecipient] = []
        for r in txn.recipients:
            for addr in r.remote:
                # RFC 3461 4.2: ORCPT names the address the client gave; keep it for aliases
                orcpt = r.orcpt or (_orcpt(r.address) if addr != r.address else None)
                remote.append(QueuedRecipient(addr, r.notify, orcpt))
        queue_id: str | None = None
        delivery_id = txn.delivery_id()
        lists = self.ctx.lists
        if lists is not None and txn.header is not None:
            for address in txn.list_recipients:
                if lists.loops(address, txn.header):
                    # RFC 2919 / RFC 3463 5.4.6: our own List-Id came back: a forwarding loop
                    log.info("smtp %s: refused, a loop through the list %s", txn.id, address)
                    return Reply(
                        550, "5.4.6", f"Mail loop: this post already went through <{address}>"
                    )

        async def enqueue() -> None:
            nonlocal queue_id
            spooled = source
            if txn.return_path_len:
                if isinstance(source, bytes):  # a slice: no thread for it
                    spooled = without_prefix(source, txn.return_path_len, self.server.tmp_dir)
                else:
                    spooled = await asyncio.to_thread(
                        without_prefix, source, txn.return_path_len, self.server.tmp_dir
                    )
            made = spooled if isinstance(spooled, Path) and spooled != source else None
            try:
                if self.checks is not None and self.server.sealer is not None:
                    spooled = await self._sealed(txn, spooled)
                env = Envelope(
                    mail_from=txn.mail.reverse_path,
                    recipients=tuple(remote),
                    ret=txn.mail.ret,
                    envid=txn.mail.envid,
                    body=txn.mail.body,
                    smtputf8=txn.mail.smtputf8,
                    auth_user=self.auth_user,
                    trusted=self.auth_user is not None or self.relay_client,
                )
                queue_id = await self.ctx.spool.enqueue(env, spooled, delivery_id)
            finally:
                if made is not None:
                    with contextlib.suppress(OSError):
                        made.unlink()

        committing = time.monotonic()
        try:
            if local:
                rcpt: dict[str, str] = {}  # Sieve's envelope "to": the first RCPT per account
                for r in txn.recipients:
                    for account, _ in r.local:
                        rcpt.setdefault(account, r.address)
                targets: list[Target] = await self.server.delivery.targets(local, rcpt)
                if quarantine:
                    # RFC 7489 6.3 p=quarantine: "suspicious": the recipients' Junk folders
                    targets = await self.server.delivery.junk_targets(targets)
                await self.server.delivery.deliver(
                    targets,
                    source,
                    txn.mail.reverse_path,
                    enqueue if remote else None,
                    delivery_id,
                    crlf=crlf,
                )
            elif remote:
                await enqueue()
        except DeliveryError as e:
            full = storage_full(e)
            if full is not None:
                log_storage_full(log, f"smtp {txn.id}", "delivery", full)
                return R.R_452_STORAGE
            log.warning("smtp %s: delivery failed: %s", txn.id, e.reason)
            if e.status == "4.3.1":
                return R.R_452_STORAGE
            if e.status == "4.2.2":  # the mail quota (RFC 3463 4.2.2, RFC 5321 4.5.3.1.10)
                return R.R_452_MAILBOX_FULL
            code = 451 if e.temporary else 554
            return Reply(
                code,
                e.status,
                f"Delivery failed: {e.reason}; try again later"
                if e.temporary
                else f"Delivery failed: {e.reason}",
            )
        except Exception as e:
            full = storage_full(e)
            if full is not None:  # the store or the queue's spool: no room (RFC 3463 4.3.1)
                log_storage_full(log, f"smtp {txn.id}", "delivery", full)
                return R.R_452_STORAGE
            if remote and not isinstance(e, OSError):
                log.warning("smtp %s: the outbound queue refused the message: %r", txn.id, e)
                return R.R_451_QUEUE_UNAVAILABLE
            log.exception("smtp %s: delivery failed", txn.id)
            return R.R_451_LOCAL_ERROR
        m, server = self.metrics, self.server
        if local:
            m.store_commit_seconds.observe(time.monotonic() - committing)
            server.sent_local.inc(len(local))
            server.local_seconds.observe(time.time() - txn.started)
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        size -= txn.return_path_len
        received = server.received.get(self.role)
        if received is None:
            received = server.received[self.role] = m.messages_received.labels(self.role)
        received.inc()
        m.received_bytes.inc(size)
        if txn.mail.reverse_path and any("SUCCESS" in r.notify for r in txn.recipients if r.local):
            await self._success_dsn(txn, source)
        self._log_transaction(txn, size, len(local), queue_id)
        self.errors = 0  # mail delivered: the error count starts again (see SMTPConfig.max_errors)
        what = f"queued as {queue_id}" if queue_id else "delivered"
        return R.R_250_QUEUED.with_text(f"OK id={txn.id}" + (f" {what}" if queue_id else ""))

    async def _sealed(self, txn: Transaction, source: bytes | Path) -> bytes | Path:
        """RFC 8617 5.1: checked mail we send on (an alias to a remote address) leaves with our
        ARC set, so the next receiver can trust the results we saw. Best effort: a message that
        cannot be sealed goes on unsealed (as it arrived)."""
        sealer = self.server.sealer
        assert sealer is not None
        limit = self.ctx.config.mailauth.verify_max_size
        try:
            if isinstance(source, bytes):
                data = source
            else:
                if source.stat().st_size > limit:
                    return source
                data = await asyncio.to_thread(source.read_bytes)
            if len(data) > 64 * 1024:
                fields = await asyncio.to_thread(sealer.seal, data)
            else:
                fields = sealer.seal(data)
        except Exception as e:
            log.warning("smtp %s: could not ARC-seal the forwarded copy: %r", txn.id, e)
            return source
        if not fields:
            return source
        return fields + data

    def _log_transaction(
        self, txn: Transaction, size: int, local: int, queue_id: str | None
    ) -> None:
        """One line per accepted message, as Postfix's smtpd/cleanup/qmgr lines together:
        who sent what to how many, and the queue id under which the queue's lines (one per
        delivery attempt) go on. No secret: the login name, never a password."""
        if not log.isEnabledFor(logging.INFO):
            return  # (the fields below cost more than the check)
        tls = self.conn.tls
        fields = {
            "smtp_id": txn.id,
            "client": f"[{self.conn.peer_ip}]:{self.conn.peer_port}",
            "helo": self.machine.helo or "",
            "service": self.role,
            "tls": tls.version if tls else "none",
            "auth": self.auth_user or "",
            "from": txn.mail.reverse_path,
            "size": size,
            "nrcpt": len(txn.recipients),
            "local": local,
            "queue_id": queue_id or "",
        }
        log.info(
            "smtp %s: client=%s service=%s tls=%s%s from=<%s> size=%d nrcpt=%d local=%d %s",
            txn.id,
            fields["client"],
            self.role,
            fields["tls"],
            f" auth={self.auth_user}" if self.auth_user else "",
            txn.mail.reverse_path,
            size,
            len(txn.recipients),
            local,
            f"queued as {queue_id}" if queue_id else "status=delivered",
            extra={"event": "smtp.accepted", "fields": fields},
        )

    async def _success_dsn(self, txn: Transaction, source: bytes | Path) -> None:
        """RFC 3461 5.2.2: final delivery to a recipient that asked NOTIFY=SUCCESS earns the
        sender a "delivered" report. Best effort: the message itself is already delivered."""
        reports = [
            dsn.RecipientReport(
                address=r.address,
                action="delivered",
                status="2.0.0",
                orcpt=r.orcpt,
                diagnostic="250 2.0.0 delivered to the mailbox",
                diagnostic_is_smtp=False,
                last_attempt=time.time(),
            )
            for r in txn.recipients
            if r.local and "SUCCESS" in r.notify
        ]
        try:
            if isinstance(source, bytes):
                head = source[: HEAD_MAX + txn.return_path_len]
            else:
                head = await asyncio.to_thread(_read_head, source, HEAD_MAX)
            report = dsn.build_dsn(
                reporting_mta=self.server.hostname,
                sender=txn.mail.reverse_path,
                reports=reports,
                original=dsn.header_block(head[txn.return_path_len :]),
                arrival=txn.started,
                now=time.time(),
                envid=txn.mail.envid,
                ret="HDRS",
                utf8=txn.mail.smtputf8,
            )
            env = Envelope(
                mail_from="",
                recipients=(QueuedRecipient(txn.mail.reverse_path),),
                body=report.body,
                smtputf8=report.smtputf8,
            )
            await self.ctx.spool.enqueue(env, report.message)
        except Exception as e:
            log.warning("smtp %s: could not queue the success DSN: %r", txn.id, e)

    # ---- helpers ------------------------------------------------------------------------------

    def _write_error(self, e: OSError, txn: Transaction, what: str) -> Reply:
        """The reply for a temp file that could not be created or written: 452 4.3.1 when the
        disk is full (RFC 5321 4.2.2, RFC 3463 4.3.1), else 451."""
        full = storage_full(e)
        if full is not None:
            log_storage_full(log, f"smtp {txn.id}", what, full)
            return R.R_452_STORAGE
        log.error("smtp %s: writing %s failed: %s", txn.id, what, e)
        return R.R_451_LOCAL_ERROR

    def _local_error(self, e: Exception, what: str) -> Reply:
        full = storage_full(e)
        if full is not None:
            log_storage_full(log, what, "lookup", full)
            return R.R_452_STORAGE
        log.error("%s failed", what, exc_info=e)
        return R.R_451_LOCAL_ERROR

    def _drop_writer(self, txn: Transaction) -> None:
        if txn.writer is not None:
            txn.writer.discard()
            txn.writer = None

    def _abort_transaction(self) -> None:
        self.data_deadline = None
        txn, self.txn = self.txn, None
        if txn is not None:
            self._drop_writer(txn)


def _fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-cased name, unfolded value) of each field of a header section."""
    out: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if colon:
            out.append((name.strip().lower(), value.strip()))
    return out


def _orcpt(address: str) -> str:
    """RFC 3461 4.2: addr-type ";" xtext ("+" and "=" escaped). A non-ASCII address is of type
    "utf-8" in utf-8-addr-xtext (RFC 6533 3: non-ASCII, "+", "=" and backslash as \\x{HEX})."""
    if address.isascii():
        return f"rfc822;{dsn.xtext_encode(address)}"
    text = "".join(
        c if "!" <= c <= "~" and c not in "+=\\" else f"\\x{{{ord(c):X}}}" for c in address
    )
    return f"utf-8;{text}"


def _names_results(source: bytes, prefix_len: int) -> bool:
    """Whether the header section of the client's data (from `prefix_len`, its end looked for
    in HEAD_MAX octets) mentions Authentication-Results, found where it is: slicing the data
    first copied a whole 100 KB message to look at its first kilobyte."""
    if source.startswith(b"\r\n", prefix_len):
        return False  # no header section
    end = source.find(b"\r\n\r\n", prefix_len, prefix_len + HEAD_MAX)
    stop = end + 2 if end >= 0 else prefix_len + HEAD_MAX
    return source[prefix_len:stop].lower().find(b"authentication-results") >= 0


def _read_at(path: Path, offset: int, limit: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(limit)


def _read_head(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)
