"""Live SEARCH and SORT results: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 4.3).

A SEARCH or SORT with RETURN (UPDATE) leaves a context named by its tag; as messages arrive,
change flags or are expunged, the session sends ``* ESEARCH (TAG "t") [UID] REMOVEFROM (...)
ADDTO (...)`` until CANCELUPDATE or the mailbox is closed. A context keeps the UIDs of its
result (and, for SORT, the result in order, to say where each change lands) and re-tests only
the messages that changed; it never reads the whole mailbox again.

Ordering on the wire: a REMOVEFROM for expunged messages goes before their EXPUNGE (its
sequence numbers name them still); an ADDTO for new ones after their EXISTS.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from typing import Any

from carteiro.mail.sorting import META_KEYS, Criterion, Item, Record, record_key, record_of
from carteiro.proto.imap import commands as c
from carteiro.proto.imap import search as ps
from carteiro.proto.imap.sets import render_numbers
from carteiro.servers.imap.esearch import tag_correlator
from carteiro.servers.imap.search_eval import search as evaluate
from carteiro.servers.imap.session import Result, Session, State, command, no, ok
from carteiro.servers.imap.sortfields import items

MAX_CONTEXTS = 10  # live contexts per session, as Dovecot (RFC 5267 4.3.1 lets us refuse more)
MAX_MEMBERS = 200_000  # messages all of a session's live results may hold together


class Context:
    """One live result. `members`: UID -> its Record (SORT) or None (SEARCH); `order`: the
    SORT result's Records in order (None for SEARCH, whose order is ascending UIDs)."""

    __slots__ = (
        "fields",
        "flags",
        "key",
        "members",
        "order",
        "order_key",
        "record",
        "seen_uid",
        "tag",
        "uid",
    )

    def __init__(
        self,
        tag: str,
        key: ps.SearchKey,
        uid: bool,
        uids: Sequence[int],
        seen_uid: int,
        order: Sequence[Item] | None,
        criteria: Sequence[Criterion] | None,
    ) -> None:
        self.tag = tag
        self.key = key
        self.uid = uid
        self.flags = _flag_dependent(key)
        self.seen_uid = seen_uid  # messages above it are new to this context
        self.order: list[Record] | None = None
        self.order_key: Callable[[Record], Any] | None = None
        self.record: Callable[[Item], Record] | None = None
        # whether the order needs header fields (not for ARRIVAL and SIZE alone)
        self.fields = criteria is not None and any(c.key not in META_KEYS for c in criteria)
        self.members: dict[int, Record | None]
        if order is not None and criteria is not None:
            self.order_key = record_key(criteria)
            self.record = record_of(criteria)
            self.order = [self.record(it) for it in order]
            self.members = {r[1]: r for r in self.order}
        else:
            self.members = dict.fromkeys(uids)

    def _positions(self, uids: Sequence[int]) -> list[int]:
        assert self.order is not None and self.order_key is not None
        k = self.order_key
        out = []
        for u in uids:
            it = self.members[u]
            assert it is not None
            out.append(bisect_left(self.order, k(it), key=k))
        return out

    def remove(self, uids: Sequence[int], number: Callable[[int], int]) -> bytes:
        """Take these members out; the REMOVEFROM data (RFC 5267 4.3.4), or b""."""
        if not uids:
            return b""
        if self.order is None:
            text = render_numbers(number(u) for u in uids)
            for u in uids:
                del self.members[u]
            return b" REMOVEFROM (0 " + text.encode() + b")"
        # Each (position, set) is applied in turn: the set's messages stand at that position
        # and after it when it is applied. Removed in ascending position, a run of neighbours
        # shares one position; the others move up by those already removed.
        found = sorted(zip(self._positions(uids), uids, strict=True))
        pairs: list[tuple[int, list[int]]] = []
        prev = -2
        for n, (p, u) in enumerate(found):
            if p == prev + 1 and pairs:
                pairs[-1][1].append(number(u))
            else:
                pairs.append((p - n + 1, [number(u)]))
            prev = p
        for p, u in reversed(found):
            del self.order[p]
            del self.members[u]
        return b" REMOVEFROM (" + _pairs(pairs) + b")"

    def add(self, uids: Sequence[int], new: Sequence[Item], number: Callable[[int], int]) -> bytes:
        """Put these messages in (`new`: their Items, for SORT); the ADDTO data (RFC 5267
        4.3.3), or b""."""
        if not uids:
            return b""
        if self.order is None:
            for u in uids:
                self.members[u] = None
            return b" ADDTO (0 " + render_numbers(number(u) for u in uids).encode() + b")"
        k, record = self.order_key, self.record
        assert k is not None and record is not None
        for it in new:
            r = record(it)
            insort(self.order, r, key=k)
            self.members[it.uid] = r
        # in ascending final position, each set lands where it ends up: all before it are in
        found = sorted(zip(self._positions([it.uid for it in new]), new, strict=True))
        pairs: list[tuple[int, list[int]]] = []
        prev = -2
        for p, it in found:
            if p == prev + 1 and pairs:
                pairs[-1][1].append(number(it.uid))
            else:
                pairs.append((p + 1, [number(it.uid)]))
            prev = p
        return b" ADDTO (" + _pairs(pairs) + b")"


def _pairs(pairs: list[tuple[int, list[int]]]) -> bytes:
    # a set keeps its order (RFC 5267 3.2): only ascending runs become ranges
    return b" ".join(b"%d %s" % (p, render_numbers(ns, sort=False).encode()) for p, ns in pairs)


