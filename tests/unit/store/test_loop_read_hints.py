"""Reads the event loop skips on what this process itself just did (bench/imap.py's logged-in
loop: SELECT, FETCH, STORE +\\Deleted, APPEND, EXPUNGE): an EXPUNGE after this process set
\\Deleted goes straight to the writer, and the \\Recent claim of UIDs this process appended a
moment ago needs no read of the index. Each answers what the read would have, and a stale hint
only costs the work the read would have saved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from carteiro.store import sqlite_account
from carteiro.store.api import FlagOp
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, make_message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data", search_indexer=False)
    await s.create_account(ACCOUNT)
    yield s
    await s.close()


def count_reads(store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads = [0]
    real_quick, real_read = store.read_quick, store.read

    async def quick(*a: Any, **k: Any) -> Any:
        reads[0] += 1
        return await real_quick(*a, **k)

    async def read(*a: Any, **k: Any) -> Any:
        reads[0] += 1
        return await real_read(*a, **k)

    monkeypatch.setattr(store, "read_quick", quick)
    monkeypatch.setattr(store, "read", read)
    return reads


async def test_expunge_after_our_own_deleted_flag_skips_the_read(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await store.account(ACCOUNT)
    r1 = await acct.append("INBOX", make_message("a", 300))
    r2 = await acct.append("INBOX", make_message("b", 300))
    await acct.open_mailbox("INBOX")
    await acct.set_flags(r1.mailbox_id, [r2.uid], FlagOp.ADD, ["\\Deleted"])
    reads = count_reads(store, monkeypatch)
    assert await acct.expunge(r1.mailbox_id) == [r2.uid]
    assert reads[0] == 0
    # the hint is spent: the next EXPUNGE reads (and finds nothing, with no write)
    assert await acct.expunge(r1.mailbox_id) == []
    assert reads[0] == 1
    assert [m.uid for m in await acct.list_messages(r1.mailbox_id)] == [r1.uid]


async def test_a_stale_deleted_hint_removes_nothing(
    store: SqliteMaildirStore, tmp_path: Path
) -> None:
    acct = await store.account(ACCOUNT)
    r1 = await acct.append("INBOX", make_message("a", 300))
    await acct.set_flags(r1.mailbox_id, [r1.uid], FlagOp.ADD, ["\\Deleted"])
    other = SqliteMaildirStore(tmp_path / "data", search_indexer=False)  # another process
    try:
        theirs = await other.account(ACCOUNT)
        await theirs.set_flags(r1.mailbox_id, [r1.uid], FlagOp.REMOVE, ["\\Deleted"])
    finally:
        await other.close()
    assert await acct.expunge(r1.mailbox_id) == []
    assert [m.uid for m in await acct.list_messages(r1.mailbox_id)] == [r1.uid]


async def test_claiming_what_we_just_appended_needs_no_read(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await store.account(ACCOUNT)
    r1 = await acct.append("INBOX", make_message("a", 300))
    assert await acct.claim_recent(r1.mailbox_id, r1.uid) == 0
    r2 = await acct.append("INBOX", make_message("b", 300))
    r3 = await acct.append("INBOX", make_message("c", 300))
    reads = count_reads(store, monkeypatch)
    assert await acct.claim_recent(r1.mailbox_id, r3.uid) == r1.uid
    assert reads[0] == 0
    assert r2.uid == r1.uid + 1
    # claimed: a second claim of the same UIDs gives nothing (and reads: nothing is new)
    assert await acct.claim_recent(r1.mailbox_id, r3.uid) == r3.uid
    assert reads[0] == 1
    # appended here, but longer ago than the window: claimed through the index
    monkeypatch.setattr(sqlite_account, "FRESH_CLAIM", 0.0)
    r4 = await acct.append("INBOX", make_message("d", 300))
    assert await acct.claim_recent(r1.mailbox_id, r4.uid) == r3.uid
    assert reads[0] == 2


async def test_claims_of_another_process_are_still_read(
    store: SqliteMaildirStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UIDs appended by another process are claimed through the index as before: another
    process's claims stand, even with a UID of ours above them."""
    acct = await store.account(ACCOUNT)
    mine = await acct.append("INBOX", make_message("a", 300))
    other = SqliteMaildirStore(tmp_path / "data", search_indexer=False)
    try:
        theirs = await other.account(ACCOUNT)
        r = await theirs.append("INBOX", make_message("b", 300))
        assert await theirs.claim_recent(r.mailbox_id, r.uid) == 0
        await other.flush_files()
    finally:
        await other.close()  # (its claim is written by then)
    reads = count_reads(store, monkeypatch)
    assert await acct.claim_recent(mine.mailbox_id, r.uid) == r.uid  # all theirs already
    assert reads[0] == 1
    late = await acct.append("INBOX", make_message("c", 300))
    assert await acct.claim_recent(mine.mailbox_id, late.uid) == r.uid
    assert reads[0] == 2
