"""Header field values for people: unfolding, RFC 2047 words, RFC 2231 parameters.

The structural parsers live next door (rfc822: tokens and parameters, address: address lists,
dates: Date); this module turns their byte values into text for SEARCH and webmail, and is the
place to import header helpers from. Pure; never raises on malformed input.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote_to_bytes

from carteiro.mime.address import (
    MAX_ADDRESSES,
    Address,
    format_address_list,
    parse_address_list,
    parse_address_prefix,
)
from carteiro.mime.dates import header_date, parse_date
from carteiro.mime.encoded_words import decode_charset, decode_words
from carteiro.mime.parse import Message, Part

__all__ = [
    "Address",
    "decode_charset",
    "decode_header",
    "decode_params",
    "decode_words",
    "filename",
    "format_address_list",
    "header_date",
    "parse_address_list",
    "parse_date",
    "unfold",
]


def unfold(value: bytes) -> bytes:
    """RFC 5322 2.2.3: remove the line breaks of a folded value (the whitespace stays). A CR
    that ends no line is no line break: it separates words like the blank it stands for."""
    if b"\n" in value:
        # each LF with the CR before it, if any (a CR can pair with no other LF)
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.replace(b"\r", b" ") if b"\r" in value else value


def decode_header(value: bytes) -> str:
    """A raw field value as text: unfolded, encoded words decoded, 8-bit read as UTF-8."""
    return decode_words(unfold(value))


def decode_params(params: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Content-Type / Content-Disposition parameters as text, keyed by lowercased name.

    Takes the merged list Part.params holds: RFC 2231 `name*` values (charset'lang'%XX) are
    decoded and win over a plain `name`; plain values get lenient RFC 2047 decoding, which
    many mailers use for file names although RFC 2047 5 forbids it.
    """
    out: dict[str, str] = {}
    extended: set[str] = set()
    for key, value in params:
        name = key.decode("latin-1").lower()
        if name.endswith("*"):
            name = name[:-1]
            charset, _, rest = value.partition(b"'")
            _lang, sep, text = rest.partition(b"'")
            if not sep:  # no charset'lang' prefix: only %-escapes
                charset, text = b"", value
            out[name] = decode_charset(unquote_to_bytes(text), charset or None)
            extended.add(name)
        elif name not in extended:
            out[name] = decode_words(value)
    return out


def filename(part: Part) -> str | None:
    """The file name a part suggests: Content-Disposition filename, else Content-Type name."""
    for params in (part.disposition_params, part.params):
        decoded = decode_params(params)
        for key in ("filename", "name"):
            if decoded.get(key):
                return decoded[key]
    return None


# ---- values of the top-level header, decoded once per message ----
#
# The store's search indexer, SEARCH and SORT read the same few fields of a message (Subject
# for SEARCH and for the base subject, Date for SENT* and for SORT DATE, From/To/Cc for SEARCH
# and for SORT FROM/DISPLAYFROM): each is decoded once and kept in `msg.cache` under
# "mime:" keys. A Message is never changed after parse(), so these never go stale; the lists
# are shared: callers must not change them.


def decoded_values(msg: Message, name: bytes) -> list[str]:
    """The decoded values (unfolded, RFC 2047 words decoded) of the top-level header's `name`
    fields (lower case), in order; cached on the message."""
    key = "mime:h:" + name.decode("latin-1")
    out: list[str] | None = msg.cache.get(key)
    if out is None:
        out = msg.cache[key] = [decode_words(unfold(v)) for v in msg.field_values(msg.root, name)]
    return out


def first_date(msg: Message) -> datetime | None:
    """The instant the first Date field names (parse_date), None if absent or unreadable;
    cached on the message: SEARCH SENT* and SORT DATE both read it."""
    try:
        out: datetime | None = msg.cache["mime:date"]
    except KeyError:
        values = msg.field_values(msg.root, b"date")
        out = msg.cache["mime:date"] = parse_date(values[0]) if values else None
    return out


def address_lists(msg: Message, name: bytes) -> list[tuple[list[Address], bytes] | None]:
    """Each top-level `name` field (lower case) as parse_address_prefix reads it without
    filling missing parts: (entries, the rest left unread); cached on the message. One budget
    of MAX_ADDRESSES entries for all the fields of that name together (CVE-2024-23184 was
    500,000 To: lines): a field past it is None (not read)."""
    key = "mime:a:" + name.decode("latin-1")
    out: list[tuple[list[Address], bytes] | None] | None = msg.cache.get(key)
    if out is None:
        out = []
        budget = MAX_ADDRESSES
        for raw in msg.field_values(msg.root, name):
            if budget > 0:
                addrs, rest = parse_address_prefix(raw, fill_missing=False, limit=budget)
                budget -= len(addrs)
                out.append((addrs, rest))
            else:
                out.append(None)
        msg.cache[key] = out
    return out


def cached_address_lists(
    msg: Message, name: bytes
) -> list[tuple[list[Address], bytes] | None] | None:
    """address_lists(msg, name) if it was worked out already, else None."""
    out: list[tuple[list[Address], bytes] | None] | None = msg.cache.get(
        "mime:a:" + name.decode("latin-1")
    )
    return out
