"""Sans-IO IMAP command framing (RFC 9051 2.2, 4.3; RFC 7888 LITERAL+/LITERAL-; RFC 3516 literal8).

Bytes go in with ``feed``; ``next_event`` hands out whole commands (lines plus their literals),
asks for a continuation before a synchronising literal, and reports framing errors. Memory is
bounded by ``max_line``, ``max_literal`` and ``max_command`` whatever the peer sends, and the
events are the same however the bytes are chunked. It never parses arguments (see parser.py) and
never does I/O.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "NEED_DATA",
    "AuthResponse",
    "Command",
    "Event",
    "IdleDone",
    "NeedContinuation",
    "NeedData",
    "ProtocolError",
    "Receiver",
]

LITERAL_MINUS_MAX: Final = 4096  # RFC 7888 3: the largest non-synchronising literal under LITERAL-

# RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">; command names are atoms.
_HEAD_RE = re.compile(
    rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ([^\x00-\x20\x7f-\xff(){%*"\\\]]+)(?= |\Z)'
)
_TAG_RE = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+)(?: |\Z)')
_TAG_SP_RE = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ')
_HEAD_KEEP = 256  # bytes of an over-long line kept to report its tag
_TAIL_KEEP = 64  # bytes of an over-long line kept to see whether it announced a literal


@dataclass(frozen=True, slots=True)
class Command:
    """One complete command: the text of each line and the literals between them.

    ``segments[0]`` is the first line after ``tag SP name`` (so it is empty or starts with SP);
    each further segment is the line that followed a literal. Literal ``i`` was announced at the
    end of ``segments[i]`` (the announcement, e.g. ``{5}``, ``{5+}`` or ``~{5}``, is kept there).
    CRLF is stripped. ``name`` is upper-cased ASCII; ``UID`` commands keep their sub-command in
    the arguments.
    """

    tag: str
    name: str
    segments: tuple[bytes, ...]
    literals: tuple[bytes, ...] = ()

    @property
    def size(self) -> int:
        return sum(map(len, self.segments)) + sum(map(len, self.literals))

    def redacted(self) -> str:
        """For logs: the command text with every literal's content left out."""
        body = b"".join(
            seg + (b"<%d octets>" % len(self.literals[i]) if i < len(self.literals) else b"")
            for i, seg in enumerate(self.segments)
        )
        return f"{self.tag} {self.name}{body.decode('utf-8', 'replace')}"


class NeedData:
    """Nothing more can be decided until more bytes arrive."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronising literal of ``size`` octets was announced (RFC 9051 7.5).

    The session sends ``+ Ready`` and keeps feeding; the receiver then reads the literal. To refuse
    it instead, send a tagged NO/BAD and call ``Receiver.reject_literal()``: the command is dropped
    and the client, which waits for the ``+``, will not send the octets.
    """

    tag: str
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Input that cannot be framed as a command.

    ``fatal=False``: answer ``tag BAD [code] reason`` (``* BAD`` if ``tag`` is None) and go on.
    ``fatal=True``: the stream cannot be resynchronised (e.g. an oversized LITERAL+ whose octets
    are on their way, RFC 7888 4): answer the BAD, then ``* BYE`` and close; with no tag (e.g. a
    line longer than ``max_discard_line``) only ``* BYE [code] reason``. The receiver is dead
    afterwards.
    """

    tag: str | None
    reason: str
    fatal: bool = False
    code: str | None = None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A raw client line during AUTHENTICATE (base64, ``=`` or ``*``), see expect_auth_response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client ended IDLE with ``DONE`` (RFC 2177)."""


Event = Command | NeedData | NeedContinuation | ProtocolError | AuthResponse | IdleDone


class _State(enum.Enum):
    LINE = 1
    LITERAL = 2
    SKIP = 3
    CLOSED = 4


class _Mode(enum.Enum):
    COMMAND = 1
    AUTH = 2
    IDLE = 3


