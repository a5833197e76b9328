"""The header section and dates of an RFC 5322 message as the mailbox formats need them: find, remove
and add fields without reparsing the message, and the dates an INTERNALDATE can come from.

Works on the bytes as found (LF or CRLF); never rewrites anything outside the top-level header.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Sequence
from email.utils import mktime_tz, parsedate_tz

_BLANK_LINE = re.compile(rb"\n\r?\n")
# RFC 5322 2.2: a field name is printable US-ASCII except ":"; obsolete syntax allows WSP before it
FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


def header_length(data: bytes) -> int:
    """Octets of the header section with its last line ending: the blank line, if any, starts here."""
    if data.startswith((b"\n", b"\r\n")):
        return 0
    m = _BLANK_LINE.search(data)
    return m.start() + 1 if m else len(data)


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos, n = 0, len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end + 1
        yield pos, data[pos:end]
        pos = end


def _field_spans(header: bytes) -> list[tuple[str, int, int]]:
    """(lowercased field name, start, end) per field, continuation lines included; the spans cover
    the whole header section, so joining them gives it back."""
    spans: list[tuple[str, int, int]] = []
    for pos, line in _lines(header):
        if spans and line[:1] in (b" ", b"\t"):
            name, start, _ = spans[-1]
            spans[-1] = (name, start, pos + len(line))
            continue
        name = (
            line.partition(b":")[0].strip().decode("ascii", "replace").lower()
            if b":" in line
            else ""
        )
        spans.append((name, pos, pos + len(line)))
    return spans


def _unfold(value: bytes) -> bytes:
    return re.sub(rb"\r?\n(?=[ \t])", b"", value).strip()


def field_value(data: bytes, name: str) -> bytes | None:
    """The unfolded value of the first `name` field (lowercase) of the header section."""
    header = data[: header_length(data)]
    for fname, start, end in _field_spans(header):
        if fname == name:
            return _unfold(header[start:end].partition(b":")[2])
    return None


def remove_fields(data: bytes, drop: frozenset[str]) -> tuple[bytes, dict[str, bytes]]:
    """The message without the header fields named in `drop` (lowercase), and the unfolded values
    removed (the first of each name). Only the top-level header section is touched."""
    hlen = header_length(data)
    header = data[:hlen]
    kept: list[bytes] = []
    found: dict[str, bytes] = {}
    for name, start, end in _field_spans(header):
        if name in drop:
            found.setdefault(name, _unfold(header[start:end].partition(b":")[2]))
        else:
            kept.append(header[start:end])
    if not found:
        return data, found
    return b"".join(kept) + data[hlen:], found


def insert_fields(data: bytes, lines: Sequence[bytes]) -> bytes:
    """Adds complete field lines at the end of the header section (where MDAs put Status)."""
    hlen = header_length(data)
    head = data[:hlen]
    if head and not head.endswith(b"\n"):
        head += b"\n"
    return head + b"".join(lines) + data[hlen:]


def message_problem(data: bytes) -> str | None:
    """Why `data` is not an RFC 5322 message we should store, or None if it is one."""
    if not data.strip():
        return "empty message"
    # RFC 5322 3.5: the header fields are optional, so a message may start with the blank line
    # that ends an empty header (IMAP APPEND accepts one, and export writes it: it must come back).
    empty_header = data.startswith((b"\r\n", b"\n"))
    if not empty_header and not FIELD_NAME.match(data):
        first = data.split(b"\n", 1)[0][:24]
        return f"not an RFC 5322 message: the first line is not a header field ({first!r})"
    if b"\x00" in data[: header_length(data)]:
        return "NUL octet in the header section (RFC 5322 2.2)"
    return None


_MONTHS = {m.encode(): i for i, m in enumerate(calendar.month_abbr) if m}
_ASCTIME = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+"
    rb"(\d{1,2})\s+(\d{1,2}):(\d\d)(?::(\d\d))?\s+(?:([A-Za-z]{1,5}|[+-]\d{4})\s+)?(\d{4})"
    rb"(?:\s+([+-]\d{4}))?"
)


def from_line_date(line: bytes) -> float | None:
    """The date of an mbox From_ line ("From sender Sat Jan  3 01:05:34 1996"), or None.

    asctime() carries no zone: it is read as UTC, which is what Python's mailbox and most MDAs
    write (some old systems wrote local time). A numeric zone, where an MDA added one, is applied.
    """
    m = _ASCTIME.search(line, 5)
    if m is None:
        return None
    mon, day, hour, minute = _MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4])
    sec = int(m[5] or 0)
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and sec <= 60):
        return None
    ts = calendar.timegm((int(m[7]), mon, day, hour, minute, sec, 0, 0, 0))
    zone = m[8] or (m[6] if m[6] and m[6][:1] in b"+-" else None)
    if zone:
        offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
        ts -= offset if zone[:1] == b"+" else -offset
    return float(ts)


def header_date(data: bytes) -> float | None:
    """An INTERNALDATE from the message itself: the topmost Received field's date (when the last hop
    got it, closest to RFC 3501 2.3.3), else the Date field. None when neither parses."""
    for name in ("received", "date"):
        value = field_value(data, name)
        if value is None:
            continue
        text = value.decode("ascii", "replace")
        if name == "received":
            if ";" not in text:
                continue
            text = text.rpartition(";")[2]
        parsed = parsedate_tz(text.strip())
        if parsed is None:
            continue
        try:
            ts = float(mktime_tz(parsed))
        except (OverflowError, ValueError):
            continue
        if 0 <= ts < 253402300800:  # 1970 .. 9999
            return ts
    return None
