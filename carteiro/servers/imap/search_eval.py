"""SEARCH evaluation (RFC 3501 6.4.4, RFC 9051 6.4.4) over a session's mailbox view. It evaluates
the IMAP parser's SearchKey, so it lives with the IMAP server, not in mail/ (which imports no proto).

Each key is compiled twice: a three-valued test on MessageMeta alone (True / False / None for
"needs the message"), and a full test with the parsed message. Messages are read and parsed only
when the metadata and the store's search index (header, text and Date: keys) cannot decide, so
most searches on 100,000 messages never touch a message file. Text comparisons are
case-insensitive substring matches on decoded text; the index answers exactly the same.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.mime import searchtext
from carteiro.mime.dates import header_date
from carteiro.mime.parse import Message
from carteiro.proto.imap import search as ps
from carteiro.store.api import SYSTEM_FLAGS, IndexTerm, MessageIds, MessageMeta, TermHits

MetaTest = Callable[[int, MessageMeta], "bool | None"]
FullTest = Callable[[int, MessageMeta, Message], bool]

_RECENT = "\\Recent"
ONLY_READ_MAX = 64  # messages an `only` search reads rather than asking the index


class _Ctx:
    __slots__ = ("hits", "ids", "now", "saved", "view")

    def __init__(self, view: MailboxView, saved: list[int], now: float) -> None:
        self.view = view
        self.saved = frozenset(saved)
        self.now = now
        self.hits: dict[int, TermHits] = {}  # id(key) -> the search index's answer
        self.ids: dict[int, MessageIds] = {}  # uid -> EMAILID (RFC 8474), read when a key needs it


def _wants_ids(key: ps.SearchKey) -> bool:
    """Does the program compare EMAILIDs (which only the store knows)?"""
    if isinstance(key, ps.SearchAnd):
        return any(_wants_ids(k) for k in key.keys)
    if isinstance(key, ps.SearchOr):
        return _wants_ids(key.left) or _wants_ids(key.right)
    if isinstance(key, ps.SearchNot):
        return _wants_ids(key.key)
    if isinstance(key, ps.SearchDate):
        return key.saved
    return isinstance(key, ps.SearchObjectId) and key.kind == "EMAILID"


def _index_terms(key: ps.SearchKey, out: dict[int, IndexTerm]) -> None:
    """The keys of `key` the store's search index may answer, by id()."""
    if isinstance(key, ps.SearchAnd):
        for k in key.keys:
            _index_terms(k, out)
    elif isinstance(key, ps.SearchOr):
        _index_terms(key.left, out)
        _index_terms(key.right, out)
    elif isinstance(key, ps.SearchNot):
        _index_terms(key.key, out)
    elif isinstance(key, ps.SearchHeader):
        out[id(key)] = IndexTerm("header", key.field, searchtext.fold(key.value))
    elif isinstance(key, ps.SearchBody):
        out[id(key)] = IndexTerm("body", value=searchtext.fold(key.value))
    elif isinstance(key, ps.SearchText):
        out[id(key)] = IndexTerm("text", value=searchtext.fold(key.value))
    elif isinstance(key, ps.SearchDate) and key.sent and not key.saved:
        out[id(key)] = IndexTerm("sent", op=key.op, day=key.date.toordinal())


async def search(
    view: MailboxView,
    key: ps.SearchKey,
    cache: MessageCache,
    saved: list[int] = (),  # type: ignore[assignment]
    now: float | None = None,
    only: Sequence[int] | None = None,
) -> list[int]:
    """0-based view indexes of the matching messages, ascending; `only`: test just these
    (ascending) indexes, as a SEARCH context's update does (RFC 5267 4.3)."""
    ctx = _Ctx(view, list(saved), time.time() if now is None else now)
    terms: dict[int, IndexTerm] = {}
    _index_terms(key, terms)
    # A few messages are read faster than the index answers for the whole mailbox.
    if terms and len(view) and (only is None or len(only) > ONLY_READ_MAX):
        answers = await view.store.search_index(view.id, list(terms.values()))
        ctx.hits = {k: a for k, a in zip(terms, answers, strict=True) if a is not None}
    if _wants_ids(key) and len(view):
        ctx.ids = await view.store.message_ids(
            view.id, None if only is None else [view.uids[i] for i in only]
        )
    meta_test = _meta(key, ctx)
    metas = view.metas
    matched: list[int] = []
    undecided: list[int] = []
    for i in range(len(metas)) if only is None else only:
        m = metas[i]
        r = meta_test(i, m)
        if r is None:
            undecided.append(i)
        elif r:
            matched.append(i)
    if not undecided:
        return matched
    full = _full(key, ctx)
    store = view.store
    for i in undecided:
        m = metas[i]
        try:
            msg = await cache.load(store, view.id, view.info.uidvalidity, m.uid)
        except KeyError:
            continue  # expunged meanwhile: it cannot match text any more
        # Decoding the header or text of a hostile message can take seconds: in a thread then.
        if await cache.derive(msg, full, i, m, msg):
            matched.append(i)
    matched.sort()
    return matched


