"""What SORT, THREAD and live SORT contexts order messages by: the fields of the store's index
(mime.sortkeys.SortFields, kept at delivery), else those of the parsed message, so the answer is
the same with or without the index. A server keeps what it read of big mailboxes (`SortCache`):
a message's fields never change, so after a change SORT and THREAD read only the new messages.
"""

from __future__ import annotations

import asyncio
import gc
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from carteiro.mail.imap_view import MailboxView
from carteiro.mail.message_cache import MessageCache
from carteiro.mail.sorting import META_KEYS, Criterion, Item, Ordered, key_of, sort_items
from carteiro.mime.parse import Message
from carteiro.mime.sortkeys import SortFields, sort_fields

T = TypeVar("T")
READ_MAX = 64  # messages read and parsed rather than asking the index for the whole mailbox

# What a server keeps (docs/imap.md, "SORT and THREAD"): the fields and Items of mailboxes of
# at least KEEP_MIN messages (smaller ones are read again in a few ms), at most KEEP_MAILBOXES
# of them and KEEP_MESSAGES messages in all (~0.9 KB each: 100,000 messages ~88 MB); and
# whole-mailbox SORT orders, at most KEEP_ORDERS and KEEP_MESSAGES messages in all (4 octets
# and a key each: 2-9 MB for 100,000 messages).
KEEP_MIN = 1000
KEEP_MAILBOXES = 8
KEEP_MESSAGES = 200_000
KEEP_ORDERS = 16
REBUILD_MIN = 256  # more new messages than this (and than 1/16 of the mailbox): sort again

MailboxKey = tuple[str, int, int]  # account, mailbox id, UIDVALIDITY


@dataclass(eq=False, slots=True)
class KeptFields:
    """A mailbox's sort fields as far as this server read them: the index's rows up to `mark`
    (every UID up to it has its row, or none to have), and messages parsed here."""

    mark: int
    fields: dict[int, SortFields] = field(default_factory=dict)
    # the Items of the whole mailbox as a view numbered them last (THREAD's input), and that
    # view's UIDs: ~70 octets a message more
    items: list[Item] | None = None
    item_uids: array[int] = field(default_factory=lambda: array("I"))


class SortCache:
    """Per mailbox (account, id, UIDVALIDITY): the sort fields read (`KeptFields`) and SORT
    orders of the whole mailbox (`Ordered`), each in its own LRU. A new UIDVALIDITY or a
    mailbox deleted and made again (a new id) is another key; the index being rebuilt (`store
    reindex`: its mark goes back) drops what was kept of the mailbox."""

    def __init__(
        self,
        mailboxes: int = KEEP_MAILBOXES,
        messages: int = KEEP_MESSAGES,
        orders: int = KEEP_ORDERS,
    ) -> None:
        self.mailboxes = mailboxes
        self.messages = messages
        self.max_orders = orders
        self.drops = (
            0  # how many times kept fields were dropped: an order built meanwhile is not kept
        )
        self._fields: OrderedDict[MailboxKey, KeptFields] = OrderedDict()
        self._orders: OrderedDict[tuple[MailboxKey, tuple[Criterion, ...]], Ordered] = OrderedDict()

    @staticmethod
    def key(view: MailboxView) -> MailboxKey:
        return view.account, view.id, view.info.uidvalidity

    def fields(self, view: MailboxView) -> KeptFields | None:
        k = self.key(view)
        kept = self._fields.get(k)
        if kept is not None:
            self._fields.move_to_end(k)
        return kept

    def keep_fields(self, view: MailboxView, kept: KeptFields) -> None:
        """Keep a mailbox's fields (if it is big enough to be worth it and small enough to
        fit), evicting the least recently used."""
        if len(view) < KEEP_MIN or len(kept.fields) > self.messages:
            return
        self._fields[self.key(view)] = kept
        self.trim()

    def trim(self) -> None:
        """Evict the least recently used until within bounds (fields grow as they are read)."""
        total = sum(len(f.fields) for f in self._fields.values())
        while self._fields and (len(self._fields) > self.mailboxes or total > self.messages):
            _k, old = self._fields.popitem(last=False)
            total -= len(old.fields)
        total = sum(len(o) for o in self._orders.values())
        while self._orders and (len(self._orders) > self.max_orders or total > self.messages):
            _k2, gone = self._orders.popitem(last=False)
            total -= len(gone)

    def order(self, view: MailboxView, criteria: tuple[Criterion, ...]) -> Ordered | None:
        k = (self.key(view), criteria)
        order = self._orders.get(k)
        if order is not None:
            self._orders.move_to_end(k)
        return order

    def keep_order(self, view: MailboxView, order: Ordered) -> None:
        if len(view) < KEEP_MIN:
            return
        self._orders[(self.key(view), order.criteria)] = order
        self.trim()

    def drop(self, view: MailboxView) -> None:
        """Forget what was kept of this mailbox (its index was rebuilt)."""
        k = self.key(view)
        self.drops += 1
        self._fields.pop(k, None)
        for ok in [ok for ok in self._orders if ok[0] == k]:
            del self._orders[ok]


