"""METADATA (RFC 5464) command syntax: GETMETADATA and SETMETADATA.

Entry names are checked here (RFC 5464 3.2: "/"-separated, starting with /private or /shared, no
"*" or "%", no empty component, no trailing "/") and folded to lower case: entry names are
case-insensitive, as Dovecot treats them. Values are octets (nstring or literal8); NIL removes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from carteiro.proto.imap.args import ArgError, ArgReader

MAX_ENTRY: Final = 1024  # octets in an entry name
MAX_ENTRIES: Final = 1000  # entries in one command
DEPTHS: Final = {"0": 0, "1": 1, "INFINITY": -1}
# printable ASCII without "*" and "%" (RFC 5464 3.2); one component at a time
_ENTRY_RE: Final = re.compile(r"(?:/[\x21-\x24\x26-\x29\x2b-\x2e\x30-\x7e]+)+")


@dataclass(frozen=True, slots=True)
class GetMetadata:
    """RFC 5464 4.2. `mailbox` "" is the server; `depth` -1 is infinity; `maxsize` None: none."""

    mailbox: str
    entries: tuple[str, ...]
    maxsize: int | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class SetMetadata:
    """RFC 5464 4.3: (entry, value) pairs in order; value None removes the entry."""

    mailbox: str
    values: tuple[tuple[str, bytes | None], ...]


def entry_name(raw: bytes, *, root: bool = False) -> str:
    """A valid entry name, lower-cased; ArgError (BAD) otherwise. `root`: "/private" and
    "/shared" themselves are accepted too (GETMETADATA with DEPTH asks for everything below)."""
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ArgError("Entry names are ASCII") from None
    if len(raw) > MAX_ENTRY or _ENTRY_RE.fullmatch(name) is None:
        raise ArgError("Invalid entry name")
    name = name.lower()
    if root and name in ("/private", "/shared"):
        return name
    if not (name.startswith("/private/") or name.startswith("/shared/")):
        raise ArgError("Entry names start with /private/ or /shared/")
    return name


def _mailbox(r: ArgReader) -> str:
    """mailbox, where "" names the server (RFC 5464 4.2, 4.3)."""
    raw = r.astring("mailbox name")
    return "" if raw == b"" else r.mailbox_name(raw)


def parse_getmetadata(r: ArgReader) -> GetMetadata:
    """getmetadata = "GETMETADATA" [SP getmetadata-options] SP mailbox SP entries."""
    r.sp()
    maxsize: int | None = None
    depth: int | None = None
    if r.accept(b"("):
        while True:
            opt = r.keyword("option")
            r.sp()
            if opt == "MAXSIZE" and maxsize is None:
                maxsize = r.number("MAXSIZE")
            elif opt == "DEPTH" and depth is None:
                word = r.keyword("depth")
                if word not in DEPTHS:
                    raise ArgError("DEPTH is 0, 1 or infinity")
                depth = DEPTHS[word]
            else:
                raise ArgError(f"Unknown or repeated option {opt[:40]}")
            if r.accept(b")"):
                break
            r.sp()
        r.sp()
    mailbox = _mailbox(r)
    r.sp()
    entries: list[str] = []
    if r.accept(b"("):
        entries.append(entry_name(r.astring("entry"), root=True))
        while r.try_sp():
            entries.append(entry_name(r.astring("entry"), root=True))
            if len(entries) > MAX_ENTRIES:
                raise ArgError("Too many entries")
        r.expect(b")", "')' after the entries")
    else:
        entries.append(entry_name(r.astring("entry"), root=True))
    r.end()
    return GetMetadata(mailbox, tuple(dict.fromkeys(entries)), maxsize, depth or 0)


def parse_setmetadata(r: ArgReader) -> SetMetadata:
    """setmetadata = "SETMETADATA" SP mailbox SP "(" entry-value *(SP entry-value) ")",
    entry-value = entry SP value, value = nstring / literal8."""
    r.sp()
    mailbox = _mailbox(r)
    r.sp()
    r.expect(b"(", "'(' before the entries")
    values: dict[str, bytes | None] = {}
    while True:
        name = entry_name(r.astring("entry"))
        r.sp()
        value: bytes | None
        if r.accept_word(b"NIL"):
            value = None
        elif r.literal_here():
            value, _ = r.literal(allow8=True)
        else:
            value = r.string("value")
        values[name] = value  # the last value given for an entry wins
        if len(values) > MAX_ENTRIES:
            raise ArgError("Too many entries")
        if r.accept(b")"):
            break
        r.sp()
    r.end()
    return SetMetadata(mailbox, tuple(values.items()))