class Contexts:
    """A session's live contexts, by tag."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live: dict[str, Context] = {}

    def expunged(self, s: Session, msns: list[int], uids: list[int]) -> None:
        """Called just before the EXPUNGE (or VANISHED) responses for these messages: `msns` as
        announced (each already lowered by the ones before it), `uids` ascending, in step."""
        old = {u: msn + n for n, (msn, u) in enumerate(zip(msns, uids, strict=True))}
        for ctx in self.live.values():
            gone = [u for u in uids if u in ctx.members]
            if gone:
                number = (lambda u: u) if ctx.uid else old.__getitem__
                s.out += tag_correlator(ctx.tag, ctx.uid) + ctx.remove(gone, number) + b"\r\n"

    async def refresh(self, s: Session) -> None:
        """After the session caught up (its EXISTS and FETCH sent): re-test the messages that
        changed or arrived and send each context's REMOVEFROM/ADDTO."""
        view = s.view
        if view is None or not view.changed:
            return
        changed = sorted(view.changed)
        view.changed.clear()
        idx = [
            i
            for u in changed
            if (i := view.index_of(u)) is not None and not view.is_expunged(u)  # see expunged()
        ]
        for ctx in list(self.live.values()):
            seen = ctx.seen_uid
            ctx.seen_uid = max(seen, view.max_uid)
            cand = idx if ctx.flags else [i for i in idx if view.uids[i] > seen]
            if not cand:
                continue
            hit = set(await evaluate(view, ctx.key, s.server.cache, s.saved, only=cand))
            add = [i for i in cand if i in hit and view.uids[i] not in ctx.members]
            drop = [view.uids[i] for i in cand if i not in hit and view.uids[i] in ctx.members]
            if not add and not drop:
                continue
            new = (
                await items(view, add, s.server.cache, ctx.fields) if ctx.order is not None else []
            )

            def number(u: int, ctx: Context = ctx) -> int:
                if ctx.uid:
                    return u
                i = view.index_of(u)
                assert i is not None
                return i + 1

            line = ctx.remove(drop, number) + ctx.add([view.uids[i] for i in add], new, number)
            s.out += tag_correlator(ctx.tag, ctx.uid) + line + b"\r\n"


def is_live(s: Session, tag: str) -> bool:
    return s.contexts is not None and tag in s.contexts.live


def _flag_dependent(key: ps.SearchKey) -> bool:
    """Whether a message's flag change can change its match (flags, keywords, MODSEQ)."""
    if isinstance(key, ps.SearchFlag | ps.SearchModSeq):
        return True
    if isinstance(key, ps.SearchAnd):
        return any(_flag_dependent(k) for k in key.keys)
    if isinstance(key, ps.SearchOr):
        return _flag_dependent(key.left) or _flag_dependent(key.right)
    if isinstance(key, ps.SearchNot):
        return _flag_dependent(key.key)
    return False


def _unsupported(key: ps.SearchKey) -> str | None:
    """Why a search cannot be kept up to date: sequence numbers shift under it, "$" changes
    with the next SEARCH SAVE, OLDER/YOUNGER with the clock (RFC 5267 4.3.1: NOUPDATE)."""
    if isinstance(key, ps.SearchSeq):
        if key.set.saved:
            return "Cannot update a search on $"
        if not key.uid:
            return "Cannot update a search on message sequence numbers"
    if isinstance(key, ps.SearchWithin):
        return "Cannot update a search relative to the current time"
    subs: tuple[ps.SearchKey, ...] = ()
    if isinstance(key, ps.SearchAnd):
        subs = key.keys
    elif isinstance(key, ps.SearchOr):
        subs = (key.left, key.right)
    elif isinstance(key, ps.SearchNot):
        subs = (key.key,)
    for k in subs:
        why = _unsupported(k)
        if why is not None:
            return why
    return None


def start(
    s: Session,
    tag: str,
    key: ps.SearchKey,
    uid: bool,
    uids: Sequence[int],
    order: Sequence[Item] | None = None,
    criteria: Sequence[Criterion] | None = None,
) -> None:
    """Keep this result up to date (RFC 5267 4.3), or say why not (4.3.1: NOUPDATE, and the
    command answers as if UPDATE had not been asked). `uids` in the result's order; for SORT
    also its Items in that order and the criteria."""
    view = s.view
    assert view is not None
    why = _unsupported(key)
    live = s.contexts.live if s.contexts is not None else {}
    if why is None and len(live) >= MAX_CONTEXTS:
        why = f"Too many updated searches (at most {MAX_CONTEXTS})"
    if why is None and len(uids) + sum(len(c.members) for c in live.values()) > MAX_MEMBERS:
        why = f"Updated results too large (at most {MAX_MEMBERS} messages in all)"
    if why is not None:
        s.out += b'* NO [NOUPDATE "' + tag.encode() + b'"] ' + why.encode() + b"\r\n"
        return
    if s.contexts is None:
        s.contexts = Contexts()
    if view.changed is None:
        view.changed = set()
    s.contexts.live[tag] = Context(
        tag, key, uid, uids, view.max_uid, list(order) if order is not None else None, criteria
    )


def stop(s: Session, tags: Sequence[str]) -> None:
    cs = s.contexts
    if cs is None:
        return
    for t in tags:
        cs.live.pop(t, None)
    if not cs.live:
        s.contexts = None
        if s.view is not None:
            s.view.changed = None


@command(c.CancelUpdate, min_state=State.SELECTED)
async def cancelupdate(s: Session, tag: str, req: c.CancelUpdate) -> Result:
    """RFC 5267 4.3.5. An unknown tag refuses the command and cancels nothing (Dovecot answers
    NO too, having cancelled the tags before it)."""
    live = s.contexts.live if s.contexts is not None else {}
    unknown = [t for t in req.tags if t not in live]
    if unknown:
        return no("Unknown search update tag")
    stop(s, req.tags)
    return ok("Updates cancelled.")
