"""RFC 3502 MULTIAPPEND in the store: append_many() commits every message or none, with ascending
UIDs; a kill -9 at each write step leaves all of them or none after recovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carteiro.store.api import MailboxNotFound, OverQuota
from carteiro.store.maintenance import check
from carteiro.store.memory import MemoryMailStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, is_whole, make_message

BODIES = [make_message(f"m{i}", 100_000 if i % 2 else 300) for i in range(4)]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_all_or_none(tmp_path: Path, kind: str) -> None:
    s = SqliteMaildirStore(tmp_path / "data") if kind == "sqlite" else MemoryMailStore()
    try:
        await s.create_account(ACCOUNT)
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        res = await acct.append_many(
            "INBOX", [(b, ["\\Seen"] if i == 0 else [], 1e9 + i) for i, b in enumerate(BODIES)]
        )
        uids = [r.uid for r in res]
        assert uids == sorted(uids) and len(set(uids)) == 4
        metas = {m.uid: m for m in await acct.list_messages(inbox.id)}
        assert "\\Seen" in metas[uids[0]].flags and metas[uids[1]].flags == frozenset()
        assert [metas[u].internaldate for u in uids] == [1e9 + i for i in range(4)]
        for u, b in zip(uids, BODIES, strict=True):
            assert await acct.read_message(inbox.id, u) == b
        ids = await acct.message_ids(inbox.id, uids)
        assert len({i.emailid for i in ids.values()}) == 4
        with pytest.raises(MailboxNotFound):
            await acct.append_many("Nonesuch", [(b, [], None) for b in BODIES])
        await acct.set_quota(0, 6)  # 4 stored: 2 more fit, 3 do not
        with pytest.raises(OverQuota):
            await acct.append_many("INBOX", [(b, [], None) for b in BODIES[:3]])
        assert len(await acct.list_messages(inbox.id)) == 4
    finally:
        await s.close()
    if kind == "sqlite":
        assert check(tmp_path / "data").ok
        assert not os.listdir(tmp_path / "data" / "tmp")  # no staged file left behind


def _kill_at(data: str, point: str, nth: int) -> None:
    """Child: a MULTIAPPEND of four messages, killed at the `nth` time `point` is reached."""
    import asyncio

    seen = 0

    def hook(p: str) -> None:
        nonlocal seen
        if p == point and os.environ.get("ARMED") == "1":
            seen += 1
            if seen == nth:
                os._exit(9)

    async def main() -> None:
        s = SqliteMaildirStore(data, fault_hook=hook, search_indexer=False)
        acct = await s.account(ACCOUNT)
        os.environ["ARMED"] = "1"
        await acct.append_many("INBOX", [(b, [], None) for b in BODIES])
        os._exit(0)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("point", "nth"),
    [
        ("staged", 1),
        ("staged", 4),
        ("multiappend_linked", 1),
        ("multiappend_linked", 3),
        ("linked", 1),
        ("dirs_synced", 1),
        ("committed", 1),
    ],
)
async def test_kill_9_at_each_step_leaves_all_or_none(tmp_path: Path, point: str, nth: int) -> None:
    import multiprocessing

    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    await s.close()
    proc = multiprocessing.get_context("spawn").Process(
        target=_kill_at, args=(str(data), point, nth)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        metas = await acct.list_messages(inbox.id)
        got = [await acct.read_message(inbox.id, m.uid) for m in metas]
        assert all(is_whole(g) for g in got)
        if point == "committed":  # (the child made its own random bodies: compare subjects)
            assert [g.split(b"\r\n")[1] for g in got] == [b"Subject: m%d" % i for i in range(4)]
        else:
            assert got == []
        await s.flush_files()
    finally:
        await s.close()
    report = check(data)
    assert report.ok, report
    # nothing of the dead writer is left to be adopted later as new mail
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        await acct.refresh(inbox.id)
        assert len(await acct.list_messages(inbox.id)) == (4 if point == "committed" else 0)
    finally:
        await s.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_replace_both_or_neither(tmp_path: Path, kind: str) -> None:
    from carteiro.store.api import MessageNotFound

    s = SqliteMaildirStore(tmp_path / "data") if kind == "sqlite" else MemoryMailStore()
    try:
        await s.create_account(ACCOUNT)
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        old = (await acct.append("INBOX", BODIES[0])).uid
        r = await acct.replace(inbox.id, old, "INBOX", (BODIES[1], ["\\Draft"], None))
        metas = await acct.list_messages(inbox.id)
        assert [m.uid for m in metas] == [r.uid] and r.uid > old
        assert await acct.read_message(inbox.id, r.uid) == BODIES[1]
        with pytest.raises(MessageNotFound):
            await acct.replace(inbox.id, old, "INBOX", (BODIES[2], [], None))
        with pytest.raises(MailboxNotFound):
            await acct.replace(inbox.id, r.uid, "Nonesuch", (BODIES[2], [], None))
        assert [m.uid for m in await acct.list_messages(inbox.id)] == [r.uid]
    finally:
        await s.close()
    if kind == "sqlite":
        assert check(tmp_path / "data").ok


def _kill_replace_at(data: str, point: str) -> None:
    import asyncio

    def hook(p: str) -> None:
        if p == point and os.environ.get("ARMED") == "1":
            os._exit(9)

    async def main() -> None:
        s = SqliteMaildirStore(data, fault_hook=hook, search_indexer=False)
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        os.environ["ARMED"] = "1"
        await acct.replace(inbox.id, 1, "INBOX", (make_message("new", 300), [], None))
        os._exit(0)

    asyncio.run(main())


@pytest.mark.parametrize(
    "point", ["staged", "multiappend_linked", "linked", "dirs_synced", "committed"]
)
async def test_kill_9_during_replace_leaves_old_or_new(tmp_path: Path, point: str) -> None:
    import multiprocessing

    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    await acct.append("INBOX", BODIES[1])  # UID 1, a file (not in the index's bodies)
    await s.flush_files()
    await s.close()
    proc = multiprocessing.get_context("spawn").Process(
        target=_kill_replace_at, args=(str(data), point)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        await s.flush_files()
        got = [await acct.read_message(inbox.id, m.uid) for m in await acct.list_messages(inbox.id)]
        if point == "committed":
            assert len(got) == 1 and b"Subject: new" in got[0] and is_whole(got[0])
        else:
            assert got == [BODIES[1]]
    finally:
        await s.close()
    assert check(data).ok


async def test_cancelled_while_staging_leaves_nothing(tmp_path: Path) -> None:
    import asyncio

    s = SqliteMaildirStore(tmp_path / "data")
    try:
        await s.create_account(ACCOUNT)
        acct = await s.account(ACCOUNT)
        big = [make_message(f"b{i}", 4_000_000) for i in range(6)]
        task = asyncio.create_task(acct.append_many("INBOX", [(b, [], None) for b in big]))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        inbox = await acct.get_mailbox("INBOX")
        assert await acct.list_messages(inbox.id) == []
    finally:
        # close() waits for the I/O thread to finish the file it was writing (under a loaded
        # disk that once took more than 10 s); everything staged goes when it is done
        await s.close()
    for _ in range(200):
        if not os.listdir(tmp_path / "data" / "tmp"):
            break
        await asyncio.sleep(0.05)
    assert os.listdir(tmp_path / "data" / "tmp") == []
