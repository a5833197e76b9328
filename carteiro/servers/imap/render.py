"""Small, fast IMAP response encoders used by the handlers (RFC 9051 4.3, 9).

Strings become atoms only where the grammar says astring; otherwise quoted when safe, else a
literal. Flag lists are cached per frozenset, with and without \\Recent: FETCH 1:* (FLAGS) on
100,000 messages renders each distinct set once. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from carteiro.proto.imap import utf7

# Order Dovecot and most clients expect in FLAGS lists.
SYSTEM_FLAG_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_ORDER = {f: i for i, f in enumerate(SYSTEM_FLAG_ORDER)}

_QUOTABLE = re.compile(rb"[^\x00\r\n\x80-\xff]*")  # '"' and "\" are escaped
_QUOTABLE_UTF8 = re.compile(rb"[^\x00\r\n]*")
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')

_flag_cache: dict[frozenset[str], bytes] = {}
_recent_cache: dict[frozenset[str], bytes] = {}  # the same sets with \Recent added


def sort_flags(flags: Iterable[str]) -> list[str]:
    return sorted(flags, key=lambda f: (_ORDER.get(f, 9), f))


def flag_list(flags: frozenset[str], recent: bool = False) -> bytes:
    """``(\\Seen $Label)`` for a FETCH FLAGS item."""
    cache = _recent_cache if recent else _flag_cache
    out = cache.get(flags)
    if out is None:
        names = [*sort_flags(flags), "\\Recent"] if recent else sort_flags(flags)
        out = b"(" + b" ".join(f.encode() for f in names) + b")"
        if len(cache) < 4096:
            cache[flags] = out
    return out


def quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(data: bytes | str, utf8: bool = False) -> bytes:
    """A quoted string, or a literal when the octets cannot be quoted."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    m = (_QUOTABLE_UTF8 if utf8 else _QUOTABLE).fullmatch(data)
    if m is not None and len(data) < 1024:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data: bytes, binary: bool = False) -> bytes:
    if not data:
        return b'""'
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data


def nstring(data: bytes | str | None, utf8: bool = False) -> bytes:
    return b"NIL" if data is None else string(data, utf8)


def astring(data: bytes | str, utf8: bool = False) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if _ASTRING_ATOM.fullmatch(data):
        return data
    return string(data, utf8)


def mailbox(name: str, utf8: bool) -> bytes:
    """A mailbox name (an astring): UTF-8 once UTF8=ACCEPT / IMAP4rev2 is on, else modified
    UTF-7 (RFC 3501 5.1.3, RFC 6855 3)."""
    wire = name if utf8 else utf7.encode(name)
    if wire.upper() == "INBOX":
        return b"INBOX"
    if wire.upper() == "NIL":
        return b'"' + wire.encode() + b'"'
    return astring(wire, utf8)


def structure(v: object, utf8: bool = False) -> bytes:
    """ENVELOPE and BODYSTRUCTURE values. A list's leading run of lists is written without
    spaces: RFC 9051 9 body-type-mpart = 1*body SP media-subtype, and env-from etc. =
    "(" 1*address ")"; everything else is space-separated."""
    if v is None:
        return b"NIL"
    if isinstance(v, bool):
        return b"1" if v else b"0"
    if isinstance(v, int):
        return b"%d" % v
    if isinstance(v, bytes):
        return literal(v)
    if isinstance(v, str):
        data = v.encode("utf-8", "surrogateescape")
        if utf8 or data.isascii():
            return string(data, utf8)
        return literal(data)
    assert isinstance(v, list | tuple)
    out = bytearray(b"(")
    lead = True
    for i, x in enumerate(v):
        is_list = isinstance(x, list | tuple)
        if i and not (lead and is_list):
            out += b" "
        if not is_list:
            lead = False
        out += structure(x, utf8)
    out += b")"
    return bytes(out)


def internaldate(ts: float, tz: int = 0) -> bytes:
    """``"17-Jul-1996 02:44:25 -0700"`` (RFC 9051 9 date-time): the instant `ts` in the zone `tz`
    minutes east of UTC (the one it was APPENDed with: RFC 3501 2.3.3)."""
    d = dt.datetime.fromtimestamp(int(ts) + 60 * tz, dt.UTC)
    z = abs(tz)
    return b'"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d"' % (
        d.day,
        _MONTHS[d.month - 1],
        d.year,
        d.hour,
        d.minute,
        d.second,
        45 if tz < 0 else 43,  # "-" / "+"
        z // 60,
        z % 60,
    )


_MONTHS = (
    b"Jan",
    b"Feb",
    b"Mar",
    b"Apr",
    b"May",
    b"Jun",
    b"Jul",
    b"Aug",
    b"Sep",
    b"Oct",
    b"Nov",
    b"Dec",
)


def text(s: str) -> bytes:
    """Human-readable text after a status: no CR/LF."""
    return s.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def ascii_text(s: str) -> str:
    """Text for a session without UTF-8: non-ASCII runs in modified UTF-7 (as mailbox names
    are written), anything unencodable as "?"."""
    try:
        return utf7.encode(s)
    except ValueError:
        return s.encode("ascii", "replace").decode("ascii")
