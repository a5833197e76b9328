"""POP3 replies rendered to bytes: status lines, multi-line responses, message bodies and TOP.

RFC 1939 3: replies end in CRLF; a multi-line response is byte-stuffed (a line starting with "."
gets another ".") and ends with ".CRLF". Message bodies are stuffed with bulk bytes operations,
never a Python loop per line. Never renders anything longer than RFC 2449 4's 512 octets on a
status line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# RFC 2449 4: a status line is at most 512 octets including CRLF.
MAX_STATUS_LINE = 512
TERMINATOR = b".\r\n"

_EOL = re.compile(rb"\r\n|\r|\n")


def _status(indicator: str, text: str, code: str) -> bytes:
    parts = [indicator]
    if code:
        parts.append(f"[{code}]")  # RFC 2449 8: the response code follows the indicator
    if text:
        parts.append(text)
    line = " ".join(parts).encode("utf-8", "replace")
    line = line.replace(b"\r", b" ").replace(b"\n", b" ")
    return line[: MAX_STATUS_LINE - 2] + b"\r\n"


def ok(text: str = "", code: str = "") -> bytes:
    return _status("+OK", text, code)


def err(reason: str, code: str = "") -> bytes:
    """Every -ERR carries a reason (and, where RFC 2449/3206 define one, a response code)."""
    return _status("-ERR", reason or "Command failed", code)


def multiline(first: bytes, lines: Iterable[str]) -> bytes:
    """A status line, short text lines (LIST, UIDL, CAPA), stuffed, then the terminator."""
    out = [first]
    for line in lines:
        data = line.encode("ascii", "replace")
        out.append(b"." + data + b"\r\n" if data.startswith(b".") else data + b"\r\n")
    out.append(TERMINATOR)
    return b"".join(out)


def crlf(data: bytes) -> bytes:
    """The message with every line ending CRLF (the store keeps CRLF, so this rarely copies).

    A bare LF must go: clients that split lines on LF would take "LF . CRLF" for the end of the
    response, since stuffing only looks after CRLF. A bare CR is data that cannot end a line.
    """
    # The usual message (every CR begins a CRLF, every LF ends one) in two one-octet replaces
    # and a compare: CPython finds one octet with memchr, where it counts b"\r\n" and even
    # b"\n" a byte at a time (6x slower on 4 KB of 76-octet lines). Otherwise, the exact test.
    if data.replace(b"\r", b"").replace(b"\n", b"\r\n") == data:
        return data
    if data.count(b"\n") == data.count(b"\r\n"):
        return data  # bare CRs only: data, not line ends
    return _EOL.sub(b"\r\n", data)


def stuffed(data: bytes, first: bytes = b"") -> bytes:
    """`data` (CRLF lines) as the body of a multi-line response, terminator included, after the
    status line `first` (joined here: one copy of the message instead of two).

    RFC 1939 3: each line starting with the termination octet gets one more; the response ends
    with a line holding only ".". A last line without CRLF gets one so the terminator stands alone.
    """
    if not data:
        return first + TERMINATOR
    data = data.replace(b"\r\n.", b"\r\n..")
    if data[:1] == b".":
        first += b"."
    if data[-2:] != b"\r\n":
        return b"".join((first, data, b"\r\n", TERMINATOR))
    return b"".join((first, data, TERMINATOR))


def octets(size: int) -> bytes:
    """RETR's status line: what ok(f"{size} octets") renders, without its general steps."""
    return b"+OK %d octets\r\n" % size


TOP_FOLLOWS = ok("Top of message follows")


def header_and_lines(data: bytes, n: int) -> bytes:
    """RFC 1939 7 TOP: the header, the blank line after it, then `n` lines of the body.

    A message without a blank line is all header. `data` has CRLF line endings.
    """
    got = _top(data, n, False)
    assert got is not None
    return got


def header_and_lines_within(data: bytes, n: int) -> bytes | None:
    """header_and_lines of a message `data` is only the start of: the same octets when `data`
    holds the whole header and `n` complete body lines, else None (more is needed)."""
    return _top(data, n, True)


def _top(data: bytes, n: int, partial: bool) -> bytes | None:
    if data.startswith(b"\r\n"):
        head_end = 2  # an empty header: the blank line is the first line
    else:
        i = data.find(b"\r\n\r\n")
        if i < 0:
            return None if partial else data  # (the whole message: all header)
        head_end = i + 4
    if n == 0:
        return data[:head_end]
    parts = data[head_end:].split(b"\r\n", n)
    if len(parts) <= n:
        return None if partial else data  # (the whole message: fewer than n lines of body)
    return data[:head_end] + b"\r\n".join(parts[:n]) + b"\r\n"
