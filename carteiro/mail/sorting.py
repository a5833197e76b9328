"""SORT order (RFC 5256 3, RFC 5957): messages ordered by criteria, each optionally reversed,
ties by mailbox order. Strings collate with i;unicode-casemap (RFC 5051); the empty string
first. Protocol-neutral: the IMAP server parses the command and renders the answer.
"""

from __future__ import annotations

import functools
from array import array
from bisect import insort
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from carteiro.mime.sortkeys import SortFields, casemap

META_KEYS = frozenset({"ARRIVAL", "SIZE"})
"""Sort keys the mailbox listing knows (INTERNALDATE, RFC822.SIZE): no header field needed."""
SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


@dataclass(frozen=True, slots=True)
class Criterion:
    key: str  # one of SORT_KEYS
    reverse: bool = False


@dataclass(slots=True)
class Item:
    """One message to sort or thread: its position in the mailbox (the final tie-breaker)."""

    seq: int
    uid: int
    size: int
    arrival: float  # INTERNALDATE
    fields: SortFields
    # its base subject's collation key, once asked for: a server keeps a big mailbox's Items
    # between THREAD commands, so each message's is computed once
    _subject: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def sent(self) -> float:
        """RFC 5256 2.2: the Date: instant, else INTERNALDATE."""
        d = self.fields.date
        return self.arrival if d is None else d

    @property
    def subject_key(self) -> str:
        """casemap of the base subject (RFC 5256 4: subjects compare by the collation)."""
        k = self._subject
        if k is None:
            k = self._subject = casemap(self.fields.subject)
        return k


FieldKey = Callable[[SortFields, int, float], Any]
"""A criterion's key from a message's sort fields, size and INTERNALDATE."""

FIELD_KEYS: dict[str, FieldKey] = {
    "ARRIVAL": lambda f, size, arrival: arrival,
    "CC": lambda f, size, arrival: casemap(f.cc),
    # RFC 5256 2.2: the Date: instant, else INTERNALDATE
    "DATE": lambda f, size, arrival: arrival if f.date is None else f.date,
    "FROM": lambda f, size, arrival: casemap(f.from_),
    "SIZE": lambda f, size, arrival: size,
    "SUBJECT": lambda f, size, arrival: casemap(f.subject),
    "TO": lambda f, size, arrival: casemap(f.to),
    "DISPLAYFROM": lambda f, size, arrival: casemap(f.display_from),
    "DISPLAYTO": lambda f, size, arrival: casemap(f.display_to),
}


def _item_key(fk: FieldKey) -> Callable[[Item], Any]:
    return lambda it: fk(it.fields, it.size, it.arrival)


_KEYS: dict[str, Callable[[Item], Any]] = {k: _item_key(fk) for k, fk in FIELD_KEYS.items()}


def sort_items(items: Sequence[Item], criteria: Sequence[Criterion]) -> list[Item]:
    """`items` in mailbox order, sorted by `criteria`: one stable sort per criterion, last
    first, so REVERSE turns only its own criterion round and ties keep mailbox order."""
    out = sorted(items, key=lambda it: it.seq)
    for c in reversed(criteria):
        out.sort(key=_KEYS[c.key], reverse=c.reverse)
    return out


Record = tuple[tuple[Any, ...], int]
"""A message as a live SORT result keeps it: the values its criteria compare, and its UID."""


def record_of(criteria: Sequence[Criterion]) -> Callable[[Item], Record]:
    """The Record of an Item: only what `criteria` compare (a subject's collation key, a date),
    not all its sort fields, so a kept result costs little memory."""
    fns = [_KEYS[c.key] for c in criteria]
    return lambda it: (tuple(f(it) for f in fns), it.uid)


def record_key(criteria: Sequence[Criterion]) -> Callable[[Record], Any]:
    """A key giving `sort_items`'s order on Records (criteria compared in turn, each maybe
    reversed, then mailbox order, which is UID order): to place one message in a sorted result
    by bisection, as a live SORT context does (RFC 5267 4.3.3)."""
    reverse = [c.reverse for c in criteria]

    def cmp(a: Record, b: Record) -> int:
        for x, y, rev in zip(a[0], b[0], reverse, strict=True):
            if x != y:
                r = -1 if x < y else 1
                return -r if rev else r
        return (a[1] > b[1]) - (a[1] < b[1])

    return functools.cmp_to_key(cmp)


