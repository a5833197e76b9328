"""IMAP URLs naming a message or a part of one (RFC 5092 imessagepart), as CATENATE uses them.

`imap://[user[;AUTH=..]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]`
or the same from the first "/" on (relative to the server, RFC 4469 5). Keywords are
case-insensitive; the mailbox name and section are %-decoded, the name as UTF-8 (RFC 5092 9).
URLAUTH URLs are refused (URLAUTH is not offered). Sans-IO: a string in, a value or UrlError out;
no regex that can backtrack.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from carteiro.proto.imap.args import ArgError, ArgReader
from carteiro.proto.imap.fetch import Partial, Section, section_text

MAX_URL = 4096


class UrlError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MessageUrl:
    user: str | None  # the URL's user, None when it names none (then: the session's own)
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: Section | None = None  # None: the whole message
    partial: Partial | None = None


def parse_message_url(url: str) -> MessageUrl:
    """Raises UrlError for anything but a message (part) URL of this grammar."""
    if len(url) > MAX_URL or not url.isascii():
        raise UrlError("URL too long or not ASCII")
    user: str | None = None
    rest = url
    if rest[:7].lower() == "imap://":
        server, slash, rest = rest[7:].partition("/")
        if not slash or not server:
            raise UrlError("no server or path")
        userinfo, at, _host = server.rpartition("@")
        if at:
            name = userinfo.split(";", 1)[0]
            if name:
                user = _text(name)
        rest = "/" + rest
    if not rest.startswith("/"):
        raise UrlError("not an absolute IMAP URL or a path from the server's root")
    # the mailbox may hold "/" (hierarchy), so split on the "/;" that start the other parts
    segments = rest[1:].split("/;")
    mailbox_ref, params = segments[0], segments[1:]
    if not mailbox_ref or not params:
        raise UrlError("no mailbox or no UID")
    name, semi, validity = mailbox_ref.partition(";")
    uidvalidity = None
    if semi:
        key, eq, value = validity.partition("=")
        if key.upper() != "UIDVALIDITY" or not eq:
            raise UrlError("unknown mailbox parameter")
        uidvalidity = _nz_number(value)
    mailbox = _text(name)
    uid: int | None = None
    section: Section | None = None
    partial: Partial | None = None
    for i, param in enumerate(params):
        key, eq, value = param.partition("=")
        key = key.upper()
        if not eq:
            raise UrlError("parameter without a value")
        if key == "UID" and i == 0:
            uid = _nz_number(value.rstrip("/"))
        elif key == "SECTION" and i == 1 and uid is not None:
            section = _section(unquote_to_bytes(value.rstrip("/")))
        elif key == "PARTIAL" and uid is not None and partial is None and i in (1, 2):
            partial = _partial(value)
        elif key in ("URLAUTH", "EXPIRE"):
            raise UrlError("URLAUTH is not supported")
        else:
            raise UrlError(f"unexpected ;{key[:20]}")
    if uid is None:
        raise UrlError("no UID")
    return MessageUrl(user, mailbox, uidvalidity, uid, section, partial)


def _text(enc: str) -> str:
    try:
        return unquote_to_bytes(enc).decode("utf-8")
    except UnicodeDecodeError:
        raise UrlError("name is not UTF-8") from None


def _nz_number(text: str) -> int:
    if not text.isdigit() or text.startswith("0") or len(text) > 10:
        raise UrlError("bad number")
    n = int(text)
    if n > 0xFFFFFFFF:
        raise UrlError("number out of range")
    return n


def _partial(text: str) -> Partial:
    origin, dot, length = text.partition(".")
    if not origin.isdigit() or len(origin) > 10 or (dot and not length):
        raise UrlError("bad partial range")
    count = _nz_number(length) if dot else 1 << 62  # no length: to the end
    return Partial(int(origin), count)


def _section(raw: bytes) -> Section:
    r = ArgReader((b"[" + raw + b"]",), ())
    try:
        section = section_text(r)
        r.end()
        return section
    except ArgError as e:
        raise UrlError(f"bad section: {e}") from None
