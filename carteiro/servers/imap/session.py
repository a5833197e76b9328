"""One IMAP connection: read loop, state machine (RFC 9051 3), dispatch, unsolicited updates.

Commands run one at a time in arrival order; responses are buffered and written when the client
has nothing more pipelined or the buffer grows. After each command the selected mailbox's
pending changes are announced, EXPUNGE only where RFC 3501 7.4.1 / RFC 9051 7.5.1 allow it.
The command handlers live in the sibling modules, one per command family.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from carteiro.mail.imap_view import MailboxView, Updates
from carteiro.net.listener import Connection
from carteiro.net.trace import Tracer
from carteiro.proto.imap import commands as c
from carteiro.proto.imap.parser import ParseError, parse_command
from carteiro.proto.imap.receiver import (
    NEED_DATA,
    AuthResponse,
    Command,
    Event,
    IdleDone,
    NeedContinuation,
    ProtocolError,
    Receiver,
)
from carteiro.proto.imap.sets import SequenceSet, render_numbers
from carteiro.servers.imap import render
from carteiro.servers.storage_errors import log_storage_full, storage_full
from carteiro.store.api import (
    AccountStore,
    ChangeSubscription,
    InvalidName,
    MailboxExists,
    MailboxNotFound,
    OverQuota,
    StorageFull,
    StoreError,
)

if TYPE_CHECKING:
    from carteiro.servers.imap.compress import Deflate
    from carteiro.servers.imap.contexts import Contexts
    from carteiro.servers.imap.notify import Notifier
    from carteiro.servers.imapd import IMAPServer

log = logging.getLogger("carteiro.imap")

FLUSH_AT = 128 * 1024
PREAUTH_MAX_LITERAL = 8192  # LOGIN/AUTHENTICATE need no more before authentication


class State(enum.IntEnum):
    NOT_AUTHENTICATED = 0
    AUTHENTICATED = 1
    SELECTED = 2
    LOGOUT = 3


class Result:
    """A tagged completion: ``tag STATUS [code] text``."""

    __slots__ = ("code", "status", "text")

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        self.status = status
        self.text = text
        self.code = code


def ok(text: str, code: str | None = None) -> Result:
    return Result("OK", text, code)


def no(text: str, code: str | None = None) -> Result:
    return Result("NO", text, code)


def bad(text: str, code: str | None = None) -> Result:
    return Result("BAD", text, code)


def undecodable(*names: str, code: str = "NONEXISTENT") -> Result | None:
    """NO when a name is good syntax but not valid modified UTF-7 (c.UndecodableName): no mailbox
    has such a name and none can be created with it (RFC 3501 5.1.3), so the command is refused
    like one naming a missing mailbox rather than as a syntax error. The name is not echoed."""
    if any(isinstance(n, c.UndecodableName) for n in names):
        return no("Mailbox name is not valid modified UTF-7", code)
    return None


ANSWERED = Result("", "")
"""Returned by a handler that already wrote its tagged response (STARTTLS)."""


Handler = Callable[["Session", str, Any], Awaitable[Result]]


class Closing(Exception):
    """The session ends after what was written (LOGOUT, BYE)."""


class Session:
    __slots__ = (
        "_cancelling",
        "_read_deadline",
        "_timed_out",
        "_timer",
        "account",
        "auth_failures",
        "conn",
        "contexts",
        "deflate",
        "enabled",
        "idle_task",
        "implicit_tls",
        "leave_userip",
        "loop",
        "notify",
        "out",
        "rx",
        "saved",
        "server",
        "state",
        "store",
        "sub",
        "task",
        "tracer",
        "user",
        "view",
    )

    def __init__(self, server: IMAPServer, conn: Connection, implicit_tls: bool) -> None:
        self.server = server
        self.conn = conn
        self.implicit_tls = implicit_tls
        self.state = State.NOT_AUTHENTICATED
        self.rx = server.new_receiver()
        self.out = bytearray()
        self.tracer = Tracer("imap", server.tracing, f"{conn.peer_ip}:{conn.peer_port}")
        self.user = ""
        self.account: str = ""
        self.store: AccountStore | None = None
        self.view: MailboxView | None = None
        self.sub: ChangeSubscription | None = None
        self.enabled: frozenset[str] = frozenset()
        self.deflate: Deflate | None = None  # RFC 4978 COMPRESS=DEFLATE, once active
        self.auth_failures = 0
        self.leave_userip: Callable[[], None] | None = None  # frees its place in server.userip
        self.idle_task: asyncio.Task[bytes] | None = None
        self.saved: list[int] = []  # RFC 5182 SEARCHRES: UIDs of the last SEARCH ... SAVE
        self.contexts: Contexts | None = None  # RFC 5267 4.3: live SEARCH/SORT results
        self.notify: Notifier | None = None  # RFC 5465 NOTIFY SET in force (servers/imap/notify)
        # The read timeout (see read()): one lazy timer per session, not one per read.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_deadline = 0.0  # loop time the current read() gives up at; 0: not reading
        self._timed_out = False
        self._cancelling = 0

    # ---- properties used by handlers --------------------------------------------------------

    @property
    def tls(self) -> bool:
        return self.conn.tls is not None

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        """RFC 7162 3.1: a CONDSTORE enabling command was seen (QRESYNC implies it): MODSEQ in
        every FETCH response a flag change causes, HIGHESTMODSEQ on SELECT/EXAMINE."""
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        """RFC 7162 3.2: ENABLE QRESYNC was seen: VANISHED replaces EXPUNGE."""
        return "QRESYNC" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE enabling command (RFC 7162 3.1). Issued while a mailbox is selected, the
        client learns the HIGHESTMODSEQ its view reflects, as SELECT would have told it."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled = self.enabled | {"CONDSTORE"}
        if self.view is not None:
            self.out += b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.view.modseq

    def announce_expunged(self, msns: list[int], uids: list[int]) -> None:
        """EXPUNGE responses for these (each MSN already adjusted for the ones before it), or one
        VANISHED with their UIDs once QRESYNC is enabled (RFC 7162 3.2.10)."""
        if not msns:
            return
        if self.contexts is not None:
            # RFC 5267 4.3: the REMOVEFROM comes first, while the numbers still name them
            self.contexts.expunged(self, msns, uids)
        if self.qresync:
            self.out += b"* VANISHED " + render_numbers(uids).encode() + b"\r\n"
            return
        out = self.out
        for msn in msns:
            out += b"* %d EXPUNGE\r\n" % msn

    @property
    def utf8(self) -> bool:
        """Mailbox names and strings in UTF-8 (RFC 6855 3, RFC 9051)."""
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    def capabilities(self) -> str:
        return self.server.capabilities(self)

    def mbox(self, name: str) -> bytes:
        return render.mailbox(name, self.utf8)

    # ---- output -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.out += data

    def untagged(self, line: str | bytes) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.out += b"* " + line + b"\r\n"

    async def flush(self, drain: bool = True) -> None:
        """Send what is buffered. `drain` False (NOTIFY pushes) never waits for a client that
        does not read: its backlog shows in the transport's buffer (NOTIFICATIONOVERFLOW)."""
        if not self.out:
            return
        data = bytes(self.out)
        self.out.clear()
        if self.tracer.enabled:
            self.tracer.server(data)
        if self.deflate is not None:
            data = self.deflate.compress(data)
        writer = self.conn.writer
        transport = writer.transport
        if transport.is_closing():  # lost while a command ran: a closed transport refuses writes
            raise ConnectionResetError("the client went away")
        transport.write(data)
        # Nothing left in the transport's buffer (the usual case: one send took it all): no
        # flow control to wait for. A lost connection shows at the next read.
        if drain and (transport.get_write_buffer_size() or transport.is_closing()):
            # A client that stops reading our output must not hold its session (a connection
            # slot, the selected mailbox, the buffered output) for ever: the idle timeout
            # covers waiting for it to read too (Dovecot: "Disconnected for inactivity in
            # reading our output"). No BYE: it would not be read either.
            try:
                async with asyncio.timeout(self.server.config.idle_timeout):
                    await writer.drain()
            except TimeoutError:
                log.info(
                    "imap %s: output not read for %g s; disconnected",
                    self.conn.client_ip,
                    self.server.config.idle_timeout,
                )
                self.out.clear()
                transport.abort()
                raise Closing from None

    async def maybe_flush(self) -> None:
        if len(self.out) >= FLUSH_AT:
            await self.flush()

    # ---- main loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()  # the connection's task: every read() is awaited in it
        conn = self.conn
        try:
            self.untagged(f"OK [CAPABILITY {self.capabilities()}] {self.server.greeting}")
            await self.flush()
            while self.state is not State.LOGOUT:
                ev = self.rx.next_event()
                if ev is NEED_DATA:
                    await self.flush()
                    data = await self.read()
                    if not data:
                        return
                    self.rx.feed(data)
                    continue
                await self.on_event(ev)
                # Pipelined commands are answered from the buffer without a read between them:
                # what they say goes out (and waits for the client) once it is FLUSH_AT, not
                # after the whole batch (thousands of GETMETADATA of 64 KB in one 64 KB read),
                # and the session lets others run now and then (docs/imap.md, back-pressure).
                if len(self.out) >= FLUSH_AT:
                    await self.flush()
                if conn.turn_over():
                    await conn.yield_turn()
        except Closing:
            pass
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await self._cleanup()
            try:
                await self.flush()
            except (ConnectionError, OSError, Closing):
                pass

    async def read(self) -> bytes:
        """The client's next bytes; b"" at EOF or after the read timeout (with a BYE queued).

        The timeout is one lazy timer per session rather than a timer per read (a client round
        trip is one read, so a timer per read cost more than many a command): each read only
        records its deadline, and the timer is re-armed only when it fires early (the session
        was busy or read again since) or when a read's deadline comes before it.
        """
        loop = self.loop
        if loop is None:  # not started by run() (tests driving a session directly)
            loop = self.loop = asyncio.get_running_loop()
            self.task = asyncio.current_task()
        cfg = self.server.config
        timeout = cfg.login_timeout if self.state is State.NOT_AUTHENTICATED else cfg.idle_timeout
        deadline = self._read_deadline = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer)
        try:
            if self.notify is not None and not self.rx.buffered:
                # RFC 5465: announce events while waiting, but never inside a command (a
                # literal being sent, a line half received)
                return await self.notify.recv(self)
            return await self.recv()
        except asyncio.CancelledError:
            task = self.task
            if self._timed_out and task is not None:
                self._timed_out = False
                if task.uncancel() <= self._cancelling:  # our own cancel, nobody else's
                    self.untagged("BYE Autologout; idle for too long")
                    return b""
            raise
        finally:
            self._read_deadline = 0.0

    async def recv(self) -> bytes:
        """The client's next bytes as the protocol sees them (inflated once COMPRESS is active);
        b"" at EOF."""
        deflate = self.deflate
        if deflate is None:
            return await self.conn.reader.read(65536)
        while True:
            if deflate.pending:  # what the last read held beyond one chunk's output
                data = self.inflate(b"")
            else:
                raw = await self.conn.reader.read(65536)
                if not raw:
                    return b""
                data = self.inflate(raw)
            if data:  # (b"" would read as EOF: a partial block waits for more input)
                return data

    def inflate(self, raw: bytes) -> bytes:
        """Compressed input as plain octets; a broken stream ends the session (with a BYE, which
        goes out compressed like everything after COMPRESS)."""
        assert self.deflate is not None
        try:
            return self.deflate.decompress(raw)
        except (zlib.error, EOFError) as e:
            log.info("imap %s: bad compressed stream: %s", self.conn.client_ip, e)
            self.untagged("BYE Invalid compressed data")
            raise Closing from None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._read_deadline
        if not deadline:
            return  # busy with a command (or in IDLE, which has its own timeout): next read arms
        loop = self.loop
        assert loop is not None
        if loop.time() < deadline:  # read again since the timer was armed
            self._timer = loop.call_at(deadline, self._on_timer)
            return
        task = self.task
        if task is not None and not task.done() and not self._timed_out:
            # as asyncio.timeout does: cancel the read, then tell our cancel from others'
            self._timed_out = True
            self._cancelling = task.cancelling()
            task.cancel()

    async def on_event(self, ev: Event) -> None:
        if isinstance(ev, Command):
            await self.on_command(ev)
        elif isinstance(ev, NeedContinuation):
            if self.state is State.NOT_AUTHENTICATED and ev.size > PREAUTH_MAX_LITERAL:
                self.rx.reject_literal()
                self.tagged(ev.tag, bad("Literal too big before authentication", "TOOBIG"))
                return
            self.write(b"+ OK\r\n")
            await self.flush()
        elif isinstance(ev, ProtocolError):
            text = render.text(ev.reason)
            code = b"[" + ev.code.encode() + b"] " if ev.code else b""
            if ev.fatal and ev.tag is None:
                # no command to answer (e.g. an endless line): just BYE, as Dovecot does
                self.untagged(b"BYE " + code + text)
                raise Closing
            tag = ev.tag.encode() if ev.tag else b"*"
            # RFC 7889 / RFC 5530: a refused (synchronising) oversized APPEND is NO [TOOBIG];
            # framing errors are BAD.
            too_big = ev.reason == "Message too big" and ev.tag is not None and not ev.fatal
            status = b" NO " if too_big else b" BAD "
            self.write(tag + status + code + text + b"\r\n")
            if ev.fatal:
                self.untagged("BYE Protocol error")
                raise Closing
        elif isinstance(ev, AuthResponse | IdleDone):  # pragma: no cover - receiver modes
            self.untagged("BAD Unexpected continuation")

    def tagged(self, tag: str, res: Result) -> None:
        self.server.ctx.metrics.reply("imap", res.status)
        code = f"[{res.code}] " if res.code else ""
        text = res.text
        if not text.isascii() and not self.utf8:
            # RFC 3501 9: resp-text is 7-bit TEXT-CHAR; a mailbox name quoted in it is shown
            # as the client wrote it, in modified UTF-7 (RFC 3501 5.1.3)
            text = render.ascii_text(text)
        self.out += f"{tag} {res.status} {code}".encode() + render.text(text) + b"\r\n"

    async def on_command(self, cmd: Command) -> None:
        if self.tracer.enabled:
            secret = cmd.name in ("LOGIN", "AUTHENTICATE")
            self.tracer.client(cmd.redacted().encode(), secret=secret, keep_words=3)
        segments = cmd.segments
        if not cmd.literals and len(segments) == 1 and len(segments[0]) <= _PARSED_MAX_LINE:
            # Clients repeat the same few commands (SELECT INBOX, NOOP, FETCH 1:* (FLAGS)):
            # their immutable parse results are shared. Tag and errors are never cached.
            key = (cmd.name, segments[0], self.utf8)
            req: c.Request | ParseError | None = _PARSED.get(key)
            if req is None:
                req = parse_command(cmd, utf8=key[2])
                if isinstance(req, _CACHEABLE):
                    if len(_PARSED) >= _PARSED_SIZE:
                        _PARSED.clear()
                    _PARSED[key] = req
        else:
            req = parse_command(cmd, utf8=self.utf8)
        if isinstance(req, ParseError):
            self.server.ctx.metrics.command("imap", "INVALID")
            if self.view is not None and self.saved and _search_save(cmd):
                self.saved = []  # RFC 5182 2.1: a failed SEARCH ... SAVE empties "$"
            self.tagged(req.tag, Result(req.status, req.reason, req.code))
            return
        await self.execute(cmd.tag, req)

    async def execute(self, tag: str, req: c.Request) -> None:
        entry = DISPATCH.get(type(req))
        # the parsed request's type: a fixed set, whatever the client sends
        self.server.ctx.metrics.command("imap", type(req).__name__.upper())
        if entry is None:  # parsed but not offered (e.g. an extension we do not advertise)
            self.tagged(tag, bad("Command not supported"))
            return
        handler, min_state, max_state = entry
        if self.state < min_state:
            if min_state is State.SELECTED and self.state is State.AUTHENTICATED:
                self.tagged(tag, bad("No mailbox selected"))
            else:
                self.tagged(tag, bad("Command not allowed before authentication"))
            return
        if self.state > max_state:
            self.tagged(tag, bad("Command not allowed in this state"))
            return
        try:
            res = await handler(self, tag, req)
        except Closing:
            raise
        except MailboxNotFound as e:
            res = no(f"Mailbox doesn't exist: {_reason(e)}", "NONEXISTENT")
        except MailboxExists as e:
            res = no(f"Mailbox already exists: {_reason(e)}", "ALREADYEXISTS")
        except InvalidName as e:
            res = no(f"Invalid mailbox name: {_reason(e)}", "CANNOT")
        except OverQuota:
            res = no("Quota exceeded", "OVERQUOTA")
        except (StorageFull, OSError) as e:
            full = storage_full(e)
            if full is None:
                raise  # the connection failed: run()'s caller closes it
            res = self.storage_refusal(type(req).__name__.upper(), full)
        except StoreError as e:
            res = no(_reason(e) or "Operation failed", "CANNOT")
        except Exception:
            log.exception("imap: %s: command %s failed", self.conn.client_ip, type(req).__name__)
            res = no("Internal error", "SERVERBUG")
        if self.view is not None:
            # RFC 3501 7.4.1 / RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or
            # SEARCH (nor COPY/MOVE by number); their UID forms may send them.
            allow = not (isinstance(req, _MSN_COMMANDS) and not getattr(req, "uid", False))
            await self.sync(allow)
        if res is not ANSWERED:
            self.tagged(tag, res)
        if self.state is State.LOGOUT:
            raise Closing

    def storage_refusal(self, what: str, e: StorageFull) -> Result:
        """A write found no room: logged once, answered with a reason; the session goes on.
        RFC 5530 3: [OVERQUOTA] when a disk quota was hit (freeing space helps), [LIMIT] for a
        full disk; [SERVERBUG] is for bugs, which this is not."""
        log_storage_full(log, f"imap {self.account or self.conn.client_ip}", what, e)
        if e.quota:
            return no("Disk quota exceeded", "OVERQUOTA")
        return no("Insufficient storage on the server; try again later", "LIMIT")

    async def next_event(self) -> Event:
        """The next receiver event, reading from the client as needed (AUTHENTICATE, IDLE)."""
        while True:
            ev = self.rx.next_event()
            if ev is not NEED_DATA:
                return ev
            await self.flush()
            data = await self.read()
            if not data:
                raise Closing
            self.rx.feed(data)

    # ---- selected mailbox ----------------------------------------------------------------------

    async def refresh_selected(self) -> None:
        """Have the store adopt changes made to the selected mailbox's files behind it (two
        stat calls when there are none); they come back as change events, announced by sync()."""
        if self.view is not None and self.store is not None and not self.view.deleted:
            try:
                await self.store.refresh(self.view.id)
            except MailboxNotFound:
                pass  # deleted meanwhile: its deletion event says so

    async def sync(self, allow_expunge: bool) -> None:
        view, sub = self.view, self.sub
        if view is None or sub is None:
            return
        view.feed(sub.pending())
        if view.has_pending:
            top = view.max_uid
            upd = await view.sync(allow_expunge, self.rev2)
            if upd:
                self.write_updates(upd)
                if self.notify is not None and upd.exists is not None:
                    await self.notify.fetch_new(self, top)  # RFC 5465 5.2 MessageNew fetch-att
                if upd.mailbox_gone and allow_expunge:
                    self.untagged("BYE Selected mailbox was deleted, have to disconnect")
                    self.state = State.LOGOUT
                    return
        if self.contexts is not None:
            await self.contexts.refresh(self)  # RFC 5267 4.3: after EXISTS, with FETCH

    def write_updates(self, upd: Updates) -> None:
        view = self.view
        assert view is not None
        out = self.out
        self.announce_expunged(upd.expunged, upd.vanished)
        if upd.new_keywords:
            self.write_flags_responses(view)
        if upd.exists is not None:
            out += b"* %d EXISTS\r\n" % upd.exists
            if not self.rev2:
                out += b"* %d RECENT\r\n" % (upd.recent or 0)
        recent = view.recent if not self.rev2 else ()
        condstore = self.condstore
        for msn, meta in upd.flags:
            out += b"* %d FETCH (UID %d FLAGS %s" % (
                msn,
                meta.uid,
                render.flag_list(meta.flags, meta.uid in recent),
            )
            # RFC 7162 3.1: every FETCH a flag change causes carries MODSEQ once enabled
            out += b" MODSEQ (%d))\r\n" % meta.modseq if condstore else b")\r\n"

    def write_flags_responses(self, view: MailboxView) -> None:
        key = (frozenset(view.keywords), view.readonly)
        lines = _FLAGS_LINES.get(key)
        if lines is None:
            flags = " ".join(render.sort_flags(view.flag_list()))
            lines = f"* FLAGS ({flags})\r\n".encode()
            if view.readonly:
                lines += b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
            else:
                lines += f"* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted.\r\n".encode()
            if len(_FLAGS_LINES) >= 256:
                _FLAGS_LINES.clear()
            _FLAGS_LINES[key] = lines
        self.out += lines

    def indexes(self, seqset: SequenceSet, uid: bool) -> list[int] | Result:
        """0-based view indexes named by a sequence set, or a BAD for a message number
        beyond the mailbox (RFC 9051 9 seq-number: that includes "*" in an empty mailbox)."""
        view = self.view
        assert view is not None
        if seqset.saved:
            # RFC 5182 2.1: "$" holds UIDs; messages expunged since simply drop out
            return sorted(i for i in map(view.index_of, self.saved) if i is not None)
        if uid:
            return seqset.indices(view.uids)
        n = len(view)
        if seqset.max_number() > n or (n == 0 and seqset.uses_star):
            return bad("Invalid message sequence number")
        return view.indexes_for_msns(seqset.resolve(n))

    def deselect(self) -> None:
        self.saved = []
        self.contexts = None  # RFC 5267 4.3: contexts end with the mailbox
        self.view = None
        if self.sub is not None:
            self.sub.close()
            self.sub = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    # ---- authentication hooks ------------------------------------------------------------------

    async def start_tls(self) -> None:
        await self.flush()
        await self.conn.start_tls(self.server.ctx.tls)
        # The plaintext the client pipelined after STARTTLS is dropped with the old receiver.
        self.rx = self.server.new_receiver()

    def new_receiver(self) -> Receiver:
        return self.server.new_receiver()

    async def _cleanup(self) -> None:
        if self.leave_userip is not None:
            self.leave_userip()
            self.leave_userip = None
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        if self.idle_task is not None:
            self.idle_task.cancel()
            self.idle_task = None
        self.deselect()


