"""The POP3 server: `pop3` (STLS, RFC 2595) and `pop3s` (implicit TLS, RFC 8314) listeners, and one
asyncio session per connection that drives proto.pop3's machine against the directory and store.

The machine decides every reply; this module only does the I/O it asks for: verify a password
(throttled per IP), lock and list INBOX, read a message, negotiate TLS, and in the UPDATE state
remove the marked messages with one store call. A dropped or timed-out connection changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

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
PREFETCH_COUNT = 16
PREFETCH_OCTETS = 1 << 20


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


class Pop3Session:
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
        self._task: asyncio.Task[None] | None = None
        self._reading = False
        self._stopping = False
        self._mechanism: sasl.Mechanism | None = None  # the SASL exchange under way
        self._ahead: dict[int, bytes | KeyError] = {}  # message number -> read ahead
        self._last_retrieved = 0
        # One idle timer per session, pushed forward by each read (an asyncio.timeout per read
        # was a timer handle and a context manager per command).
        self._deadline = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        # looked up once (each asyncio.get_running_loop() costs a getpid system call)
        self._loop = asyncio.get_running_loop()

    # ---- lifecycle --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Server shutdown: an idle session says goodbye now; a busy one after its current batch."""
        self._stopping = True
        if self._reading and self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        try:
            await self._run()
        finally:
            # RFC 1939 6/8: a session that ends without QUIT never enters UPDATE: nothing is
            # deleted, the lock is released.
            self._ahead.clear()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._release()
            self.tracer.note("connection closed")

    def _release(self) -> None:
        if self.lock is not None:
            lock, self.lock = self.lock, None
            lock.release()

    async def _read(self) -> bytes | None:
        """The next chunk; b"" at EOF; None after the idle timeout or a shutdown."""
        if self._stopping:
            return None
        self._reading = True
        loop = self._loop
        self._deadline = loop.time() + self.idle_timeout
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self._deadline, self._idle_check)
        try:
            return await self.conn.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if (self._stopping or self._timed_out) and task is not None and task.uncancel() == 0:
                return None
            raise
        finally:
            self._reading = False

    def _idle_check(self) -> None:
        """The idle timer: a read waiting since its deadline ends (None: timed out); one that
        started later moves the timer to its own deadline."""
        self._idle_timer = None
        loop = self._loop
        if loop.time() < self._deadline:
            self._idle_timer = loop.call_at(self._deadline, self._idle_check)
        elif self._reading and self._task is not None:
            self._timed_out = True
            self._task.cancel()
        # not reading (busy with a command): the next read arms the timer again

    # ---- output -----------------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    async def _flush(self) -> None:
        if self._out:
            out, self._out, self._out_size = self._out, [], 0
            self.conn.writer.writelines(out)
        transport = self.conn.writer.transport
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
            return  # not paused: drain() would return at once
        # A client that stops reading must not hold the session (and its lock) forever: the
        # idle timer covers writes too. TimeoutError ends the connection (no UPDATE).
        async with asyncio.timeout(self.idle_timeout):
            await self.conn.writer.drain()

    def _trace_in(self) -> None:
        m = self.machine
        line = m.last_line
        if line is not None:
            word = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
            # a fixed set of labels, whatever the client sends (a SASL response is "OTHER")
            self.ctx.metrics.command("pop3", word if word in POP3_COMMANDS else "OTHER")
        if self.tracer.enabled and m.last_line is not None:
            keep = m.last_line_keep
            self.tracer.client(m.last_line, secret=keep >= 0, keep_words=max(keep, 0))

    def _trace_out(self, data: bytes, body: bool = False) -> None:
        if not self.tracer.enabled:
            return
        if body:
            first, _, rest = data.partition(b"\r\n")
            self.tracer.server(first + b"\r\n")
            self.tracer.note(f"({len(rest)} octets of message data)")
        else:
            self.tracer.server(data)

    # ---- the command loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        m = self.machine
        greeting = m.greeting()
        self._trace_out(greeting)
        self._queue(greeting)
        await self._flush()
        while True:
            ev = m.next_event()
            self._trace_in()
            if isinstance(ev, pop3.NeedData):
                await self._flush()
                data = await self._read()
                if data is None:
                    reply = m.shutting_down() if self._stopping else m.timed_out()
                    self._trace_out(reply.data)
                    self._queue(reply.data)
                    await self._flush()
                    return
                if not data:
                    self.tracer.note("client closed the connection")
                    return
                m.receive_data(data)
                continue
            if isinstance(ev, pop3.Closed):
                return
            if isinstance(ev, pop3.Reply):
                reply = ev
                body = False
            elif isinstance(ev, pop3.Retrieve):
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
                continue
            else:
                assert isinstance(ev, pop3.Update)
                reply = await self._update(ev)
                body = False
            self.ctx.metrics.reply("pop3", "+OK" if reply.data.startswith(b"+") else "-ERR")
            self._trace_out(reply.data, body)
            self._queue(reply.data)
            if reply.close:
                await self._flush()
                return
            if self._out_size >= FLUSH_AT:
                await self._flush()

    # ---- requests ---------------------------------------------------------------------------------

    async def _start_tls(self, ev: pop3.StartTLS) -> None:
        self._trace_out(ev.reply)
        self._queue(ev.reply)
        await self._flush()
        discarded = await self.conn.start_tls(self.ctx.tls)
        self.machine.tls_started()
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

    async def _retrieve(self, ev: pop3.Retrieve) -> pop3.Reply:
        assert self.store is not None
        n = ev.number
        in_order = n == self._last_retrieved + 1
        self._last_retrieved = n
        got = self._ahead.pop(n, None) if in_order else None
        if got is None:
            self._ahead.clear()  # not reading in order (or past the run): stop guessing
            if in_order and PREFETCH_COUNT:
                got = await self._read_run(n)
        try:
            if got is None:
                data = await self.store.read_message(self.mailbox_id, ev.uid)
            elif isinstance(got, KeyError):
                raise got
            else:
                data = got
        except KeyError:
            return self.machine.message_gone()
        except Exception:
            log.exception("pop3: cannot read message uid %d", ev.uid)
            return self.machine.message_unavailable()
        return self.machine.message(data)

    async def _read_run(self, n: int) -> bytes | KeyError | None:
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
            got = await self.store.read_messages(self.mailbox_id, uids)
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
