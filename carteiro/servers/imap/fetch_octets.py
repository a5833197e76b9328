"""What FETCH returns for one message: section octets, partials, BINARY decoding (RFC 9051 6.4.5,
RFC 3516), on top of the parsed MIME tree. The server renders; this module decides the octets.
Never does I/O. It reads the IMAP parser's FetchAttr, so it lives with the IMAP server, not in mail/.
"""

from __future__ import annotations

from carteiro.mime import sections as ms
from carteiro.mime.parse import Message
from carteiro.proto.imap import fetch as pf

# Items answered from MessageMeta alone (no message read).
META_KINDS = frozenset({pf.UID, pf.FLAGS, pf.INTERNALDATE, pf.RFC822_SIZE, pf.MODSEQ})
# Items that need only the raw octets, no MIME parse.
WHOLE_KINDS = frozenset({pf.RFC822})


def needs_message(attrs: tuple[pf.FetchAttr, ...]) -> bool:
    return any(a.kind not in META_KINDS for a in attrs)


def needs_parse(attrs: tuple[pf.FetchAttr, ...]) -> bool:
    """False when every body item is the whole message (BODY[], RFC822): no parse needed."""
    for a in attrs:
        if a.kind in META_KINDS or a.kind in WHOLE_KINDS:
            continue
        if a.kind == pf.BODY_SECTION and a.section is not None and a.section == pf.Section():
            continue
        return True
    return False


def whole(raw: bytes) -> bytes:
    """The message as IMAP serves it: the stored octets (APPEND stores CRLF line endings, except
    from a binary literal, whose bare LFs are kept: RFC 3516 4.4, and RFC822.SIZE is the stored
    size); NUL as 0x80 (RFC 3501 4.3 forbids NUL in literals; Dovecot does the same, keeping the
    size)."""
    if b"\x00" in raw:
        return raw.replace(b"\x00", b"\x80")
    return raw


def as_stored(msg: Message, attr: pf.FetchAttr) -> bytes | None:
    """The stored octets when `attr` asks for the whole message (BODY[], BINARY[], RFC822,
    RFC822.SIZE, BINARY.SIZE[]) of a message stored with bare LFs (Message.raw), else None:
    those are answered as stored, never from the CRLF copy the parts are cut from."""
    if msg.raw is None:
        return None
    kind = attr.kind
    if kind in (pf.RFC822, pf.RFC822_SIZE):
        return msg.raw
    if kind in (pf.BODY_SECTION, pf.BINARY, pf.BINARY_SIZE) and (
        attr.section is None or attr.section == pf.Section()
    ):
        return msg.raw
    return None


def _mime_section(sec: pf.Section | None) -> ms.Section:
    if sec is None:
        return ms.Section()
    return ms.Section(sec.part, sec.text or "", sec.fields)


def partial(data: bytes, p: pf.Partial | None) -> bytes:
    """RFC 9051 6.4.5: octets origin..origin+count-1; an origin past the end gives ""."""
    if p is None:
        return data
    if p.count is None:
        return data[p.origin :]
    return data[p.origin : p.origin + p.count]


def body_section(msg: Message, attr: pf.FetchAttr) -> bytes:
    """BODY[section]<partial>; a section naming no part gives "" (as Dovecot)."""
    out = ms.body_section(msg, _mime_section(attr.section))
    return partial(out or b"", attr.partial)


def binary_section(msg: Message, attr: pf.FetchAttr) -> bytes | ms.UnknownCte | None:
    """BINARY[section]<partial>: decoded content; None for no such part. A section with text
    (TEXT, MIME, HEADER...) has nothing to decode: its BODY octets (as Dovecot)."""
    if attr.section is not None and attr.section.text is not None:
        return body_section(msg, attr)
    out = ms.binary_section(msg, _mime_section(attr.section))
    if isinstance(out, bytes):
        return partial(out, attr.partial)
    return out


def binary_size(msg: Message, attr: pf.FetchAttr) -> int | ms.UnknownCte | None:
    if attr.section is not None and attr.section.text is not None:
        return len(ms.body_section(msg, _mime_section(attr.section)) or b"")
    return ms.binary_size(msg, _mime_section(attr.section))


def header(msg: Message) -> bytes:
    return msg.data[msg.root.start : msg.root.body_start]


def text(msg: Message) -> bytes:
    data = msg.data[msg.root.body_start : msg.root.end]
    return data.replace(b"\x00", b"\x80") if b"\x00" in data else data
