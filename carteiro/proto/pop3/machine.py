"""The POP3 server machine: bytes in, replies and requests out (RFC 1939, 2449, 2595, 3206, 5034).

h11-style: receive_data() then next_event() until NeedData. It splits lines (with a length limit),
enforces the AUTHORIZATION / TRANSACTION / UPDATE states, answers everything that needs no I/O
(STAT, LIST, UIDL, DELE, RSET, NOOP, CAPA, errors) and hands the rest (login, SASL, TLS, message
bytes, the UPDATE) to the session as a request it must answer. It never does I/O itself, and gives
the same events whether the input arrives whole or one byte at a time.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

from carteiro.proto.pop3 import responses as r
from carteiro.proto.pop3.commands import (
    AUTHORIZATION_COMMANDS,
    TRANSACTION_COMMANDS,
    Command,
    CommandError,
    State,
    parse_command,
)
from carteiro.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    AuthResponse,
    AuthStart,
    Event,
    Login,
    Reply,
    Retrieve,
    StartTLS,
    Update,
)
from carteiro.proto.pop3.maildrop import Maildrop

# RFC 2449 4 allows command lines of 255 octets; be generous, but bounded.
DEFAULT_MAX_LINE = 1024
DEFAULT_MAX_DISCARD_LINE = 1024 * 1024
# RFC 5034 4: SASL responses are not bound by the command limit.
MAX_SASL_LINE = 16384

PLAINTEXT_REFUSED = "Plaintext authentication disallowed on non-secure connections."
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


class Refusal(enum.Enum):
    """Why a login was refused; each maps to an RFC 2449 / RFC 3206 response code."""

    BAD_CREDENTIALS = enum.auto()  # [AUTH] RFC 3206 4: the credentials are wrong
    IN_USE = enum.auto()  # [IN-USE] RFC 2449 8.1.2: another POP3 session holds the maildrop
    THROTTLED = enum.auto()  # [SYS/TEMP] too many failures from this address; try later
    TEMPORARY = enum.auto()  # [SYS/TEMP] RFC 3206 5: the store failed; try later
    PERMANENT = enum.auto()  # [SYS/PERM] RFC 3206 5: the account cannot be used
    SASL = enum.auto()  # a malformed SASL exchange (no code: not about the credentials)


_REFUSAL_CODE = {
    Refusal.BAD_CREDENTIALS: "AUTH",
    Refusal.IN_USE: "IN-USE",
    Refusal.THROTTLED: "SYS/TEMP",
    Refusal.TEMPORARY: "SYS/TEMP",
    Refusal.PERMANENT: "SYS/PERM",
    Refusal.SASL: "",
}


_REFUSAL_TEXT = {
    Refusal.BAD_CREDENTIALS: "Authentication failed.",
    Refusal.IN_USE: "Maildrop is locked by another POP3 session; try again later.",
    Refusal.THROTTLED: "Too many failed logins from your address; try again later.",
    Refusal.TEMPORARY: "Temporary failure opening the maildrop; try again later.",
    Refusal.PERMANENT: "This account cannot be opened.",
    Refusal.SASL: "Authentication failed: malformed SASL exchange.",
}


@dataclass(frozen=True, slots=True)
class MachineConfig:
    hostname: str = "localhost"
    implementation: str = "carteiro"
    tls_available: bool = True  # STLS can be offered (a certificate is configured)
    tls_active: bool = False  # implicit TLS (pop3s), or STLS already done
    allow_plaintext_auth: bool = False  # USER/PASS and AUTH PLAIN without TLS
    mechanisms: tuple[str, ...] = ("PLAIN",)  # SASL mechanisms the session can run
    max_line_length: int = DEFAULT_MAX_LINE
    # An over-long line is answered -ERR and skipped up to its LF; one with more octets than
    # this before its LF gets "-ERR Line too long" and the connection is closed (an endless
    # line must not keep the session busy forever). Counted in octets, not in reads.
    max_discard_line: int = DEFAULT_MAX_DISCARD_LINE
    max_errors: int = 10  # bad commands before the connection is closed
    max_auth_failures: int = 3  # failed logins on one connection before it is closed


class _TooLong:
    pass


_TOO_LONG = _TooLong()
_ENDLESS = _TooLong()  # longer than max_discard_line: close


class Pop3Machine:
    def __init__(self, config: MachineConfig | None = None) -> None:
        self.config = cfg = config or MachineConfig()
        self.state = State.AUTHORIZATION
        self.tls_active = cfg.tls_active
        self.maildrop: Maildrop | None = None
        self.errors = 0
        self.auth_failures = 0
        self._buf = bytearray()
        self._discarding = False  # skipping the rest of an over-long line
        self._skipped = 0  # octets of that line discarded so far
        self._user: str | None = None
        self._in_sasl = False  # the next line is a SASL response, not a command
        self._waiting = ""  # the request the session has not answered yet
        self._retrieve: Retrieve | None = None
        # The last client line consumed, for the session's transcript (None: none this call),
        # and how many words of it may be shown (-1: all; 0: none).
        self.last_line: bytes | None = None
        self._keep: int | None = -1  # None: worked out from last_line when asked

    # ---- input --------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self.state is not State.CLOSED:
            self._buf += data

    @property
    def pending_input(self) -> int:
        """Octets received and not consumed yet (what a session bounds while it is busy)."""
        return len(self._buf)

    def _take_line(self) -> bytes | _TooLong | None:
        buf = self._buf
        if self._discarding:
            room = self.config.max_discard_line - self._skipped  # octets left before the LF
            i = buf.find(b"\n", 0, room + 1)
            if i < 0:
                if len(buf) > room:
                    buf.clear()
                    return _ENDLESS
                self._skipped += len(buf)
                buf.clear()
                return None
            del buf[: i + 1]
            self._discarding = False
        limit = MAX_SASL_LINE if self._in_sasl else self.config.max_line_length
        # A line, LF included, may be `limit` octets: its LF is within the first `limit`.
        i = buf.find(b"\n", 0, limit)
        if i < 0:
            if len(buf) < limit:
                return None
            # the rest is discarded by the branch above (after the -ERR), whatever the reads
            self._discarding = True
            self._skipped = 0
            return _TOO_LONG
        line = bytes(buf[:i])
        del buf[: i + 1]
        # RFC 1939 3: lines end in CRLF; a bare LF is accepted from sloppy clients.
        return line[:-1] if line.endswith(b"\r") else line

    @property
    def last_line_keep(self) -> int:
        """How many words of last_line a transcript may show (-1: all; 0: none): PASS keeps its
        keyword, AUTH its mechanism, a SASL response nothing. Worked out only for a transcript."""
        keep = self._keep
        if keep is None:
            head = (self.last_line or b"")[:5].upper()
            keep = 1 if head == b"PASS " else 2 if head == b"AUTH " else -1
        return keep

    # ---- events -------------------------------------------------------------------------------

    def next_event(self) -> Event:
        if self.state is State.CLOSED:
            return CLOSED
        if self._waiting:
            raise RuntimeError(f"the session must answer {self._waiting} first")
        self.last_line = None
        if not self._buf:
            return NEED_DATA  # (what _take_line would say, in a fraction of the time)
        line = self._take_line()
        if line is None:
            return NEED_DATA
        if line is _ENDLESS:
            self.last_line, self._keep = b"<endless line>", -1
            self.state = State.CLOSED
            return Reply(r.err("Line too long"), close=True)
        if isinstance(line, _TooLong):
            self.last_line, self._keep = b"<line too long>", -1
            if self._in_sasl:
                self._in_sasl = False
                return self._bad("SASL response too long; authentication aborted")
            return self._bad("Command line too long")
        if self._in_sasl:
            self.last_line, self._keep = line, 0
            return self._sasl_line(line)
        self.last_line, self._keep = line, None
        cmd = parse_command(line)
        if isinstance(cmd, CommandError):
            return self._bad(cmd.reason)
        if self.state is State.AUTHORIZATION:
            if cmd.name not in AUTHORIZATION_COMMANDS:
                return self._bad(f"{cmd.name} is not valid before login (AUTHORIZATION state)")
            return self._authorization(cmd)
        if cmd.name not in TRANSACTION_COMMANDS:
            return self._bad(f"{cmd.name} is not valid after login (TRANSACTION state)")
        return self._transaction(cmd)

    def _bad(self, reason: str, code: str = "") -> Reply:
        """A bad command: counted; past max_errors the connection is closed (as SMTP does)."""
        self.errors += 1
        if self.errors >= self.config.max_errors:
            self.state = State.CLOSED
            return Reply(r.err("Too many bad commands; closing the connection."), close=True)
        return Reply(r.err(reason, code))

    @property
    def plaintext_allowed(self) -> bool:
        """RFC 2595 2.3 / RFC 8314: passwords only over TLS unless configured otherwise."""
        return self.tls_active or self.config.allow_plaintext_auth

    def capabilities(self) -> list[str]:
        """RFC 2449 5: what this server does now; AUTHORIZATION capabilities in both states."""
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.config.tls_available and not self.tls_active:
            caps.append("STLS")  # RFC 2595 4: never after TLS is active
        if self.plaintext_allowed:
            caps.append("USER")
        mechs = self._mechanisms()
        if mechs:
            caps.append("SASL " + " ".join(mechs))  # RFC 5034 5
        caps.append(f"IMPLEMENTATION {self.config.implementation}")
        return caps

    def _mechanisms(self) -> list[str]:
        return [
            m
            for m in self.config.mechanisms
            if self.plaintext_allowed or m not in PLAINTEXT_MECHANISMS
        ]

    def greeting(self) -> bytes:
        # No APOP timestamp: APOP is not offered (RFC 1939 7 makes it optional).
        return r.ok(f"{self.config.hostname} POP3 server ready")

    # ---- AUTHORIZATION --------------------------------------------------------------------------

    def _authorization(self, cmd: Command) -> Event:
        name = cmd.name
        if name == "CAPA":
            return Reply(r.multiline(r.ok("Capability list follows"), self.capabilities()))
        if name == "QUIT":
            # RFC 1939 6: QUIT in AUTHORIZATION ends the session without an UPDATE state.
            self.state = State.CLOSED
            return Reply(r.ok(f"{self.config.hostname} POP3 server signing off"), close=True)
        if name == "STLS":
            if self.tls_active:
                return self._bad("Command not permitted when TLS active")  # RFC 2595 4
            if not self.config.tls_available:
                return self._bad("STLS is not available on this server")
            self._waiting = "StartTLS"
            return StartTLS(r.ok("Begin TLS negotiation"))
        if name == "USER":
            if not self.plaintext_allowed:
                self._user = None
                return self._bad(PLAINTEXT_REFUSED, "AUTH")
            # Never say whether the mailbox exists (RFC 1939 13: that would help attackers).
            self._user = cmd.args[0]
            return Reply(r.ok("Send your password"))
        if name == "PASS":
            if not self.plaintext_allowed:
                return self._bad(PLAINTEXT_REFUSED, "AUTH")
            if self._user is None:
                return self._bad("No user name given; send USER first")
            user, self._user = self._user, None
            self._waiting = "Login"
            return Login(user, cmd.args[0])
        # AUTH (RFC 5034 4)
        self._user = None
        if not cmd.args:
            return Reply(r.multiline(r.ok("Supported mechanisms follow"), self._mechanisms()))
        mech = cmd.args[0].upper()
        if mech not in self.config.mechanisms:
            return self._bad("Unsupported authentication mechanism")
        if mech in PLAINTEXT_MECHANISMS and not self.plaintext_allowed:
            return self._bad(PLAINTEXT_REFUSED, "AUTH")
        initial: bytes | None = None
        if len(cmd.args) == 2:
            # RFC 5034 4: "=" is an empty initial response.
            initial = b"" if cmd.args[1] == "=" else _b64decode(cmd.args[1])
            if initial is None:
                return self._bad("Invalid base64 in the initial response")
        self._in_sasl = True
        self._waiting = "AuthStart"
        return AuthStart(mech, initial)

    def _sasl_line(self, line: bytes) -> Event:
        self._in_sasl = False
        if line == b"*":
            # RFC 5034 4: the client cancels; the server rejects the AUTH command.
            return Reply(r.err("Authentication cancelled"))
        data = b"" if line in (b"", b"=") else _b64decode(line.decode("ascii", "replace"))
        if data is None:
            return self._bad("Invalid base64 in the SASL response; authentication aborted")
        self._in_sasl = True
        self._waiting = "AuthResponse"
        return AuthResponse(data)

    # Answers to Login / AuthStart / AuthResponse ---------------------------------------------------

    def _expect(self, *names: str) -> None:
        if self._waiting not in names:
            raise RuntimeError(f"no {' or '.join(names)} to answer (waiting: {self._waiting!r})")
        self._waiting = ""

    def challenge(self, data: bytes) -> Reply:
        """Send a SASL challenge (RFC 5034 4: "+" SP base64); the client's answer comes next."""
        self._expect("AuthStart", "AuthResponse")
        return Reply(b"+ " + base64.b64encode(data) + b"\r\n")

    def authenticated(self, maildrop: Maildrop) -> Reply:
        """The login succeeded and the maildrop is locked: enter the TRANSACTION state."""
        self._expect("Login", "AuthStart", "AuthResponse")
        self._in_sasl = False
        self.state = State.TRANSACTION
        self.maildrop = maildrop
        return Reply(
            r.ok(f"Logged in; maildrop has {maildrop.count} messages ({maildrop.octets} octets)")
        )

    def refused(self, why: Refusal, detail: str = "") -> Reply:
        """The login failed; the session stays in AUTHORIZATION (RFC 1939 7 PASS)."""
        self._expect("Login", "AuthStart", "AuthResponse")
        self._in_sasl = False
        text = detail or _REFUSAL_TEXT[why]
        code = _REFUSAL_CODE[why]
        if why in (Refusal.BAD_CREDENTIALS, Refusal.THROTTLED, Refusal.SASL):
            self.auth_failures += 1
            if self.auth_failures >= self.config.max_auth_failures:
                self.state = State.CLOSED
                return Reply(
                    r.err(f"{text} Too many failures; closing the connection.", code),
                    close=True,
                )
        return Reply(r.err(text, code))

    # Answers to StartTLS ---------------------------------------------------------------------------

    def tls_started(self) -> None:
        """RFC 2595 4: TLS is up. Anything the client pipelined after STLS is discarded (it was
        sent in the clear), and the session forgets what it learned before (the USER name)."""
        self._expect("StartTLS")
        self._buf.clear()
        self._discarding = False
        self._user = None
        self.tls_active = True

    # ---- TRANSACTION ------------------------------------------------------------------------------

    def _check(self, n: int) -> str:
        """Why message n cannot be used, or ""."""
        md = self.maildrop
        assert md is not None
        if not md.exists(n):
            return f"no such message, only {len(md)} messages in maildrop"
        if md.is_deleted(n):
            return f"message {n} already deleted"
        return ""

    def _transaction(self, cmd: Command) -> Event:
        md = self.maildrop
        assert md is not None
        name = cmd.name
        if name == "RETR" or name == "TOP":
            n = cmd.msg
            entries = md.entries
            if not (0 < n <= len(entries)) or md.is_deleted(n):  # (_check, inline: the hot path)
                return Reply(r.err(self._check(n)))
            entry = entries[n - 1]
            ev = Retrieve(n, entry.uid, entry.size, cmd.lines if name == "TOP" else None)
            self._retrieve = ev
            self._waiting = "Retrieve"
            return ev
        if name == "STAT":
            return Reply(r.ok(f"{md.count} {md.octets}"))
        if name in ("LIST", "UIDL"):
            if cmd.args:
                why = self._check(cmd.msg)
                if why:
                    return Reply(r.err(why))
                value = md.entry(cmd.msg).size if name == "LIST" else md.uidl(cmd.msg)
                return Reply(r.ok(f"{cmd.msg} {value}"))
            if name == "LIST":
                first = r.ok(f"{md.count} messages ({md.octets} octets)")
                return Reply(r.multiline(first, [f"{n} {e.size}" for n, e in md.live()]))
            uidvalidity = md.uidvalidity
            return Reply(
                r.multiline(
                    r.ok("Unique-ID listing follows"),
                    [f"{n} {uidvalidity}.{e.uid}" for n, e in md.live()],
                )
            )
        if name == "DELE":
            why = self._check(cmd.msg)
            if why:
                return Reply(r.err(why))
            md.delete(cmd.msg)
            return Reply(r.ok(f"message {cmd.msg} deleted"))
        if name == "NOOP":
            return Reply(r.ok())
        if name == "RSET":
            md.reset()
            return Reply(r.ok(f"maildrop has {md.count} messages ({md.octets} octets)"))
        if name == "CAPA":
            return Reply(r.multiline(r.ok("Capability list follows"), self.capabilities()))
        # QUIT: RFC 1939 6, enter the UPDATE state; only now are the marked messages removed.
        self.state = State.UPDATE
        self._waiting = "Update"
        return Update(md.deleted_uids(), md.seen_uids())

    # Answers to Retrieve ----------------------------------------------------------------------------

    def message(self, data: bytes, no_bare_lf: bool = False) -> Reply:
        """The stored bytes of the message the last Retrieve asked for. `no_bare_lf`: the store
        knows that every LF of `data` ends a CRLF (store.read_wire): the CRLF test is skipped."""
        if self._waiting != "Retrieve":
            self._expect("Retrieve")  # (raises)
        self._waiting = ""
        ev, self._retrieve = self._retrieve, None
        md = self.maildrop
        assert ev is not None and md is not None
        if not no_bare_lf:
            data = r.crlf(data)
        # RFC 1939 11: the size is of the message as sent, before stuffing: a last line without
        # CRLF gets one (so that the terminator stands alone), and those octets count too.
        size = len(data)
        if data and data[-2:] != b"\r\n":
            size += 2
        if size != ev.size:
            md.resize(ev.number, size)
        if ev.lines is None:
            md.retrieved(ev.number)
            return Reply(r.stuffed(data, r.octets(size)))
        return Reply(r.stuffed(r.header_and_lines(data, ev.lines), r.TOP_FOLLOWS))

    def top_of(self, head: bytes) -> Reply | None:
        """TOP from the start of a long message (the store's read_head): the reply when `head`
        holds the header and the lines asked for; else None, and the session reads the whole
        message and calls message(). The listed size stays as it was (only RETR corrects it)."""
        if self._waiting != "Retrieve":
            self._expect("Retrieve")  # (raises)
        ev = self._retrieve
        assert ev is not None and ev.lines is not None
        part = r.header_and_lines_within(r.crlf(head), ev.lines)
        if part is None:
            return None
        self._waiting = ""
        self._retrieve = None
        return Reply(r.stuffed(part, r.TOP_FOLLOWS))

    def message_gone(self) -> Reply:
        """The message was expunged (by IMAP) since login: its number stays, its bytes are gone."""
        self._expect("Retrieve")
        ev, self._retrieve = self._retrieve, None
        assert ev is not None
        return Reply(r.err(f"Message {ev.number} was removed by another session"))

    def message_unavailable(self) -> Reply:
        """Reading the message failed (an I/O error): the client may try again."""
        self._expect("Retrieve")
        ev, self._retrieve = self._retrieve, None
        assert ev is not None
        return Reply(r.err(f"Cannot read message {ev.number} now; try again later", "SYS/TEMP"))

    # Answers to Update --------------------------------------------------------------------------------

    def updated(self, ok: bool, detail: str = "") -> Reply:
        """After the UPDATE state's store call: sign off and close (RFC 1939 6)."""
        self._expect("Update")
        self.state = State.CLOSED
        if not ok:
            # RFC 1939 6 QUIT: "-ERR some deleted messages not removed"; RFC 3206: SYS/TEMP.
            why = detail or "Some deleted messages were not removed; try again later."
            return Reply(r.err(why, "SYS/TEMP"), close=True)
        md = self.maildrop
        assert md is not None
        left = "maildrop empty" if md.count == 0 else f"{md.count} messages left"
        return Reply(r.ok(f"{self.config.hostname} POP3 server signing off ({left})"), close=True)

    # Endings the session decides ------------------------------------------------------------------------

    def timed_out(self) -> Reply:
        """RFC 1939 3: the autologout timer expired; close WITHOUT entering UPDATE."""
        self.state = State.CLOSED
        return Reply(r.err("Disconnected for inactivity."), close=True)

    def shutting_down(self) -> Reply:
        self.state = State.CLOSED
        return Reply(r.err("Server shutting down; try again later.", "SYS/TEMP"), close=True)


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
