"""The client side of IMAP, sans-IO: server bytes in, whole responses out (RFC 9051 2.2.2, 4.3).

`ResponseReader.feed()` takes bytes as they arrive; `next()` returns one complete response (its
literals read) or None. `parse_values()` turns a response line into atoms (str), strings and
literals (bytes), NIL (None) and parenthesised lists. Bounded: a line or literal over its limit
raises ResponseError; no regex, one pass per byte. Used by the webmail's IMAP client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Value = "str | bytes | None | list[Value]"
MAX_LINE = 1 << 20
MAX_LITERAL = 128 << 20


class ResponseError(ValueError):
    """The server sent something no IMAP server may send (or over our limits)."""


@dataclass
class Response:
    """One server response: `tag` is "*", "+" or the command tag; `segments` alternate line text
    and literal bytes (text, literal, text, ...), so the line parses with its literals in place."""

    tag: str
    segments: list[bytes] = field(default_factory=list)
    _values: list[object] | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> bytes:
        """The response after its tag, literals replaced by their {n} markers (for logs)."""
        return b"".join(s for i, s in enumerate(self.segments) if i % 2 == 0)

    def values(self) -> list[object]:
        if self._values is None:
            self._values = parse_values(self.segments)
        return self._values

    def status(self) -> tuple[str, str]:
        """("OK"|"NO"|"BAD"|"BYE"|..., text) of a status response, text without the [code]."""
        line = self.segments[0].decode("utf-8", "replace")
        word, _, rest = line.partition(" ")
        if rest.startswith("["):
            end = rest.find("]")
            code, rest = rest[1:end], rest[end + 1 :].lstrip()
            return word.upper(), f"{rest}" if rest else code
        return word.upper(), rest

    def code(self) -> str:
        line = self.segments[0].decode("utf-8", "replace")
        _, _, rest = line.partition(" ")
        if rest.startswith("["):
            return rest[1 : rest.find("]")]
        return ""


class ResponseReader:
    def __init__(self, max_line: int = MAX_LINE, max_literal: int = MAX_LITERAL) -> None:
        self.buf = bytearray()
        self.max_line = max_line
        self.max_literal = max_literal
        self._segments: list[bytes] = []
        self._need: int = -1  # octets of literal still to read, -1 when reading a line

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> Response | None:
        while True:
            if self._need >= 0:
                if len(self.buf) < self._need:
                    return None
                self._segments.append(bytes(self.buf[: self._need]))
                del self.buf[: self._need]
                self._need = -1
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > self.max_line:
                    raise ResponseError("response line too long")
                return None
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            n = _literal_size(line)
            if n is not None:
                if n > self.max_literal:
                    raise ResponseError(f"literal of {n} octets over the limit")
                self._segments.append(line)
                self._need = n
                continue
            self._segments.append(line)
            segs, self._segments = self._segments, []
            first = segs[0]
            tag, _, rest = first.partition(b" ")
            segs[0] = rest
            if not tag:
                raise ResponseError("response without a tag")
            return Response(tag.decode("ascii", "replace"), segs)


def _literal_size(line: bytes) -> int | None:
    # RFC 9051 4.3: a literal announces itself as {n} at the very end of the line.
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    digits = line[start + 1 : -1].rstrip(b"+")
    if not digits.isdigit() or len(digits) > 12:
        return None
    return int(digits)


# One atom run: no space, parenthesis, quote, brace or bracket. A single character class with
# `*` cannot backtrack: linear in the input.
_ATOM_RUN = re.compile(rb'[^ ()"{\[\]]*')
_QUOTED_RUN = re.compile(rb'[^"\\]*')


def parse_values(segments: list[bytes]) -> list[object]:
    """Tokens of a response after its tag. Text parts are scanned once; a `{n}` at a text part's
    end is the literal that follows it."""
    root: list[object] = []
    stack: list[list[object]] = [root]
    for si in range(0, len(segments), 2):
        text = segments[si]
        literal = segments[si + 1] if si + 1 < len(segments) else None
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == 0x20:
                i += 1
            elif c == 0x28:  # (
                new: list[object] = []
                stack[-1].append(new)
                stack.append(new)
                i += 1
            elif c == 0x29:  # )
                if len(stack) > 1:
                    stack.pop()
                i += 1
            elif c == 0x22:  # "
                out = bytearray()
                i += 1
                while i < n:
                    m = _QUOTED_RUN.match(text, i)
                    assert m is not None  # `*` always matches
                    out += m.group()
                    i = m.end()
                    if i < n and text[i] == 0x5C and i + 1 < n:  # backslash-escaped character
                        out.append(text[i + 1])
                        i += 2
                    else:
                        break
                i += 1  # the closing quote
                stack[-1].append(bytes(out))
            elif c == 0x7B and literal is not None and text.endswith(b"}"):  # {n} then literal
                stack[-1].append(literal)
                i = n
            else:
                start = i
                while True:
                    m = _ATOM_RUN.match(text, i)
                    assert m is not None
                    i = m.end()
                    # BODY[HEADER.FIELDS (A B)] is one atom: what is inside [] belongs to it
                    if i < n and text[i] == 0x5B:
                        close = text.find(b"]", i)
                        i = n if close < 0 else close + 1
                        continue
                    if i < n and text[i] == 0x5D:  # a stray ] is part of an atom (resp-text)
                        i += 1
                        continue
                    break
                if i == start:  # a lone { with no literal: skip it
                    i += 1
                    continue
                atom = text[start:i].decode("utf-8", "replace")
                stack[-1].append(None if atom.upper() == "NIL" else atom)
    return root


def quote(s: str) -> str:
    """An IMAP quoted string (RFC 9051 4.3); callers send a literal for CR/LF or long text."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
