"""The POP3 server: `pop3` (STLS, RFC 2595) and `pop3s` (implicit TLS, RFC 8314) listeners, and one
asyncio session per connection that drives proto.pop3's machine against the directory and store.

The machine decides every reply; this module only does the I/O it asks for: verify a password
(throttled per IP), lock and list INBOX, read a message, negotiate TLS, and in the UPDATE state
remove the marked messages with one store call. A dropped or timed-out connection changes nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from carteiro.core.metrics import POP3_COMMANDS
from carteiro.directory.throttle import Refused
from carteiro.net.listener import Connection, Listener
from carteiro.net.trace import Tracer
from carteiro.proto import pop3, sasl
from carteiro.proto.pop3 import MachineConfig, Maildrop, Pop3Machine, Refusal
from carteiro.servers.context import ServerContext
from carteiro.servers.storage_errors import log_storage_full, storage_full
from carteiro.store.api import SEEN, AccountNotFound, AccountStore, FlagOp, MaildropLock

log = logging.getLogger("carteiro.pop3")

MBOX_ACCOUNT_TEXT = (
    "This account's mail is delivered to an mbox spool file on the server, not to the "
    "mailbox POP3 serves; ask the administrator to switch it (carteiro user set --delivery store)."
)

# Write what the pipelined commands produced once this much is pending, even if more input waits.
FLUSH_AT = 256 * 1024
READ_SIZE = 64 * 1024
MIN_LINE_LENGTH = 255  # RFC 2449 4
# Read-ahead for clients that download in order: the next messages are read in one store call
# (one index transaction for the run, store.read_messages), bounded in count and octets held.
PREFETCH_COUNT = 64
PREFETCH_OCTETS = 1 << 20
# TOP of a message larger than this reads its start (HEAD_OCTETS, plus 128 per body line asked
# for, four times more while that is not enough), not the whole message
HEAD_READ_MIN = 256 * 1024
HEAD_OCTETS = 64 * 1024
# The metrics label of a command by its first word as sent, for the usual spellings (others are
# worked out each time): counting a command costs one lookup.
_WORDS = {
    spelled: name
    for name in POP3_COMMANDS
    for spelled in {name.encode(), name.lower().encode(), name.capitalize().encode()}
}


def listeners(ctx: ServerContext) -> list[Listener]:
    """The configured POP3 listeners (an empty address disables one)."""
    service = Pop3Service(ctx)
    cfg = ctx.config
    out: list[Listener] = []
    for name, address, ssl_context in (
        ("pop3", cfg.listen.pop3, None),
        ("pop3s", cfg.listen.pop3s, ctx.tls),
    ):
        if address:
            out.append(
                Listener(
                    name,
                    address,
                    service.handler(implicit_tls=ssl_context is not None),
                    ssl_context=ssl_context,
                    max_connections=cfg.pop3.max_connections,
                    max_per_ip=cfg.pop3.max_connections_per_ip,
                    refuse=_refuse,
                )
            )
    return out


async def _refuse(writer: asyncio.StreamWriter, ip: str) -> None:
    writer.write(b"-ERR [SYS/TEMP] Too many connections; try again later.\r\n")
    await writer.drain()


class Pop3Service:
    """State shared by the sessions of one server: the context and the live sessions (so that a
    shutdown can say goodbye to idle ones instead of waiting out the grace period)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.sessions: set[Pop3Session] = set()
        self._watcher: asyncio.Task[None] | None = None

    def handler(self, implicit_tls: bool) -> Callable[[Connection], Awaitable[None]]:
        async def handle(conn: Connection) -> None:
            if self._watcher is None:
                self._watcher = asyncio.create_task(self._watch_shutdown())
            session = Pop3Session(self.ctx, conn, implicit_tls=implicit_tls)
            self.sessions.add(session)
            if self.ctx.shutdown.is_set():
                session.stop()  # accepted during shutdown: greet, then say goodbye
            try:
                await session.run()
            finally:
                self.sessions.discard(session)

        return handle

    async def _watch_shutdown(self) -> None:
        await self.ctx.shutdown.wait()
        for session in list(self.sessions):
            session.stop()


