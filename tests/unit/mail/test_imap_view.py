"""The per-session mailbox view: MSN bookkeeping and when changes may be announced."""

from __future__ import annotations

import pytest

from carteiro.mail.imap_view import MailboxView, RecentClaims
from carteiro.store.api import DELETED, SEEN, FlagOp, Resync
from carteiro.store.memory import MemoryMailStore

ACCT = "alice@example.test"


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
async def acct():
    store = MemoryMailStore()
    await store.create_account(ACCT)
    a = await store.account(ACCT)
    for i in range(5):
        await a.append("INBOX", msg(i))
    return a


async def open_view(a, readonly=False):
    sub = a.subscribe()
    view = await MailboxView.open(a, "INBOX", readonly)
    return view, sub


async def test_snapshot_and_lookups(acct):
    view, _ = await open_view(acct)
    assert list(view.uids) == [1, 2, 3, 4, 5]
    assert view.msn_of(3) == 3 and view.msn_of(9) is None
    assert view.indexes_for_msns([(2, 3), (5, 9)]) == [1, 2, 4]
    assert view.indexes_for_uids([(4, 100)]) == [3, 4]
    assert view.first_unseen() == 1


async def test_expunge_waits_for_allowed_command(acct):
    view, sub = await open_view(acct)
    await acct.set_flags(view.id, [2, 4], FlagOp.ADD, [DELETED])
    await acct.expunge(view.id)
    view.feed(sub.pending())
    upd = await view.sync(allow_expunge=False)
    assert upd.expunged == []
    assert [m for m, _ in upd.flags] == [2, 4]  # \Deleted flags are news, numbers unchanged
    assert len(view) == 5 and view.is_expunged(2)
    upd = await view.sync(allow_expunge=True)
    assert upd.expunged == [2, 3]  # RFC 3501 6.4.3: each number adjusted for the one before
    assert list(view.uids) == [1, 3, 5]


async def test_exists_counts_unannounced_expunges(acct):
    view, sub = await open_view(acct)
    await acct.delete_messages(view.id, [1])
    await acct.append("INBOX", msg(9))
    view.feed(sub.pending())
    upd = await view.sync(allow_expunge=False)
    assert upd.exists == 6  # message 1 still has its number until its EXPUNGE is sent
    upd = await view.sync(allow_expunge=True)
    assert upd.expunged == [1] and upd.exists is None
    assert list(view.uids) == [2, 3, 4, 5, 6]


async def test_added_then_expunged_is_never_announced(acct):
    view, sub = await open_view(acct)
    r = await acct.append("INBOX", msg(9))
    await acct.delete_messages(view.id, [r.uid])
    view.feed(sub.pending())
    assert not await view.sync(allow_expunge=True)


async def test_own_changes_are_not_echoed(acct):
    view, sub = await open_view(acct)
    changed, _ = await acct.set_flags(view.id, [1], FlagOp.ADD, [SEEN])
    view.apply_flags(changed)
    view.feed(sub.pending())
    assert not await view.sync(allow_expunge=True)


async def test_stale_events_before_snapshot_are_ignored(acct):
    sub = acct.subscribe()
    await acct.append("INBOX", msg(9))  # uid 6, before the snapshot
    view = await MailboxView.open(acct, "INBOX", False)
    view.feed(sub.pending())
    assert not await view.sync(allow_expunge=True)
    assert len(view) == 6


async def test_recent_goes_to_one_session(acct):
    # RFC 3501 2.3.2: mail no session has met is \Recent to the first SELECT, to no later one
    v1, s1 = await open_view(acct)
    assert sorted(v1.recent) == [1, 2, 3, 4, 5]
    v2, s2 = await open_view(acct)
    assert not v2.recent
    await acct.append("INBOX", msg(9))
    v1.feed(s1.pending())
    v2.feed(s2.pending())
    u1 = await v1.sync(True)
    u2 = await v2.sync(True)
    assert (u1.exists, u1.recent) == (6, 6) and v1.recent == {1, 2, 3, 4, 5, 6}
    assert (u2.exists, u2.recent) == (6, 0)
    v3, _ = await open_view(acct)
    assert not v3.recent
    assert await acct.recent_claimed(v1.id) == 6