class Receiver:
    """Frames the client's byte stream into events.

    - ``max_line``: longest line (without CRLF), also for SASL responses and IDLE's DONE.
    - ``max_literal``: largest single literal (APPEND message size limit).
    - ``max_command``: all lines and literals of one command together (MULTIAPPEND).
    - ``literal_plus``: LITERAL+ is advertised; otherwise LITERAL- (non-synchronising literals up
      to 4096 octets).

    Call ``feed`` with what the socket gave, then ``next_event`` until it returns ``NEED_DATA``.
    """

    def __init__(
        self,
        *,
        max_line: int = 65536,
        max_literal: int = 64 * 1024 * 1024,
        max_command: int | None = None,
        max_discard_line: int | None = None,
        literal_plus: bool = True,
    ) -> None:
        if max_line < 64 or max_literal < 0:
            raise ValueError("max_line must be at least 64 and max_literal non-negative")
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_command if max_command is not None else max_literal + 16 * max_line
        # an over-long line is skipped up to its LF with a BAD; one longer than this (octets
        # before the LF) is fatal: * BYE [TOOBIG] and close (an endless line must not keep the
        # session busy forever). Counted in octets, so it does not depend on chunking.
        self.max_discard_line = (
            max_discard_line if max_discard_line is not None else max(16 * max_line, 1 << 20)
        )
        self.literal_plus = literal_plus
        # how much of an over-long line is kept to find its tag: the same whether the line
        # arrives whole or in pieces, so the error does not depend on chunking
        self._head_keep = min(_HEAD_KEEP, max_line + 1)
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed input in _buf
        self._scan = 0  # offset (from _pos) up to which _buf has no LF
        self._state = _State.LINE
        self._mode = _Mode.COMMAND
        # the command being assembled
        self._tag: str | None = None
        self._name = ""
        self._segments: list[bytes] = []
        self._literals: list[bytes] = []
        self._size = 0
        self._lit = bytearray()
        self._lit_remaining = 0
        self._may_reject = False
        # an over-long line being skipped
        self._skip_head = b""
        self._skip_tail = b""
        self._skipped = 0  # octets of the skipped line discarded so far

    # -- session-facing API -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after a fatal ProtocolError: feed() ignores data, next_event() returns NEED_DATA."""
        return self._state is _State.CLOSED

    @property
    def buffered(self) -> int:
        """Octets held for the command in progress and not yet handed out (for tests and metrics)."""
        return (
            len(self._buf)
            - self._pos
            + len(self._lit)
            + sum(map(len, self._segments))
            + sum(map(len, self._literals))
        )

    def take_unread(self) -> bytes:
        """The octets fed but not yet read, removed from the receiver: what a client pipelined
        after a command that changes the stream's encoding (RFC 4978 COMPRESS: compressed from
        the octet after the command's CRLF). Only between commands."""
        rest = bytes(self._buf[self._pos :])
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        return rest

    @property
    def in_command(self) -> bool:
        """A command has started and is not complete (e.g. waiting for a literal's octets)."""
        return self._tag is not None

    def feed(self, data: bytes) -> None:
        if self._state is _State.CLOSED or not data:
            return
        if self._pos and (self._pos >= 65536 or self._pos * 2 >= len(self._buf)):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def reject_literal(self) -> None:
        """Refuse the synchronising literal of the last NeedContinuation (the session sent NO/BAD
        instead of ``+``). Valid until the first octet of that literal has been read."""
        if not self._may_reject:
            raise RuntimeError("reject_literal() is only valid after NeedContinuation")
        self._reset_command()
        self._state = _State.LINE

    def expect_auth_response(self) -> None:
        """The next line is a SASL response (after ``+ challenge``), returned as AuthResponse."""
        self._set_mode(_Mode.AUTH)

    def expect_idle_done(self) -> None:
        """The next line ends IDLE: IdleDone for ``DONE``, a non-fatal ProtocolError otherwise."""
        self._set_mode(_Mode.IDLE)

    def next_event(self) -> Event:
        while True:
            state = self._state
            if state is _State.LITERAL:
                if not self._read_literal():
                    return NEED_DATA
                continue
            if state is _State.LINE:
                event = self._read_line()
                if event is not None:
                    return event
                continue
            if state is _State.SKIP:
                return self._skip_line()
            return NEED_DATA

    # -- internals ------------------------------------------------------------------------------------

    def _set_mode(self, mode: _Mode) -> None:
        if self._tag is not None:
            raise RuntimeError("a command is still being received")
        if self._state is not _State.CLOSED:
            self._mode = mode

    def _reset_command(self) -> None:
        self._tag = None
        self._name = ""
        self._segments = []
        self._literals = []
        self._size = 0
        self._lit = bytearray()
        self._lit_remaining = 0
        self._may_reject = False

    def _close(self) -> None:
        self._state = _State.CLOSED
        self._reset_command()
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0

    def _read_literal(self) -> bool:
        buf = self._buf
        avail = len(buf) - self._pos
        take = min(avail, self._lit_remaining)
        if take or not self._lit_remaining:
            self._may_reject = False  # octets (or the end of an empty literal) have arrived
        if take:
            start = self._pos
            if not self._lit and take == self._lit_remaining:
                self._literals.append(bytes(buf[start : start + take]))
                self._pos += take
                self._lit_remaining = 0
                self._state = _State.LINE
                self._scan = 0
                return True
            self._lit += buf[start : start + take]
            self._pos += take
            self._lit_remaining -= take
        if self._lit_remaining:
            return False
        self._literals.append(bytes(self._lit))
        self._lit = bytearray()
        self._state = _State.LINE
        self._scan = 0
        return True

    def _read_line(self) -> Event | None:
        buf = self._buf
        start = self._pos
        nl = buf.find(b"\n", start + self._scan)
        if nl < 0:
            pending = len(buf) - start
            if pending > self.max_discard_line:
                return self._endless_line()
            if pending > self.max_line + 1:  # even a CR next could not make it fit
                self._skip_head = bytes(buf[start : start + self._head_keep])
                self._skip_tail = bytes(buf[max(start, len(buf) - _TAIL_KEEP - 1) :])
                self._skipped = pending
                self._pos = len(buf)
                self._scan = 0
                self._state = _State.SKIP
                return None
            self._scan = pending
            return NEED_DATA
        if nl - start > self.max_discard_line:
            return self._endless_line()
        end = nl - 1 if nl > start and buf[nl - 1] == 0x0D else nl
        self._pos = nl + 1
        self._scan = 0
        if end - start > self.max_line:
            head = bytes(buf[start : start + self._head_keep])
            tail = bytes(buf[max(start, end - _TAIL_KEEP) : end])
            return self._line_too_long(head, tail)
        return self._on_line(bytes(buf[start:end]))

    def _skip_line(self) -> Event:
        buf = self._buf
        room = self.max_discard_line - self._skipped  # octets still allowed before the LF
        nl = buf.find(b"\n", self._pos, self._pos + room + 1)
        if nl < 0:
            if len(buf) - self._pos > room:
                return self._endless_line()
            self._skipped += len(buf) - self._pos
            self._skip_tail = (self._skip_tail + bytes(buf[self._pos :]))[-_TAIL_KEEP - 1 :]
            self._pos = len(buf)
            return NEED_DATA
        tail = self._skip_tail + bytes(buf[self._pos : nl])
        self._pos = nl + 1
        self._scan = 0
        self._state = _State.LINE
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        return self._line_too_long(self._skip_head, tail[-_TAIL_KEEP:])

    def _endless_line(self) -> Event:
        """A line longer than max_discard_line: it is not worth skipping further (Dovecot
        answers BYE too). Fatal, untagged."""
        self._close()
        return ProtocolError(None, "Line too long", fatal=True, code="TOOBIG")

    def _line_too_long(self, head: bytes, tail: bytes) -> Event:
        if self._mode is not _Mode.COMMAND and self._tag is None:
            self._mode = _Mode.COMMAND
            return ProtocolError(None, "Line too long")
        if self._tag is None:
            m = _TAG_SP_RE.match(head)
            tag = m.group(1).decode("ascii") if m else None
        else:
            tag = self._tag
        return self._fail(tag, "Command line too long", tail, code="TOOBIG")

    def _fail(
        self, tag: str | None, reason: str, line_end: bytes, code: str | None = None
    ) -> Event:
        """Drop the command. If its line announced a LITERAL+ the octets are already on their way
        and cannot be told from commands: the connection must close (RFC 7888 4)."""
        self._reset_command()
        self._state = _State.LINE
        if line_end.endswith(b"+}"):
            self._close()
            return ProtocolError(tag, reason, fatal=True, code=code)
        return ProtocolError(tag, reason, code=code)

    def _on_line(self, line: bytes) -> Event | None:
        if self._tag is None:
            mode = self._mode
            if mode is not _Mode.COMMAND:
                self._mode = _Mode.COMMAND
                if mode is _Mode.AUTH:
                    return AuthResponse(line)
                if line.strip().upper() == b"DONE":
                    return IdleDone()
                return ProtocolError(None, "Expected DONE")
            if not line:
                return None  # RFC-less leniency: stray empty lines (e.g. after APPEND) are ignored
            m = _HEAD_RE.match(line)
            if m is None:
                t = _TAG_RE.match(line)
                if t is None:
                    return self._fail(None, "Invalid tag", line)
                tag = t.group(1).decode("ascii")
                if not line[t.end() :].strip(b" "):
                    return self._fail(tag, "Missing command", line)
                return self._fail(tag, "Invalid command name", line)
            tag_s = m.group(1).decode("ascii")
            name_s = m.group(2).decode("ascii").upper()
            segment = line[m.end() :]
            if not segment.endswith(b"}") and len(line) <= self.max_command:
                return Command(tag_s, name_s, (segment,))  # the common one-line command
            self._tag = tag_s
            self._name = name_s
        else:
            segment = line
        tag = self._tag
        self._size += len(line)
        if self._size > self.max_command:
            return self._fail(tag, "Command too long", line, code="TOOBIG")
        announced = _literal_at_end(segment)
        self._segments.append(segment)
        if announced is None:
            cmd = Command(tag, self._name, tuple(self._segments), tuple(self._literals))
            self._reset_command()
            return cmd
        size, nonsync = announced
        if nonsync:
            limit = (
                self.max_literal if self.literal_plus else min(self.max_literal, LITERAL_MINUS_MAX)
            )
            if size > limit or self._size + size > self.max_command:
                # RFC 7888 4: reject with BAD [TOOBIG]; the octets cannot be skipped safely.
                self._close()
                return ProtocolError(tag, "Literal too big", fatal=True, code="TOOBIG")
        elif size > self.max_literal or self._size + size > self.max_command:
            # RFC 9051 7.5: no "+" is sent, so the client will not send the octets.
            name = self._name
            self._reset_command()
            reason = "Message too big" if name == "APPEND" else "Literal too big"
            return ProtocolError(tag, reason, code="TOOBIG")
        self._size += size
        self._lit_remaining = size
        self._state = _State.LITERAL
        if nonsync:
            return None
        self._may_reject = True
        return NeedContinuation(tag, self._name, size)


def _literal_at_end(segment: bytes) -> tuple[int, bool] | None:
    """(size, non-synchronising) if the line ends with ``{N}``, ``{N+}``, ``~{N}`` or ``~{N+}``."""
    if not segment.endswith(b"}"):
        return None
    opening = segment.rfind(b"{")
    if opening < 0:
        return None
    inner = segment[opening + 1 : -1]
    nonsync = inner.endswith(b"+")
    if nonsync:
        inner = inner[:-1]
    if not inner or not inner.isdigit():
        return None
    # number64 (RFC 9051 9); anything longer is just "too big".
    size = int(inner) if len(inner) <= 19 else 1 << 63
    return size, nonsync
