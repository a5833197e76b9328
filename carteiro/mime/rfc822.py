"""RFC 5322 / RFC 2045 lexical scanning of structured header values, on bytes.

Mirrors the tokenizer Dovecot uses for ENVELOPE and BODYSTRUCTURE, so broken input degrades the
same way there and here (the compliance suite compares the two). Methods return Dovecot's codes:
1 = parsed and more input follows, 0 = parsed and at the end, -1 = syntax error. Never raises.
"""

from __future__ import annotations

import re

# RFC 5322 3.2.3 atext, plus every 8-bit octet (RFC 6532 UTF-8, and raw legacy 8-bit).
ATEXT_CLASS = rb"!#$%&'*+\-/0-9=?A-Z^_`a-z{|}~\x80-\xff"
# RFC 2045 5.1 token: atext minus the tspecials "/", "=", "?", plus ".".
_TOKEN_CLASS = rb"!#$%&'*+\-.0-9A-Z^_`a-z{|}~\x80-\xff"

_ATEXT_ONE = re.compile(rb"[" + ATEXT_CLASS + rb"]")
ATEXT = frozenset(c for c in range(256) if _ATEXT_ONE.match(bytes([c])))
_ATEXT_RUN = re.compile(rb"[" + ATEXT_CLASS + rb"]*")
_ATOM_OR_DOT_RUN = re.compile(rb"[." + ATEXT_CLASS + rb"]*")
_TOKEN_RUN = re.compile(rb"[" + _TOKEN_CLASS + rb"]*")
_LWSP_RUN = re.compile(rb"[ \t\r\n]*")
_UNQUOTED_WORD = re.compile(rb"[^; \t\r\n]*")

_LPAREN, _RPAREN, _BSLASH, _DQUOTE = 0x28, 0x29, 0x5C, 0x22
_DOT, _AT, _SLASH, _SEMI, _EQ, _LBRACKET, _RBRACKET = 0x2E, 0x40, 0x2F, 0x3B, 0x3D, 0x5B, 0x5D
_LF, _CR = 0x0A, 0x0D
_LWSP_OR_COMMENT = frozenset(b" \t\r\n(")


