"""Decoded text for IMAP SEARCH (RFC 3501 6.4.4): header fields, bodies, whole messages.

The caller matches case-insensitively (`fold(key) in fold(text)`). Which parts are
searched follows Dovecot: BODY looks at the text/* and message/* leaf bodies, transfer- and
charset-decoded, never at headers; TEXT adds every header block (the message's, each MIME
part's and each encapsulated message's), with encoded words decoded. A match never spans two
parts, so texts come as one string per part. Results are cached on the Message.
"""

from __future__ import annotations

import re
from datetime import date

from carteiro.mime.address import MAX_ADDRESSES, format_address_list, parse_address_prefix
from carteiro.mime.dates import header_date
from carteiro.mime.encoded_words import decode_charset, decode_words
from carteiro.mime.header import unfold
from carteiro.mime.parse import LEAF, Message, Part
from carteiro.mime.sections import UnknownCte, decode_body

_BLANKS = re.compile(r"[ \t]+")


def fold(text: str) -> str:
    """The key SEARCH compares text by: `fold(needle) in fold(text)`. Python's full case folding,
    which the store's search index keeps too (store/search_index.py), so both answer alike.

    I18NLEVEL=1 (RFC 5255 4) would make this the i;unicode-casemap key (sortkeys.casemap, RFC
    5051), which SORT already collates with; that needs the index to store the same keys (and a
    reindex), so it changes here and there at once or not at all: docs/search-index.md."""
    return text.casefold()


# SEARCH FROM / TO / CC / BCC compare with the normalised address list (Dovecot does).
ADDRESS_FIELDS = frozenset(
    {b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
     b"resent-from", b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc"}
)  # fmt: skip


def header_texts(msg: Message, name: str | bytes, part: Part | None = None) -> list[str]:
    """SEARCH HEADER: the decoded values of every `name` field, [] if there is none (so
    `HEADER name ""` matches exactly when the list is not empty)."""
    bname = name.encode("latin-1") if isinstance(name, str) else name
    p = msg.root if part is None else part
    return [decode_words(unfold(v)) for v in msg.field_values(p, bname)]


def subject_texts(msg: Message) -> list[str]:
    """SEARCH SUBJECT: decoded Subject values with blank runs squeezed to one space."""
    return [_BLANKS.sub(" ", v).strip() for v in header_texts(msg, b"subject")]


def address_texts(msg: Message, name: str | bytes) -> list[str]:
    """SEARCH FROM/TO/CC/BCC: each field as a normalised address list with decoded names,
    e.g. `Jörg <joerg@example.org>, group: a@example.org;`."""
    bname = (name.encode("latin-1") if isinstance(name, str) else name).lower()
    out = []
    # One budget for all the fields of that name (CVE-2024-23184 was 500,000 To: lines):
    # past it, the text is searched as written, so SEARCH still finds what it holds.
    budget = MAX_ADDRESSES
    for raw in msg.field_values(msg.root, bname):
        if bname in ADDRESS_FIELDS and budget > 0:
            addrs, rest = parse_address_prefix(raw, fill_missing=False, limit=budget)
            budget -= len(addrs)
            raw = format_address_list(addrs)
            if rest:
                raw += b", " + rest
        out.append(decode_words(unfold(raw)))
    return out


def sent_date(msg: Message) -> date | None:
    """SEARCH SENTBEFORE/SENTON/SENTSINCE: the date written in the first Date field, time and
    zone disregarded (RFC 3501 6.4.4); None if absent or unreadable (the caller decides)."""
    values = msg.field_values(msg.root, b"date")
    return header_date(values[0]) if values else None


def _searchable_body(part: Part) -> bool:
    # No Content-Type means text/plain (RFC 2045 5.2); message/* leaves are text-like too.
    return part.kind == LEAF and part.media_type.startswith((b"text/", b"message/"))


def part_text(msg: Message, part: Part) -> str:
    """A text part's body, transfer-decoded and converted from its charset."""
    body = decode_body(msg, part)
    if isinstance(body, UnknownCte):
        body = msg.data[part.body_start : part.end]
    charset = part.param(b"charset") if part.type is not None else None
    return decode_charset(body, charset)


def _header_text(msg: Message, part: Part) -> str:
    lines = []
    for f in part.fields:
        lines.append(f"{decode_words(f.name)}: {decode_words(unfold(msg.raw_value(f)))}\r\n")
    return "".join(lines)


def body_texts(msg: Message) -> list[str]:
    """SEARCH BODY: one decoded string per searchable body part."""
    cached = msg.cache.get("search:body")
    if cached is None:
        cached = [part_text(msg, p) for p in msg.root.walk() if _searchable_body(p)]
        msg.cache["search:body"] = cached
    out: list[str] = cached
    return out


def header_blocks(msg: Message) -> list[str]:
    """Every part's decoded header block, in message_texts' order (what TEXT adds to BODY)."""
    return [_header_text(msg, p) for p in msg.root.walk()]


def message_texts(msg: Message) -> list[str]:
    """SEARCH TEXT: per part, its decoded header block followed by its decoded body."""
    cached = msg.cache.get("search:text")
    if cached is None:
        cached = []
        for p in msg.root.walk():
            text = _header_text(msg, p)
            if _searchable_body(p):
                text += part_text(msg, p)
            cached.append(text)
        msg.cache["search:text"] = cached
    out: list[str] = cached
    return out