async def test_examine_sees_recent_without_taking_it(acct):
    # RFC 3501 6.3.2: EXAMINE MUST NOT cause messages to lose \Recent
    ro, sub = await open_view(acct, readonly=True)
    assert sorted(ro.recent) == [1, 2, 3, 4, 5]
    await acct.append("INBOX", msg(9))
    ro.feed(sub.pending())
    upd = await ro.sync(True)
    assert (upd.exists, upd.recent) == (6, 6)
    assert await acct.recent_claimed(ro.id) == 0
    rw, _ = await open_view(acct)
    assert sorted(rw.recent) == [1, 2, 3, 4, 5, 6]
    ro2, _ = await open_view(acct, readonly=True)
    assert not ro2.recent


async def test_one_claim_per_sync(acct):
    view, sub = await open_view(acct)
    calls = []
    real = acct.claim_recent

    async def counting(mailbox_id, up_to):
        calls.append(up_to)
        return await real(mailbox_id, up_to)

    acct.claim_recent = counting
    for i in range(3):
        await acct.append("INBOX", msg(10 + i))
    view.feed(sub.pending())
    upd = await view.sync(True)
    assert (upd.exists, upd.recent) == (8, 8) and calls == [8]


async def test_keywords_grow(acct):
    view, sub = await open_view(acct)
    await acct.set_flags(view.id, [1], FlagOp.ADD, ["$Label1"])
    view.feed(sub.pending())
    upd = await view.sync(True)
    assert upd.new_keywords and "$Label1" in view.flag_list()


async def test_resync_diffs_against_store(acct):
    from carteiro.store.api import Resync

    view, _ = await open_view(acct)
    s2 = acct.subscribe()
    await acct.delete_messages(view.id, [5])
    await acct.set_flags(view.id, [1], FlagOp.ADD, [SEEN])
    await acct.append("INBOX", msg(9))
    s2.pending()
    view.feed([Resync(ACCT)])
    upd = await view.sync(True)
    assert upd.expunged == [5] and upd.exists == 5 and [m for m, _ in upd.flags] == [1]


async def test_rendered_slots_follow_every_meta_change(acct):
    """A slot kept for the server's rendering of a message is emptied when that message's meta
    changes (own STORE, another session's, a catch-up from the store), stays with its message
    when an expunge renumbers, starts empty for an arrival, and a new key empties them all."""
    view, sub = await open_view(acct)
    slots = view.rendered_for("k")
    for i in range(5):
        slots[i] = b"uid %d" % view.uids[i]
    changed, _ = await acct.set_flags(view.id, [1], FlagOp.ADD, [SEEN])
    view.apply_flags(changed)  # own STORE
    assert view.rendered_for("k")[0] is None and view.rendered_for("k")[1] == b"uid 2"
    view.feed(sub.pending())  # its echo changes nothing
    await view.sync(allow_expunge=True)
    view.rendered_for("k")[0] = b"uid 1"
    # another session: a flag change, an expunge (by number 2) and an arrival
    await acct.set_flags(view.id, [4], FlagOp.ADD, [SEEN])
    await acct.delete_messages(view.id, [2])
    await acct.append("INBOX", msg(9))
    view.feed(sub.pending())
    upd = await view.sync(allow_expunge=True)
    assert upd.expunged == [2] and upd.exists == 5
    assert list(view.uids) == [1, 3, 4, 5, 6]
    assert view.rendered_for("k") == [b"uid 1", b"uid 3", None, b"uid 5", None]
    assert len(view.rendered) == len(view.metas) == len(view)
    view.rendered_for("k")[2] = b"uid 4"
    # a resync (the feed lost track) compares with the store: only changed messages lose theirs
    await acct.set_flags(view.id, [5], FlagOp.ADD, [DELETED])
    view.feed([Resync(ACCT, view.id)])
    await view.sync(allow_expunge=True)
    assert view.rendered_for("k") == [b"uid 1", b"uid 3", b"uid 4", None, None]
    assert view.rendered_for("other") == [None] * 5


async def test_expunge_of_several_keeps_slots_aligned(acct):
    view, _ = await open_view(acct)
    slots = view.rendered_for("k")
    for i in range(5):
        slots[i] = b"uid %d" % view.uids[i]
    msns, uids = view.expunge_now([5, 1, 3, 99])
    assert msns == [1, 2, 3] and uids == [1, 3, 5]  # RFC 3501 6.4.3 numbering
    assert list(view.uids) == [2, 4]
    assert [m.uid for m in view.metas] == [2, 4]
    assert view.rendered == [b"uid 2", b"uid 4"]