_SEARCH_SAVE = re.compile(rb"\s*(?:SEARCH\s+)?RETURN\s*\([^)]*\bSAVE\b", re.IGNORECASE)


def _search_save(cmd: Command) -> bool:
    """A (UID) SEARCH whose RETURN options name SAVE (however the rest of it parsed)."""
    if cmd.name == "UID":
        if not cmd.segments[0].lstrip().upper().startswith(b"SEARCH"):
            return False
    elif cmd.name != "SEARCH":
        return False
    return _SEARCH_SAVE.match(cmd.segments[0]) is not None


def _reason(e: BaseException) -> str:
    return str(e.args[0]) if e.args else ""


_MSN_COMMANDS = (c.Fetch, c.Store, c.Search, c.Copy, c.Move, c.Replace)

# Parse results shared between sessions (see on_command): only frozen requests made of tuples,
# frozensets, strings and immutable values (SequenceSet keeps its resolution cache in one attribute, so a
# shared instance is safe), keyed by (command name, the rest of the line, UTF-8 names on).
_CACHEABLE = (
    c.Noop,
    c.Check,
    c.Select,
    c.Fetch,
    c.Store,
    c.Expunge,
    c.UidExpunge,
    c.Close,
    c.Unselect,
    c.Idle,
    c.List,
    c.Status,
)
_PARSED: dict[tuple[str, bytes, bool], c.Request] = {}
_PARSED_SIZE = 1024
_PARSED_MAX_LINE = 256

# FLAGS + PERMANENTFLAGS lines per (keywords in use, read-only)
_FLAGS_LINES: dict[tuple[frozenset[str], bool], bytes] = {}

# type -> (handler, lowest state, highest state); filled by the handler modules.
DISPATCH: dict[type, tuple[Handler, State, State]] = {}


def command(
    *types: type, min_state: State = State.AUTHENTICATED, max_state: State = State.SELECTED
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in types:
            DISPATCH[t] = (fn, min_state, max_state)
        return fn

    return register
