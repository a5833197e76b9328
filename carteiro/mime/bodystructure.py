"""IMAP ENVELOPE, BODY and BODYSTRUCTURE values (RFC 3501 7.4.2, RFC 9051 7.5.2).

Values follow the convention shared with the IMAP response encoder: None -> NIL, int -> number,
str -> string, bytes -> literal (header octets that are not UTF-8), list -> parenthesised list.
Strings are what Dovecot sends: media types, encodings and parameters exactly as written in
the message (not upper-cased), defaults in lower case ("text" "plain" "charset" "us-ascii"
"7bit"). Results are cached on the Message.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from carteiro.mime.address import MAX_ADDRESSES, Address, parse_address_list
from carteiro.mime.parse import MESSAGE, MULTIPART, Message, Part

ImapValue: TypeAlias = "int | str | bytes | list[ImapValue] | None"

_ENVELOPE_FIELDS = {
    b"date": 0,
    b"subject": 1,
    b"from": 2,
    b"sender": 3,
    b"reply-to": 4,
    b"to": 5,
    b"cc": 6,
    b"bcc": 7,
    b"in-reply-to": 8,
    b"message-id": 9,
}
_JOINED = frozenset({2, 5, 6, 7})  # From, To, Cc, Bcc
_NEWLINE_GLUE = re.compile(rb"[\r\n](?=[^ \t\r\n])")
_NEWLINES = re.compile(rb"[\r\n]")
_BARE_CR = re.compile(rb"\r(?!\n)")
_BLANKS = re.compile(rb"[ \t]+")


def imap_string(raw: bytes) -> str | bytes:
    """Header octets as an IMAP string value: text when UTF-8 (incl. ASCII), else the octets."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _nstring(raw: bytes | None) -> str | bytes | None:
    """A header value as one line: line breaks removed (a space kept between lines)."""
    if raw is None:
        return None
    if b"\r" in raw or b"\n" in raw:
        raw = _NEWLINES.sub(b"", _NEWLINE_GLUE.sub(b" ", raw))
    return imap_string(raw)


def _for_humans(raw: bytes) -> str | bytes:
    """Subject and display names: no line breaks, blank runs collapsed, no outer blanks. A CR
    that ends no line is a blank, not a line break ("Bare\rCR" reads "Bare CR")."""
    raw = _BARE_CR.sub(b" ", raw)
    raw = _NEWLINES.sub(b"", raw)
    return imap_string(_BLANKS.sub(b" ", raw).strip(b" "))


def _address(a: Address) -> list[ImapValue]:
    return [
        None if a.name is None else _for_humans(a.name),
        None if a.route is None else imap_string(a.route),
        None if a.mailbox is None else imap_string(a.mailbox),
        None if a.domain is None else imap_string(a.domain),
    ]


def _addresses(addrs: list[Address] | None) -> ImapValue:
    return [_address(a) for a in addrs] if addrs else None


def envelope(msg: Message, part: Part | None = None) -> list[ImapValue]:
    """ENVELOPE of the message, or of the message whose root is `part` (the child of a
    message/rfc822 part). The message's own is cached: treat the value as read-only."""
    if part is not None:
        return _envelope(msg, part)
    cached: list[ImapValue] | None = msg.cache.get("envelope")
    if cached is None:
        cached = msg.cache["envelope"] = _envelope(msg, msg.root)
    return cached


def _envelope(msg: Message, part: Part) -> list[ImapValue]:
    # When a field occurs more than once the last one counts, as in Dovecot, except for the
    # address lists below.
    raw: list[bytes | None] = [None] * 10
    joined: dict[int, list[Address]] = {}
    for f in part.fields:
        i = _ENVELOPE_FIELDS.get(f.name.lower())
        if i is None:
            continue
        if i in _JOINED:
            # Repeated From/To/Cc/Bcc fields are one list, as if comma-separated (Dovecot does
            # the same): a reply-all must not lose the recipients of the first To. At most
            # MAX_ADDRESSES entries for all fields of one name together (docs/mime.md "Limits").
            got = joined.setdefault(i, [])
            left = MAX_ADDRESSES - len(got)
            if left > 0:
                got += parse_address_list(msg.raw_value(f), limit=left)
            continue
        raw[i] = msg.raw_value(f)
    addrs: list[list[Address] | None] = [None] * 10
    for i in range(2, 8):
        if i in joined:
            addrs[i] = joined[i] or None
            continue
        value = raw[i]
        if value is not None:
            addrs[i] = parse_address_list(value) or None
    # RFC 3501 7.4.2: a missing Sender or Reply-To is set to From.
    sender = addrs[3] or addrs[2]
    reply_to = addrs[4] or addrs[2]
    subject = raw[1]
    return [
        _nstring(raw[0]),
        None if subject is None else _for_humans(subject),
        _addresses(addrs[2]),
        _addresses(sender),
        _addresses(reply_to),
        _addresses(addrs[5]),
        _addresses(addrs[6]),
        _addresses(addrs[7]),
        _nstring(raw[8]),
        _nstring(raw[9]),
    ]


