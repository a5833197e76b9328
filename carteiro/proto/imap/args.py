"""Reading the arguments of one IMAP command (RFC 9051 4, 9): atoms, strings, literals, numbers.

An ArgReader walks a receiver Command's line segments and the literals between them; a literal is
only accepted where its announcement ends a segment. Syntax errors are raised as ArgError, which
parser.py turns into a ParseError value; nothing here raises anything else on any input.
"""

from __future__ import annotations

import re
from typing import Final

from carteiro.proto.imap import utf7

__all__ = ["ArgError", "ArgReader"]

# RFC 9051 9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
ATOM_RE: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
ASTRING_ATOM_RE: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # ASTRING-CHAR adds "]"
LIST_CHAR_RE: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')  # list-char adds % and *
# QUOTED-CHAR: TEXT-CHAR except quoted-specials, or "\" quoted-specials; RFC 9051 and RFC 6855
# allow UTF-8 (validated when the string is decoded). quoted() scans run by run: the regex
# '"((?:[^"\\]+|\\["\\])*)"' backtracked exponentially on an unterminated string (issue 10.5).
_QUOTED_STOP_RE: Final = re.compile(rb'["\\\r\n\x00]')
_LITERAL_RE: Final = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_NUMBER_RE: Final = re.compile(rb"[0-9]+")
_FLAG_RE: Final = re.compile(rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+')

MAX_NUMBER: Final = 4294967295  # number, nz-number
MAX_NUMBER64: Final = 9223372036854775807  # number64, mod-sequence-value (RFC 7162 7)


class ArgError(Exception):
    """A syntax error at the protocol edge: ``reason`` is for the client (``tag BAD reason``)."""

    def __init__(self, reason: str, *, code: str | None = None, status: str = "BAD") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.status = status


class ArgReader:
    __slots__ = ("buf", "lits", "pos", "segs", "si", "utf8")

    def __init__(
        self, segments: tuple[bytes, ...], literals: tuple[bytes, ...], *, utf8: bool = False
    ):
        self.segs = segments
        self.lits = literals
        self.si = 0
        self.buf = segments[0] if segments else b""
        self.pos = 0
        self.utf8 = utf8

    # -- position ------------------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self.si >= len(self.segs) - 1

    def end(self) -> None:
        if not self.at_end():
            if self.pos < len(self.buf) and self.buf[self.pos] >= 0x80:
                # an atom stops at the first 8-bit octet: say why instead of "extra arguments"
                raise ArgError(
                    f"Unexpected {self.describe_next()}: 8-bit text needs ENABLE UTF8=ACCEPT"
                    " first (a mailbox name: modified UTF-7)"
                )
            raise ArgError("Unexpected extra arguments")

    def peek(self) -> int:
        """The next octet, or -1 at the end of a line."""
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def peek_is(self, text: bytes) -> bool:
        return self.buf.startswith(text, self.pos)

    def sp(self) -> None:
        if self.pos < len(self.buf) and self.buf[self.pos] == 0x20:
            self.pos += 1
            return
        if self.at_end():
            raise ArgError("Missing arguments")
        raise ArgError(f"Expected a space, found {self.describe_next()}")

    def describe_next(self) -> str:
        """The next input for an error message, without echoing arbitrary octets."""
        if self.pos >= len(self.buf):
            return "a literal" if self.si < len(self.segs) - 1 else "the end"
        b = self.buf[self.pos]
        return f"'{chr(b)}'" if 0x21 <= b <= 0x7E else f"octet 0x{b:02x}"

    def try_sp(self) -> bool:
        if self.pos < len(self.buf) and self.buf[self.pos] == 0x20:
            self.pos += 1
            return True
        return False

    def expect(self, text: bytes, what: str | None = None) -> None:
        if not self.buf.startswith(text, self.pos):
            raise ArgError(f"Expected {what or text.decode()!s}")
        self.pos += len(text)

    def accept(self, text: bytes) -> bool:
        if self.buf.startswith(text, self.pos):
            self.pos += len(text)
            return True
        return False

    def accept_word(self, word: bytes) -> bool:
        """Case-insensitive keyword followed by a delimiter (not part of a longer atom)."""
        end = self.pos + len(word)
        if self.buf[self.pos : end].upper() != word:
            return False
        if end < len(self.buf) and self.buf[end] not in b" ()[]":
            return False
        self.pos = end
        return True

    # -- tokens ------------------------------------------------------------------------------

    def match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.buf, self.pos)
        if m is None:
            if self.at_end():
                raise ArgError(f"Missing {what}")
            raise ArgError(f"Expected {what}")
        self.pos = m.end()
        return m.group()

    def atom(self, what: str = "atom") -> str:
        return self.match(ATOM_RE, what).decode("ascii")

    def keyword(self, what: str = "keyword") -> str:
        """An atom, upper-cased (command options and search keys are case-insensitive)."""
        return self.match(ATOM_RE, what).decode("ascii").upper()

    def flag(self) -> str:
        """flag / flag-keyword / flag-extension, unvalidated (``\\Seen``, ``$Label1``)."""
        return self.match(_FLAG_RE, "flag").decode("ascii")

    def number(self, what: str = "number", *, limit: int = MAX_NUMBER) -> int:
        raw = self.match(_NUMBER_RE, what)
        if len(raw) > 19 or int(raw) > limit:
            raise ArgError(f"{what.capitalize()} out of range")
        return int(raw)

    def nz_number(self, what: str = "number", *, limit: int = MAX_NUMBER) -> int:
        n = self.number(what, limit=limit)
        if n == 0:
            raise ArgError(f"{what.capitalize()} must not be zero")
        return n

    def literal_here(self) -> bool:
        b = self.peek()
        return b == 0x7B or (b == 0x7E and self.buf.startswith(b"~{", self.pos))

    def literal(self, *, allow8: bool = False) -> tuple[bytes, bool]:
        """A literal at this position: (octets, is_literal8)."""
        m = _LITERAL_RE.fullmatch(self.buf, self.pos)
        if m is None:
            raise ArgError("Invalid literal")
        binary = bool(m.group(1))
        if binary and not allow8:
            raise ArgError("literal8 is not allowed here")
        if self.si >= len(self.lits):
            raise ArgError("Literal data missing")
        data = self.lits[self.si]
        if len(data) != int(m.group(2)):
            raise ArgError("Literal length mismatch")
        if not binary and b"\0" in data:
            # RFC 9051 9 / RFC 3501 9: literal is *CHAR8 (%x01-ff); NUL needs a literal8
            raise ArgError("NUL is not allowed in a literal (use literal8)")
        self.si += 1
        self.buf = self.segs[self.si] if self.si < len(self.segs) else b""
        self.pos = 0
        return data, binary

    def quoted(self) -> bytes:
        """A quoted string at this position, unescaped. Linear in its length, whatever follows."""
        buf = self.buf
        if not buf.startswith(b'"', self.pos):
            raise ArgError("Invalid quoted string")
        pieces: list[bytes] = []
        i = self.pos + 1
        while True:
            m = _QUOTED_STOP_RE.search(buf, i)
            if m is None:
                raise ArgError("Invalid quoted string")  # no closing quote on this line
            j = m.start()
            stop = buf[j : j + 1]
            if stop == b'"':
                pieces.append(buf[i:j])
                self.pos = j + 1
                return b"".join(pieces) if len(pieces) > 1 else pieces[0]
            if stop == b"\\" and buf[j + 1 : j + 2] in (b'"', b"\\"):
                pieces.append(buf[i:j])
                pieces.append(buf[j + 1 : j + 2])
                i = j + 2
                continue
            # CR, LF, NUL or a "\" that escapes anything else
            raise ArgError("Invalid quoted string")

    def string(self, what: str = "string") -> bytes:
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        if self.literal_here():
            data, _ = self.literal()
            return data
        raise ArgError(f"Missing {what}" if self.at_end() else f"Expected {what}")

    def astring(self, what: str = "string") -> bytes:
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        if self.literal_here():
            data, _ = self.literal()
            return data
        return self.match(ASTRING_ATOM_RE, what)

    def nstring(self, what: str = "string") -> bytes | None:
        if self.accept_word(b"NIL"):
            return None
        return self.string(what)

    def text(self, raw: bytes, what: str = "string") -> str:
        """Decode a string argument: UTF-8, no NUL (CHAR8 excludes it)."""
        if b"\x00" in raw:
            raise ArgError(f"NUL in {what}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArgError(f"Invalid UTF-8 in {what}") from None

    def astring_text(self, what: str = "string") -> str:
        return self.text(self.astring(what), what)

    # -- mailbox names -------------------------------------------------------------------------

    def mailbox(self) -> str:
        return self.mailbox_name(self.astring("mailbox name"))

    def list_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string (LIST and LSUB patterns)."""
        b = self.peek()
        if b == 0x22 or b == 0x7B:
            raw = self.string("mailbox pattern")
        else:
            raw = self.match(LIST_CHAR_RE, "mailbox pattern")
        return self.mailbox_name(raw, pattern=True)

    def mailbox_name(self, raw: bytes, *, pattern: bool = False) -> str:
        """Wire name -> Unicode: UTF-8 under UTF8=ACCEPT (RFC 6855 3), else modified UTF-7.

        "INBOX" in any case is INBOX (RFC 9051 5.1); other names keep their case.
        """
        what = "mailbox pattern" if pattern else "mailbox name"
        if self.utf8:
            name = self.text(raw, what)
            if any(c < " " or c == "\x7f" for c in name):
                raise ArgError(f"Control character in {what}")
        else:
            try:
                name = utf7.decode(raw)
            except utf7.UTF7Error:
                # good syntax naming no possible mailbox: the command answers NO, not BAD
                return utf7.UndecodableName(raw.decode("latin-1"))
        if len(name) == 5 and name.upper() == "INBOX":
            return "INBOX"
        return name
