"""RFC 8474 OBJECTID and RFC 8514 save dates in the store: MAILBOXID stable across RENAME and
reindex, EMAILID kept by COPY and MOVE (and by reindex), SAVEDATE set at every save, and the
schema 1 -> 2 migration of an existing index (atomic: a kill at each of its steps)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from carteiro.store.index import INDEX_NAME, emailid_of_base
from carteiro.store.maintenance import check, reindex
from carteiro.store.memory import MemoryMailStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, die_opening, make_message


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_ids_across_copy_move_rename(tmp_path: Path, kind: str) -> None:
    s = SqliteMaildirStore(tmp_path / "data") if kind == "sqlite" else MemoryMailStore()
    try:
        await s.create_account(ACCOUNT)
        acct = await s.account(ACCOUNT)
        work = await acct.create_mailbox("Work")
        assert work.mailboxid and work.mailboxid[0].isalpha()
        inbox = await acct.get_mailbox("INBOX")
        assert inbox.mailboxid != work.mailboxid
        before = time.time()
        small = (await acct.append("INBOX", make_message("a", 300))).uid
        large = (await acct.append("INBOX", make_message("b", 100_000))).uid
        same = (await acct.append("INBOX", make_message("a", 300))).uid
        ids = await acct.message_ids(inbox.id)
        assert set(ids) == {small, large, same}
        assert len({i.emailid for i in ids.values()}) == 3  # one per appended message
        for i in ids.values():
            assert i.savedate is not None and before - 1 <= i.savedate <= time.time() + 1
        copied = await acct.copy(inbox.id, [small], "Work")
        moved = await acct.move(inbox.id, [large], "Work")
        wids = await acct.message_ids(work.id)
        assert wids[copied.pairs[0][1]].emailid == ids[small].emailid
        assert wids[moved.pairs[0][1]].emailid == ids[large].emailid
        assert (await acct.message_ids(inbox.id, [small, large, 999])).keys() == {small}
        await acct.rename_mailbox("Work", "Done")
        assert (await acct.get_mailbox("Done")).mailboxid == work.mailboxid
        assert (await acct.message_ids(work.id)) == wids
        # delivery to several mailboxes: one message, one EMAILID
        from carteiro.store.api import Delivery

        res = await s.deliver(
            [Delivery(ACCOUNT, "INBOX"), Delivery(ACCOUNT, "Done")], make_message("d", 300)
        )
        a = (await acct.message_ids(res[0].mailbox_id, [res[0].uid]))[res[0].uid]
        b = (await acct.message_ids(res[1].mailbox_id, [res[1].uid]))[res[1].uid]
        assert a.emailid == b.emailid
    finally:
        await s.close()


async def test_reindex_keeps_ids(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    work = await acct.create_mailbox("Work")
    inbox = await acct.get_mailbox("INBOX")
    uid = (await acct.append("INBOX", make_message("a", 300))).uid
    kept = (await acct.append("INBOX", make_message("k", 300))).uid
    moved = (await acct.move(inbox.id, [uid], "Work")).pairs[0][1]
    await s.flush_files()
    before_work = await acct.message_ids(work.id)
    before_inbox = await acct.message_ids(inbox.id)
    await s.close()

    reindex(data)  # the index readable: EMAILID and SAVEDATE kept from it
    s = SqliteMaildirStore(data)
    acct = await s.account(ACCOUNT)
    info = await acct.get_mailbox("Work")
    assert info.mailboxid == work.mailboxid
    assert await acct.message_ids(info.id) == before_work
    await s.close()

    os.unlink(data / INDEX_NAME)  # lost: rebuilt from the files alone at open
    for suffix in ("-wal", "-shm"):
        Path(f"{data / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        info = await acct.get_mailbox("Work")
        assert info.mailboxid == work.mailboxid  # the guid lives in the folder
        inbox2 = await acct.get_mailbox("INBOX")
        again = await acct.message_ids(inbox2.id)
        # an appended message's EMAILID comes from its file's unique name: the same again
        assert again[kept].emailid == before_inbox[kept].emailid
        assert again[kept].savedate is None  # not carried by the files: unknown (NIL)
        assert (await acct.message_ids(info.id))[moved].emailid  # a copy gets one of its own
    finally:
        await s.close()


def _make_schema_1(data: Path) -> dict[int, str]:
    """Turn the index back into schema 1 (no emailid/savedate columns, nor those added since);
    returns uid -> base."""
    conn = sqlite3.connect(data / INDEX_NAME)
    try:
        bases = dict(conn.execute("SELECT uid, base FROM messages").fetchall())
        conn.execute("ALTER TABLE messages DROP COLUMN emailid")
        conn.execute("ALTER TABLE messages DROP COLUMN savedate")
        # nor the columns of later schemas (their migrations add them after these)
        conn.execute("ALTER TABLE messages DROP COLUMN internaldate_tz")
        conn.execute("ALTER TABLE listings DROP COLUMN zones")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        conn.commit()
    finally:
        conn.close()
    return bases


@pytest.mark.parametrize("point", ["migrate_altered", "migrate_filled", None])
async def test_migration_from_schema_1(tmp_path: Path, point: str | None) -> None:

    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    bodies = [make_message(str(i), 100_000 if i % 2 else 300) for i in range(4)]
    for b in bodies:
        await acct.append("INBOX", b)
    await s.flush_files()
    await s.close()
    bases = _make_schema_1(data)
    if point is not None:
        die_opening(data, point)
        conn = sqlite3.connect(data / INDEX_NAME)
        cols = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
        conn.close()
        assert "emailid" not in cols  # rolled back whole
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        ids = await acct.message_ids(inbox.id)
        assert {u: i.emailid for u, i in ids.items()} == {
            u: emailid_of_base(b) for u, b in bases.items()
        }
        assert all(i.savedate is None for i in ids.values())
        for u, b in zip(sorted(ids), bodies, strict=True):
            assert await acct.read_message(inbox.id, u) == b
        new = (await acct.append("INBOX", make_message("n", 300))).uid
        assert (await acct.message_ids(inbox.id, [new]))[new].savedate is not None
    finally:
        await s.close()
    assert check(data).ok
    shutil.rmtree(data)