def _params(params: list[tuple[bytes, bytes]], default_charset: bool) -> ImapValue:
    out: list[ImapValue] = []
    seen_charset = False
    for k, v in params:
        seen_charset = seen_charset or k.lower() == b"charset"
        out.append(imap_string(k))
        out.append(imap_string(v))
    if default_charset and not seen_charset:
        out += ["charset", "us-ascii"]  # RFC 2045 5.2 default
    return out or None


def _extension(part: Part) -> list[ImapValue]:
    """body-fld-dsp, body-fld-lang, body-fld-loc (RFC 3501 7.4.2 extension data)."""
    disposition: ImapValue = None
    if part.disposition is not None:
        disposition = [imap_string(part.disposition), _params(part.disposition_params, False)]
    language: ImapValue = None
    if part.language:
        language = [imap_string(lang) for lang in part.language]
    return [disposition, language, _nstring(part.location)]


def _empty(extensible: bool) -> list[ImapValue]:
    # A multipart without parts: Dovecot shows one empty text/plain part.
    out: list[ImapValue] = ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 0, 0]
    return [*out, None, None, None, None] if extensible else out


def body_structure(msg: Message, extensible: bool = True, rev2: bool = False) -> list[ImapValue]:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of the whole message, for an IMAP4rev1
    or (rev2=True) an IMAP4rev2 session. Cached: treat the value as read-only."""
    key = ("bodystructure" if extensible else "body") + (":rev2" if rev2 else "")
    cached: list[ImapValue] | None = msg.cache.get(key)
    if cached is None:
        cached = msg.cache[key] = part_structure(msg, msg.root, extensible, rev2)
    return cached


def part_structure(
    msg: Message, root: Part, extensible: bool = True, rev2: bool = False
) -> list[ImapValue]:
    """The body structure of one part and everything below it (iterative: depth is bounded by
    the parser, but deep trees should not use the Python stack)."""
    # Post-order walk: a part's value needs its children's values first.
    done: dict[int, list[ImapValue]] = {}
    stack: list[tuple[Part, bool]] = [(root, False)]
    while stack:
        part, expanded = stack.pop()
        if not expanded:
            stack.append((part, True))
            stack.extend((c, False) for c in reversed(part.children))
            continue
        children = [done.pop(id(c)) for c in part.children]
        done[id(part)] = _structure(msg, part, children, extensible, rev2)
    return done[id(root)]


def _structure(
    msg: Message, part: Part, children: list[list[ImapValue]], extensible: bool, rev2: bool
) -> list[ImapValue]:
    if part.kind == MULTIPART:
        out: list[ImapValue] = list(children) if children else [_empty(extensible)]
        out.append(imap_string(part.subtype or b""))
        if extensible:
            out.append(_params(part.params, False))
            out += _extension(part)
        return out
    text = False
    params = part.params
    media: list[ImapValue]
    # RFC 3501 7.4.2's grammar has the envelope/body/lines layout for message/rfc822 only, so
    # for IMAP4rev1 message/global is body-type-basic; RFC 9051 7.5.2 adds it to media-message.
    as_message = part.kind == MESSAGE and (rev2 or part.media_type != b"message/global")
    if part.overflow:
        # Past the nesting or part limit a multipart or message/rfc822 part is not split: with
        # no parts (or no envelope) it cannot keep its type in the grammar (RFC 3501 7.4.2), so
        # it is shown as the octets it is (docs/mime.md "Limits").
        media, params = ["application", "octet-stream"], []
    elif as_message:
        if part.media_type == b"message/rfc822" or part.type is None:
            media = ["message", "rfc822"]
        else:
            media = [imap_string(part.type), imap_string(part.subtype or b"")]
    elif part.type is None:
        media, text = ["text", "plain"], True
    else:
        media = [imap_string(part.type), imap_string(part.subtype or b"")]
        text = part.type.lower() == b"text"
    out = [
        *media,
        _params(params, text),
        _nstring(part.id),
        _nstring(part.description),
        "7bit" if part.cte is None else imap_string(part.cte),
        part.body_size,
    ]
    if text:
        out.append(msg.body_lines(part))
    elif as_message and part.children:
        inner = part.children[0]
        out += [_envelope(msg, inner), children[0], msg.body_lines(part)]
    if extensible:
        out.append(_nstring(part.md5))
        out += _extension(part)
    return out