async def test_msn_ranges_ordered_or_not(acct):
    view, _ = await open_view(acct)
    assert view.indexes_for_msns([(1, 5)]) == [0, 1, 2, 3, 4]
    assert view.indexes_for_msns([(1, 2), (4, 9)]) == [0, 1, 3, 4]
    assert view.indexes_for_msns([(4, 5), (1, 2)]) == [0, 1, 3, 4]  # not in order
    assert view.indexes_for_msns([(2, 4), (3, 5)]) == [1, 2, 3, 4]  # overlapping
    assert view.indexes_for_msns([(5, 2)]) == [1, 2, 3, 4]
    assert view.indexes_for_msns([(7, 9)]) == []


async def test_counts_at_the_stores_modseq_only(acct):
    """MESSAGES/UNSEEN of the selected mailbox from the view (STATUS): only at exactly the
    store's HIGHESTMODSEQ with nothing left to apply, unannounced expunges left out, and equal to
    what the store counts."""
    view, sub = await open_view(acct)

    async def store_counts():
        c = await acct.counts(view.id)
        return (c.messages, c.unseen), (await acct.get_mailbox("INBOX")).highestmodseq

    counts, top = await store_counts()
    assert view.counts_at(top) == counts == (5, 5)
    changed, _ = await acct.set_flags(view.id, [1, 2], FlagOp.ADD, [SEEN])
    view.apply_flags(changed)  # own STORE
    counts, top = await store_counts()
    assert view.counts_at(top) is None  # the echo of it is not applied yet
    view.feed(sub.pending())
    await view.sync(allow_expunge=True)
    assert view.counts_at(top) == counts == (5, 3)
    await acct.delete_messages(view.id, [1, 3])  # one \Seen, one not
    await acct.append("INBOX", msg(7))
    counts, top = await store_counts()
    assert view.counts_at(top) is None  # events pending
    view.feed(sub.pending())
    upd = await view.sync(allow_expunge=False)  # expunges withheld (FETCH, say)
    assert upd.exists == 6 and len(view) == 6
    assert view.counts_at(top) == counts == (4, 3)
    await view.sync(allow_expunge=True)
    assert view.counts_at(top) == counts
    assert view.unseen == sum(1 for m in view.metas if SEEN not in m.flags)
    await acct.set_flags(view.id, [4], FlagOp.ADD, [SEEN])
    assert view.counts_at((await store_counts())[1]) is None  # the store moved on


async def test_claims_this_process_made_need_no_store_read(acct):
    """RecentClaims (one per server): once a session of this process has claimed a message, the
    others' claims up to it are answered without the store, with the store's answer (nothing
    recent to them); EXAMINE still asks (it claims nothing); a later message is claimed again."""
    claims = RecentClaims()
    calls = []
    real_claim, real_claimed = acct.claim_recent, acct.recent_claimed

    async def claim(mailbox_id, up_to):
        calls.append(("claim", up_to))
        return await real_claim(mailbox_id, up_to)

    async def claimed(mailbox_id):
        calls.append(("claimed", 0))
        return await real_claimed(mailbox_id)

    acct.claim_recent, acct.recent_claimed = claim, claimed

    async def view_of(readonly=False):
        sub = acct.subscribe()
        info, metas = await acct.open_mailbox("INBOX")
        return await MailboxView.start(acct, info, metas, readonly, None, claims), sub

    v1, s1 = await view_of()
    assert sorted(v1.recent) == [1, 2, 3, 4, 5] and calls == [("claim", 5)]
    v2, s2 = await view_of()
    assert not v2.recent and calls == [("claim", 5)]  # answered by the claims
    ro, s3 = await view_of(readonly=True)
    assert not ro.recent and calls[-1] == ("claimed", 0)
    calls.clear()
    await acct.append("INBOX", msg(9))
    for view, sub in ((v2, s2), (v1, s1), (ro, s3)):
        view.feed(sub.pending())
        await view.sync(True)
    assert v2.recent == {6} and v1.recent == {1, 2, 3, 4, 5}  # the first told takes it
    assert not ro.recent and calls == [("claim", 6), ("claimed", 0)]
    assert await real_claimed(v1.id) == 6
