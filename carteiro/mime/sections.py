"""BODY[section] and BINARY[section] contents (RFC 3501 6.4.5, RFC 9051 6.4.5, RFC 3516).

Part numbering, HEADER/TEXT/MIME/HEADER.FIELDS semantics and the answers for odd requests
follow Dovecot. `<partial>` is left to the caller (offsets count in the returned octets).
Pure; never raises on any message.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from carteiro.mime.encoded_words import unhex
from carteiro.mime.parse import MESSAGE, MULTIPART, Message, Part, to_crlf

HEADER = "HEADER"
HEADER_FIELDS = "HEADER.FIELDS"
HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
MIME = "MIME"
TEXT = "TEXT"
_TEXTS = (HEADER, HEADER_FIELDS, HEADER_FIELDS_NOT, MIME, TEXT)


@dataclass(frozen=True, slots=True)
class Section:
    """A section-spec: part numbers, then "" (the whole part), HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, MIME or TEXT; `fields` are the HEADER.FIELDS names."""

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownCte:
    """BINARY of a part whose Content-Transfer-Encoding we cannot undo: the server answers
    NO [UNKNOWN-CTE] (RFC 3516 4.2)."""

    encoding: str


_SECTION = re.compile(
    r"^(?P<part>[1-9][0-9]*(?:\.[1-9][0-9]*)*)?(?:(?(part)\.)(?P<text>[A-Za-z.]+))?"
    r"(?:\s+\((?P<fields>[^()]*)\))?$"
)


def parse_section(spec: str) -> Section | None:
    """Parse the text between "[" and "]" (e.g. `1.2.HEADER.FIELDS (From To)`); None if bad.

    For tests and tools: the IMAP command parser builds Section values itself.
    """
    m = _SECTION.match(spec.strip())
    if m is None:
        return None
    numbers = tuple(int(n) for n in m.group("part").split(".")) if m.group("part") else ()
    text = (m.group("text") or "").upper()
    if text and text not in _TEXTS:
        return None
    fields = tuple(m.group("fields").split()) if m.group("fields") is not None else ()
    if (m.group("fields") is not None) != (text in (HEADER_FIELDS, HEADER_FIELDS_NOT)):
        return None
    if text in (HEADER_FIELDS, HEADER_FIELDS_NOT) and not fields:
        return None
    if text == MIME and not numbers:
        return None
    return Section(numbers, text, fields)


def find_part(msg: Message, numbers: tuple[int, ...]) -> Part | None:
    """The part a section number names (RFC 3501 6.4.5), or None if there is none.

    A non-multipart message (or part) has one part, number 1, which is its body; numbers
    continue into the message a message/rfc822 part encapsulates.
    """
    part: Part | None = msg.root
    for i, num in enumerate(numbers):
        if part is None:
            break
        more = i + 1 < len(numbers)
        if part.kind == MULTIPART:
            part = part.children[num - 1] if 1 <= num <= len(part.children) else None
        elif num != 1 or (more and part.kind != MESSAGE):
            part = None
        if part is not None and more and part.kind == MESSAGE:
            part = part.children[0] if part.children else None
    return part


def _header_fields(msg: Message, part: Part, names: tuple[str, ...], keep: bool) -> bytes:
    wanted = {n.encode("utf-8", "surrogateescape").lower() for n in names}
    data = msg.data
    out = bytearray()
    for f in part.fields:
        if (f.name.lower() in wanted) == keep:
            out += data[f.start : f.end]
    if part.has_eoh:
        # RFC 3501 6.4.5: the blank line that ends the header is part of the subset.
        last = part.fields[-1].end if part.fields else part.start
        if part.fields_end >= 0:
            last = part.fields_end  # fields past the parser's limits were not indexed
        out += data[last : part.body_start]
    return bytes(out)


def _raw_section(msg: Message, section: Section) -> bytes | None:
    data = msg.data
    if not section.part:
        part = msg.root
    else:
        found = find_part(msg, section.part)
        if found is None:
            return None
        part = found
        if section.text == "":
            return data[part.body_start : part.end]
        if section.text == MIME:
            # For a part inside message/rfc822 this is the message header (Dovecot's choice).
            return data[part.start : part.body_start]
        # HEADER and TEXT of a part exist only for message/rfc822 parts.
        if part.kind != MESSAGE or not part.children:
            return None
        part = part.children[0]
    if section.text == "":
        return data
    if section.text == HEADER:
        return data[part.start : part.body_start]
    if section.text == TEXT:
        return data[part.body_start : part.end]
    if section.text == HEADER_FIELDS:
        return _header_fields(msg, part, section.fields, True)
    if section.text == HEADER_FIELDS_NOT:
        return _header_fields(msg, part, section.fields, False)
    return None  # MIME without a part number


def body_section(msg: Message, section: Section) -> bytes | None:
    """The octets of BODY[section]; None when the message has no such part (Dovecot then
    answers with an empty string). NULs become 0x80, as literals cannot carry them (RFC 3501
    4.3) - Dovecot does the same; the length does not change."""
    out = _raw_section(msg, section)
    if out is not None and b"\x00" in out:
        out = out.replace(b"\x00", b"\x80")
    return out


# ---- BINARY (RFC 3516) ----------------------------------------------------------------------

_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]")
_PADDING = re.compile(rb"=+")
# A run is only tried from its first blank, and possessively: "[ \t]+(?=\r?\n|\Z)" retried from
# every blank of a run that ends in text, quadratic in its length (100k blanks took minutes).
_TRAILING_BLANKS = re.compile(rb"(?<![ \t])[ \t]++(?=\r?\n|\Z)")
_SOFT_BREAK = re.compile(rb"=(?:\r?\n|\Z)")


def decode_base64(body: bytes) -> bytes:
    """RFC 2045 6.8, leniently: characters outside the alphabet are ignored (as the RFC says),
    missing padding is tolerated and text after padding is decoded as a new run."""
    out = bytearray()
    for run in _PADDING.split(_B64_JUNK.sub(b"", body)):
        if len(run) % 4 == 1:
            run = run[:-1]
        if run:
            out += binascii.a2b_base64(run + b"=" * (-len(run) % 4))
    return bytes(out)


def decode_quoted_printable(body: bytes) -> bytes:
    """RFC 2045 6.7: trailing blanks dropped, soft line breaks joined, =XX decoded; an "="
    that starts no valid escape is kept as it is."""
    if _has_trailing_blank(body):
        # the regex tries every position (~20 ns an octet): only when there is work for it
        body = _TRAILING_BLANKS.sub(b"", body)
    if b"=" not in body:
        return body
    body = _SOFT_BREAK.sub(b"", body)
    return unhex(body)


def _has_trailing_blank(body: bytes) -> bool:
    """Whether _TRAILING_BLANKS finds something: a blank before a line break or the end."""
    return (
        body.endswith((b" ", b"\t"))
        or b" \n" in body
        or b"\t\n" in body
        or b" \r\n" in body
        or b"\t\r\n" in body
    )


def _wide_charset(part: Part) -> bool:
    """UTF-16/32 text: its 0x0A octets are halves of characters, not line ends."""
    charset = (part.param(b"charset") or b"").lower().strip(b'"')
    return charset.startswith((b"utf-16", b"utf16", b"utf-32", b"utf32", b"ucs-2", b"ucs-4"))


def decode_body(msg: Message, part: Part) -> bytes | UnknownCte:
    """A part's body with its Content-Transfer-Encoding undone. Multiparts and messages are
    returned as they are: RFC 2045 6.4 allows them only identity encodings."""
    body = msg.data[part.body_start : part.end]
    if part.kind != "leaf":
        return body
    cte = part.transfer_encoding
    if cte in (b"7bit", b"8bit", b"binary"):
        return body
    if cte == b"base64":
        out = decode_base64(body)
        if part.is_text and b"\n" in out and not _wide_charset(part):
            # RFC 2045 6.8: text is encoded in its canonical form, CRLF line ends; senders that
            # encoded bare LFs still mean line breaks (RFC 3516 4.2, RFC 9051 7.5.2 BINARY).
            out = to_crlf(out)
        return out
    if cte == b"quoted-printable":
        return decode_quoted_printable(body)
    return UnknownCte(cte.decode("latin-1"))


def binary_section(msg: Message, section: Section) -> bytes | UnknownCte | None:
    """BINARY[section]: the decoded content of the part (RFC 3516 4.2); None if no such part.

    HEADER/MIME/TEXT sections (which Dovecot accepts too) need no decoding. BINARY[] and
    non-leaf parts are returned unchanged. NULs are kept: the answer is a literal8.
    """
    if section.text or not section.part:
        return _raw_section(msg, section)
    part = find_part(msg, section.part)
    if part is None:
        return b"" if _listed_empty(msg, section.part) else None
    key = "binary:" + ".".join(map(str, section.part))
    cached = msg.cache.get(key)
    if cached is None:
        cached = msg.cache[key] = decode_body(msg, part)
    out: bytes | UnknownCte = cached
    return out


def _listed_empty(msg: Message, numbers: tuple[int, ...]) -> bool:
    """Whether `numbers` names the empty text/plain part BODYSTRUCTURE shows for a multipart
    without parts (bodystructure._empty): it has no Part, but its content is "", not NIL."""
    container = find_part(msg, numbers[:-1]) if len(numbers) > 1 else msg.root
    if container is not None and container.kind == MESSAGE and container.children:
        container = container.children[0]  # numbers go on into the encapsulated message
    return (
        container is not None
        and container.kind == MULTIPART
        and not container.children
        and numbers[-1] == 1
    )


def binary_size(msg: Message, section: Section) -> int | UnknownCte | None:
    """BINARY.SIZE[section] (RFC 3516 4.2): the length of BINARY[section]."""
    out = binary_section(msg, section)
    return len(out) if isinstance(out, bytes) else out