# ---- metadata tests (three-valued) ---------------------------------------------------------------


def _meta(key: ps.SearchKey, ctx: _Ctx) -> MetaTest:
    if isinstance(key, ps.SearchAll):
        return lambda i, m: True
    if isinstance(key, ps.SearchAnd):
        tests = [_meta(k, ctx) for k in key.keys]

        def and_(i: int, m: MessageMeta) -> bool | None:
            unknown = False
            for t in tests:
                r = t(i, m)
                if r is False:
                    return False
                if r is None:
                    unknown = True
            return None if unknown else True

        return and_
    if isinstance(key, ps.SearchOr):
        left, right = _meta(key.left, ctx), _meta(key.right, ctx)

        def or_(i: int, m: MessageMeta) -> bool | None:
            a = left(i, m)
            if a is True:
                return True
            b = right(i, m)
            if b is True:
                return True
            if a is None or b is None:
                return None
            return False

        return or_
    if isinstance(key, ps.SearchNot):
        inner = _meta(key.key, ctx)

        def not_(i: int, m: MessageMeta) -> bool | None:
            r = inner(i, m)
            return None if r is None else not r

        return not_
    simple = _simple(key, ctx)
    if simple is not None:
        return simple
    found = ctx.hits.get(id(key))
    if found is not None:
        upto, hits, unsure = found.upto, found.hits, found.unsure

        def indexed(i: int, m: MessageMeta) -> bool | None:
            uid = m.uid
            if uid > upto or uid in unsure:
                return None  # not indexed yet, or not fully: read the message
            return uid in hits

        return indexed
    return lambda i, m: None  # needs the message


def _simple(key: ps.SearchKey, ctx: _Ctx) -> MetaTest | None:
    """Keys decided by metadata alone, or None for those that need the message."""
    view = ctx.view
    if isinstance(key, ps.SearchFlag):
        flag, present = key.flag, key.present
        if flag == _RECENT:
            recent = view.recent
            return lambda i, m: (m.uid in recent) is present
        if flag in SYSTEM_FLAGS:
            return lambda i, m: (flag in m.flags) is present
        low = flag.lower()

        def keyword(i: int, m: MessageMeta) -> bool:
            has = flag in m.flags or any(f.lower() == low for f in m.flags)
            return has is present

        return keyword
    if isinstance(key, ps.SearchSeq):
        if key.set.saved:
            saved = ctx.saved
            return lambda i, m: m.uid in saved
        if key.uid:
            ranges = key.set.resolve(view.max_uid or 1)
            return lambda i, m: _in(ranges, m.uid)
        ranges = key.set.resolve(max(len(view), 1))
        return lambda i, m: _in(ranges, i + 1)
    if isinstance(key, ps.SearchSize):
        n = key.size
        if key.larger:
            return lambda i, m: m.size > n
        return lambda i, m: m.size < n
    if isinstance(key, ps.SearchDate) and key.saved:
        # RFC 8514 4.3, days in UTC like INTERNALDATE; an unknown save date (NIL) matches none
        ids, op = ctx.ids, key.op
        start = dt.datetime.combine(key.date, dt.time(), dt.UTC).timestamp()
        end = start + 86400.0

        def saved_on(i: int, m: MessageMeta) -> bool:
            found = ids.get(m.uid)
            when = None if found is None else found.savedate
            if when is None:
                return False
            if op == "before":
                return when < start
            if op == "on":
                return start <= when < end
            return when >= start

        return saved_on
    if isinstance(key, ps.SearchDate) and not key.sent:
        # RFC 3501 6.4.4 "disregarding time and timezone": the date INTERNALDATE shows, in the
        # zone it was given in (Dovecot, and imaptest's search-intdate): compare day numbers of
        # the local time, which is the instant shifted by the zone
        day = (key.date - _EPOCH).days
        if key.op == "before":
            return lambda i, m: (m.internaldate + 60 * m.internaldate_tz) // 86400 < day
        if key.op == "on":
            return lambda i, m: (m.internaldate + 60 * m.internaldate_tz) // 86400 == day
        return lambda i, m: (m.internaldate + 60 * m.internaldate_tz) // 86400 >= day
    if isinstance(key, ps.SearchWithin):
        limit = ctx.now - key.seconds
        if key.older:
            return lambda i, m: m.internaldate <= limit
        return lambda i, m: m.internaldate > limit
    if isinstance(key, ps.SearchModSeq):
        value = key.modseq
        return lambda i, m: m.modseq >= value
    if isinstance(key, ps.SearchObjectId):
        if key.kind == "THREADID":
            return lambda i, m: False  # every THREADID is NIL (docs/imap.md): none matches
        ids, wanted = ctx.ids, key.value

        def emailid(i: int, m: MessageMeta) -> bool:
            found = ids.get(m.uid)
            return found is not None and found.emailid == wanted

        return emailid
    return None


