"""Mail quotas (RFC 9208 STORAGE and MESSAGE) in both stores: defaults, per-account limits,
refusals on append, copy and delivery (all or none), MOVE within the account, the 90 % warning
state, and DELETED-STORAGE."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from carteiro.store.api import DELETED, Delivery, FlagOp, MailStore, OverQuota, QuotaLimits
from carteiro.store.memory import MemoryMailStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

A, B = "alice@example.test", "bob@example.test"
MSG = b"Subject: q\r\n\r\n" + b"x" * 984 + b"\r\n"  # 1,000 octets

Make = Callable[[QuotaLimits], "MailStore"]


@pytest.fixture(params=["memory", "sqlite_maildir"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    made: list[MailStore] = []

    def build(defaults: QuotaLimits) -> MailStore:
        s: MailStore
        if request.param == "memory":
            s = MemoryMailStore(quota=defaults)
        else:
            s = SqliteMaildirStore(tmp_path / f"d{len(made)}", quota=defaults, search_indexer=False)
        made.append(s)
        return s

    yield build
    for s in made:
        await s.close()


async def test_default_storage_limit_refuses_append_copy_and_delivery(make: Make) -> None:
    store = make(QuotaLimits(storage=3_500))
    for a in (A, B):
        await store.create_account(a)
    acct = await store.account(A)
    for _ in range(3):
        await acct.append("INBOX", MSG)
    q = await acct.quota()
    assert (q.storage, q.messages, q.storage_limit, q.message_limit) == (3000, 3, 3500, None)
    with pytest.raises(OverQuota):
        await acct.append("INBOX", MSG)
    inbox = await acct.get_mailbox("INBOX")
    with pytest.raises(OverQuota):
        await acct.copy(inbox.id, [1], "Archive")
    moved = await acct.move(inbox.id, [1], "Archive")  # same quota root: allowed
    assert len(moved.pairs) == 1
    # a delivery to both accounts is all or none: Bob gets nothing either
    with pytest.raises(OverQuota):
        await store.deliver([Delivery(A), Delivery(B)], MSG)
    bob = await store.account(B)
    assert (await bob.quota()).messages == 0
    await store.deliver([Delivery(B)], MSG)
    assert (await acct.quota()).storage == 3000


async def test_per_account_limits_over_the_default(make: Make) -> None:
    store = make(QuotaLimits(messages=2))
    await store.create_account(A)
    acct = await store.account(A)
    await acct.append("INBOX", MSG)
    await acct.set_quota(None, 0)  # 0: no limit for this account
    for _ in range(3):
        await acct.append("INBOX", MSG)
    await acct.set_quota(10_000, 5)
    q = await acct.quota()
    assert (q.storage_limit, q.message_limit, q.messages) == (10_000, 5, 4)
    await acct.append("INBOX", MSG)
    with pytest.raises(OverQuota):
        await acct.append("INBOX", MSG)
    await acct.set_quota(None, None)  # back to the default (2 messages): still refused
    with pytest.raises(OverQuota):
        await acct.append("INBOX", MSG)
    # deleting makes room
    inbox = await acct.get_mailbox("INBOX")
    await acct.delete_messages(inbox.id, [1, 2, 3, 4])
    await acct.append("INBOX", MSG)


async def test_warning_state_at_ninety_percent(make: Make) -> None:
    store = make(QuotaLimits())
    await store.create_account(A)
    acct = await store.account(A)
    assert await acct.quota_warning() is None  # no limit: nothing to say
    await acct.set_quota(None, 10)
    for _ in range(9):
        await acct.append("INBOX", MSG)
    assert await acct.quota_warning() is None  # 90 % is not above 90 %
    await acct.append("INBOX", MSG)
    q = await acct.quota_warning()
    assert q is not None and q.messages == 10
    assert await acct.quota_warning() is None  # said once
    inbox = await acct.get_mailbox("INBOX")
    await acct.delete_messages(inbox.id, [1, 2, 3])
    assert await acct.quota_warning() is None  # under again: reset
    for _ in range(3):
        await acct.append("INBOX", MSG)
    assert await acct.quota_warning() is not None  # and said again


async def test_deleted_storage(make: Make) -> None:
    store = make(QuotaLimits())
    await store.create_account(A)
    acct = await store.account(A)
    for _ in range(3):
        await acct.append("INBOX", MSG)
    inbox = await acct.get_mailbox("INBOX")
    await acct.set_flags(inbox.id, [1, 3], FlagOp.ADD, [DELETED])
    c = await acct.counts(inbox.id)
    assert (c.deleted, c.deleted_size, c.size) == (2, 2000, 3000)


async def test_a_limit_set_by_another_process_holds_at_the_next_delivery(tmp_path: Path) -> None:
    """The store keeps each account's limits in memory (no read per delivery); a limit set by
    another process (here: a second store on the same data dir, as `carteiro user quota` does)
    is enforced from the very next delivery, because the writer compares the limits the check
    used with those in force at COMMIT and has the check made again when they differ."""
    server = SqliteMaildirStore(tmp_path / "d", search_indexer=False)
    other = SqliteMaildirStore(tmp_path / "d", search_indexer=False)
    try:
        await server.create_account(A)
        for _ in range(2):
            await server.deliver([Delivery(A)], MSG)
        assert A in server.quota_seen  # no limit: remembered, nothing read per delivery
        await (await other.account(A)).set_quota(None, 2)
        with pytest.raises(OverQuota):
            await server.deliver([Delivery(A)], MSG)
        acct = await server.account(A)
        with pytest.raises(OverQuota):
            await acct.append("INBOX", MSG)
        assert (await acct.quota()).messages == 2
        await (await other.account(A)).set_quota(None, 0)  # no limit again
        await server.deliver([Delivery(A)], MSG)
        assert (await acct.quota()).messages == 3
    finally:
        await other.close()
        await server.close()


async def test_an_account_purged_and_made_again_is_checked_as_the_new_one(tmp_path: Path) -> None:
    """The limits the store remembers carry the account's id: an account purged and created
    again by another process (a new id, the same default limits) is checked against its own
    usage, not the old account's."""
    limits = QuotaLimits(messages=2)
    server = SqliteMaildirStore(tmp_path / "d", quota=limits, search_indexer=False)
    other = SqliteMaildirStore(tmp_path / "d", quota=limits, search_indexer=False)
    try:
        await server.create_account(A)
        await server.deliver([Delivery(A)], MSG)
        await other.delete_account(A, purge=True)
        await other.create_account(A)
        for _ in range(2):
            await other.deliver([Delivery(A)], MSG)
        with pytest.raises(OverQuota):
            await server.deliver([Delivery(A)], MSG)
        assert (await (await server.account(A)).quota()).messages == 2
    finally:
        await other.close()
        await server.close()
