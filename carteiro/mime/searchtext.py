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

from carteiro.mime.address import format_address_list
from carteiro.mime.encoded_words import decode_charset, decode_words
from carteiro.mime.header import address_lists, decoded_values, first_date, unfold
from carteiro.mime.parse import LEAF, Message, Part
from carteiro.mime.sections import UnknownCte, decode_body
from carteiro.mime.sortkeys import casemap

_BLANKS = re.compile(r"[ \t]+")


def fold(text: str) -> str:
    """The key SEARCH compares text by: `fold(needle) in fold(text)`, the i;unicode-casemap key
    (RFC 5051: simple titlecase, then NFKD) that I18NLEVEL=1 (RFC 5255 4) names and SORT
    collates with. The store's search index keeps texts folded the same way
    (store/search_index.py, FOLD), so the index and this evaluator answer alike. As in Dovecot,
    "ß" stays "ß" (its simple titlecase) and a needle without accents finds accented text
    ("cafe" is a substring of the NFKD form of "café")."""
    return casemap(text)


# SEARCH FROM / TO / CC / BCC compare with the normalised address list (Dovecot does).
ADDRESS_FIELDS = frozenset(
    {b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
     b"resent-from", b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc"}
)  # fmt: skip


def header_texts(msg: Message, name: str | bytes, part: Part | None = None) -> list[str]:
    """SEARCH HEADER: the decoded values of every `name` field, [] if there is none (so
    `HEADER name ""` matches exactly when the list is not empty)."""
    bname = (name.encode("latin-1") if isinstance(name, str) else name).lower()
    if part is None or part is msg.root:
        return list(decoded_values(msg, bname))
    return [decode_words(unfold(v)) for v in msg.field_values(part, bname)]


def subject_texts(msg: Message) -> list[str]:
    """SEARCH SUBJECT: decoded Subject values with blank runs squeezed to one space."""
    return [
        # without a tab or two blanks in a row there is no run to squeeze
        _BLANKS.sub(" ", v).strip() if "\t" in v or "  " in v else v.strip()
        for v in decoded_values(msg, b"subject")
    ]


def address_texts(msg: Message, name: str | bytes) -> list[str]:
    """SEARCH FROM/TO/CC/BCC: each field as a normalised address list with decoded names,
    e.g. `Jörg <joerg@example.org>, group: a@example.org;`."""
    bname = (name.encode("latin-1") if isinstance(name, str) else name).lower()
    if bname not in ADDRESS_FIELDS:
        return list(decoded_values(msg, bname))
    # One budget for all the fields of that name (CVE-2024-23184 was 500,000 To: lines):
    # past it, the text is searched as written, so SEARCH still finds what it holds.
    parsed = address_lists(msg, bname)
    if not parsed:
        return []
    out = []
    for raw, read in zip(msg.field_values(msg.root, bname), parsed, strict=True):
        if read is not None:
            addrs, rest = read
            raw = format_address_list(addrs)
            if rest:
                raw += b", " + rest
        out.append(decode_words(unfold(raw)))
    return out


def sent_date(msg: Message) -> date | None:
    """SEARCH SENTBEFORE/SENTON/SENTSINCE: the date written in the first Date field, time and
    zone disregarded (RFC 3501 6.4.4); None if absent or unreadable (the caller decides)."""
    when = first_date(msg)
    return when.date() if when is not None else None


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
    """The part's fields as `name: value` lines, names and values decoded (decode_words)."""
    if msg.data.find(b"=?", part.start, part.body_start) < 0:
        # No encoded word in the header (unfolding cannot make one: a folded line starts with a
        # blank): decode_words of each name and value is a UTF-8 decode, else Windows-1252. A
        # concatenation is valid UTF-8 exactly when each piece is, as pieces are cut next to
        # ASCII octets: one decode of the whole block gives the same text.
        raw = b"".join([f.name + b": " + unfold(msg.raw_value(f)) + b"\r\n" for f in part.fields])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return _header_text_each(msg, part)


def _header_text_each(msg: Message, part: Part) -> str:
    # the general way, field by field (also the reference the tests hold _header_text to)
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
