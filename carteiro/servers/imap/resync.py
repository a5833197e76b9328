"""QRESYNC's answers about the past (RFC 7162 3.2.5, 3.2.6): which of a client's UIDs are gone.

Built on the store's change feed: the expunge history since the client's MODSEQ when the store
still has it; otherwise every UID the client may know that the mailbox no longer holds (RFC 7162
3.2.5.2: the server MAY include UIDs the client never saw), narrowed by the client's
message-sequence match data. Never renders more than the one VANISHED line; never touches storage
except through the AccountStore.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import chain

from carteiro.mail.imap_view import MailboxView
from carteiro.proto.imap.sets import SequenceSet
from carteiro.store.api import AccountStore

Ranges = list[tuple[int, int]]


def missing(present: Sequence[int], ranges: Sequence[tuple[int, int]]) -> Ranges:
    """The parts of the inclusive, ascending `ranges` that hold none of `present` (ascending)."""
    out: Ranges = []
    n = len(present)
    for a, b in ranges:
        i = bisect_left(present, a)
        cur = a
        while cur <= b:
            if i < n and present[i] <= b:
                p = present[i]
                if p > cur:
                    out.append((cur, p - 1))
                cur = p + 1
                i += 1
            else:
                out.append((cur, b))
                break
    return out


def clip(ranges: Sequence[tuple[int, int]], lo: int, hi: int) -> Ranges:
    return [(max(a, lo), min(b, hi)) for a, b in ranges if b >= lo and a <= hi]


def render(ranges: Sequence[tuple[int, int]]) -> bytes:
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges).encode()


def matched_floor(view: MailboxView, seq_match: tuple[SequenceSet, SequenceSet] | None) -> int:
    """RFC 7162 3.2.5.2: the highest UID below which the client's messages are exactly the
    server's. A pair (MSN m, UID u) that the view also has means the m messages up to u are the
    same on both sides (UIDs only grow), so nothing at or below u vanished. The pairs are read in
    order and the first that does not match ends the walk (the client's data is stale there)."""
    if seq_match is None:
        return 0
    msns_set, uids_set = seq_match
    if msns_set.uses_star or uids_set.uses_star:
        return 0
    msns = list(msns_set.iter_numbers(msns_set.max_number()))
    uids = list(uids_set.iter_numbers(uids_set.max_number()))
    if len(msns) != len(uids):
        return 0  # RFC 7162 3.2.5.2: the two sets have the same number of elements
    floor = 0
    for msn, uid in zip(msns, uids, strict=True):
        if msn < 1 or msn > len(view.uids) or view.uids[msn - 1] != uid:
            break
        floor = uid
    return floor


async def vanished_since(
    store: AccountStore,
    view: MailboxView,
    modseq: int,
    within: Sequence[tuple[int, int]],
    floor: int = 0,
) -> tuple[Ranges, list[int]]:
    """UIDs in `within` (inclusive, ascending) expunged after `modseq` and not in the view, as
    ranges. When the store's expunge history no longer reaches back to `modseq`, every UID of
    `within` above `floor` that the view does not hold. Also the view indexes (ascending) of the
    messages of `within` whose MODSEQ is greater, found from the store's delta rather than by
    reading the whole view (a message the view holds with a greater MODSEQ still has one in the
    later delta, or was expunged since: then it is among the delta's expunged UIDs, and its
    VANISHED follows as an unsolicited response)."""
    top = max(view.info.uidnext - 1, view.max_uid)
    within = clip(within, 1, top)
    if not within:
        return [], []
    delta = await store.changes_since(view.id, modseq)
    metas = view.metas
    changed = set()
    # a message of the view changed after `modseq` is in the delta's `changed` or, when it was
    # expunged after the view's snapshot (the client is not told of that yet), in `expunged`
    for u in chain((m.uid for m in delta.changed), delta.expunged):
        i = view.index_of(u)
        if i is not None and metas[i].modseq > modseq and _inside(within, u):
            changed.add(i)
    if not delta.complete:
        # the history is pruned (rare): which messages changed is read off the whole view,
        # whatever the pruning took since the snapshot
        changed = {i for i, m in enumerate(metas) if m.modseq > modseq and _inside(within, m.uid)}
        return missing(view.uids, clip(within, floor + 1, top)), sorted(changed)
    gone = [u for u in delta.expunged if view.index_of(u) is None and _inside(within, u)]
    return runs(gone), sorted(changed)


def _inside(ranges: Sequence[tuple[int, int]], n: int) -> bool:
    for a, b in ranges:
        if n < a:
            return False
        if n <= b:
            return True
    return False


def runs(numbers: Sequence[int]) -> Ranges:
    out: Ranges = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out
