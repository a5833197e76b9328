"""SORT order (RFC 5256 3, RFC 5957): messages ordered by criteria, each optionally reversed,
ties by mailbox order. Strings collate with i;unicode-casemap (RFC 5051); the empty string
first. Protocol-neutral: the IMAP server parses the command and renders the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

    @property
    def sent(self) -> float:
        """RFC 5256 2.2: the Date: instant, else INTERNALDATE."""
        d = self.fields.date
        return self.arrival if d is None else d


_KEYS: dict[str, Callable[[Item], Any]] = {
    "ARRIVAL": lambda it: it.arrival,
    "CC": lambda it: casemap(it.fields.cc),
    "DATE": lambda it: it.sent,
    "FROM": lambda it: casemap(it.fields.from_),
    "SIZE": lambda it: it.size,
    "SUBJECT": lambda it: casemap(it.fields.subject),
    "TO": lambda it: casemap(it.fields.to),
    "DISPLAYFROM": lambda it: casemap(it.fields.display_from),
    "DISPLAYTO": lambda it: casemap(it.fields.display_to),
}


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
