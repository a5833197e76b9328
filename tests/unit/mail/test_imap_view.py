"""The per-session mailbox view: MSN bookkeeping and when changes may be announced."""

from __future__ import annotations

import pytest

from carteiro.mail.imap_view import MailboxView, RecentRegistry
from carteiro.store.api import DELETED, SEEN, FlagOp
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


async def open_view(a, readonly=False, registry=None):
    sub = a.subscribe()
    view = await MailboxView.open(a, "INBOX", readonly, registry or RecentRegistry())
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
    view = await MailboxView.open(acct, "INBOX", False, RecentRegistry())
    view.feed(sub.pending())
    assert not await view.sync(allow_expunge=True)
    assert len(view) == 6


async def test_recent_goes_to_one_session(acct):
    reg = RecentRegistry()
    v1, s1 = await open_view(acct, registry=reg)
    v2, s2 = await open_view(acct, registry=reg)
    await acct.append("INBOX", msg(9))
    v1.feed(s1.pending())
    v2.feed(s2.pending())
    u1 = await v1.sync(True)
    u2 = await v2.sync(True)
    assert (u1.exists, u1.recent) == (6, 1)
    assert (u2.exists, u2.recent) == (6, 0)
    v3, _ = await open_view(acct, registry=reg)
    assert not v3.recent


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
