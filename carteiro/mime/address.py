"""Address-list parsing for ENVELOPE and SEARCH (RFC 5322 3.4 + obsolete syntax, RFC 6854 groups).

Follows Dovecot's message-address parser, including how it repairs broken input (the placeholder
mailbox/domain values below are what Dovecot puts in ENVELOPE). Works on bytes; never raises;
stops after MAX_ADDRESSES entries, so a header of 10 MB of commas costs no more than a long
real recipient list (see docs/mime.md, "Limits").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carteiro.mime.rfc822 import ATEXT, ATEXT_CLASS, Scanner

# What Dovecot writes in ENVELOPE for the parts a broken address lacks (RFC 3501 7.4.2 has no
# way to say "missing": a NIL host name would turn the address into a group marker).
MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"
SYNTAX_ERROR = b"SYNTAX_ERROR"
INVALID_ROUTE = b"INVALID_ROUTE"

# Entries (addresses and group markers) read from one header value. Real recipient lists stay
# in the hundreds; a bare "," is an entry too (Dovecot reports it as MISSING_MAILBOX), and at
# ~10 us each in Python an unbounded list would let one message cost minutes and gigabytes.
MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class Address:
    """One ENVELOPE address structure (RFC 3501 7.4.2).

    A group is a start marker (mailbox = group name, domain None) followed by its members and an
    end marker (every field None).
    """

    name: bytes | None = None
    route: bytes | None = None  # RFC 5322 obs-route, e.g. b"@a,@b"
    mailbox: bytes | None = None
    domain: bytes | None = None
    invalid: bool = False

    @property
    def is_group_start(self) -> bool:
        return self.domain is None and self.mailbox is not None

    @property
    def is_group_end(self) -> bool:
        return self.domain is None and self.mailbox is None


class _Parser:
    __slots__ = ("addr", "fill", "limit", "out", "sc", "word")

    def __init__(self, value: bytes, fill_missing: bool, limit: int) -> None:
        self.sc = Scanner(value, keep_comments=True)
        self.fill = fill_missing
        self.limit = limit
        self.out: list[Address] = []
        self.addr = Address()
        self.word = bytearray()  # shared scratch buffer, as its reuse affects the results

    def add(self) -> None:
        self.out.append(self.addr)
        self.addr = Address()

    def add_fixed(self) -> None:
        a = self.addr
        if a.mailbox is None:
            a.mailbox = MISSING_MAILBOX if self.fill else b""
            a.invalid = True
        if not a.domain:
            a.domain = MISSING_DOMAIN if self.fill else b""
            a.invalid = True
        self.add()

    def local_part(self) -> int:
        sc = self.sc
        del self.word[:]
        if sc.peek() == 0x22:
            ret = sc.quoted_string(self.word)
        else:
            ret = sc.dot_atom(self.word)
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(self.word)
        return ret

    def domain(self) -> int:
        del self.word[:]
        ret = self.sc.domain(self.word)
        if ret < 0:
            return -1
        self.addr.domain = bytes(self.word)
        return ret

    def domain_list(self) -> int:
        # RFC 5322 4.4 obs-domain-list: "@" domain *(*(CFWS / ",") [CFWS] "@" domain)
        sc = self.sc
        del self.word[:]
        while True:
            if sc.pos >= sc.end:
                return 0
            if sc.peek() != 0x40:
                break
            if self.word:
                self.word.append(0x2C)
            self.word.append(0x40)
            ret = sc.domain(self.word)
            if ret <= 0:
                return ret
            while sc.skip_lwsp() > 0 and sc.peek() == 0x2C:
                sc.pos += 1
        self.addr.route = bytes(self.word)
        return 1

    def angle_addr(self) -> int:
        # "<" [ "@" route ":" ] local-part "@" domain ">"
        sc = self.sc
        sc.pos += 1
        if sc.skip_lwsp() <= 0:
            return -1
        if sc.peek() == 0x40:
            if self.domain_list() > 0 and sc.peek() == 0x3A:
                sc.pos += 1
            else:
                if self.fill:
                    self.addr.route = INVALID_ROUTE
                if sc.pos >= sc.end:
                    return -1
            if sc.skip_lwsp() <= 0:
                return -1
        if sc.peek() != 0x3E:  # "<>" is not a valid address: leave the mailbox missing
            if self.local_part() <= 0:
                return -1
            if sc.peek() == 0x40 and self.domain() <= 0:
                return -1
        if sc.peek() != 0x3E:
            return -1
        sc.pos += 1
        return sc.skip_lwsp()

    def name_addr(self) -> int:
        sc = self.sc
        del self.word[:]
        if sc.phrase(self.word) <= 0 or sc.peek() != 0x3C:
            return -1
        self.addr.name = bytes(self.word) or None  # "<addr>" without a display name
        if self.angle_addr() < 0:
            if self.fill:
                self.addr.domain = SYNTAX_ERROR
            self.addr.invalid = True
        return 1 if sc.pos < sc.end else 0

    def addr_spec(self) -> int:
        sc = self.sc
        comment = sc.last_comment
        assert comment is not None
        del comment[:]
        quoted = sc.peek() == 0x22
        ret = self.local_part()
        ret2 = -2
        if ret <= 0:
            self.addr.invalid = True
        if ret != 0 and sc.peek() == 0x40:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if comment:
            # RFC 822 style "user@domain (Real Name)": the comment is the display name.
            self.addr.name = bytes(comment)
        elif ret2 == -2:
            # A bare word without "@domain": one word is a mailbox, more words are a name.
            self.word.append(0x20)
            before = len(self.word)
            sc.phrase(self.word)
            if len(self.word) != before:
                self.addr.mailbox = None
                self.addr.name = bytes(self.word)
            elif not quoted:
                self.addr.domain = b""
            self.addr.invalid = True
            ret = -1
        return ret

    def mailbox(self) -> int:
        sc = self.sc
        start = sc.pos
        ret = self.name_addr()
        if ret < 0:
            sc.pos = start
            ret = self.addr_spec()
            a = self.addr
            if a.invalid and a.name is None and a.mailbox is not None and a.domain is None:
                a.name, a.mailbox = a.mailbox, None
        if ret < 0:
            self.addr.invalid = True
        self.add_fixed()
        return ret

    def group(self) -> int:
        # RFC 5322 3.4 group = display-name ":" [group-list] ";" [CFWS]
        sc = self.sc
        del self.word[:]
        if sc.phrase(self.word) <= 0 or sc.peek() != 0x3A:
            return -1
        sc.pos += 1
        ret = sc.skip_lwsp()
        if ret <= 0:
            self.addr.invalid = True
        self.addr.mailbox = bytes(self.word)
        self.add()
        if ret > 0 and sc.peek() != 0x3B:
            while len(self.out) < self.limit:
                self.mailbox()
                if sc.peek() != 0x2C:
                    break
                sc.pos += 1
                if sc.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if sc.peek() != 0x3B:
                ret = -1
            else:
                sc.pos += 1
                ret = sc.skip_lwsp()
        if ret < 0:
            self.addr.invalid = True
        self.add()  # the end-of-group marker
        return 0 if ret == 0 else 1

    def address(self) -> int:
        start = self.sc.pos
        ret = self.group()
        if ret < 0:
            self.sc.pos = start
            ret = self.mailbox()
        return ret

    def empty(self) -> None:
        # What mailbox() makes of an empty list element (a "," where an address should be),
        # without its failed attempts at a group, a name-addr and an addr-spec.
        a = self.addr
        a.invalid = True
        a.mailbox = MISSING_MAILBOX if self.fill else b""
        a.domain = MISSING_DOMAIN if self.fill else b""
        self.add()

    def address_list(self) -> None:
        sc = self.sc
        if sc.skip_lwsp() <= 0:
            return
        while len(self.out) < self.limit:
            if sc.peek() == 0x2C:
                self.empty()
            elif self.address() == 0:
                break
            if sc.peek() != 0x2C:
                break
            sc.pos += 1
            ret = sc.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self.add_fixed()  # ends with garbage
                break


def parse_address_list(
    value: bytes, *, fill_missing: bool = True, limit: int = MAX_ADDRESSES
) -> list[Address]:
    """Parse an address-list header value (unfolded or not). [] if it holds no address.

    With `fill_missing` (ENVELOPE), absent parts become MISSING_MAILBOX / MISSING_DOMAIN;
    without it they are empty. At most `limit` entries: the rest of the value is ignored.
    """
    return parse_address_prefix(value, fill_missing=fill_missing, limit=limit)[0]


def parse_address_prefix(
    value: bytes, *, fill_missing: bool = True, limit: int = MAX_ADDRESSES
) -> tuple[list[Address], bytes]:
    """Like parse_address_list, and also the part of `value` left unread when `limit` entries
    were reached (b"" when all was read): SEARCH matches it as plain text."""
    if b"\x00" in value:
        value = value.replace(b"\x00", "\ufffd".encode())
    simple = _simple_list(value, limit)
    if simple is not None:
        return simple, b""
    return _parse(value, fill_missing, limit)


def _parse(value: bytes, fill_missing: bool, limit: int) -> tuple[list[Address], bytes]:
    # the general way (also the reference the tests hold _simple_list to)
    p = _Parser(value, fill_missing, max(0, limit))
    p.address_list()
    sc = p.sc
    rest = b""
    if len(p.out) >= p.limit and sc.skip_lwsp() > 0:
        rest = value[sc.pos :]
    return p.out, rest


# The lists most mail carries, read in one regular-expression match per address instead of
# ~40 calls of the general parser: `a@b.c`, `<a@b.c>`, `Some Name <a@b.c>` and
# `"Any, Name" <a@b.c>`, separated by commas and blanks. Every quantifier is possessive and
# every run is followed by an octet it cannot hold, so nothing is ever tried twice (linear on
# any input); anything else (comments, groups, quoted local parts, blanks inside <>, folding
# inside a name) is left to the general parser. What the general parser makes of these forms,
# which the tests check on random lists: a phrase's words joined by one space, an empty
# quoted name as no name, no route, nothing marked invalid.
_ATOM = rb"[" + ATEXT_CLASS + rb"]++"
_DOT_ATOM = _ATOM + rb"(?:\." + _ATOM + rb")*+"
_ADDR_SPEC = _DOT_ATOM + rb"@" + _DOT_ATOM
_SIMPLE = re.compile(
    rb"(?:(?:(?P<name>" + _ATOM + rb"(?:[ \t]++" + _ATOM + rb")*+)"
    rb'|"(?P<quoted>[^"\\\r\n]*+)")[ \t]*+)?+<(?P<angle>' + _ADDR_SPEC + rb")>"
    rb"|(?P<bare>" + _ADDR_SPEC + rb")"
)
_COMMA = re.compile(rb"[ \t\r\n]*+,[ \t\r\n]*+")


def _simple_list(value: bytes, limit: int) -> list[Address] | None:
    """The addresses of a list made of the simple forms only (at most `limit` of them), else
    None: exactly what the general parser returns for it."""
    v = value.strip(b" \t\r\n")
    if not v:
        return None
    out: list[Address] = []
    n = len(v)
    pos = 0
    while len(out) < limit:
        m = _SIMPLE.match(v, pos)
        if m is None:
            return None
        name, quoted, angle, bare = m.group("name", "quoted", "angle", "bare")
        mailbox, _, domain = (bare or angle).partition(b"@")
        if name is not None:
            out.append(Address(b" ".join(name.split()), None, mailbox, domain))
        else:
            out.append(Address(quoted or None, None, mailbox, domain))
        pos = m.end()
        if pos == n:
            return out
        sep = _COMMA.match(v, pos)
        if sep is None:
            return None
        pos = sep.end()
    return None


def _maybe_quote(word: bytes, escape_dot: bool) -> bytes:
    if all(c in ATEXT or (c == 0x2E and not escape_dot) for c in word):
        return word
    return b'"' + word.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def format_address_list(addrs: list[Address]) -> bytes:
    """Addresses back to header syntax, normalised (comments dropped, names quoted as needed).

    SEARCH FROM/TO/CC/BCC match against this form, as Dovecot does, so that
    `<user (c)@ (c) example.org>` is found by "user@example.org".
    """
    out = bytearray()
    first, in_group = True, False
    for a in addrs:
        if not first:
            out += b", "
        first = False
        if a.domain is None:
            if not in_group:
                if a.mailbox:
                    out += a.mailbox if b"=?" in a.mailbox else _maybe_quote(a.mailbox, True)
                else:
                    out += b'""'
                out += b": "
                first = True
            else:
                if out.endswith(b", "):
                    del out[-2:]
                elif out.endswith(b": "):
                    del out[-1:]
                out += b";"
            in_group = not in_group
            continue
        mailbox = a.mailbox or b""
        if a.name is not None:
            out += a.name if b"=?" in a.name else _maybe_quote(a.name, True)
        if a.route is not None or mailbox or a.domain:
            if a.name:
                out += b" "
            out += b"<"
            if a.route is not None:
                out += a.route + b":"
            out += _maybe_quote(mailbox, False) if mailbox else b'""'
            if a.domain:
                out += b"@" + a.domain
            out += b">"
    return bytes(out)