class Scanner:
    """A cursor over one header value. `last_comment` keeps the text of the latest comment."""

    __slots__ = ("data", "end", "last_comment", "pos")

    def __init__(self, data: bytes, *, keep_comments: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment: bytearray | None = bytearray() if keep_comments else None

    def peek(self) -> int:
        """The current octet, or -1 at the end."""
        return self.data[self.pos] if self.pos < self.end else -1

    def _more(self) -> int:
        return 1 if self.pos < self.end else 0

    def skip_comment(self) -> int:
        # RFC 5322 3.2.2: comments nest and may contain quoted-pairs.
        data, level = self.data, 1
        comment = self.last_comment
        if comment is not None:
            del comment[:]
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            c = data[self.pos]
            if c == _LPAREN:
                level += 1
            elif c == _RPAREN:
                level -= 1
                if level == 0:
                    if comment is not None:
                        comment += data[start : self.pos]
                    self.pos += 1
                    return self._more()
            elif c == _BSLASH:
                if comment is not None:
                    comment += data[start : self.pos]
                start = self.pos + 1
                self.pos += 1
                if self.pos >= self.end:
                    return -1
            self.pos += 1
        return -1  # missing ")"

    def skip_lwsp(self) -> int:
        """Skip whitespace (including CR and LF, i.e. folding) and comments."""
        data = self.data
        if self.pos >= self.end:
            return 0
        if data[self.pos] not in _LWSP_OR_COMMENT:
            return 1  # nothing to skip: the common case between tokens, without a regex call
        while True:
            m = _LWSP_RUN.match(data, self.pos)
            self.pos = m.end() if m else self.pos
            if self.pos >= self.end or data[self.pos] != _LPAREN:
                break
            if self.skip_comment() < 0:
                return -1
        return self._more()

    def _run(self, pattern: re.Pattern[bytes], out: bytearray) -> int:
        start = self.pos
        m = pattern.match(self.data, start)
        self.pos = m.end() if m else start
        out += self.data[start : self.pos]
        if self.pos >= self.end:
            return 0
        return self.skip_lwsp()

    def atom(self, out: bytearray) -> int:
        if self.pos >= self.end or self.data[self.pos] not in ATEXT:
            return -1
        return self._run(_ATEXT_RUN, out)

    def dot_atom(self, out: bytearray) -> int:
        # RFC 5322 3.2.3 dot-atom; like RFC 822 allows whitespace around the dots.
        data = self.data
        if self.pos >= self.end or data[self.pos] not in ATEXT:
            return -1
        start = self.pos
        self.pos += 1
        while self.pos < self.end:
            m = _ATEXT_RUN.match(data, self.pos)
            self.pos = m.end() if m else self.pos
            if self.pos >= self.end:
                break
            out += data[start : self.pos]
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if data[self.pos] != _DOT:
                return 1
            self.pos += 1
            out.append(_DOT)
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            start = self.pos
        out += data[start : self.pos]
        return 0

    def mime_token(self, out: bytearray) -> int:
        return self._run(_TOKEN_RUN, out)

    def atom_or_dot(self, out: bytearray) -> int:
        return self._run(_ATOM_OR_DOT_RUN, out)

    def quoted_string(self, out: bytearray) -> int:
        # RFC 5322 3.2.4; folding inside the quotes loses its CRLF, keeps the whitespace.
        data = self.data
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            c = data[self.pos]
            if c == _DQUOTE:
                out += data[start : self.pos]
                self.pos += 1
                return self.skip_lwsp()
            if c == _LF:
                stop = self.pos
                if stop > start and data[stop - 1] == _CR:
                    stop -= 1
                out += data[start:stop]
                start = self.pos + 1
            elif c == _BSLASH:
                self.pos += 1
                if self.pos >= self.end:
                    return -1
                out += data[start : self.pos - 1]
                start = self.pos
            self.pos += 1
        return -1  # missing closing quote

    def phrase(self, out: bytearray) -> int:
        # RFC 5322 3.2.5 phrase, with obs-phrase's dots; words are joined with one space.
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == _DOT:
            return -1
        while True:
            if self.data[self.pos] == _DQUOTE:
                ret = self.quoted_string(out)
            else:
                ret = self.atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.data[self.pos]
            if c not in ATEXT and c != _DQUOTE and c != _DOT:
                break
            out.append(0x20)
        return self.skip_lwsp()

    def domain_literal(self, out: bytearray) -> int:
        data = self.data
        start = self.pos
        while self.pos < self.end:
            c = data[self.pos]
            if c == _BSLASH:
                self.pos += 1
                if self.pos >= self.end:
                    break
            elif c == _RBRACKET:
                self.pos += 1
                out += data[start : self.pos]
                return self.skip_lwsp()
            self.pos += 1
        return -1  # missing "]"

    def domain(self, out: bytearray) -> int:
        """At "@": the domain after it (dot-atom or domain-literal)."""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == _LBRACKET:
            return self.domain_literal(out)
        return self.dot_atom(out)

    def content_type(self, out: bytearray) -> int:
        """RFC 2045 5.1 type "/" subtype, written to `out` as given (case kept)."""
        if self.skip_lwsp() <= 0:
            return -1
        if self.mime_token(out) <= 0:
            return -1
        if self.peek() != _SLASH:
            return -1
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1
        out.append(_SLASH)
        return self.mime_token(out)

    def content_param(self) -> tuple[int, bytes, bytes]:
        """One `; attribute=value`: (code, attribute, value); code 0 at the end."""
        if self.pos >= self.end:
            return 0, b"", b""
        if self.data[self.pos] != _SEMI:
            return -1, b"", b""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1, b"", b""
        key = bytearray()
        if self.mime_token(key) <= 0:
            return -1, b"", b""
        if self.peek() != _EQ:
            return -1, b"", b""
        self.pos += 1
        value = bytearray()
        ret = self.skip_lwsp()
        if ret <= 0:
            pass  # broken or empty value
        elif self.data[self.pos] == _DQUOTE:
            ret = self.quoted_string(value)
        elif self.data[self.pos] == _EQ:
            # Broken mailers write name==?utf-8?b?...?= unquoted: take it up to ";" or space.
            m = _UNQUOTED_WORD.match(self.data, self.pos)
            assert m is not None
            value += m.group()
            self.pos = m.end()
        else:
            ret = self.mime_token(value)
        return (-1 if ret < 0 else 1), bytes(key), bytes(value)


def parse_params(sc: Scanner) -> list[tuple[bytes, bytes]]:
    """The `*(";" parameter)` list with RFC 2231 continuations merged, as Dovecot reports it.

    RFC 2231 3: `name*0*=us-ascii'en'a%20; name*1=b` becomes ("name*", "us-ascii'en'a%20b"): the
    pieces are joined but charset and %-escapes are left for the client (IMAP sends them so);
    header.decode_params() decodes them. Plain parameters come first in their order, then the
    merged ones sorted by name. Malformed parameters are skipped up to the next ";".
    """
    plain: list[tuple[bytes, bytes]] = []
    pieces: list[tuple[bytes, int, bool, bytes]] = []
    while True:
        ret, key, value = sc.content_param()
        if ret == 0:
            break
        if ret < 0:
            if sc.pos >= sc.end:
                break
            sc.pos += 1
            continue
        star = key.find(b"*")
        if star < 0:
            plain.append((key, value))
            continue
        p, idx = star, 0
        if p + 1 < len(key):
            p += 1
            while p < len(key) and 0x30 <= key[p] <= 0x39:
                idx = (idx * 10 + key[p] - 0x30) & 0xFFFFFFFF
                p += 1
        extended = p < len(key) and key[p] == 0x2A
        if extended:
            p += 1
        if p < len(key):
            plain.append((key, value))
        else:
            pieces.append((key[:star], idx, extended, value))
    if not pieces:
        return plain
    pieces.sort(key=lambda t: (t[0], t[1]))
    i = 0
    while i < len(pieces):
        name = pieces[i][0].lower()
        j = i
        ok, have_ext, next_idx = True, False, 0
        while j < len(pieces) and pieces[j][0].lower() == name:
            if pieces[j][1] != next_idx:
                ok = False
            have_ext = have_ext or pieces[j][2]
            next_idx += 1
            j += 1
        group = pieces[i:j]
        if not ok:
            # Gaps in the numbering: report the pieces as ordinary parameters.
            for key, idx, ext, value in group:
                plain.append((key + b"*%d" % idx + (b"*" if ext else b""), value))
        else:
            out = bytearray()
            if have_ext and not group[0][2]:
                out += b"''"
            for _key, _idx, ext, value in group:
                out += value.replace(b"%", b"%25") if have_ext and not ext else value
            plain.append((group[0][0] + (b"*" if have_ext else b""), bytes(out)))
        i = j
    return plain


def parse_content_type(value: bytes) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    """(`type/subtype` as scanned, scanner code, parameters). A broken value keeps what was read
    (Dovecot does too: a half-read type still decides text vs not) and has no parameters."""
    sc = Scanner(value)
    sc.skip_lwsp()
    out = bytearray()
    ret = sc.content_type(out)
    params = parse_params(sc) if ret >= 0 else []
    return bytes(out), ret, params


def parse_token_value(value: bytes) -> bytes | None:
    """A header whose whole value is one token (Content-Transfer-Encoding), else None."""
    sc = Scanner(value)
    sc.skip_lwsp()
    out = bytearray()
    if sc.mime_token(out) >= 0 and sc.skip_lwsp() == 0 and out:
        return bytes(out)
    return None


def parse_disposition(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """RFC 2183 Content-Disposition: (type as written, parameters), or None if unreadable."""
    sc = Scanner(value)
    sc.skip_lwsp()
    out = bytearray()
    if sc.mime_token(out) < 0:
        return None
    return bytes(out), parse_params(sc)


def parse_language(value: bytes) -> list[bytes]:
    """RFC 3282 Content-Language: the comma-separated language tags, as written."""
    sc = Scanner(value)
    sc.skip_lwsp()
    langs: list[bytes] = []
    while True:
        out = bytearray()
        if sc.atom(out) < 0:
            break
        langs.append(bytes(out))
        if sc.peek() != 0x2C:
            break
        sc.pos += 1
        sc.skip_lwsp()
    return langs
