"""ManageSieve client input (RFC 5804 4): bytes in, one `Line` of tokens per command (or SASL
response) out. Strings are quoted ("..." with \\" and \\\\) or literals ({n+} or {n} CRLF, then
n octets; no continuation is ever sent, as Dovecot does). A line longer than `max_line` or a
literal larger than `max_literal` is skipped without being buffered and reported as a
`LineError`; a literal beyond `hard_literal` ends the connection (`fatal`). Memory stays
bounded whatever the client sends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Atom:
    value: str  # upper-cased command names and keywords


Token = Atom | int | bytes  # bytes: a string (quoted or literal)


@dataclass(frozen=True, slots=True)
class Line:
    tokens: tuple[Token, ...]


@dataclass(frozen=True, slots=True)
class LineError:
    reason: str
    code: str = ""  # a response code, e.g. "QUOTA/MAXSIZE"
    fatal: bool = False  # the connection must end (BYE)


@dataclass(frozen=True, slots=True)
class NeedData:
    pass


Event = Line | LineError | NeedData


class Receiver:
    def __init__(
        self, max_line: int = 8192, max_literal: int = 1 << 20, hard_literal: int = 64 << 20
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.hard_literal = hard_literal
        self._buf = bytearray()
        self._tokens: list[Token] = []
        self._line_octets = 0  # octets of the current line outside literals
        self._skip_literal = 0  # octets of an oversized literal still to discard
        self._skip_line = False  # discarding until the end of an overlong line
        self._error: LineError | None = None

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Drop buffered input (after STARTTLS: nothing pipelined before it is read)."""
        self._buf.clear()
        self._reset()

    def _reset(self) -> None:
        self._tokens = []
        self._line_octets = 0
        self._error = None

    def next_event(self) -> Event:
        while True:
            buf = self._buf
            if self._skip_literal:
                n = min(self._skip_literal, len(buf))
                del buf[:n]
                self._skip_literal -= n
                if self._skip_literal:
                    return NeedData()
                continue
            if self._skip_line:
                i = buf.find(b"\n")
                if i < 0:
                    buf.clear()
                    return NeedData()
                del buf[: i + 1]
                self._skip_line = False
                err = self._error or LineError("line too long")
                self._reset()
                return err
            ev = self._scan()
            if ev is not None:
                return ev

    def _scan(self) -> Event | None:
        """Read tokens from the buffer; an event, or None to go round again (after a skip)."""
        buf = self._buf
        pos = 0
        n = len(buf)
        while True:
            while pos < n and buf[pos] == 0x20:
                pos += 1
            if pos >= n:
                self._consume(pos)
                return NeedData()
            c = buf[pos]
            if c == 0x0D or c == 0x0A:
                end = pos + 1
                if c == 0x0D:
                    if pos + 1 >= n:
                        self._consume(pos)
                        return NeedData()
                    if buf[pos + 1] != 0x0A:
                        return self._bad(pos, "bare CR")
                    end = pos + 2
                self._consume(end)
                tokens, err = tuple(self._tokens), self._error
                self._reset()
                if err is not None:
                    return err
                return Line(tokens)
            if c == 0x22:  # quoted string
                out = bytearray()
                j = pos + 1
                while True:
                    if j >= n:
                        if j - pos > self.max_line:
                            return self._overlong()
                        self._consume(pos)
                        return NeedData()
                    d = buf[j]
                    if d == 0x22:
                        break
                    if d == 0x5C:
                        if j + 1 >= n:
                            self._consume(pos)
                            return NeedData()
                        d = buf[j + 1]
                        if d not in (0x22, 0x5C):
                            return self._bad(j, "bad escape in quoted string")
                        j += 1
                    elif d in (0x0D, 0x0A, 0x00):
                        return self._bad(j, "line break in quoted string")
                    out.append(d)
                    j += 1
                self._tokens.append(bytes(out))
                self._line_octets += j + 1 - pos
                pos = j + 1
            elif c == 0x7B:  # literal
                j = buf.find(b"\n", pos)
                if j < 0:
                    if n - pos > 32:
                        return self._bad(pos, "bad literal")
                    self._consume(pos)
                    return NeedData()
                head = bytes(buf[pos + 1 : j])
                if head.endswith(b"\r"):
                    head = head[:-1]
                if not head.endswith(b"}"):
                    return self._bad(pos, "bad literal")
                digits = head[:-1].removesuffix(b"+")
                if not digits.isdigit() or len(digits) > 12:
                    return self._bad(pos, "bad literal length")
                size = int(digits)
                if size > self.hard_literal:
                    self._consume(n)
                    return LineError("literal too large; closing", "QUOTA/MAXSIZE", fatal=True)
                if size > self.max_literal:
                    # skip the literal, then the rest of the line; one error for the command
                    self._consume(j + 1)
                    self._skip_literal = size
                    self._skip_line = True
                    self._error = LineError(
                        f"string too large (at most {self.max_literal} octets)", "QUOTA/MAXSIZE"
                    )
                    return None
                if n - (j + 1) < size:
                    self._consume(pos)
                    return NeedData()
                self._tokens.append(bytes(buf[j + 1 : j + 1 + size]))
                self._line_octets += j + 1 - pos
                pos = j + 1 + size
            else:
                j = pos
                while j < n and buf[j] not in (0x20, 0x0D, 0x0A, 0x22, 0x7B):
                    j += 1
                if j >= n:
                    if j - pos > self.max_line:
                        return self._overlong()
                    self._consume(pos)
                    return NeedData()
                word = bytes(buf[pos:j])
                if word.isdigit():
                    if len(word) > 12:
                        return self._bad(pos, "number too large")
                    self._tokens.append(int(word))
                else:
                    try:
                        self._tokens.append(Atom(word.decode("ascii").upper()))
                    except UnicodeDecodeError:
                        return self._bad(pos, "bad atom")
                self._line_octets += j - pos
                pos = j
            if self._line_octets > self.max_line:
                return self._overlong(pos)

    def _consume(self, pos: int) -> None:
        if pos:
            del self._buf[:pos]

    def _bad(self, pos: int, reason: str) -> Event | None:
        """Skip to the end of this line; the line's error is reported there (None: go on)."""
        self._consume(pos)
        self._skip_line = True
        if self._error is None:
            self._error = LineError(reason)
        return None

    def _overlong(self, pos: int = 0) -> Event | None:
        return self._bad(pos or len(self._buf), "line too long")