def _label(line: bytes) -> str:
    """The metrics label of a command line spelled in an unusual case (or not a command)."""
    text = line.partition(b" ")[0].upper().decode("ascii", "replace")
    # a fixed set of labels, whatever the client sends (a SASL response is "OTHER")
    return text if text in POP3_COMMANDS else "OTHER"


class _Feed(asyncio.Protocol):
    """Put on the session's transport in place of the StreamReaderProtocol: the octets go straight
    to the session (which answers what it can inside this call); the end of the connection and
    write flow control still go to the stream protocol, so the StreamWriter (drain, STARTTLS,
    close) works as before."""

    __slots__ = ("inner", "session")

    def __init__(self, session: Pop3Session, inner: asyncio.BaseProtocol) -> None:
        self.session = session
        self.inner = inner

    def data_received(self, data: bytes) -> None:
        self.session._on_data(data)

    def eof_received(self) -> bool | None:
        self.session._on_end()
        return cast(asyncio.Protocol, self.inner).eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._on_end()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Signal(enum.Enum):
    """What wakes the session's task besides a request of the machine."""

    END = "end"  # the client closed the connection (or it was lost)
    STOP = "stop"  # server shutdown
    TIMEOUT = "timeout"  # idle timeout
    CLOSE = "close"  # a reply that ends the session was written
    BLOCKED = "blocked"  # the client does not read: wait until it does (or time out)


Wake = pop3.Event | _Signal