def _in(ranges: Sequence[tuple[int, int]], n: int) -> bool:
    for a, b in ranges:
        if n < a:
            return False
        if n <= b:
            return True
    return False


_EPOCH = dt.date(1970, 1, 1)


def _utc_date(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


def _compare(op: str, value: dt.date, day: dt.date) -> bool:
    if op == "before":
        return value < day
    if op == "on":
        return value == day
    return value >= day  # since


# ---- full tests (with the parsed message) --------------------------------------------------------


def _full(key: ps.SearchKey, ctx: _Ctx) -> FullTest:
    if isinstance(key, ps.SearchAnd):
        tests = [_full(k, ctx) for k in key.keys]
        return lambda i, m, msg: all(t(i, m, msg) for t in tests)
    if isinstance(key, ps.SearchOr):
        left, right = _full(key.left, ctx), _full(key.right, ctx)
        return lambda i, m, msg: left(i, m, msg) or right(i, m, msg)
    if isinstance(key, ps.SearchNot):
        inner = _full(key.key, ctx)
        return lambda i, m, msg: not inner(i, m, msg)
    simple = _simple(key, ctx)
    if simple is not None:
        return lambda i, m, msg: bool(simple(i, m))
    if isinstance(key, ps.SearchAll):
        return lambda i, m, msg: True
    if isinstance(key, ps.SearchDate):  # SENT*: the Date: header
        day, op = key.date, key.op

        def sent(i: int, m: MessageMeta, msg: Message) -> bool:
            values = msg.field_values(msg.root, b"date")
            d = header_date(values[0]) if values else None
            if d is None:
                # no usable Date: fall back to INTERNALDATE's date (in its zone, as it shows)
                d = _utc_date(m.internaldate + 60 * m.internaldate_tz)
            return _compare(op, d, day)

        return sent
    if isinstance(key, ps.SearchHeader):
        field = key.field
        needle = searchtext.fold(key.value)

        def get(msg: Message) -> list[str]:
            if field in ("from", "to", "cc", "bcc"):
                return _folded(msg, "a:" + field, lambda: searchtext.address_texts(msg, field))
            if field == "subject":
                return _folded(msg, "subject", lambda: searchtext.subject_texts(msg))
            return _folded(msg, "h:" + field, lambda: searchtext.header_texts(msg, field))

        if not needle:
            return lambda i, m, msg: bool(get(msg))  # RFC 9051 6.4.4: the field exists
        return lambda i, m, msg: any(needle in t for t in get(msg))
    if isinstance(key, ps.SearchBody):
        needle = searchtext.fold(key.value)
        return lambda i, m, msg: any(
            needle in t for t in _folded(msg, "body", lambda: searchtext.body_texts(msg))
        )
    if isinstance(key, ps.SearchText):
        needle = searchtext.fold(key.value)
        return lambda i, m, msg: any(
            needle in t for t in _folded(msg, "text", lambda: searchtext.message_texts(msg))
        )
    raise AssertionError(f"unhandled search key {key!r}")  # pragma: no cover


def _folded(msg: Message, what: str, texts: Callable[[], list[str]]) -> list[str]:
    """Case-folded search texts, cached on the parsed message."""
    key = "search:cf:" + what
    out = msg.cache.get(key)
    if out is None:
        out = msg.cache[key] = [searchtext.fold(t) for t in texts()]
    folded: list[str] = out
    return folded
