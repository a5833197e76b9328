"""Sieve lexical analysis (RFC 5228 2.2-2.4, 8.1): text -> tokens with line and column.

One pass over the text, no regex backtracking; a script is bounded in size by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from carteiro.sieve.errors import SieveSyntaxError


class Kind(Enum):
    IDENTIFIER = "identifier"
    TAG = "tag"
    NUMBER = "number"
    STRING = "string"
    SPECIAL = "special"  # one of [ ] ( ) , ; { }
    EOF = "end of script"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    value: str | int
    line: int
    column: int


_SPECIALS = frozenset("[](),;{}")
_QUANT = {"K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20, "G": 1 << 30, "g": 1 << 30}
# RFC 5228 2.4.1: implementations MUST support numbers up to 2^31-1; we keep them in 63 bits.
MAX_NUMBER = (1 << 63) - 1


def _is_ident_start(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_ident_char(c: str) -> bool:
    return _is_ident_start(c) or ("0" <= c <= "9")


def tokenize(text: str) -> list[Token]:
    """All tokens of `text`, ending with an EOF token. Raises SieveSyntaxError."""
    out: list[Token] = []
    i, n = 0, len(text)
    line, line_start = 1, 0
    if (z := text.find("\x00")) >= 0:
        # RFC 5228 8.1: no production admits NUL (strings, comments, text: lines)
        start = text.rfind("\n", 0, z) + 1
        raise SieveSyntaxError("NUL character", text.count("\n", 0, z) + 1, z - start + 1)

    def err(msg: str, at: int, at_line: int | None = None, at_start: int | None = None) -> None:
        ln = line if at_line is None else at_line
        ls = line_start if at_start is None else at_start
        raise SieveSyntaxError(msg, ln, at - ls + 1)

    while i < n:
        c = text[i]
        col = i - line_start + 1
        if c == "\n":
            line += 1
            i += 1
            line_start = i
        elif c in " \t\r":
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                err("unterminated /* comment", i)
            # count lines inside the comment
            for k in range(i, j):
                if text[k] == "\n":
                    line += 1
                    line_start = k + 1
            i = j + 2
        elif c in _SPECIALS:
            out.append(Token(Kind.SPECIAL, c, line, col))
            i += 1
        elif c == ":":
            j = i + 1
            if j >= n or not _is_ident_start(text[j]):
                err("':' must be followed by a tag name", i)
            while j < n and _is_ident_char(text[j]):
                j += 1
            out.append(Token(Kind.TAG, text[i + 1 : j].lower(), line, col))
            i = j
        elif "0" <= c <= "9":
            j = i
            while j < n and "0" <= text[j] <= "9":
                j += 1
            digits = text[i:j]
            if len(digits) > 20:
                err("number too large", i)
            value = int(digits)
            if j < n and text[j] in _QUANT:
                value *= _QUANT[text[j]]
                j += 1
            if j < n and _is_ident_char(text[j]):
                err("bad number", i)
            if value > MAX_NUMBER:
                err("number too large", i)
            out.append(Token(Kind.NUMBER, value, line, col))
            i = j
        elif _is_ident_start(c):
            j = i
            while j < n and _is_ident_char(text[j]):
                j += 1
            word = text[i:j]
            if word.lower() == "text" and text.startswith(":", j):
                i, line, line_start = _multiline(text, i, j + 1, line, line_start, out)
            else:
                out.append(Token(Kind.IDENTIFIER, word.lower(), line, col))
                i = j
        elif c == '"':
            start_line, start_ls = line, line_start
            buf: list[str] = []
            j = i + 1
            while True:
                if j >= n:
                    err("unterminated string", i, start_line, start_ls)
                d = text[j]
                if d == '"':
                    break
                if d == "\\":
                    # RFC 5228 2.4.2: "\" followed by any character is that character.
                    j += 1
                    if j >= n:
                        err("unterminated string", i, start_line, start_ls)
                    d = text[j]
                if d == "\n":
                    line += 1
                    line_start = j + 1
                buf.append(d)
                j += 1
            out.append(Token(Kind.STRING, "".join(buf), start_line, i - start_ls + 1))
            i = j + 1
        else:
            err(f"unexpected character {c!r}", i)
    out.append(Token(Kind.EOF, "", line, i - line_start + 1))
    return out


def _multiline(
    text: str, start: int, i: int, line: int, line_start: int, out: list[Token]
) -> tuple[int, int, int]:
    """RFC 5228 2.4.2 / 8.1: "text:" [blanks] [comment] CRLF *(lines) "." CRLF, dot-stuffed."""
    col = start - line_start + 1
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "#":
        while i < n and text[i] != "\n":
            i += 1
    if i < n and text[i] == "\r":
        i += 1
    if i >= n or text[i] != "\n":
        raise SieveSyntaxError("text: must be followed by a line break", line, i - line_start + 1)
    first_line = line
    i += 1
    line += 1
    line_start = i
    lines: list[str] = []
    while True:
        if i >= n:
            raise SieveSyntaxError("unterminated text: string", first_line, col)
        j = text.find("\n", i)
        end = n if j < 0 else j
        raw = text[i:end]
        if raw.endswith("\r"):
            raw = raw[:-1]
        if raw == ".":
            i = end + 1 if j >= 0 else n
            line += 1
            line_start = i
            break
        if raw.startswith(".."):
            raw = raw[1:]
        lines.append(raw + "\r\n")
        if j < 0:
            raise SieveSyntaxError("unterminated text: string", first_line, col)
        i = end + 1
        line += 1
        line_start = i
    out.append(Token(Kind.STRING, "".join(lines), first_line, col))
    return i, line, line_start
