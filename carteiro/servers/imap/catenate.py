"""CATENATE (RFC 4469): an APPENDed message built from TEXT literals and URLs naming messages or
parts of messages in the same account (RFC 5092 URLs, parsed by proto.imap.url).

A URL yields what FETCH BODY.PEEK[section]<partial> gives for it (the whole message as stored);
one that cannot be resolved (bad syntax, another user, a missing mailbox or message, a changed
UIDVALIDITY, URLAUTH) refuses the whole APPEND with NO [BADURL url]. Never reaches another
account: the URL's mailbox is looked up in the session's own store.
"""

from __future__ import annotations

from carteiro.mime.parse import to_crlf
from carteiro.proto.imap import commands as c
from carteiro.proto.imap import fetch as pf
from carteiro.proto.imap.url import UrlError, parse_message_url
from carteiro.servers.imap import fetch_octets as mf
from carteiro.servers.imap.session import Result, Session, no
from carteiro.store.api import MailboxNotFound


async def catenate(s: Session, parts: tuple[c.CatenatePart, ...]) -> bytes | Result:
    """The message the parts make, or the NO that refuses the APPEND."""
    limit = s.server.appendlimit
    out = bytearray()
    for part in parts:
        if isinstance(part, c.CatenateText):
            # RFC 4469 5: TEXT is a 7/8-bit literal: served with CRLF, like any APPEND
            out += to_crlf(part.data)
        else:
            got = await _resolve(s, part.url)
            if got is None:
                return no("Bad URL", f"BADURL {_code_text(part.url)}")
            out += got
        if len(out) > limit:
            return no("Message too big", "TOOBIG")  # RFC 4469 5 (and RFC 7889)
    return bytes(out)


async def _resolve(s: Session, url: str) -> bytes | None:
    try:
        ref = parse_message_url(url)
    except UrlError:
        return None
    if ref.user is not None and ref.user.lower() not in (s.user.lower(), s.account.lower()):
        return None  # another user's mail: never fetched, whatever the URL says
    store = s.store
    assert store is not None
    try:
        info = await store.get_mailbox(ref.mailbox)
    except MailboxNotFound:
        return None
    if not info.selectable or (ref.uidvalidity is not None and ref.uidvalidity != info.uidvalidity):
        return None
    try:
        if ref.section is None:
            data = await store.read_message(info.id, ref.uid)  # as stored (RFC 3516)
            return mf.partial(data, ref.partial)
        msg = await s.server.cache.load(store, info.id, info.uidvalidity, ref.uid)
    except KeyError:
        return None
    return mf.body_section(msg, pf.FetchAttr(pf.BODY_SECTION, ref.section, ref.partial))


def _code_text(url: str) -> str:
    """The URL as RFC 4469's url-resp-text can carry it (no "]", no controls)."""
    text = "".join(ch for ch in url if " " <= ch <= "~" and ch != "]")[:200]
    return text or "-"
