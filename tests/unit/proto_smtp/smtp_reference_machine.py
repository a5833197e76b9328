"""The SMTP server protocol machine as it was before the one-pass DATA scan (main fb07ea6), kept
verbatim as the reference that test_smtp_machine_reference.py holds the fast path to.

The SMTP server protocol machine, sans-IO (h11 style): bytes in, events out, replies rendered.

    m = ServerMachine(Limits())
    m.receive_data(data)             # b"" at end of input
    while (ev := m.next_event()) is not NEED_DATA: ... out += m.send(reply)

The machine owns framing and sequencing (RFC 5321 4.1.4, RFC 2920 PIPELINING, RFC 3030 BDAT, dot
transparency 4.5.2, SIZE counting), and learns the outcome of each command from the reply the
session sends. Policy (who may relay, whether a user exists) is the session's. Message data is
never handled line by line: the terminator is found with bytes.find and dot-unstuffing is one
bytes.replace. Only <CR><LF>.<CR><LF> ends DATA; bare CR or LF is rejected or normalised
(`bare_newline`), so \\n.\\n, \\r.\\r or \\n.\\r\\n never end or smuggle a message.
Never import asyncio, sockets, ssl or the store here.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import cast

from carteiro.proto.smtp import commands as C
from carteiro.proto.smtp import replies as R
from carteiro.proto.smtp.replies import Reply

TERMINATOR = b"\r\n.\r\n"
AUTH_LINE_MAX = 12288  # RFC 4954 4: AUTH command and response lines may be this long


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class AuthLine:
    """A client response in an AUTH exchange (RFC 4954 4), without its CRLF."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class BodyData:
    """Message content, unstuffed (DATA) or raw (BDAT); write it out as it comes."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DataEnd:
    """The end of DATA. `problem` is the reply owed instead of accepting (552, 550 5.5.2)."""

    size: int
    problem: Reply | None = None


@dataclass(frozen=True, slots=True)
class ChunkEnd:
    """The end of one BDAT chunk (RFC 3030 2). `problem`: this chunk's reply must be this error."""

    size: int  # octets of this chunk
    total: int  # octets of the message so far
    last: bool
    problem: Reply | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input the machine refused by itself (syntax, sequence, line length). Reply with `reply`;
    close the connection afterwards when `fatal`."""

    reply: Reply
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    pass


Event = C.Command | AuthLine | BodyData | DataEnd | ChunkEnd | Invalid | ConnectionClosed


@dataclass(frozen=True, slots=True)
class Limits:
    max_line_length: int = 4096
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    bare_newline: str = "reject"  # "reject" (550 5.5.2) | "normalise" (to CRLF)
    # An over-long command line gets 500 and is discarded up to its LF; one whose octets before
    # the LF exceed this gets 421 and the connection is closed (an endless line must not keep a
    # session busy forever). Counted in octets, so it does not depend on how reads are split.
    max_discard_line: int = 1024 * 1024
    # Content of a failed message (too big, bare newline) is discarded until its end; once the
    # message's content passed the size limit by more than max(max_message_size, min_discard)
    # octets the machine gives up with 552 and closes (RFC 5321 7.8), so a fast sender cannot
    # keep a session in DATA or in one huge BDAT chunk forever. Counted in octets as received
    # (before un-stuffing), so how the reads are split does not change the events.
    min_discard: int = 16 * 1024 * 1024

    @property
    def give_up_at(self) -> int:
        return self.max_message_size + max(self.max_message_size, self.min_discard)


class Mode(enum.Enum):
    COMMAND = "command"
    SKIP_LINE = "skip-line"  # discarding the rest of an over-long line
    AUTH = "auth"  # reading one AUTH response line
    DATA = "data"
    CHUNK = "chunk"  # reading a BDAT chunk
    TLS = "tls"  # STARTTLS accepted: input is discarded until tls_started()
    CLOSED = "closed"


# The members under plain module names for the machine's own tests of its mode: on Python 3.11
# `Mode.DATA` goes through EnumType's __getattr__ hook (five times the cost of a global), and
# the mode is read about ten times per command.
_COMMAND, _SKIP_LINE, _AUTH, _DATA = Mode.COMMAND, Mode.SKIP_LINE, Mode.AUTH, Mode.DATA
_CHUNK, _TLS, _CLOSED = Mode.CHUNK, Mode.TLS, Mode.CLOSED


class ProtocolError(Exception):
    """The caller broke the machine's contract (a bug, never a client's fault)."""


class ServerMachine:
    def __init__(self, limits: Limits | None = None, tls: bool = False, lmtp: bool = False) -> None:
        self.limits = limits or Limits()
        self.mode = _COMMAND
        self.tls = tls
        # RFC 2033: LMTP greets with LHLO (HELO/EHLO are errors) and answers the end of the
        # message once per accepted recipient (send_per_recipient)
        self.lmtp = lmtp
        self.helo: str | None = None
        self.esmtp = False
        self.authenticated = False
        self._buf = bytearray()
        self._eof = False
        self._awaiting: Event | None = None
        self._queued: deque[Event] = deque()
        self._skipped = 0  # octets of an over-long line discarded so far (SKIP_LINE)
        self.last_line = b""  # the last command line read, without CRLF (for transcripts)
        self._reset_transaction()

    # ---- transaction state ----------------------------------------------------------------

    def _reset_transaction(self) -> None:
        self.mail: C.Mail | None = None
        self.rcpt_count = 0
        self.body_kind: str | None = None  # "DATA" | "BDAT" once content started
        self._size = 0
        self._problem: Reply | None = None  # the transaction failed while reading content
        self._skip = 0  # sentinel octets to drop at the start of DATA
        self._carry = b""  # a trailing CR held back across BDAT pieces
        self._chunk_left = 0
        self._chunk_size = 0
        self._chunk: C.Bdat | None = None
        self._chunk_refusal: Reply | None = None
        self._received = 0  # content octets as received (before un-stuffing), refused ones too

    @property
    def in_transaction(self) -> bool:
        return self.mail is not None

    @property
    def transaction_failed(self) -> bool:
        """The content already failed (too big, bare newline): the rest is swallowed."""
        return self._problem is not None

    # ---- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" means the client closed its side."""
        if not data:
            self._eof = True
            return
        if self.mode is _TLS or self.mode is _CLOSED:
            return  # RFC 3207 / CVE-2011-0411: plaintext after STARTTLS is never a command
        self._buf += data

    def tls_started(self) -> None:
        """The TLS handshake finished: the client starts over with EHLO (RFC 3207 4.2)."""
        if self.mode is not _TLS:
            raise ProtocolError("tls_started() without an accepted STARTTLS")
        self._buf.clear()
        self.tls = True
        self.mode = _COMMAND

    def next_event(self) -> Event | NeedData:
        if self._awaiting is not None:
            raise ProtocolError(f"send a reply to {self._awaiting!r} first")
        if self._queued:
            return self._hold(self._queued.popleft())
        mode = self.mode
        if mode is _COMMAND:
            return self._next_command()
        if mode is _DATA:
            return self._next_data()
        if mode is _CHUNK:
            return self._next_chunk()
        if mode is _AUTH:
            return self._next_auth_line()
        if mode is _SKIP_LINE:
            return self._skip_long_line()
        if mode is _TLS:
            return ConnectionClosed() if self._eof else NEED_DATA
        return ConnectionClosed()

    def _hold(self, ev: Event) -> Event:
        # (a tuple, not a union: isinstance with a union type costs several times more, and
        # this runs for every event)
        if not isinstance(ev, (BodyData, ConnectionClosed)):
            self._awaiting = ev
        return ev

    # ---- commands ---------------------------------------------------------------------------

    def _take_line(self, limit: int) -> bytes | Invalid | NeedData | ConnectionClosed:
        """One line of at most `limit` octets including its CRLF (RFC 5321 4.5.3.1.4)."""
        buf = self._buf
        i = buf.find(b"\n", 0, limit)
        if i < 0:
            if len(buf) >= limit:
                # RFC 5321 4.5.3.1.4: 500; the rest of the line is discarded in SKIP_LINE
                self.last_line = bytes(buf[:80]) + b"..."
                self._skipped = 0
                self.mode = _SKIP_LINE
                return Invalid(R.R_500_LINE_TOO_LONG)
            if self._eof:
                return ConnectionClosed()
            return NEED_DATA
        line = bytes(buf[: i + 1])
        del buf[: i + 1]
        self.last_line = line.rstrip(b"\r\n")
        if line.endswith(b"\r\n"):
            line = line[:-2]
        elif self.limits.bare_newline == "reject":
            return Invalid(R.R_500_BARE_NEWLINE_CMD)
        else:
            line = line[:-1]
        if 13 in line or 0 in line:  # CR, NUL (an int: `b"\r" in` first tries it as one)
            return Invalid(R.R_501_SYNTAX.with_text("Control characters in command"))
        return line

    def _skip_long_line(self) -> Event | NeedData:
        """Discard the rest of an over-long line; 421 once it is longer than max_discard_line
        octets before its LF (decided on octet counts alone, whatever the reads)."""
        buf = self._buf
        room = self.limits.max_discard_line - self._skipped  # octets still allowed before LF
        i = buf.find(b"\n", 0, room + 1)
        if i >= 0:
            del buf[: i + 1]
            self.mode = _COMMAND
            return self.next_event()
        if len(buf) > room:
            buf.clear()
            return self._hold(Invalid(R.R_421_LINE_TOO_LONG, fatal=True))
        self._skipped += len(buf)
        buf.clear()
        return ConnectionClosed() if self._eof else NEED_DATA

    def _next_command(self) -> Event | NeedData:
        line = self._take_line(self.limits.max_line_length)
        if not isinstance(line, bytes):
            return self._hold(line) if isinstance(line, Invalid) else line
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._hold(Invalid(R.R_500_BAD_UTF8))
        if self.lmtp:
            verb = text[:5].upper()
            if verb == "LHLO" or verb == "LHLO ":
                text = "EHLO" + text[4:]  # the same syntax and meaning (RFC 2033 4.1)
            elif verb[:4] in ("EHLO", "HELO"):
                return self._hold(Invalid(R.R_500_NOT_LMTP))
        parsed = C.parse(text, self.esmtp)
        kind = type(parsed)  # (exact types: no command class has subclasses)
        if kind is Reply:
            return self._hold(Invalid(cast(Reply, parsed)))
        if kind is C.Unsupported:
            unsupported = cast(C.Unsupported, parsed)
            return self._hold(Invalid(unsupported.reply, unsupported.fatal))
        parsed = cast(C.Command, parsed)
        bdat = kind is C.Bdat
        if bdat and self._received + cast(C.Bdat, parsed).size > self.limits.give_up_at:
            # reading this chunk would only end in the 552-and-close below: say it now, without
            # swallowing up to the bound first
            return self._give_up()
        refusal = self._sequence_check(parsed)
        if refusal is not None:
            if isinstance(parsed, C.Bdat):  # (rare: isinstance narrows for the checker)
                # RFC 3030 2: the chunk follows the command whatever we think of it; read and
                # discard it, then give the refusal as the chunk's reply.
                self._start_chunk(parsed, refusal)
                return self._next_chunk()
            return self._hold(Invalid(refusal))
        if bdat and isinstance(parsed, C.Bdat):
            self._start_chunk(parsed, None)
            return self._next_chunk()
        return self._hold(parsed)

    def _sequence_check(self, cmd: C.Command) -> Reply | None:
        """RFC 5321 4.1.4 command order, and limits the machine can judge alone."""
        kind = type(cmd)
        if kind is C.Helo or kind is C.Quit or kind is C.Rset or kind is C.Noop:
            return None  # (any time: the commands of every session skip the chain below)
        if isinstance(cmd, C.Mail):
            if self.helo is None:
                return R.R_503_NEED_HELO
            if self.mail is not None:
                return R.R_503_NESTED_MAIL
            if cmd.size is not None and cmd.size > self.limits.max_message_size:
                return R.R_552_TOO_BIG  # RFC 1870 6.1
            return None
        if isinstance(cmd, C.Rcpt):
            if self.mail is None:
                return R.R_503_NEED_MAIL
            if self.body_kind is not None:
                return R.R_503_BDAT_FAILED.with_text("RCPT after message content; send RSET")
            if self.rcpt_count >= self.limits.max_recipients:
                return R.R_452_TOO_MANY_RCPTS
            if not self.mail.smtputf8 and not cmd.forward_path.isascii():
                return R.R_553_NEED_SMTPUTF8
            return None
        if isinstance(cmd, C.Data):
            if self.mail is None:
                return R.R_503_NEED_MAIL
            if self.body_kind == "BDAT":
                return R.R_503_MIXED_DATA_BDAT
            if self.rcpt_count == 0:
                return R.R_554_NO_VALID_RCPTS  # RFC 5321 3.3, RFC 2920 3.1
            return None
        if isinstance(cmd, C.Bdat):
            if self.mail is None:
                return R.R_503_NEED_MAIL
            if self.rcpt_count == 0:
                return R.R_554_NO_VALID_RCPTS
            return self._problem  # a failed transaction keeps failing until RSET or LAST
        if isinstance(cmd, C.Auth):
            if self.helo is None or not self.esmtp:
                return R.R_503_NEED_HELO.with_text("Send EHLO first")
            if self.authenticated:
                return R.R_503_ALREADY_AUTH  # RFC 4954 4
            if self.mail is not None:
                return R.R_503_AUTH_IN_TRANSACTION
            return None
        if isinstance(cmd, C.StartTLS):
            if self.tls:
                return R.R_503_TLS_ACTIVE
            return None
        if isinstance(cmd, C.Etrn | C.Atrn):
            if self.helo is None:
                return R.R_503_NEED_HELO
            if self.mail is not None:
                return R.R_503_NESTED_MAIL.with_text("Not allowed during a mail transaction")
            return None
        return None

    # ---- AUTH continuation lines -----------------------------------------------------------

    def _next_auth_line(self) -> Event | NeedData:
        line = self._take_line(AUTH_LINE_MAX)
        if isinstance(line, Invalid):
            self.mode = _SKIP_LINE if self.mode is _SKIP_LINE else _COMMAND
            if line.reply is R.R_500_LINE_TOO_LONG:
                line = Invalid(R.R_500_AUTH_LINE_TOO_LONG)
            return self._hold(line)
        if not isinstance(line, bytes):
            return line
        return self._hold(AuthLine(line))

    # ---- DATA (RFC 5321 4.1.1.4, 4.5.2) -----------------------------------------------------

    def _start_data(self) -> None:
        self.mode = _DATA
        self.body_kind = "DATA"
        # A sentinel CRLF stands for the one that ended the DATA line, so the terminator and
        # dot-stuffing are always "\r\n." even on the first line; it is dropped when emitted.
        self._buf[0:0] = b"\r\n"
        self._skip = 2

    def _next_data(self) -> Event | NeedData:
        buf = self._buf
        while True:
            i = buf.find(TERMINATOR)
            if i >= 0:
                raw = bytes(buf[: i + 2])  # keeps the CRLF ending the last line
                del buf[: i + 5]
                out = self._content(raw)
                if self._over_the_top():
                    return self._give_up()
                end = DataEnd(self._size, self._problem)
                self.mode = _COMMAND
                if out:
                    self._queued.append(end)
                    return BodyData(out)
                return self._hold(end)
            if self._eof:
                return ConnectionClosed()
            # Emit all but a tail that may hold the start of a terminator or of a "\r\n."
            # split across reads: keep from the last CRLF starting in the final 6 octets.
            cut = len(buf) - 4
            j = buf.rfind(b"\r\n", max(0, cut - 2))
            if j >= 0:
                cut = j
            if cut <= self._skip:
                return NEED_DATA
            raw = bytes(buf[:cut])
            del buf[:cut]
            out = self._content(raw)
            if out:
                return BodyData(out)
            if self._over_the_top():
                return self._give_up()
            # swallowed (over size, or rejected content): look for the end again

    def _content(self, raw: bytes) -> bytes:
        """Check newlines, unstuff (DATA), count the size; returns what to pass on (b"" once
        the transaction failed: the rest is swallowed until its end)."""
        self._received += len(raw)
        if self._problem is not None:
            return b""
        n_crlf = raw.count(b"\r\n")
        if raw.count(b"\n") != n_crlf or raw.count(b"\r") != n_crlf:
            if self.limits.bare_newline == "reject":
                self._problem = R.R_550_BARE_NEWLINE
                return b""
            # normalise: every bare CR or LF becomes CRLF (then "\n." lines unstuff too)
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        if self.body_kind == "DATA" and raw.find(b"\r\n.") >= 0:  # (`in` costs more)
            raw = raw.replace(b"\r\n.", b"\r\n")  # RFC 5321 4.5.2: drop a line's first "."
        if self._skip:
            raw, self._skip = raw[self._skip :], 0
        self._size += len(raw)
        if self._size > self.limits.max_message_size:
            self._problem = R.R_552_TOO_BIG
            return b""
        return raw

    def _over_the_top(self) -> bool:
        return self._problem is not None and self._received > self.limits.give_up_at

    def _give_up(self) -> Event:
        """Too much discarded content: 552 and close (the send() of a fatal Invalid closes)."""
        self._buf.clear()
        return self._hold(Invalid(R.R_552_TOO_BIG_CLOSING, fatal=True))

    # ---- BDAT (RFC 3030) ----------------------------------------------------------------------

    def _start_chunk(self, cmd: C.Bdat, refusal: Reply | None) -> None:
        self.mode = _CHUNK
        self._chunk = cmd
        self._chunk_left = cmd.size
        self._chunk_size = cmd.size
        self._chunk_refusal = refusal
        if refusal is None:
            self.body_kind = "BDAT"

    def _next_chunk(self) -> Event | NeedData:
        buf = self._buf
        cmd = self._chunk
        assert cmd is not None
        while self._chunk_left:
            n = min(self._chunk_left, len(buf))
            if n == 0:
                return ConnectionClosed() if self._eof else NEED_DATA
            raw = bytes(buf[:n])
            del buf[:n]
            self._chunk_left -= n
            if self._chunk_refusal is not None:
                # discarded: the chunk belongs to no valid transaction
                self._received += n
                if self._received > self.limits.give_up_at:
                    return self._give_up()
                continue
            raw = self._carry + raw
            self._carry = b""
            if raw.endswith(b"\r") and not (cmd.last and not self._chunk_left):
                raw, self._carry = raw[:-1], b"\r"  # its LF may come in the next piece
            out = self._content(raw)
            if out:
                return BodyData(out)
            if self._over_the_top():
                return self._give_up()
        self.mode = _COMMAND
        if self._chunk_refusal is not None:
            problem: Reply | None = self._chunk_refusal
        else:
            if cmd.last and self._carry:
                self._carry = b""
                self._content(b"\r")
            problem = self._problem
        return self._hold(ChunkEnd(self._chunk_size, self._size, cmd.last, problem))

    # ---- output -----------------------------------------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Render `reply` to the event awaiting one (or unsolicited: greeting, 421) and learn
        the command's outcome from it."""
        ev, self._awaiting = self._awaiting, None
        code = reply.code
        ok = 200 <= code < 400  # reply.is_positive, inline: this runs for every reply
        # dispatch on the exact type (no event class has subclasses), the commands of every
        # message first: an isinstance chain cost ~6 tests per reply
        kind = type(ev)
        if code == 421 or (kind is Invalid and cast(Invalid, ev).fatal):
            self.mode = _CLOSED
        elif kind is C.Mail:
            if ok:
                self.mail, self.rcpt_count = cast(C.Mail, ev), 0
                self._received = 0  # chunks refused before this transaction are not its own
        elif kind is C.Rcpt:
            if ok:
                self.rcpt_count += 1
        elif kind is C.Data:
            if code == 354:
                self._start_data()
        elif kind is DataEnd:
            self._reset_transaction()
        elif kind is C.Helo:
            if ok:
                # RFC 5321 4.1.4: EHLO resets any transaction in progress.
                helo = cast(C.Helo, ev)
                self.helo, self.esmtp = helo.name, helo.extended
                self._reset_transaction()
        elif kind is C.Quit:
            if code == 221:
                self.mode = _CLOSED
        elif kind is C.Rset:
            if ok:
                self._reset_transaction()
        elif kind is ChunkEnd:
            chunk = cast(ChunkEnd, ev)
            if chunk.last:
                self._reset_transaction()  # RFC 3030 2: LAST ends it, whatever the outcome
            elif not ok and chunk.problem is None and self.mail is not None:
                self._problem = reply  # the session failed a middle chunk: the rest fails too
        elif kind is C.StartTLS:
            if code == 220:
                # RFC 3207 4.2: forget everything; anything pipelined after STARTTLS is
                # dropped (the CVE-2011-0411 class).
                self._buf.clear()
                self.mode = _TLS
                self.helo, self.esmtp, self.authenticated = None, False, False
                self._reset_transaction()
        elif kind is C.Auth or kind is AuthLine:
            if code == 334:
                self.mode = _AUTH
            else:
                if self.mode is _AUTH:
                    self.mode = _COMMAND
                if code == 235:
                    self.authenticated = True
        return reply.wire

    def send_per_recipient(self, replies: list[Reply]) -> bytes:
        """RFC 2033 4.2: LMTP's answer to the end of the message, one reply per recipient that
        RCPT accepted, in RCPT order (the caller gives exactly that many)."""
        ev = self._awaiting
        if not self.lmtp or not (isinstance(ev, DataEnd) or (isinstance(ev, ChunkEnd) and ev.last)):
            raise ProtocolError("per-recipient replies only end an LMTP message")
        if len(replies) != self.rcpt_count:
            raise ProtocolError(f"{len(replies)} replies for {self.rcpt_count} recipients")
        return self.send(replies[0]) + b"".join(r.wire for r in replies[1:])

    @property
    def closed(self) -> bool:
        return self.mode is _CLOSED

    @property
    def awaiting(self) -> Event | None:
        return self._awaiting