async def fields_of(
    view: MailboxView, idx: Sequence[int], cache: MessageCache, kept: SortCache | None = None
) -> Mapping[int, SortFields]:
    """UID -> sort fields for the messages of these view indexes (an expunged one may be left
    out: it sorts as a message without header). From what `kept` holds, then the index (only
    what came after the kept mark), then each message read (a few messages, as a live SORT
    context's update has, are read: the index is per mailbox)."""
    metas = view.metas
    entry = kept.fields(view) if kept is not None else None
    known: Mapping[int, SortFields]
    if entry is not None and view.max_uid > entry.mark:
        mark, rows = await view.store.sort_index(view.id, above=entry.mark)
        if mark < entry.mark:
            # The index's mark went back: it was dropped and is being built again (`store
            # reindex`, a change of fold): what was read from it is no longer vouched for
            assert kept is not None
            kept.drop(view)
            entry = None
        else:
            entry.fields.update(rows)
            entry.mark = max(entry.mark, mark)
            assert kept is not None
            _prune(view, entry)
            kept.trim()
    if entry is None and len(idx) > READ_MAX:
        mark, rows = await view.store.sort_index(view.id)
        entry = KeptFields(mark, rows)
        if kept is not None:
            kept.keep_fields(view, entry)
    known = entry.fields if entry is not None else {}
    read: dict[int, SortFields] = {}
    for i in idx:
        uid = metas[i].uid
        if uid in known:
            continue
        try:
            msg = await cache.load(view.store, view.id, view.info.uidvalidity, uid)
        except KeyError:
            continue  # expunged meanwhile (the session is not told yet)
        read[uid] = await cache.derive(msg, _fields, msg)
    if not read:
        return known
    if entry is not None:
        entry.fields.update(read)  # a message's fields never change: kept like the index's
        return entry.fields
    return read


def _last_uid(view: MailboxView) -> int:
    """The last UID this view knows was given: a UID up to it that the view does not have
    was expunged (a view loses UIDs only by expunges); one above may be new to it."""
    return max(view.max_uid, view.info.uidnext - 1)


