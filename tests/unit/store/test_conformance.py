"""The store contract (api.py), checked against every backend.

These tests are what SMTP delivery, IMAP and POP3 rely on: UIDs ascend and are never reused,
MODSEQ grows with every change, names cannot escape an account, and changes reach subscribers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carteiro.store.api import (
    ANSWERED,
    DEFAULT_MAILBOXES,
    DELETED,
    FLAGGED,
    SEEN,
    AccountNotFound,
    Delivery,
    FlagOp,
    FlagsChanged,
    InvalidName,
    MailboxChanged,
    MailboxExists,
    MailboxNotEmpty,
    MailboxNotFound,
    MailStore,
    MessageAdded,
    MessagesExpunged,
    StoreError,
)

ALICE = "alice@example.org"
BOB = "bob@example.org"


def msg(n: int = 0, size: int = 0) -> bytes:
    body = b"x" * size
    return b"From: a@example.org\r\nSubject: m%d\r\n\r\nbody %d\r\n%s" % (n, n, body)


async def account(store: MailStore, name: str = ALICE):  # type: ignore[no-untyped-def]
    await store.create_account(name)
    return await store.account(name)


# ---- accounts ------------------------------------------------------------------------------


async def test_new_account_has_default_mailboxes(store: MailStore) -> None:
    acct = await account(store)
    boxes = {b.name: b for b in await acct.list_mailboxes()}
    for name, special in DEFAULT_MAILBOXES:
        assert boxes[name].special_use == special
        assert boxes[name].selectable
        assert boxes[name].uidnext == 1
    assert len({b.uidvalidity for b in boxes.values()}) == len(boxes)
    assert len({b.id for b in boxes.values()}) == len(boxes)


async def test_create_account_is_idempotent(store: MailStore) -> None:
    acct = await account(store)
    await acct.append("INBOX", msg())
    await store.create_account(ALICE)
    acct = await store.account(ALICE)
    inbox = await acct.get_mailbox("INBOX")
    assert len(await acct.list_messages(inbox.id)) == 1


async def test_unknown_account(store: MailStore) -> None:
    with pytest.raises(AccountNotFound):
        await store.account("nobody@example.org")


async def test_delete_account_keeps_mail_unless_purged(store: MailStore) -> None:
    acct = await account(store)
    await acct.append("INBOX", msg(1))
    await store.delete_account(ALICE)
    with pytest.raises(AccountNotFound):
        await store.account(ALICE)
    await store.create_account(ALICE)
    acct = await store.account(ALICE)
    inbox = await acct.get_mailbox("INBOX")
    assert [
        await acct.read_message(inbox.id, m.uid) for m in await acct.list_messages(inbox.id)
    ] == [msg(1)]
    await store.delete_account(ALICE, purge=True)
    with pytest.raises(AccountNotFound):
        await store.account(ALICE)
    acct = await account(store)
    inbox = await acct.get_mailbox("INBOX")
    assert await acct.list_messages(inbox.id) == []


@pytest.mark.parametrize(
    "bad", ["", "../x@example.org", "a@../..", "a\x00b@x.org", "a\nb@x.org", "@x.org", "a@"]
)
async def test_bad_account_names(store: MailStore, bad: str) -> None:
    with pytest.raises(InvalidName):
        await store.create_account(bad)


async def test_account_names_with_odd_characters_stay_apart(store: MailStore) -> None:
    odd = [
        "a/b@example.org",
        "a%2Fb@example.org",
        ".hidden@example.org",
        "bare",
        "José@exämple.org",
    ]
    for name in odd:
        acct = await account(store, name)
        await acct.append("INBOX", name.encode())
    for name in odd:
        acct = await store.account(name)
        inbox = await acct.get_mailbox("INBOX")
        [m] = await acct.list_messages(inbox.id)
        assert await acct.read_message(inbox.id, m.uid) == name.encode()


# ---- append, list, read ----------------------------------------------------------------------


async def test_append_list_read_counts(store: MailStore, tmp_path: Path) -> None:
    acct = await account(store)
    inbox = await acct.get_mailbox("inbox")
    assert inbox.name == "INBOX"
    r1 = await acct.append("INBOX", msg(1), [SEEN], internaldate=1_700_000_000.0)
    src = tmp_path / "src.eml"
    src.write_bytes(msg(2, 5000))
    r2 = await acct.append("INBOX", src, [])
    r3 = await acct.append("INBOX", str(src), ["\\flagged", "$Junk"])
    assert src.read_bytes() == msg(2, 5000)  # a source path is never modified
    assert (r1.uid, r2.uid, r3.uid) == (1, 2, 3)
    assert r1.modseq < r2.modseq < r3.modseq
    assert r1.uidvalidity == inbox.uidvalidity and r1.mailbox_id == inbox.id
    metas = await acct.list_messages(inbox.id)
    assert [m.uid for m in metas] == [1, 2, 3]
    assert metas[0].flags == {SEEN} and metas[0].internaldate == 1_700_000_000.0
    assert metas[2].flags == {FLAGGED, "$Junk"}
    assert [m.size for m in metas] == [len(msg(1)), len(msg(2, 5000)), len(msg(2, 5000))]
    assert await acct.read_message(inbox.id, 2) == msg(2, 5000)
    counts = await acct.counts(inbox.id)
    assert (counts.messages, counts.unseen, counts.deleted) == (3, 2, 0)
    assert counts.size == sum(m.size for m in metas)
    after = await acct.get_mailbox("INBOX")
    assert after.uidnext == 4 and after.highestmodseq == r3.modseq
    with pytest.raises(KeyError):
        await acct.read_message(inbox.id, 99)


async def test_read_messages_reads_a_run_in_order_with_the_gone_as_key_errors(
    store: MailStore,
) -> None:
    """read_messages (POP3's read-ahead): each UID's bytes in the order asked, whatever road each
    takes (committed bytes, a file, a file big enough for the I/O threads), KeyError for UIDs
    that are not there or were expunged, and the same bytes read_message returns."""
    acct = await account(store)
    inbox = await acct.get_mailbox("INBOX")
    bodies = [msg(i, size) for i, size in enumerate([10, 3000, 70_000, 200_000, 10])]
    uids = [(await acct.append("INBOX", b)).uid for b in bodies]
    await acct.delete_messages(inbox.id, [uids[1]])
    flush = getattr(store, "flush_files", None)
    if flush is not None:
        await flush()  # committed bytes written to files: both roads are tried
    await acct.append("INBOX", msg(9))  # (this one's bytes may still be in the index)
    asked = [uids[4], 99, uids[0], uids[1], uids[3], uids[2], 6]
    got = await acct.read_messages(inbox.id, asked)
    assert [g if isinstance(g, bytes) else type(g) for g in got] == [
        bodies[4],
        KeyError,
        bodies[0],
        KeyError,
        bodies[3],
        bodies[2],
        msg(9),
    ]
    for uid, g in zip(asked, got, strict=True):
        if isinstance(g, bytes):
            assert await acct.read_message(inbox.id, uid) == g
    assert await acct.read_messages(inbox.id, []) == []
    [gone] = await acct.read_messages(12345, [uids[0]])  # no such mailbox here
    assert isinstance(gone, KeyError)


async def test_append_refusals(store: MailStore) -> None:
    acct = await account(store)
    with pytest.raises(MailboxNotFound):
        await acct.append("Nope", msg())
    with pytest.raises(StoreError):
        await acct.append("INBOX", msg(), ["\\Bogus"])
    with pytest.raises(StoreError):
        await acct.append("INBOX", msg(), ["bad keyword"])
    r = await acct.append("INBOX", msg(), ["\\Recent", "\\SEEN"])
    [m] = await acct.list_messages(r.mailbox_id)
    assert m.flags == {SEEN}


async def test_mailbox_ids_of_other_accounts_are_refused(store: MailStore) -> None:
    alice = await account(store, ALICE)
    bob = await account(store, BOB)
    r = await bob.append("INBOX", msg())
    with pytest.raises(MailboxNotFound):
        await alice.list_messages(r.mailbox_id)
    with pytest.raises(MailboxNotFound):
        await alice.list_uids_flags(r.mailbox_id)
    with pytest.raises(KeyError):
        await alice.read_message(r.mailbox_id, r.uid)
    with pytest.raises(MailboxNotFound):
        await alice.set_flags(r.mailbox_id, [r.uid], FlagOp.ADD, [SEEN])
    with pytest.raises(MailboxNotFound):
        await alice.delete_messages(r.mailbox_id, [r.uid])
    with pytest.raises(MailboxNotFound):
        await alice.copy(r.mailbox_id, [r.uid], "INBOX")


async def test_deliver_is_all_or_none(store: MailStore) -> None:
    alice = await account(store, ALICE)
    bob = await account(store, BOB)
    await alice.create_mailbox("Lists")
    results = await store.deliver(
        [Delivery(ALICE), Delivery(BOB, flags=frozenset({FLAGGED})), Delivery(ALICE, "Lists")],
        msg(7),
    )
    assert [(r.account, r.uid) for r in results] == [(ALICE, 1), (BOB, 1), (ALICE, 1)]
    assert await bob.read_message(results[1].mailbox_id, 1) == msg(7)
    assert (await bob.list_messages(results[1].mailbox_id))[0].flags == {FLAGGED}
    with pytest.raises(AccountNotFound):
        await store.deliver([Delivery(ALICE), Delivery("ghost@example.org")], msg(8))
    with pytest.raises(MailboxNotFound):
        await store.deliver([Delivery(BOB), Delivery(ALICE, "Missing")], msg(8))
    for acct, box in ((alice, "INBOX"), (bob, "INBOX")):
        info = await acct.get_mailbox(box)
        assert len(await acct.list_messages(info.id)) == 1


@pytest.mark.parametrize("size", [100, 200_000])
async def test_deliver_with_an_id_is_idempotent(store: MailStore, size: int) -> None:
    """Issue 10: a client that resends after a lost 250 gets no second copy (small messages are
    committed with their bytes in the sqlite backend, large ones as files: both roads)."""
    alice = await account(store, ALICE)
    bob = await account(store, BOB)
    first = await store.deliver([Delivery(ALICE), Delivery(BOB)], msg(1, size), "id-1")
    again = await store.deliver([Delivery(ALICE), Delivery(BOB)], msg(1, size), "id-1")
    assert again == first
    twice = await asyncio.gather(
        *(store.deliver([Delivery(ALICE)], msg(2, size), "id-2") for _ in range(3))
    )
    assert twice[0] == twice[1] == twice[2]
    other = await store.deliver([Delivery(ALICE)], msg(1, size), "id-3")
    assert other[0].uid != first[0].uid
    plain = await store.deliver([Delivery(ALICE)], msg(1, size))
    assert plain[0].uid not in (first[0].uid, other[0].uid)
    inbox = await alice.get_mailbox("INBOX")
    assert [m.uid for m in await alice.list_messages(inbox.id)] == [1, 2, 3, 4]
    binbox = await bob.get_mailbox("INBOX")
    assert len(await bob.list_messages(binbox.id)) == 1


async def test_open_mailbox_is_get_mailbox_and_list_messages(store: MailStore) -> None:
    acct = await account(store)
    for i in range(3):
        await acct.append("INBOX", msg(i), [SEEN] if i == 1 else [])
    for _ in range(2):  # the second time from the cached listing
        info, metas = await acct.open_mailbox("inbox")
        assert info == await acct.get_mailbox("INBOX")
        assert metas == await acct.list_messages(info.id)
        assert [m.uid for m in metas] == [1, 2, 3]
    await acct.create_mailbox("a/b")
    await acct.delete_mailbox("a")  # "a" stays as a non-selectable parent of "a/b"
    info, metas = await acct.open_mailbox("a")
    assert not info.selectable and metas == []
    with pytest.raises(MailboxNotFound):
        await acct.open_mailbox("nowhere")


async def test_list_uids_flags_matches_list_messages(store: MailStore) -> None:
    acct = await account(store)
    inbox = await acct.get_mailbox("INBOX")
    empty = await acct.list_uids_flags(inbox.id)
    assert (list(empty.uids), empty.flags, list(empty.modseqs)) == ([], [], [])
    for i in range(6):
        await acct.append("INBOX", msg(i), [SEEN] if i % 2 else ["$Label"] if i == 4 else [])
    await acct.set_flags(inbox.id, [2], FlagOp.ADD, [DELETED, "$Junk"])
    await acct.expunge(inbox.id)
    await acct.set_flags(inbox.id, [3], FlagOp.ADD, [FLAGGED])
    await acct.append("INBOX", msg(9), [ANSWERED, "$Label"])
    got = await acct.list_uids_flags(inbox.id)
    metas = await acct.list_messages(inbox.id)
    assert got.uids.typecode in ("I", "L") and got.modseqs.typecode == "Q"
    assert list(got.uids) == [m.uid for m in metas] == [1, 3, 4, 5, 6, 7]
    assert got.flags == [m.flags for m in metas]
    assert list(got.modseqs) == [m.modseq for m in metas]
    assert got.flags[1] == {FLAGGED} and got.flags[3] == {"$Label"}
    assert got.flags[4] == {SEEN} and got.flags[5] == {ANSWERED, "$Label"}
    uids, flags, _modseqs = got  # a plain tuple too
    uids.append(99)  # callers own their copy
    flags.clear()
    again = await acct.list_uids_flags(inbox.id)
    assert list(again.uids) == [1, 3, 4, 5, 6, 7] and len(again.flags) == 6
    with pytest.raises(MailboxNotFound):
        await acct.list_uids_flags(99_999)


# ---- flags, MODSEQ -----------------------------------------------------------------------------


async def test_set_flags_ops_and_modseq(store: MailStore) -> None:
    acct = await account(store)
    for i in range(4):
        r = await acct.append("INBOX", msg(i))
    box = r.mailbox_id
    start = (await acct.get_mailbox("INBOX")).highestmodseq
    changed, failed = await acct.set_flags(box, [1, 2, 99], FlagOp.ADD, [SEEN, "work"])
    assert failed == [] and [m.uid for m in changed] == [1, 2]
    assert all(m.flags == {SEEN, "work"} and m.modseq > start for m in changed)
    mod1 = changed[0].modseq
    assert (await acct.get_mailbox("INBOX")).highestmodseq == mod1
    # no change -> no new MODSEQ
    changed, _ = await acct.set_flags(box, [1], FlagOp.ADD, [SEEN])
    assert changed == []
    assert (await acct.get_mailbox("INBOX")).highestmodseq == mod1
    changed, _ = await acct.set_flags(box, [1, 2], FlagOp.REMOVE, ["work"])
    assert [m.flags for m in changed] == [{SEEN}, {SEEN}]
    mod2 = changed[0].modseq
    assert mod2 > mod1
    changed, _ = await acct.set_flags(box, [2], FlagOp.REPLACE, [ANSWERED])
    assert changed[0].flags == {ANSWERED}
    metas = {m.uid: m for m in await acct.list_messages(box)}
    assert (
        metas[1].flags == {SEEN} and metas[2].flags == {ANSWERED} and metas[3].flags == frozenset()
    )
    since = await acct.changed_since(box, mod1)
    assert [m.uid for m in since] == [1, 2]
    assert await acct.changed_since(box, changed[0].modseq) == []


async def test_unchangedsince(store: MailStore) -> None:
    """RFC 7162 3.1.3: messages modified after UNCHANGEDSINCE are not stored and are reported."""
    acct = await account(store)
    for i in range(3):
        r = await acct.append("INBOX", msg(i))
    box = r.mailbox_id
    base = (await acct.get_mailbox("INBOX")).highestmodseq
    await acct.set_flags(box, [2], FlagOp.ADD, [FLAGGED])
    changed, failed = await acct.set_flags(box, [1, 2, 3], FlagOp.ADD, [SEEN], unchangedsince=base)
    assert [m.uid for m in changed] == [1, 3]
    assert failed == [2]
    assert {m.uid: m.flags for m in await acct.list_messages(box)}[2] == {FLAGGED}


# ---- expunge, delete -----------------------------------------------------------------------------


async def test_expunge_only_deleted_and_uids_not_reused(store: MailStore) -> None:
    acct = await account(store)
    for i in range(5):
        r = await acct.append("INBOX", msg(i))
    box = r.mailbox_id
    await acct.set_flags(box, [2, 3, 5], FlagOp.ADD, [DELETED])
    assert await acct.expunge(box, [3, 4, 5]) == [3, 5]
    assert [m.uid for m in await acct.list_messages(box)] == [1, 2, 4]
    assert await acct.expunge(box) == [2]
    assert await acct.expunge(box) == []
    assert await acct.delete_messages(box, [1, 42]) == [1]
    assert [m.uid for m in await acct.list_messages(box)] == [4]
    with pytest.raises(KeyError):
        await acct.read_message(box, 5)
    r = await acct.append("INBOX", msg(9))
    assert r.uid == 6
    counts = await acct.counts(box)
    assert counts.messages == 2 and counts.deleted == 0


# ---- copy, move --------------------------------------------------------------------------------


async def test_copy_and_move_pairs(store: MailStore) -> None:
    acct = await account(store)
    for i in range(4):
        r = await acct.append("INBOX", msg(i), [SEEN] if i == 1 else [], internaldate=1000.0 + i)
    box = r.mailbox_id
    archive = await acct.get_mailbox("Archive")
    await acct.append("Archive", msg(100))
    res = await acct.copy(box, [4, 2, 77], "Archive")
    assert res.uidvalidity == archive.uidvalidity
    assert res.pairs == ((2, 2), (4, 3))
    metas = {m.uid: m for m in await acct.list_messages(archive.id)}
    assert metas[2].flags == {SEEN} and metas[2].internaldate == 1001.0
    assert await acct.read_message(archive.id, 3) == msg(3)
    assert len(await acct.list_messages(box)) == 4
    res = await acct.move(box, [1, 2], "Archive")
    assert res.pairs == ((1, 4), (2, 5))
    assert [m.uid for m in await acct.list_messages(box)] == [3, 4]
    assert await acct.read_message(archive.id, 5) == msg(1)
    with pytest.raises(MailboxNotFound):
        await acct.move(box, [3], "Nowhere")
    assert [m.uid for m in await acct.list_messages(box)] == [3, 4]
    res = await acct.copy(box, [3], "INBOX")  # into the same mailbox
    assert res.pairs == ((3, 5),)
    assert (await acct.copy(box, [], "Archive")).pairs == ()


# ---- mailboxes ---------------------------------------------------------------------------------


async def test_create_hierarchy_and_exists(store: MailStore) -> None:
    acct = await account(store)
    info = await acct.create_mailbox("Work/Projects/2026")
    assert info.name == "Work/Projects/2026" and info.selectable
    names = {b.name for b in await acct.list_mailboxes()}
    assert {"Work", "Work/Projects", "Work/Projects/2026"} <= names
    with pytest.raises(MailboxExists):
        await acct.create_mailbox("Work/Projects")
    with pytest.raises(MailboxExists):
        await acct.create_mailbox("inbox")
    sub = await acct.create_mailbox("inbox/Child")
    assert sub.name == "INBOX/Child"
    uni = await acct.create_mailbox("Entwürfe/Ünïcødé 日本 a.b & c")
    got = await acct.get_mailbox("Entwürfe/Ünïcødé 日本 a.b & c")
    assert got.id == uni.id
    await acct.append("Entwürfe/Ünïcødé 日本 a.b & c", msg())
    with pytest.raises(MailboxNotFound):
        await acct.get_mailbox("Nope")


async def test_delete_mailbox_with_inferiors(store: MailStore) -> None:
    """RFC 3501 6.3.4: a mailbox with inferiors loses its messages and becomes \\Noselect."""
    acct = await account(store)
    await acct.create_mailbox("A/B")
    await acct.append("A", msg(1))
    a = await acct.get_mailbox("A")
    await acct.delete_mailbox("A")
    a2 = await acct.get_mailbox("A")
    assert not a2.selectable and a2.id == a.id
    with pytest.raises(MailboxNotFound):
        await acct.append("A", msg())
    with pytest.raises(MailboxNotEmpty):
        await acct.delete_mailbox("A")
    await acct.delete_mailbox("A/B")
    names = {b.name for b in await acct.list_mailboxes()}
    assert "A/B" not in names and "A" not in names  # the empty placeholder goes with its last child
    with pytest.raises(StoreError):
        await acct.delete_mailbox("INBOX")
    with pytest.raises(MailboxNotFound):
        await acct.delete_mailbox("A")


async def test_recreated_mailbox_gets_new_uidvalidity(store: MailStore) -> None:
    acct = await account(store)
    first = await acct.create_mailbox("Temp")
    await acct.delete_mailbox("Temp")
    second = await acct.create_mailbox("Temp")
    assert second.uidvalidity != first.uidvalidity


async def test_rename_moves_inferiors(store: MailStore) -> None:
    acct = await account(store)
    await acct.create_mailbox("Old/Sub")
    r = await acct.append("Old/Sub", msg(5))
    old = await acct.get_mailbox("Old")
    await acct.rename_mailbox("Old", "New/Place")
    names = {b.name for b in await acct.list_mailboxes()}
    assert {"New", "New/Place", "New/Place/Sub"} <= names
    assert "Old" not in names and "Old/Sub" not in names
    sub = await acct.get_mailbox("New/Place/Sub")
    assert sub.id == r.mailbox_id and sub.uidvalidity == r.uidvalidity
    assert (await acct.get_mailbox("New/Place")).id == old.id
    assert await acct.read_message(sub.id, r.uid) == msg(5)
    with pytest.raises(MailboxExists):
        await acct.rename_mailbox("Sent", "Drafts")
    with pytest.raises(MailboxNotFound):
        await acct.rename_mailbox("Ghost", "Other")
    with pytest.raises(StoreError):
        await acct.rename_mailbox("New", "New/Place/Sub/Deeper")
    await acct.rename_mailbox("Sent", "Sent Items")
    assert (await acct.get_mailbox("Sent Items")).special_use == "\\Sent"


async def test_rename_inbox(store: MailStore) -> None:
    """RFC 3501 6.3.5: renaming INBOX moves its messages to the new name; INBOX stays, empty."""
    acct = await account(store)
    await acct.create_mailbox("INBOX/Kid")
    for i in range(3):
        r = await acct.append("INBOX", msg(i), [SEEN] if i == 0 else [])
    inbox = await acct.get_mailbox("INBOX")
    await acct.rename_mailbox("INBOX", "Old Mail")
    moved = await acct.get_mailbox("Old Mail")
    metas = await acct.list_messages(moved.id)
    assert len(metas) == 3 and metas[0].flags == {SEEN}
    assert [await acct.read_message(moved.id, m.uid) for m in metas] == [msg(0), msg(1), msg(2)]
    inbox2 = await acct.get_mailbox("INBOX")
    assert inbox2.id == inbox.id and await acct.list_messages(inbox.id) == []
    assert (await acct.get_mailbox("INBOX/Kid")).selectable
    r2 = await acct.append("INBOX", msg(9))
    assert r2.uid > r.uid  # UIDs are not reused in INBOX
    with pytest.raises(MailboxExists):
        await acct.rename_mailbox("Sent", "inbox")


async def test_subscriptions(store: MailStore) -> None:
    acct = await account(store)
    await acct.create_mailbox("Lists")
    await acct.set_subscribed("Lists", True)
    await acct.set_subscribed("Gone", True)
    subs = await acct.subscriptions()
    assert "Lists" in subs and "Gone" in subs
    assert (await acct.get_mailbox("Lists")).subscribed
    await acct.set_subscribed("Lists", False)
    assert "Lists" not in await acct.subscriptions()
    assert not (await acct.get_mailbox("Lists")).subscribed


BAD_NAMES = [
    "",
    "../bob",
    "/etc/passwd",
    "a//b",
    "a/",
    "a/../b",
    "..",
    ".",
    "a\x00b",
    "a\nb",
    "tab\there",
    "del\x7f",
    "x" * 1001,
    "a/" + "é" * 200,  # one level > 255 octets on disk
    "/".join(["y" * 200] * 6),  # > 1000 octets in total
    "wild*",
    "wild%",
]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda s: repr(s[:20]))
async def test_name_attacks_are_refused(store: MailStore, bad: str) -> None:
    acct = await account(store)
    with pytest.raises(InvalidName):
        await acct.create_mailbox(bad)
    with pytest.raises(InvalidName):
        await acct.rename_mailbox("Sent", bad)
    with pytest.raises(InvalidName):
        await acct.append(bad, msg())


async def test_long_but_valid_names(store: MailStore) -> None:
    acct = await account(store)
    deep = "/".join([f"level{i}" + "z" * 120 for i in range(7)])  # ~900 octets, legal
    info = await acct.create_mailbox(deep)
    r = await acct.append(deep, msg(3))
    assert r.mailbox_id == info.id
    assert await acct.read_message(info.id, r.uid) == msg(3)
    await acct.rename_mailbox(deep.split("/")[0], "short")
    renamed = "short/" + deep.split("/", 1)[1]
    assert (await acct.get_mailbox(renamed)).id == info.id
    assert await acct.read_message(info.id, r.uid) == msg(3)


# ---- change feed, maildrop lock ---------------------------------------------------------------


async def test_change_feed_events(store: MailStore) -> None:
    acct = await account(store)
    other = await store.account(ALICE)
    sub = other.subscribe()
    try:
        assert await sub.next(timeout=0.01) is None
        r = await acct.append("INBOX", msg())
        ev = await sub.next(timeout=5)
        assert ev == MessageAdded(ALICE, r.mailbox_id, r.uid, r.modseq)
        changed, _ = await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.ADD, [DELETED])
        ev = await sub.next(timeout=5)
        assert ev == FlagsChanged(
            ALICE, r.mailbox_id, r.uid, frozenset({DELETED}), changed[0].modseq
        )
        await acct.expunge(r.mailbox_id)
        ev = await sub.next(timeout=5)
        assert isinstance(ev, MessagesExpunged) and ev.uids == (r.uid,)
        assert ev.modseq > changed[0].modseq
        info = await acct.create_mailbox("Fresh")
        ev = await sub.next(timeout=5)
        assert ev == MailboxChanged(ALICE, info.id, "created", "Fresh")
        # another account's events are not delivered
        bob = await account(store, BOB)
        await bob.append("INBOX", msg())
        await acct.append("INBOX", msg())
        ev = await sub.next(timeout=5)
        assert isinstance(ev, MessageAdded) and ev.account == ALICE
        assert sub.pending() == []
    finally:
        sub.close()


async def test_subscription_iteration_and_close(store: MailStore) -> None:
    acct = await account(store)
    sub = acct.subscribe()
    got: list[object] = []

    async def consume() -> None:
        async for ev in sub:
            got.append(ev)
            if len(got) == 3:
                sub.close()

    task = asyncio.create_task(consume())
    for i in range(3):
        await acct.append("INBOX", msg(i))
    await asyncio.wait_for(task, 5)
    assert [type(e) for e in got] == [MessageAdded] * 3


async def test_maildrop_lock(store: MailStore) -> None:
    acct = await account(store)
    again = await store.account(ALICE)
    bob = await account(store, BOB)
    lock = acct.try_lock_maildrop()
    assert lock is not None
    assert again.try_lock_maildrop() is None
    other = bob.try_lock_maildrop()
    assert other is not None
    lock.release()
    lock.release()  # idempotent
    lock2 = again.try_lock_maildrop()
    assert lock2 is not None
    lock2.release()
    other.release()


async def test_recent_claims_are_shared_and_kept(store: MailStore) -> None:
    """RFC 3501 2.3.2: each message is \\Recent to exactly one session; the first session that
    meets a mailbox gets everything nobody was handed yet."""
    alice = await account(store, ALICE)
    info = await alice.get_mailbox("INBOX")
    assert await alice.recent_claimed(info.id) == 0
    for i in range(3):
        await alice.append("INBOX", msg(i))
    assert await alice.claim_recent(info.id, 3) == 0  # the first session: UIDs 1-3 are recent
    assert await alice.claim_recent(info.id, 3) == 3  # the next one: none
    await alice.append("INBOX", msg(9))
    assert await alice.claim_recent(info.id, 4) == 3
    assert await alice.claim_recent(info.id, 2) == 4  # never goes back
    assert await alice.recent_claimed(info.id) == 4
