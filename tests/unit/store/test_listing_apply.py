"""Listing.apply (store/listing.py): a cached listing brought up to date by the rows changed
since and the UIDs expunged since must equal the listing loaded afresh from the rows, whatever
the mix. Found by the IMAP stress checker: with more than 64 expunges at once the arrays were
rebuilt and the flag changes then went to the positions of the old ones, so SELECT showed one
message's flags on another, under a HIGHESTMODSEQ that claimed them current."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from carteiro.store.flags import FlagCodec
from carteiro.store.listing import Listing


def row(uid: int, mask: int, kws: str, modseq: int) -> tuple[int, int, str, int, float, int, int]:
    return (uid, mask, kws, modseq, 1_700_000_000.0 + uid, 100 + uid, 0)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 300),
    seed=st.integers(0, 1 << 30),
    expunge=st.floats(0, 0.9),
    change=st.floats(0, 0.5),
    new=st.integers(0, 5),
    built=st.booleans(),
)
def test_apply_equals_a_fresh_load(
    n: int, seed: int, expunge: float, change: float, new: int, built: bool
) -> None:
    rng = random.Random(seed)
    codec = FlagCodec()
    rows = {
        u: row(u, rng.randrange(32), rng.choice(["", "$a", "$a $b"]), u) for u in range(1, n + 1)
    }
    cached = Listing.from_rows(7, n, [rows[u] for u in sorted(rows)])
    if built:
        cached.metas_list(codec)  # the MessageMeta list kept in step too
    modseq = n
    gone = {u for u in rows if rng.random() < expunge}
    for u in gone:
        del rows[u]
    changed = []
    for u in sorted(rows):
        if rng.random() < change:
            modseq += 1
            rows[u] = row(u, rng.randrange(32), rng.choice(["", "$c"]), modseq)
            changed.append(rows[u])
    for u in range(n + 1, n + 1 + new):
        modseq += 1
        rows[u] = row(u, rng.randrange(32), "", modseq)
        changed.append(rows[u])
    assert cached.apply(changed, gone, modseq, codec)
    fresh = Listing.from_rows(7, modseq, [rows[u] for u in sorted(rows)])
    assert cached.metas_list(codec) == fresh.metas_list(codec)
    assert list(cached.uids) == list(fresh.uids)


def test_many_expunges_then_a_flag_change() -> None:
    codec = FlagCodec()
    rows = [row(u, 0, "", u) for u in range(1, 101)]
    cached = Listing.from_rows(7, 100, rows)
    gone = set(range(1, 71))  # more than 64: the arrays are rebuilt
    assert cached.apply([row(90, 8, "$x", 101)], gone, 101, codec)
    metas = {m.uid: m for m in cached.metas_list(codec)}
    assert metas[90].flags == FlagCodec().decode(8, "$x")
    assert metas[90].modseq == 101
    assert all(m.modseq == m.uid for u, m in metas.items() if u != 90)