def _prune(view: MailboxView, entry: KeptFields) -> None:
    """Forget the fields of messages this view has seen expunged, once they are a few. The
    dict is replaced, not changed, so a computation reading it in a thread is not upset."""
    n = len(view)
    if len(entry.fields) <= n + max(64, n // 64):
        return
    last = _last_uid(view)
    present = set(view.uids)
    entry.fields = {u: f for u, f in entry.fields.items() if u in present or u > last}


async def items(
    view: MailboxView,
    idx: list[int],
    cache: MessageCache,
    fields: bool = True,
    kept: SortCache | None = None,
) -> list[Item]:
    """The Items of these view indexes: fields as `fields_of` finds them. `fields` False: a
    sort by ARRIVAL and SIZE only, which the view knows: no fields at all. The Items of a
    whole mailbox are kept with its fields: a view that only gained messages since (their
    sequence numbers come after the others', which keep theirs) builds just the new ones."""
    metas = view.metas
    if not fields:
        return [Item(i + 1, metas[i].uid, metas[i].size, metas[i].internaldate, _GONE) for i in idx]
    whole = kept is not None and len(idx) == len(view)
    drops = kept.drops if kept is not None else 0
    entry = kept.fields(view) if kept is not None and whole else None
    before: list[Item] = []
    if entry is not None and entry.items is not None:
        m = len(entry.item_uids)
        if view.uids[:m] == entry.item_uids:
            before, idx = entry.items, idx[m:]
    known = await fields_of(view, idx, cache, kept)
    if kept is not None and kept.drops != drops:  # the index was rebuilt: nothing kept holds
        before, idx = [], list(range(len(view)))
        known = await fields_of(view, idx, cache, kept)

    def build() -> list[Item]:
        get = known.get
        new = [
            Item(i + 1, m.uid, m.size, m.internaldate, get(m.uid, _GONE))
            for i, m in ((i, metas[i]) for i in idx)
        ]
        return before + new if before else new

    out = await cpu(build, len(idx))
    if whole and kept is not None and kept.drops == drops:
        entry = kept.fields(view)
        if entry is not None:
            entry.items, entry.item_uids = out, array("I", view.uids)
    return out


async def sorted_uids(
    view: MailboxView,
    idx: list[int],
    criteria: Sequence[Criterion],
    cache: MessageCache,
    kept: SortCache,
) -> Sequence[int]:
    """The UIDs of these view indexes in SORT order. A SORT of most of a big mailbox keeps
    the whole mailbox's order (`Ordered`) so that the next one, after messages arrived or went,
    places the new ones by bisection and leaves out the expunged instead of sorting again."""
    crit = tuple(criteria)
    n = len(view)
    need = any(c.key not in META_KEYS for c in crit)
    order = kept.order(view, crit)
    if order is None and (n < KEEP_MIN or len(idx) * 2 < n):
        found = await items(view, idx, cache, need, kept)
        return await cpu(lambda: [it.uid for it in sort_items(found, crit)], len(found))
    uids = view.uids
    drops = kept.drops
    if order is not None:
        old = order
        last = _last_uid(view)
        new, gone = await cpu(lambda: _difference(old, uids, last), n)
        if len(new) > max(REBUILD_MIN, n // 16):
            order = None
        elif new or gone:
            add = await _keyed(view, new, crit, cache, kept)
            if kept.drops == drops:  # else the kept order's keys are no longer vouched for
                order = await cpu(lambda: old.changed(add, gone), n)
            else:
                order = None
    if order is None:
        order = await _build(view, list(range(n)), crit, cache, kept)
    if kept.drops == drops:
        kept.keep_order(view, order)
    ordered = order
    return await cpu(lambda: _restricted(ordered, uids, idx), n)


async def _keyed(
    view: MailboxView,
    idx: list[int],
    crit: tuple[Criterion, ...],
    cache: MessageCache,
    kept: SortCache,
) -> list[tuple[int, object]]:
    """(UID, the order's key) of these view indexes."""
    metas = view.metas
    need = any(c.key not in META_KEYS for c in crit)
    known = await fields_of(view, idx, cache, kept) if need else {}
    key = key_of(crit)

    def run() -> list[tuple[int, object]]:
        get = known.get
        return [
            (m.uid, key(get(m.uid, _GONE), m.size, m.internaldate)) for m in (metas[i] for i in idx)
        ]

    return await cpu(run, len(idx))


async def _build(
    view: MailboxView,
    idx: list[int],
    crit: tuple[Criterion, ...],
    cache: MessageCache,
    kept: SortCache,
) -> Ordered:
    keyed = await _keyed(view, idx, crit, cache, kept)
    return await cpu(
        lambda: Ordered.build(crit, [u for u, _ in keyed], [k for _, k in keyed]), len(keyed)
    )


def _difference(order: Ordered, uids: array[int], last: int) -> tuple[list[int], set[int]]:
    """What changed between a kept order and a view: the view indexes of the messages the
    order lacks, and the order's UIDs the view has seen expunged (up to `last`: another
    session's view may be ahead of this one). Arrivals alone, the usual case, are found by
    comparing the UID arrays in C."""
    members, n = order.members, len(uids)
    if members == uids:
        return [], set()
    k = bisect_right(uids, members[-1]) if members else 0
    if uids[:k] == members:
        return list(range(k, n)), set()
    have = set(members)
    if have.issuperset(uids[:k]):
        new = list(range(k, n))
    else:  # this view has messages the order left out (seen expunged by a view ahead of it)
        new = [i for i, u in enumerate(uids) if u not in have]
    return new, {u for u in have.difference(uids) if u <= last}


def _restricted(order: Ordered, uids: array[int], idx: list[int]) -> Sequence[int]:
    """The order's UIDs that are these view indexes' (all the view's: at no cost when the
    order holds exactly the view's messages, the usual case)."""
    if len(idx) == len(uids):
        if order.members == uids:
            return order.uids
        wanted = set(uids)
    else:
        wanted = {uids[i] for i in idx}
    return [u for u in order.uids if u in wanted]


INLINE_MAX = 2000  # messages sorted or threaded on the event loop; more go to a thread


async def cpu(fn: Callable[[], T], n: int) -> T:
    """Run a sort or thread computation over `n` messages: inline when small; else in a
    thread, so that other sessions are served meanwhile (100,000 messages take a second or
    more), with the cyclic GC paused: its passes over the many new objects cost as much as the
    work (bench/RESULTS.md)."""
    if n <= INLINE_MAX:
        return fn()

    def run() -> T:
        was = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if was:
                gc.enable()

    return await asyncio.to_thread(run)


_GONE = SortFields("", False, "", "", "", "", "", None, "", ())


def _fields(msg: Message) -> SortFields:
    cached = msg.cache.get("sortfields")
    if cached is None:
        cached = msg.cache["sortfields"] = sort_fields(msg)
    assert isinstance(cached, SortFields)
    return cached