def key_of(criteria: Sequence[Criterion]) -> FieldKey:
    """What an `Ordered` keeps beside each message: the one criterion's key, else a tuple of
    them (a tuple per message only where there is more than one criterion to compare)."""
    fns = [FIELD_KEYS[c.key] for c in criteria]
    if len(fns) == 1:
        return fns[0]
    return lambda f, size, arrival: tuple(fn(f, size, arrival) for fn in fns)


class Ordered:
    """Messages in SORT order for one list of criteria, kept between SORT commands: their UIDs
    and, beside each, what the criteria compare (`key_of`), so that the next SORT places the
    messages that arrived by bisection and leaves out those expunged instead of sorting again.
    A message's place depends only on its own keys and UID (ties go by UID, which is mailbox
    order), so the order of any subset of the messages is this order restricted to it: one kept
    order answers a SORT of any search. Never changed once built (`changed` makes another), so
    sessions share it and a computation in a thread never sees it move."""

    __slots__ = ("criteria", "keys", "members", "uids")

    def __init__(
        self,
        criteria: tuple[Criterion, ...],
        uids: array[int],
        keys: list[Any],
        members: array[int],
    ) -> None:
        self.criteria = criteria
        self.uids = uids  # typecode "I": 4 octets a message
        self.keys = keys  # keys[i] is uids[i]'s
        # the same UIDs ascending: compared with a view's UIDs in C (`==`, slices), the usual
        # question "only arrivals since?" costs no Python loop
        self.members = members

    def __len__(self) -> int:
        return len(self.uids)

    @classmethod
    def build(
        cls, criteria: Sequence[Criterion], uids: Sequence[int], keys: Sequence[Any]
    ) -> Ordered:
        """The order of messages given in ascending UID order with their keys: one stable sort
        per criterion, last first, as `sort_items` does (reverse=True keeps ties in order)."""
        crit = tuple(criteria)
        order = list(range(len(uids)))
        if len({c.reverse for c in crit}) == 1:  # one direction: one sort, keys compared whole
            order.sort(key=keys.__getitem__, reverse=crit[0].reverse)
        else:
            for j in reversed(range(len(crit))):
                order.sort(key=lambda i: keys[i][j], reverse=crit[j].reverse)
        return cls(
            crit, array("I", [uids[i] for i in order]), [keys[i] for i in order], array("I", uids)
        )

    def place(self, key: Any, uid: int) -> int:
        """Where a message with this key and UID goes: after every message it follows."""
        uids, keys = self.uids, self.keys
        single = len(self.criteria) == 1
        reverse = [c.reverse for c in self.criteria]
        lo, hi = 0, len(uids)
        while lo < hi:
            mid = (lo + hi) // 2
            k = keys[mid]
            if single:
                after = _after(key, k, reverse[0]) if k != key else uid > uids[mid]
            else:
                after = uid > uids[mid]
                for x, y, rev in zip(key, k, reverse, strict=True):
                    if x != y:
                        after = _after(x, y, rev)
                        break
            if after:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def changed(self, add: Sequence[tuple[int, Any]], gone: Collection[int]) -> Ordered:
        """A new order without the UIDs `gone` and with the (UID, key) pairs `add` placed."""
        if gone:
            keep = [i for i, u in enumerate(self.uids) if u not in gone]
            uids = array("I", [self.uids[i] for i in keep])
            keys = [self.keys[i] for i in keep]
            members = array("I", [u for u in self.members if u not in gone])
        else:
            uids, keys, members = array("I", self.uids), list(self.keys), array("I", self.members)
        out = Ordered(self.criteria, uids, keys, members)
        for uid, key in add:
            p = out.place(key, uid)
            uids.insert(p, uid)
            keys.insert(p, key)
            insort(members, uid)
        return out


def _after(x: Any, y: Any, reverse: bool) -> bool:
    """Does a message whose key is x (!= y) come after one whose key is y?"""
    return bool(x < y) if reverse else bool(x > y)
