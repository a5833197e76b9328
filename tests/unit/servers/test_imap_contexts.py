"""A live SORT context (RFC 5267 4.3) against a client that applies its ADDTO/REMOVEFROM pairs in
turn: after random additions and removals the client's list is the context's, and both are
what a fresh SORT gives."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.mail.sorting import Criterion, Item, sort_items
from carteiro.mime.sortkeys import SortFields
from carteiro.proto.imap.search import SearchAll
from carteiro.servers.imap.contexts import Context

KEYS = ["ARRIVAL", "DATE", "SUBJECT", "FROM", "SIZE"]


def item(uid: int, subject: str, sender: str, size: int, date: float | None) -> Item:
    fields = SortFields(subject, False, sender, "", "", sender, "", date, "", ())
    return Item(uid, uid, size, float(uid % 3), fields)


items_st = st.builds(
    item,
    st.integers(1, 10_000),
    st.sampled_from(["", "a", "B", "b", "Éclair", "eclair"]),
    st.sampled_from(["", "x", "Y"]),
    st.integers(0, 3),
    st.one_of(st.none(), st.sampled_from([1.0, 2.0])),
)


def apply(client: list[int], data: bytes) -> None:
    """What a client does with `REMOVEFROM (p set ...)` / `ADDTO (p set ...)` data: each pair
    in turn, the set's numbers standing at p, p+1, ... (1-based)."""
    for word, body in re.findall(rb"(REMOVEFROM|ADDTO) \(([^)]*)\)", data):
        toks = body.split()
        for p, numbers in zip(toks[::2], toks[1::2], strict=True):
            ns: list[int] = []
            for part in numbers.split(b","):
                a, _, b = part.partition(b":")
                ns += range(int(a), int(b or a) + 1)
            at = int(p) - 1
            if word == b"REMOVEFROM":
                assert client[at : at + len(ns)] == ns
                del client[at : at + len(ns)]
            else:
                client[at:at] = ns


@settings(max_examples=200, deadline=None)
@given(
    base=st.lists(items_st, max_size=30, unique_by=lambda it: it.uid),
    steps=st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 40), max_size=5))),
    crit=st.lists(st.tuples(st.sampled_from(KEYS), st.booleans()), min_size=1, max_size=3),
    extra=st.lists(items_st, max_size=30, unique_by=lambda it: it.uid),
)
def test_sort_context_follows_changes(
    base: list[Item],
    steps: list[tuple[bool, list[int]]],
    crit: list[tuple[str, bool]],
    extra: list[Item],
) -> None:
    criteria = [Criterion(k, r) for k, r in crit]
    ordered = sort_items(base, criteria)
    ctx = Context("t", SearchAll(), True, [it.uid for it in ordered], 0, ordered, criteria)
    client = [it.uid for it in ordered]
    pool = {it.uid: it for it in extra if it.uid not in ctx.members}
    for remove, picks in steps:
        if remove:
            members = sorted(ctx.members)
            gone = sorted({members[p % len(members)] for p in picks} if members else set())
            data = ctx.remove(gone, lambda u: u)
        else:
            avail = sorted(pool)
            new = sorted({avail[p % len(avail)] for p in picks} if avail else set())
            for u in new:
                del pool[u]
            data = ctx.add(
                new, [extra_item for extra_item in extra if extra_item.uid in new], lambda u: u
            )
        apply(client, data)
        assert ctx.order is not None
        assert client == [uid for _values, uid in ctx.order]
        every = {it.uid: it for it in [*extra, *base]}  # a base item wins: it is the member
        fresh = sort_items([every[u] for u in ctx.members], criteria)
        assert [it.uid for it in fresh] == client