class Pop3Session:
    """One connection. Replies that need no I/O (every command but a login, STLS, QUIT and a RETR
    or TOP of a message not read ahead) are answered inside the transport's data callback: no
    task wake-up, no stream buffer, one write per batch of input. The session's task only runs
    for the requests that wait on something (the directory, the store, a TLS handshake, a client
    that does not read), then hands the input back to the callback."""

    def __init__(self, ctx: ServerContext, conn: Connection, implicit_tls: bool = False) -> None:
        self.ctx = ctx
        self.conn = conn
        cfg = ctx.config.pop3
        self.machine = Pop3Machine(
            MachineConfig(
                hostname=ctx.config.hostname,
                tls_available=not implicit_tls,
                tls_active=implicit_tls or conn.tls is not None,
                allow_plaintext_auth=cfg.allow_plaintext_auth,
                mechanisms=("PLAIN", "LOGIN"),
                max_line_length=max(cfg.max_line_length, MIN_LINE_LENGTH),
                max_errors=cfg.max_errors,
                max_auth_failures=cfg.max_auth_failures,
            )
        )
        self.idle_timeout = cfg.idle_timeout
        self.tracer = Tracer("pop3", ctx.tracing("pop3"), peer=conn.peer_ip)
        self.store: AccountStore | None = None
        self.mailbox_id = 0
        self.lock: MaildropLock | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._transport: asyncio.Transport | None = None  # set when the _Feed is put on
        self._high_water = 0
        self._waiter: asyncio.Future[Wake] | None = None  # the task waiting in _wait()
        self._idle = False  # the task waits for input: the data callback answers commands
        self._read_paused = False
        self._ended = False
        self._stopping = False
        self._mechanism: sasl.Mechanism | None = None  # the SASL exchange under way
        # message number -> read ahead: (bytes, no bare LF: store.read_wire) or gone
        self._ahead: dict[int, tuple[bytes, bool] | KeyError] = {}
        self._last_retrieved = 0
        metrics = ctx.metrics
        self._count_command = metrics.command
        self._count_reply = metrics.reply
        # One idle timer per session, pushed forward by each input (a timer per command would be a
        # handle and a heap entry per command).
        self._deadline = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        # looked up once (each asyncio.get_running_loop() costs a getpid system call)
        self._loop = asyncio.get_running_loop()

    # ---- lifecycle --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Server shutdown: an idle session says goodbye now; a busy one after its current batch."""
        self._stopping = True
        if self._idle:
            self._wake(_Signal.STOP)

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            # RFC 1939 6/8: a session that ends without QUIT never enters UPDATE: nothing is
            # deleted, the lock is released.
            self._ahead.clear()
            self._idle = False
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._release()
            self.tracer.note("connection closed")

    def _release(self) -> None:
        if self.lock is not None:
            lock, self.lock = self.lock, None
            lock.release()

    def _take_over(self) -> None:
        """Put the _Feed on the transport (at the start, and after STLS on the TLS transport); the
        octets the stream took meanwhile go to the machine."""
        writer = self.conn.writer
        transport = cast(asyncio.Transport, writer.transport)
        self._transport = transport
        self._high_water = transport.get_write_buffer_limits()[1]
        transport.set_protocol(_Feed(self, transport.get_protocol()))
        reader = self.conn.reader
        buf: bytearray = reader._buffer  # type: ignore[attr-defined]  # no public accessor
        if buf:
            self.machine.receive_data(bytes(buf))
            buf.clear()
        if reader.at_eof() or transport.is_closing():
            self._ended = True
        elif not transport.is_reading():  # the stream paused it (a flood before the greeting)
            transport.resume_reading()

    # ---- input ------------------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        """The transport's data callback."""
        m = self.machine
        m.receive_data(data)
        if not self._idle:
            # the task is busy: keep the input for later, within bounds
            if m.pending_input > READ_SIZE and not self._read_paused:
                self._read_paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            return
        got = self._pump()
        if got is None:
            self._deadline = self._loop.time() + self.idle_timeout
        else:
            self._wake(got)

    def _on_end(self) -> None:
        self._ended = True
        if self._idle:
            self._wake(_Signal.END)

    def _wake(self, why: Wake) -> None:
        self._idle = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(why)

    async def _wait(self) -> Wake:
        """Wait while the data callback answers commands, until the session must act: a request
        of the machine, the end of the connection, the idle timeout, a shutdown."""
        if self._ended:
            return _Signal.END
        if self._stopping:
            return _Signal.STOP
        loop = self._loop
        self._deadline = loop.time() + self.idle_timeout
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self._deadline, self._idle_check)
        if self._read_paused:
            self._read_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        waiter: asyncio.Future[Wake] = loop.create_future()
        self._waiter = waiter
        self._idle = True
        try:
            return await waiter
        finally:
            self._idle = False
            self._waiter = None

    def _idle_check(self) -> None:
        """The idle timer: a session waiting for input since its deadline times out; one that
        had input later moves the timer to its own deadline."""
        self._idle_timer = None
        loop = self._loop
        if loop.time() < self._deadline:
            self._idle_timer = loop.call_at(self._deadline, self._idle_check)
        elif self._idle:
            self._wake(_Signal.TIMEOUT)
        # not waiting (busy with a request): the next wait arms the timer again

    # ---- output -----------------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def _write(self) -> bool:
        """Hand what is queued to the transport; True when the client is not reading fast enough
        (more than the transport's high-water mark waiting)."""
        out = self._out
        transport = self._transport
        if transport is None:
            self.conn.writer.writelines(out)
            out.clear()
            self._out_size = 0
            return False
        if out:
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
            out.clear()
            self._out_size = 0
        return transport.get_write_buffer_size() > self._high_water

    async def _flush(self) -> None:
        if not self._write():
            return  # not paused: drain() would return at once
        # A client that stops reading must not hold the session (and its lock) forever: the
        # idle timer covers writes too. TimeoutError ends the connection (no UPDATE).
        async with asyncio.timeout(self.idle_timeout):
            await self.conn.writer.drain()

    def _trace_out(self, data: bytes, body: bool = False) -> None:
        if not self.tracer.enabled:
            return
        if body:
            first, _, rest = data.partition(b"\r\n")
            self.tracer.server(first + b"\r\n")
            self.tracer.note(f"({len(rest)} octets of message data)")
        else:
            self.tracer.server(data)

    def _answer(self, reply: pop3.Reply, body: bool = False) -> None:
        self._count_reply("pop3", "+OK" if reply.data[:1] == b"+" else "-ERR")
        if self.tracer.enabled:
            self._trace_out(reply.data, body)
        self._out.append(reply.data)
        self._out_size += len(reply.data)

    # ---- the command loop -------------------------------------------------------------------------

    def _pump(self) -> Wake | None:
        """Answer the commands the machine holds until one needs the task (returned) or more input
        is needed (None, everything written). Runs in the data callback and in the task."""
        m = self.machine
        next_event = m.next_event
        ahead = self._ahead
        out = self._out
        count_command = self._count_command
        count_reply = self._count_reply
        tracing = self.tracer.enabled
        while True:
            ev = next_event()
            line = m.last_line
            if line is not None:
                word = _WORDS.get(line.partition(b" ")[0]) or _label(line)
                count_command("pop3", word)
                if tracing:
                    keep = m.last_line_keep
                    self.tracer.client(line, secret=keep >= 0, keep_words=max(keep, 0))
            if isinstance(ev, pop3.Retrieve):
                # a message read ahead (the next in order) is answered here, without the task
                n = ev.number
                if n != self._last_retrieved + 1 or (got := ahead.pop(n, None)) is None:
                    return ev  # the task reads the store
                self._last_retrieved = n
                data = (m.message(*got) if type(got) is tuple else m.message_gone()).data
                ok = data[:1] == b"+"
                count_reply("pop3", "+OK" if ok else "-ERR")
                if tracing:
                    self._trace_out(data, ok)
                out.append(data)
                self._out_size += len(data)
            elif ev is pop3.NEED_DATA:
                return _Signal.BLOCKED if self._write() else None
            elif isinstance(ev, pop3.Reply):
                self._answer(ev)
                if ev.close:
                    self._write()
                    return _Signal.CLOSE
            elif isinstance(ev, pop3.Closed):
                return _Signal.END
            else:
                return ev  # a request only the task can serve
            if self._out_size >= FLUSH_AT and self._write():
                return _Signal.BLOCKED

    async def _run(self) -> None:
        m = self.machine
        greeting = m.greeting()
        self._trace_out(greeting)
        self._queue(greeting)
        await self._flush()
        self._take_over()
        got: Wake | None = _Signal.STOP if self._stopping else self._pump()
        while True:
            if got is None:
                got = await self._wait()
            if got is _Signal.BLOCKED:
                await self._flush()
                got = self._pump()
                continue
            if got is _Signal.CLOSE:
                return
            if got is _Signal.END:
                if not self._transport or self._ended:
                    self.tracer.note("client closed the connection")
                return
            if got is _Signal.STOP or got is _Signal.TIMEOUT:
                reply = m.shutting_down() if got is _Signal.STOP else m.timed_out()
                self._trace_out(reply.data)
                self._queue(reply.data)
                await self._flush()
                return
            ev = got
            if isinstance(ev, pop3.Retrieve):
                reply = await self._retrieve(ev)
                body = reply.data.startswith(b"+OK")
            elif isinstance(ev, pop3.Login):
                reply = await self._login(ev.user, ev.password)
                body = False
            elif isinstance(ev, pop3.AuthStart | pop3.AuthResponse):
                reply = await self._sasl(ev)
                body = False
            elif isinstance(ev, pop3.StartTLS):
                await self._start_tls(ev)
                got = self._pump()
                continue
            else:
                assert isinstance(ev, pop3.Update)
                reply = await self._update(ev)
                body = False
            self._answer(reply, body)
            if reply.close:
                await self._flush()
                return
            if self._out_size >= FLUSH_AT:
                await self._flush()
            got = self._pump()

    # ---- requests ---------------------------------------------------------------------------------

    async def _start_tls(self, ev: pop3.StartTLS) -> None:
        self._trace_out(ev.reply)
        self._queue(ev.reply)
        await self._flush()
        # what the client pipelined after STLS went to the machine: dropped by tls_started()
        discarded = self.machine.pending_input
        discarded += await self.conn.start_tls(self.ctx.tls)
        self.machine.tls_started()
        self._take_over()
        tls = self.conn.tls
        self.tracer.note(
            f"TLS started ({tls.version if tls else '?'}); {discarded} pipelined octets discarded"
        )

    async def _login(self, user: str, password: str) -> pop3.Reply:
        """RFC 1939 7 PASS, and the end of a SASL exchange: verify, throttle, lock, list."""
        ip = self.conn.peer_ip
        # Reserved before the check, counted as a failure until it succeeds: parallel guesses
        # cannot outrun the throttle (directory/throttle.py).
        slot = await self.ctx.throttle.reserve(ip, user)
        if isinstance(slot, Refused):
            self.ctx.metrics.auth_failures.labels("pop3").inc()
            return self.machine.refused(Refusal.THROTTLED, f"{slot.text}.")  # RFC 3206 4
        try:
            account = await self.ctx.directory.verify(user, password)
            if account is None:
                delay = slot.failure()
                self.ctx.metrics.auth_failures.labels("pop3").inc()
                log.info("pop3: %s: authentication failed for %r", ip, user[:100])
                await asyncio.sleep(delay)
                return self.machine.refused(Refusal.BAD_CREDENTIALS)
            slot.success(account)
        finally:
            slot.release()
        if self.ctx.directory.delivery_of(account) == "mbox":
            # Its mail goes to the classic spool file, which this server does not serve: an
            # empty maildrop would look like lost mail (RFC 3206 5: SYS/PERM, not the password).
            log.info("pop3: %s: refused %s: delivered to an mbox spool", ip, account)
            return self.machine.refused(Refusal.PERMANENT, MBOX_ACCOUNT_TEXT)
        return await self._open(account)

    async def _open(self, account: str) -> pop3.Reply:
        try:
            try:
                store = await self.ctx.store.account(account)
            except AccountNotFound:
                # The directory knows the account but its mail store is missing: create it
                # (idempotent), as Dovecot autocreates INBOX.
                await self.ctx.store.create_account(account)
                store = await self.ctx.store.account(account)
        except Exception:
            log.exception("pop3: cannot open the store of %s", account)
            return self.machine.refused(Refusal.TEMPORARY)
        # RFC 1939 8 / RFC 2449 8.1.2: one POP3 session per maildrop; IMAP may run alongside.
        lock = store.try_lock_maildrop()
        if lock is None:
            return self.machine.refused(Refusal.IN_USE)
        try:
            inbox = await store.get_mailbox("INBOX")
            metas = await store.list_messages(inbox.id)
        except Exception:
            lock.release()
            log.exception("pop3: cannot list INBOX of %s", account)
            return self.machine.refused(Refusal.TEMPORARY)
        self.store, self.mailbox_id, self.lock = store, inbox.id, lock
        # the per-address cap is against unauthenticated floods; a logged-in session holds its
        # maildrop's lock, one per account (the lock is the per-account limit)
        self.conn.leave_ip_cap()
        self.tracer.note(f"logged in as {account}: {len(metas)} messages")
        return self.machine.authenticated(
            Maildrop(inbox.uidvalidity, [(meta.uid, meta.size) for meta in metas])
        )

    async def _sasl(self, ev: pop3.AuthStart | pop3.AuthResponse) -> pop3.Reply:
        """RFC 5034 AUTH: the machine has decoded the base64 (and handled "*"); the mechanism
        (proto.sasl) turns the client's data into a challenge or credentials to verify."""
        if isinstance(ev, pop3.AuthStart):
            server = sasl.server(ev.mechanism)
            assert server is not None  # the machine only accepts mechanisms we listed
            self._mechanism = server.mechanism
            step = self._mechanism.start(ev.initial)
        else:
            assert self._mechanism is not None
            step = self._mechanism.step(ev.data)
        if isinstance(step, sasl.Challenge):
            return self.machine.challenge(step.data)
        self._mechanism = None
        if isinstance(step, sasl.Success):
            return await self._login(step.credentials.authcid, step.credentials.password)
        if step.kind is sasl.FailureKind.REFUSED:
            # Acting as another user (a PLAIN authzid): refused like a bad password.
            delay = self.ctx.throttle.record_failure(self.conn.peer_ip)
            await asyncio.sleep(delay)
            return self.machine.refused(Refusal.BAD_CREDENTIALS, f"{step.reason}.")
        return self.machine.refused(Refusal.SASL, f"Authentication failed: {step.reason}.")

    def _retrieved(self, got: bytes | tuple[bytes, bool] | KeyError) -> pop3.Reply:
        if isinstance(got, KeyError):
            return self.machine.message_gone()
        if isinstance(got, tuple):
            return self.machine.message(*got)
        return self.machine.message(got)

    async def _retrieve(self, ev: pop3.Retrieve) -> pop3.Reply:
        assert self.store is not None
        n = ev.number
        in_order = n == self._last_retrieved + 1
        self._last_retrieved = n
        got: bytes | tuple[bytes, bool] | KeyError | None
        got = self._ahead.pop(n, None) if in_order else None
        if got is None:
            self._ahead.clear()  # not reading in order (or past the run): stop guessing
            if in_order and PREFETCH_COUNT:
                got = await self._read_run(n)
        if got is None and ev.lines is not None and ev.size > HEAD_READ_MIN:
            reply = await self._top_from_head(ev)
            if reply is not None:
                return reply
        try:
            if got is None:
                got = await self.store.read_message(self.mailbox_id, ev.uid)
        except KeyError:
            return self.machine.message_gone()
        except Exception:
            log.exception("pop3: cannot read message uid %d", ev.uid)
            return self.machine.message_unavailable()
        return self._retrieved(got)

    async def _top_from_head(self, ev: pop3.Retrieve) -> pop3.Reply | None:
        """TOP of a large message from the start of it (Dovecot reads the header only too): a
        TOP n 0 of a 25 MB message reads 64 KB, not 25 MB. None: read it whole."""
        assert self.store is not None and ev.lines is not None
        want = HEAD_OCTETS + ev.lines * 128
        while want < ev.size:
            try:
                data, whole = await self.store.read_head(self.mailbox_id, ev.uid, want)
            except KeyError:
                return self.machine.message_gone()
            except Exception:
                return None  # the whole read reports its own failure
            if whole:
                return self.machine.message(data)
            reply = self.machine.top_of(data)
            if reply is not None:
                return reply
            want *= 4  # a long header, or long lines
        return None

    async def _read_run(self, n: int) -> tuple[bytes, bool] | KeyError | None:
        """Read message n and the next ones not deleted (within PREFETCH_COUNT and _OCTETS) in
        one store call; keep the others for the next commands. None: read n alone."""
        assert self.store is not None
        md = self.machine.maildrop
        assert md is not None
        numbers = [n]
        uids = [md.entry(n).uid]
        octets = md.entry(n).size
        k = n + 1
        while len(numbers) < PREFETCH_COUNT and md.exists(k):
            if not md.is_deleted(k):
                entry = md.entry(k)
                octets += entry.size
                if octets > PREFETCH_OCTETS:
                    break
                numbers.append(k)
                uids.append(entry.uid)
            k += 1
        if len(numbers) == 1:
            return None
        try:
            got = await self.store.read_wire(self.mailbox_id, uids)
        except Exception:
            return None  # read alone, which reports its own failure
        self._ahead.update(zip(numbers[1:], got[1:], strict=True))
        return got[0]

    async def _update(self, ev: pop3.Update) -> pop3.Reply:
        """RFC 1939 6 UPDATE: remove every marked message in one store call, then sign off."""
        assert self.store is not None
        who = f"pop3 {self.store.account}"
        ok = True
        detail = ""
        try:
            if ev.delete:
                t0 = time.monotonic()
                removed = await self.store.delete_messages(self.mailbox_id, ev.delete)
                self.tracer.note(
                    f"UPDATE removed {len(removed)} of {len(ev.delete)} messages"
                    f" in {time.monotonic() - t0:.3f}s"
                )
        except Exception as e:
            ok = False
            full = storage_full(e)
            if full is None:
                log.exception("pop3: UPDATE failed to remove %d messages", len(ev.delete))
            else:
                # The store's removal is one transaction: refused whole, the maildrop is as
                # it was. RFC 1939 6 lets QUIT fail here; RFC 3206 SYS/TEMP: it will pass.
                log_storage_full(log, who, f"UPDATE removing {len(ev.delete)} messages", full)
                detail = (
                    "Insufficient storage on the server; no messages were removed. Try again later."
                )
        if ok and ev.seen:
            # Dovecot's behaviour: RETR marks \Seen, applied when the session ends with QUIT.
            try:
                await self.store.set_flags(self.mailbox_id, ev.seen, FlagOp.ADD, [SEEN])
            except Exception as e:
                full = storage_full(e)
                if full is None:
                    log.exception("pop3: cannot set \\Seen on %d messages", len(ev.seen))
                else:  # the deletions are done: only \Seen is lost, QUIT still succeeds
                    log_storage_full(log, who, f"UPDATE setting \\Seen on {len(ev.seen)}", full)
        self._release()
        return self.machine.updated(ok, detail)
