"""The ManageSieve server (RFC 5804) on [listen] sieve: users upload, check, list, activate,
rename and delete their Sieve scripts. STARTTLS, then SASL PLAIN/LOGIN (plaintext auth only
over TLS unless configured), the IMAP server's throttling, per-session limits. Scripts live in
mail/sieve_scripts.py (called from a thread); proto/managesieve parses and renders.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from carteiro import __version__
from carteiro.directory.throttle import Refused
from carteiro.mail.sieve_filter import SIEVE_DIR
from carteiro.mail.sieve_scripts import ScriptError, ScriptStore
from carteiro.net.listener import Connection, Listener, UserIPCounter
from carteiro.net.trace import Tracer
from carteiro.proto import sasl
from carteiro.proto.managesieve import (
    Atom,
    Line,
    LineError,
    NeedData,
    Receiver,
    bye,
    capabilities,
    no,
    ok,
    string,
)
from carteiro.servers.context import ServerContext
from carteiro.sieve.compiler import EXTENSIONS, NOTIFY_METHODS, compile_script, valid_script_name
from carteiro.sieve.errors import SieveSyntaxError

log = logging.getLogger("carteiro.managesieve")
READ_SIZE = 64 * 1024
T = TypeVar("T")


def listeners(ctx: ServerContext) -> list[Listener]:
    cfg = ctx.config
    if not cfg.listen.sieve:
        return []
    service = SieveService(ctx)
    return [
        Listener(
            "sieve",
            cfg.listen.sieve,
            service.handle,
            max_connections=cfg.sieve.max_connections,
            max_per_ip=cfg.sieve.max_connections_per_ip,
            refuse=_refuse,
        )
    ]


async def _refuse(writer: asyncio.StreamWriter, ip: str) -> None:
    writer.write(bye("Too many connections; try again later.", "TRYLATER"))
    await writer.drain()


class SieveService:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        s = ctx.config.sieve
        self.scripts = ScriptStore(
            ctx.config.data_dir / SIEVE_DIR, s.max_scripts, s.max_script_size
        )
        self.sessions: set[SieveSession] = set()
        self.userip = UserIPCounter()  # logged-in sessions per (account, address)
        self._watcher: asyncio.Task[None] | None = None

    async def handle(self, conn: Connection) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_shutdown())
        session = SieveSession(self, conn)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def _watch_shutdown(self) -> None:
        await self.ctx.shutdown.wait()
        for session in list(self.sessions):
            session.stop()


Handler = Callable[["SieveSession", tuple[object, ...]], Awaitable[bytes]]


class _Closed(Exception):
    pass


class SieveSession:
    def __init__(self, service: SieveService, conn: Connection) -> None:
        self.service = service
        self.ctx = service.ctx
        self.cfg = service.ctx.config.sieve
        self.conn = conn
        self.scripts = service.scripts
        # a literal up to the script size limit (plus framing) is read; larger ones are skipped
        self.receiver = Receiver(
            max_line=self.cfg.max_line_length,
            max_literal=self.cfg.max_script_size + 1024,
            hard_literal=max(64 << 20, self.cfg.max_script_size * 4),
        )
        self.account: str | None = None
        self.leave_userip: Callable[[], None] | None = None  # frees its place in service.userip
        self.userip_account = ""  # whose place that is (kept after UNAUTHENTICATE)
        self.errors = 0
        self.auth_failures = 0
        self.tracer = Tracer("sieve", service.ctx.tracing("sieve"), peer=conn.peer_ip)
        self._stopping = False
        self._reading = False
        self._task: asyncio.Task[None] | None = None

    # ---- plumbing ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        if self._reading and self._task is not None:
            self._task.cancel()

    async def send(self, data: bytes) -> None:
        if self.tracer.enabled:
            self.tracer.server(data if len(data) < 2048 else data[:2048] + b"...\r\n")
        writer = self.conn.writer
        writer.write(data)
        transport = writer.transport
        # Nothing left in the transport's buffer (one send took it all): no flow control to wait
        # for, and no timer to arm (one per reply was 100 MB of spent timers under a NOOP flood).
        if transport.get_write_buffer_size() or transport.is_closing():
            async with asyncio.timeout(self.cfg.idle_timeout):
                await writer.drain()

    async def line(self) -> Line | None:
        """The next complete line (errors answered here); None at EOF, timeout or shutdown."""
        while True:
            ev = self.receiver.next_event()
            if isinstance(ev, Line):
                return ev
            if isinstance(ev, LineError):
                if ev.fatal:
                    await self.send(bye(ev.reason, ev.code))
                    return None
                await self.bad(no(ev.reason, ev.code))
                continue
            assert isinstance(ev, NeedData)
            data = await self._read()
            if data is None:
                return None
            self.receiver.receive_data(data)

    async def _read(self) -> bytes | None:
        if self._stopping:
            await self.send(bye("Server shutting down.", "TRYLATER"))
            return None
        timeout = self.cfg.idle_timeout if self.account else self.cfg.login_timeout
        self._reading = True
        try:
            async with asyncio.timeout(timeout):
                data = await self.conn.reader.read(READ_SIZE)
        except TimeoutError:
            await self.send(bye("Disconnected for inactivity."))
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and task is not None and task.uncancel() == 0:
                await self.send(bye("Server shutting down.", "TRYLATER"))
                return None
            raise
        finally:
            self._reading = False
        if not data:
            return None
        if self.tracer.enabled:
            self.tracer.client(data[:2048])
        return data

    async def bad(self, reply: bytes) -> None:
        self.errors += 1
        if self.errors > self.cfg.max_errors:
            await self.send(bye("Too many errors."))
            raise _Closed
        await self.send(reply)

    def capability_lines(self) -> bytes:
        tls = self.conn.tls is not None
        can_auth = tls or self.cfg.allow_plaintext_auth
        caps: list[tuple[str, str | None]] = [
            ("IMPLEMENTATION", f"carteiro {__version__}"),
            # RFC 5804 2.1: no mechanism is offered where it may not be used
            ("SASL", " ".join(sasl.MECHANISMS) if can_auth else ""),
            ("SIEVE", " ".join(EXTENSIONS)),
            ("NOTIFY", " ".join(NOTIFY_METHODS)),
            ("MAXREDIRECTS", str(self.ctx.config.sieve.max_redirects)),
        ]
        if not tls:
            caps.append(("STARTTLS", None))
        if self.account is not None:
            caps.append(("OWNER", self.account))
        caps += [("UNAUTHENTICATE", None), ("VERSION", "1.0")]
        return capabilities(caps)

    # ---- the command loop -------------------------------------------------------------------

    async def run(self) -> None:
        self._task = asyncio.current_task()
        try:
            # RFC 5804 1.7: the greeting is the capability list and OK
            await self.send(self.capability_lines() + ok("carteiro ManageSieve ready."))
            while True:
                line = await self.line()
                if line is None:
                    return
                if not await self.command(line):
                    return
                if self.conn.turn_over():  # a pipelined flood: let the other sessions run
                    await self.conn.yield_turn()
        except (_Closed, ConnectionError, TimeoutError):
            return
        finally:
            self._free_userip()
            self.tracer.note("connection closed")

    def _free_userip(self) -> None:
        if self.leave_userip is not None:
            self.leave_userip()
            self.leave_userip = None

    async def command(self, line: Line) -> bool:
        toks = line.tokens
        if not toks:
            await self.bad(no("Empty command."))
            return True
        name = toks[0]
        if not isinstance(name, Atom):
            await self.bad(no("Expected a command name."))
            return True
        args = toks[1:]
        cmd = name.value
        if cmd in ("LOGOUT", "CAPABILITY") and args:
            await self.bad(no(f"{cmd} takes no arguments."))  # RFC 5804 4: command-logout ...
            return True
        if cmd == "LOGOUT":
            await self.send(ok("Logout complete."))
            return False
        if cmd == "CAPABILITY":
            await self.send(self.capability_lines() + ok())
        elif cmd == "NOOP":
            if args and isinstance(args[0], bytes) and len(args) == 1:
                try:
                    args[0].decode("utf-8")
                except UnicodeDecodeError:
                    await self.send(no("The tag is not UTF-8."))  # (a string is UTF-8: RFC 5804 4)
                else:
                    await self.send(ok("Done.", b"TAG " + string(args[0])))
            elif not args:
                await self.send(ok("Done."))
            else:
                await self.bad(no("NOOP takes at most one string."))
        elif cmd == "STARTTLS":
            await self.starttls(args)
        elif cmd == "AUTHENTICATE":
            return await self.authenticate(args)
        elif cmd == "UNAUTHENTICATE":
            if self.account is None or args:
                await self.bad(no("Not authenticated."))
            else:
                # RFC 5804 2.14.1: back to the non-authenticated state. The connection keeps
                # its place per account and address until it logs in again or closes: it left
                # the address's cap at login, and a loop of logins and UNAUTHENTICATEs must not
                # give anyone connections that count nowhere.
                self.account = None
                await self.send(ok())
        elif cmd in _SCRIPT_COMMANDS:
            if self.account is None:
                await self.bad(no("Authenticate first."))
            else:
                await _SCRIPT_COMMANDS[cmd](self, args)
        else:
            # the name is echoed only when it is a plain word (never a client's control octets)
            shown = cmd[:40] if cmd[:40].isalnum() and cmd.isascii() else ""
            await self.bad(no(f"Unknown command {shown}." if shown else "Unknown command."))
        return True

    async def starttls(self, args: tuple[object, ...]) -> None:
        if args or self.conn.tls is not None or self.account is not None:
            await self.bad(no("STARTTLS is not possible now."))
            return
        await self.send(ok("Begin TLS negotiation now."))
        self.receiver.clear()  # nothing pipelined before the handshake is read as a command
        discarded = await self.conn.start_tls(self.ctx.tls)
        self.tracer.note(f"TLS started; {discarded} pipelined octets discarded")
        # RFC 5804 2.2: the capabilities again, now over TLS
        await self.send(self.capability_lines() + ok("TLS negotiation successful."))

    async def authenticate(self, args: tuple[object, ...]) -> bool:
        if self.account is not None:
            await self.bad(no("Already authenticated."))
            return True
        if self.conn.tls is None and not self.cfg.allow_plaintext_auth:
            await self.bad(no("Use STARTTLS first.", "ENCRYPT-NEEDED"))
            return True
        if not args or not isinstance(args[0], bytes) or len(args) > 2:
            await self.bad(no('Usage: AUTHENTICATE "MECHANISM" ["initial response"].'))
            return True
        mech = args[0].decode("ascii", "replace")
        server = sasl.server(mech)
        if server is None:
            await self.bad(no(f"Unsupported mechanism {mech[:40]}."))
            return True
        initial = args[1] if len(args) == 2 else None
        if initial is not None and not isinstance(initial, bytes):
            await self.bad(no("The initial response must be a string."))
            return True
        step = server.start_wire(
            initial.decode("ascii", "replace") if initial is not None else None
        )
        while isinstance(step, sasl.Challenge):
            # RFC 5804 2.1: the challenge is a string; the client answers with a string
            await self.send(string(base64.b64encode(step.data)) + b"\r\n")
            answer = await self.line()
            if answer is None:
                return False
            toks = answer.tokens
            if len(toks) != 1 or not isinstance(toks[0], bytes):
                await self.bad(no("Expected a string."))
                return True
            if toks[0] == b"*":
                await self.send(no("Authentication cancelled."))
                return True
            step = server.respond(toks[0].decode("ascii", "replace"))
        if isinstance(step, sasl.Failure):
            if step.kind is sasl.FailureKind.REFUSED:
                await asyncio.sleep(self.ctx.throttle.record_failure(self.conn.peer_ip))
            return await self.auth_failed(f"Authentication failed: {step.reason}.")
        assert isinstance(step, sasl.Success)
        return await self.login(step.credentials.authcid, step.credentials.password)

    async def login(self, user: str, password: str) -> bool:
        ip = self.conn.peer_ip
        slot = await self.ctx.throttle.reserve(ip, user)
        if isinstance(slot, Refused):
            await self.send(no(f"{slot.text}.", "TRYLATER"))
            return True
        try:
            account = await self.ctx.directory.verify(user, password)
            if account is None:
                delay = slot.failure()
                log.info("managesieve: %s: authentication failed for %r", ip, user[:100])
                await asyncio.sleep(delay)
            else:
                slot.success(account)
        finally:
            slot.release()
        if account is None:
            return await self.auth_failed("Authentication failed.")
        if self.leave_userip is None or self.userip_account != account:
            limit = self.cfg.max_userip_connections
            leave = self.service.userip.take(account, self.conn.client_ip, limit)
            if leave is None:
                # as IMAP and Dovecot (mail_max_userip_connections), after the password only; a
                # connection logged in before (then UNAUTHENTICATE) keeps the place it had
                log.warning(
                    "managesieve %s: %s has %d sessions from this address; refused",
                    ip,
                    account,
                    limit,
                )
                await self.send(
                    no("Maximum number of connections from user+IP exceeded.", "TRYLATER")
                )
                return True
            self._free_userip()  # the place of an earlier login on this connection
            self.leave_userip, self.userip_account = leave, account
            self.conn.leave_ip_cap()  # counted per account and address from now on
        self.account = account
        self.tracer.note(f"logged in as {account}")
        await self.send(ok("Logged in."))
        return True

    async def auth_failed(self, text: str) -> bool:
        self.auth_failures += 1
        if self.auth_failures >= self.cfg.max_auth_failures:
            await self.send(bye("Too many authentication failures."))
            return False
        await self.send(no(text))
        return True

    # ---- script commands (authenticated) -----------------------------------------------------

    async def _store(self, fn: Callable[[], T]) -> T:
        """Run a script-store call in a thread. ScriptError passes through; an OSError (disk
        full, I/O error) is logged and raised as ScriptError(TRYLATER) (RFC 5804 1.3), so the
        client gets an answer and the session goes on, as Pigeonhole does."""
        try:
            return await asyncio.to_thread(fn)
        except OSError:
            log.exception("managesieve: %s: script store failed", self.account)
            raise ScriptError("Internal error; try again later.", "TRYLATER") from None

    @staticmethod
    def _name(tok: object) -> str | None:
        """A valid script name, or None. Only for a string: the caller refuses other tokens as
        a malformed command, but an invalid name only as a refused operation (plain NO,
        not counted towards max_errors; Pigeonhole does the same)."""
        assert isinstance(tok, bytes)
        try:
            name = tok.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return name if valid_script_name(name) else None

    async def _invalid_name(self) -> None:
        await self.send(no("Invalid script name."))

    async def _script_error(self, e: ScriptError) -> None:
        await self.send(no(e.message, e.code))

    async def cmd_putscript(self, args: tuple[object, ...]) -> None:
        if len(args) != 2 or not isinstance(args[0], bytes) or not isinstance(args[1], bytes):
            await self.bad(no('Usage: PUTSCRIPT "name" {script}.'))
            return
        name = self._name(args[0])
        if name is None:
            await self._invalid_name()
            return
        try:
            text = args[1].decode("utf-8")
        except UnicodeDecodeError:
            await self.send(no("The script is not UTF-8."))
            return
        account = self.account
        assert account is not None
        try:
            await self._store(lambda: self.scripts.put(account, name, text))
        except ScriptError as e:
            await self._script_error(e)
            return
        await self.send(ok())

    async def cmd_checkscript(self, args: tuple[object, ...]) -> None:
        if len(args) != 1 or not isinstance(args[0], bytes):
            await self.bad(no("Usage: CHECKSCRIPT {script}."))
            return
        if len(args[0]) > self.cfg.max_script_size:
            await self.send(no("Script too large.", "QUOTA/MAXSIZE"))
            return
        try:
            text = args[0].decode("utf-8")
            await asyncio.to_thread(compile_script, text)
        except UnicodeDecodeError:
            await self.send(no("The script is not UTF-8."))
            return
        except SieveSyntaxError as e:
            await self.send(no(str(e)))
            return
        await self.send(ok())

    async def cmd_listscripts(self, args: tuple[object, ...]) -> None:
        if args:
            await self.bad(no("LISTSCRIPTS takes no arguments."))
            return
        account = self.account
        assert account is not None
        try:
            listing = await self._store(lambda: self.scripts.list(account))
        except ScriptError as e:
            await self._script_error(e)
            return
        out = b"".join(string(n) + (b" ACTIVE" if a else b"") + b"\r\n" for n, a in listing)
        await self.send(out + ok())

    async def cmd_getscript(self, args: tuple[object, ...]) -> None:
        if len(args) != 1 or not isinstance(args[0], bytes):
            await self.bad(no('Usage: GETSCRIPT "name".'))
            return
        name = self._name(args[0])
        if name is None:
            await self._invalid_name()
            return
        account = self.account
        assert account is not None
        try:
            text = await self._store(lambda: self.scripts.get(account, name))
        except ScriptError as e:
            await self._script_error(e)
            return
        if text is None:
            await self.send(no("There is no script by that name.", "NONEXISTENT"))
            return
        data = text.encode("utf-8")
        await self.send(b"{%d}\r\n" % len(data) + data + b"\r\n" + ok())

    async def cmd_setactive(self, args: tuple[object, ...]) -> None:
        if len(args) != 1 or not isinstance(args[0], bytes):
            await self.bad(no('Usage: SETACTIVE "name".'))
            return
        account = self.account
        assert account is not None
        # "" deactivates every script (RFC 5804 2.8)
        name = None if args[0] == b"" else self._name(args[0])
        if args[0] and name is None:
            await self._invalid_name()
            return
        try:
            await self._store(lambda: self.scripts.set_active(account, name))
        except ScriptError as e:
            await self._script_error(e)
            return
        await self.send(ok())

    async def cmd_deletescript(self, args: tuple[object, ...]) -> None:
        if len(args) != 1 or not isinstance(args[0], bytes):
            await self.bad(no('Usage: DELETESCRIPT "name".'))
            return
        name = self._name(args[0])
        if name is None:
            await self._invalid_name()
            return
        account = self.account
        assert account is not None
        try:
            await self._store(lambda: self.scripts.delete(account, name))
        except ScriptError as e:
            await self._script_error(e)
            return
        await self.send(ok())

    async def cmd_renamescript(self, args: tuple[object, ...]) -> None:
        if len(args) != 2 or not isinstance(args[0], bytes) or not isinstance(args[1], bytes):
            await self.bad(no('Usage: RENAMESCRIPT "old" "new".'))
            return
        old, new = self._name(args[0]), self._name(args[1])
        if old is None or new is None:
            await self._invalid_name()
            return
        account = self.account
        assert account is not None
        try:
            await self._store(lambda: self.scripts.rename(account, old, new))
        except ScriptError as e:
            await self._script_error(e)
            return
        await self.send(ok())

    async def cmd_havespace(self, args: tuple[object, ...]) -> None:
        if len(args) != 2 or not isinstance(args[0], bytes) or not isinstance(args[1], int):
            await self.bad(no('Usage: HAVESPACE "name" size.'))
            return
        name = self._name(args[0])
        if name is None:
            await self._invalid_name()
            return
        size = args[1]
        account = self.account
        assert account is not None
        try:
            await self._store(lambda: self.scripts.have_space(account, name, size))
        except ScriptError as e:
            await self._script_error(e)
            return
        await self.send(ok())


_SCRIPT_COMMANDS: dict[str, Callable[[SieveSession, tuple[object, ...]], Awaitable[None]]] = {
    "PUTSCRIPT": SieveSession.cmd_putscript,
    "CHECKSCRIPT": SieveSession.cmd_checkscript,
    "LISTSCRIPTS": SieveSession.cmd_listscripts,
    "GETSCRIPT": SieveSession.cmd_getscript,
    "SETACTIVE": SieveSession.cmd_setactive,
    "DELETESCRIPT": SieveSession.cmd_deletescript,
    "RENAMESCRIPT": SieveSession.cmd_renamescript,
    "HAVESPACE": SieveSession.cmd_havespace,
}
