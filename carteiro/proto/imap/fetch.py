"""FETCH attributes (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ): typed values and parsing.

``FetchAttr.response_name()`` gives the name the FETCH response must use (RFC 9051 7.5.2: ``.PEEK``
dropped, only the origin octet of a partial); ``sets_seen`` says whether fetching it sets ``\\Seen``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from carteiro.proto.imap.args import ASTRING_ATOM_RE, MAX_NUMBER64, ArgError, ArgReader

__all__ = ["MACROS", "FetchAttr", "Partial", "Section", "parse_fetch_atts"]

# Section text kinds (RFC 9051 9 section-msgtext / section-text).
HEADER: Final = "HEADER"
HEADER_FIELDS: Final = "HEADER.FIELDS"
HEADER_FIELDS_NOT: Final = "HEADER.FIELDS.NOT"
TEXT: Final = "TEXT"
MIME: Final = "MIME"


@dataclass(frozen=True, slots=True)
class Section:
    """``BODY[<part>.<text> (<fields>)]``: ``part`` () is the whole message; ``text`` is None (the
    part's content), HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME; ``fields`` are the
    header names as the client wrote them (compare case-insensitively)."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def render(self) -> str:
        out = ".".join(map(str, self.part))
        if self.text is not None:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            out += " (" + " ".join(_astring(f) for f in self.fields) + ")"
        return out


@dataclass(frozen=True, slots=True)
class Partial:
    """``<origin.count>``: octets ``origin`` .. ``origin+count-1``; ``<origin>`` (count None),
    which Dovecot takes in FETCH too: from ``origin`` to the end."""

    origin: int
    count: int | None


# Attribute kinds. BODY without a section is the non-extensible BODYSTRUCTURE.
ENVELOPE: Final = "ENVELOPE"
FLAGS: Final = "FLAGS"
INTERNALDATE: Final = "INTERNALDATE"
RFC822: Final = "RFC822"
RFC822_HEADER: Final = "RFC822.HEADER"
RFC822_TEXT: Final = "RFC822.TEXT"
RFC822_SIZE: Final = "RFC822.SIZE"
BODY: Final = "BODY"
BODYSTRUCTURE: Final = "BODYSTRUCTURE"
UID: Final = "UID"
MODSEQ: Final = "MODSEQ"
BODY_SECTION: Final = "BODY[]"
BINARY: Final = "BINARY[]"
BINARY_SIZE: Final = "BINARY.SIZE"
PREVIEW: Final = "PREVIEW"  # RFC 8970
# RFC 8474 OBJECTID and RFC 8514 SAVEDATE are parsed so that a later issue can answer them.
EMAILID: Final = "EMAILID"
THREADID: Final = "THREADID"
SAVEDATE: Final = "SAVEDATE"

_SIMPLE = frozenset(
    {
        ENVELOPE,
        FLAGS,
        INTERNALDATE,
        RFC822,
        RFC822_HEADER,
        RFC822_TEXT,
        RFC822_SIZE,
        BODY,
        BODYSTRUCTURE,
        UID,
        MODSEQ,
        EMAILID,
        THREADID,
        SAVEDATE,
    }
)


@dataclass(frozen=True, slots=True)
class FetchAttr:
    """One fetch-att. ``kind`` is one of the constants above; ``section``/``partial``/``peek`` only
    for BODY[] and BINARY[] (BINARY.SIZE has a section)."""

    kind: str
    section: Section | None = None
    partial: Partial | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """RFC 9051 6.4.5: BODY[...], BINARY[...] and RFC822(.TEXT) set \\Seen; .PEEK does not."""
        if self.kind in (BODY_SECTION, BINARY):
            return not self.peek
        return self.kind in (RFC822, RFC822_TEXT)

    def response_name(self) -> str:
        """The data item name for the FETCH response, e.g. ``BODY[HEADER.FIELDS (From)]<0>``."""
        if self.kind == BODY_SECTION or self.kind == BINARY or self.kind == BINARY_SIZE:
            prefix = "BODY" if self.kind == BODY_SECTION else self.kind.removesuffix("[]")
            sec = self.section.render() if self.section is not None else ""
            out = f"{prefix}[{sec}]"
            if self.partial is not None:
                out += f"<{self.partial.origin}>"
            return out
        return self.kind

    def __str__(self) -> str:
        if self.kind in (BODY_SECTION, BINARY):
            base = "BODY" if self.kind == BODY_SECTION else "BINARY"
            sec = self.section.render() if self.section is not None else ""
            out = f"{base}{'.PEEK' if self.peek else ''}[{sec}]"
            if self.partial is not None and self.partial.count is None:
                out += f"<{self.partial.origin}>"
            elif self.partial is not None:
                out += f"<{self.partial.origin}.{self.partial.count}>"
            return out
        return self.response_name()


_SIMPLE_ATTRS: Final = {name: FetchAttr(name) for name in _SIMPLE}
_ALL = (FetchAttr(FLAGS), FetchAttr(INTERNALDATE), FetchAttr(RFC822_SIZE))
MACROS: Final[dict[str, tuple[FetchAttr, ...]]] = {
    # RFC 9051 6.4.5 macros
    "ALL": (*_ALL, FetchAttr(ENVELOPE)),
    "FAST": _ALL,
    "FULL": (*_ALL, FetchAttr(ENVELOPE), FetchAttr(BODY)),
}

_NAME_RE = re.compile(rb"[A-Za-z0-9.]+")
_PART_RE = re.compile(rb"[1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*")
_PARTIAL_RE = re.compile(rb"<([0-9]{1,19})(?:\.([0-9]{1,19}))?>")
_FIELD_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
# ftext that is also ASTRING-CHAR, ending where an atom would
_FIELD_ATOM_RE = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x39\x3b-\x5b\x5d-\x7a\x7c-\x7e]+(?=[ )])")


def parse_fetch_atts(r: ArgReader) -> tuple[tuple[FetchAttr, ...], str | None]:
    """``ALL`` / ``FAST`` / ``FULL`` / fetch-att / ``(`` fetch-att *(SP fetch-att) ``)``.

    Returns the attributes (macros expanded) and the macro name if one was used.
    """
    if r.accept(b"("):
        atts = [_fetch_att(r)]
        while r.try_sp():
            atts.append(_fetch_att(r))
        r.expect(b")", "')' after fetch attributes")
        return tuple(atts), None
    m = _NAME_RE.match(r.buf, r.pos)
    if m is not None:
        macro = m.group().upper().decode("ascii")
        if macro in MACROS and (m.end() == len(r.buf) or r.buf[m.end()] == 0x20):
            r.pos = m.end()
            return MACROS[macro], macro
    return (_fetch_att(r),), None


def _fetch_att(r: ArgReader) -> FetchAttr:
    m = _NAME_RE.match(r.buf, r.pos)
    if m is None:
        raise ArgError("Missing fetch attribute" if r.at_end() else "Expected a fetch attribute")
    name = m.group().upper().decode("ascii")
    r.pos = m.end()
    has_section = r.peek() == 0x5B  # "["
    if name == PREVIEW:
        return _preview(r)
    if name in ("BODY", "BODY.PEEK") and has_section:
        section = _section(r)
        return FetchAttr(BODY_SECTION, section, _partial(r), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
        if not has_section:
            raise ArgError(f"{name} needs a section")
        # RFC 3516 9 has part numbers only; BINARY[TEXT], [n.MIME], [n.HEADER(.FIELDS)] are
        # taken as Dovecot does (imaptest's fetch-binary-mime asks them) and answered with the
        # BODY section's octets: nothing there is content to decode
        section = _section(r)
        if name == "BINARY.SIZE":
            return FetchAttr(BINARY_SIZE, section)
        return FetchAttr(BINARY, section, _partial(r), peek=name == "BINARY.PEEK")
    if not has_section:
        simple = _SIMPLE_ATTRS.get(name)
        if simple is not None:
            return simple
    if name == "BODY.PEEK":
        raise ArgError("BODY.PEEK needs a section")
    if name in ("ALL", "FAST", "FULL"):
        raise ArgError(f"{name} is a macro and cannot be combined with other attributes")
    raise ArgError(f"Unknown fetch attribute {name[:40]}")


_PREVIEW = FetchAttr(PREVIEW)


def _preview(r: ArgReader) -> FetchAttr:
    """RFC 8970 3: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], preview-mod = "LAZY".
    LAZY lets the server answer NIL when a preview is costly; ours never is, so it changes
    nothing and is not kept."""
    if r.buf.startswith(b" (", r.pos):
        r.pos += 2
        while True:
            mod = r.keyword("preview modifier")
            if mod != "LAZY":
                raise ArgError(f"Unknown PREVIEW modifier {mod[:40]}")
            if r.accept(b")"):
                break
            r.sp()
    return _PREVIEW


def _section(r: ArgReader) -> Section:
    r.expect(b"[")
    part: tuple[int, ...] = ()
    pm = _PART_RE.match(r.buf, r.pos)
    if pm is not None:
        part = tuple(int(p) for p in pm.group().split(b"."))
        r.pos = pm.end()
        if r.accept(b"]"):
            return Section(part)
        r.expect(b".", "'.' or ']' after section part")
    m = _NAME_RE.match(r.buf, r.pos)
    if m is None:
        if not part:
            r.expect(b"]", "section")
            return Section()
        raise ArgError("Expected section text")
    text = m.group().upper().decode("ascii")
    r.pos = m.end()
    fields: tuple[str, ...] = ()
    if text in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        r.sp()
        fields = _header_list(r)
    elif text == MIME:
        if not part:
            raise ArgError("MIME needs a part number")  # RFC 9051 9: section-part "." "MIME"
    elif text not in (HEADER, TEXT):
        raise ArgError(f"Invalid section {text[:40]}")
    r.expect(b"]", "']' after section")
    return Section(part, text, fields)


def section_text(r: ArgReader) -> Section:
    """``[section]`` as in BODY[...] (also what an IMAP URL's ;SECTION= names, RFC 5092)."""
    return _section(r)


def _header_list(r: ArgReader) -> tuple[str, ...]:
    """header-list = "(" header-fld-name *(SP header-fld-name) ")"."""
    r.expect(b"(", "'(' before header field names")
    names = [_header_name(r)]
    while r.try_sp():
        names.append(_header_name(r))
    r.expect(b")", "')' after header field names")
    return tuple(names)


def _header_name(r: ArgReader) -> str:
    m = _FIELD_ATOM_RE.match(r.buf, r.pos)
    if m is not None:  # the usual unquoted form, without a second scan
        r.pos = m.end()
        return m.group().decode("ascii")
    raw = r.astring("header field name")
    # RFC 5322 2.2 field-name = 1*ftext (printable ASCII except ":")
    if _FIELD_RE.fullmatch(raw) is None:
        raise ArgError("Invalid header field name")
    return raw.decode("ascii")


def _partial(r: ArgReader) -> Partial | None:
    if r.peek() != 0x3C:  # "<"
        return None
    m = _PARTIAL_RE.match(r.buf, r.pos)
    if m is None:
        raise ArgError("Invalid partial <origin.count>")
    # RFC 9051 9 section-partial is <origin.count>; <origin> alone (to the end) is Dovecot's
    # leniency, which imaptest's fetch-binary-mime-base64 and -qp use
    origin = int(m.group(1))
    count = int(m.group(2)) if m.group(2) is not None else None
    if count == 0 or origin > MAX_NUMBER64 or (count or 0) > MAX_NUMBER64:
        raise ArgError("Invalid partial <origin.count>")
    r.pos = m.end()
    return Partial(origin, count)


def _astring(value: str) -> str:
    raw = value.encode("ascii", "replace")
    if ASTRING_ATOM_RE.fullmatch(raw):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
