"""Issue 10: the file work that follows a COMMIT works out every path from the index when it acts,
so no rename, copy or move in between can lose an acknowledged message, and a crash mid-rename
is rolled back to what the index says."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carteiro.store import maildir
from carteiro.store.api import StoreError
from carteiro.store.maintenance import check
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, hold_flusher, make_message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data")
    await s.create_account(ACCOUNT)
    try:
        yield s
    finally:
        await s.close()


async def _all_read_back(store: SqliteMaildirStore, name: str, bodies: list[bytes]) -> None:
    acct = await store.account(ACCOUNT)
    info, metas = await acct.open_mailbox(name)
    assert len(metas) == len(bodies)
    got = [await acct.read_message(info.id, m.uid) for m in metas]
    assert got == bodies


async def test_rename_before_the_flush_loses_nothing(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = hold_flusher(monkeypatch)
    acct = await store.account(ACCOUNT)
    await acct.create_mailbox("A/child")
    bodies = [make_message(str(i), 300) for i in range(40)]
    for i, b in enumerate(bodies):
        await acct.append("A" if i % 2 == 0 else "A/child", b)
    await acct.rename_mailbox("A", "B")  # the parent and its child move before any file exists
    await acct.create_mailbox("A")  # a new A at the old place must not receive the files
    gate.set()
    await store.flush_files()
    await _all_read_back(store, "B", bodies[0::2])
    await _all_read_back(store, "B/child", bodies[1::2])
    assert await acct.open_mailbox("A") is not None
    home = store.data_dir / "mail" / "example.org" / "alice" / "Maildir"
    assert list((home / ".A" / "cur").iterdir()) == []
    assert len(list((home / ".B" / "cur").iterdir())) == 20
    assert len(list((home / ".B.child" / "cur").iterdir())) == 20
    report = check(store.data_dir)
    assert report.ok, report


async def test_copy_and_move_targets_renamed_before_the_flush(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = hold_flusher(monkeypatch)
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    bodies = [make_message(str(i), 300) for i in range(6)]
    for b in bodies:
        await acct.append("INBOX", b)
    await acct.create_mailbox("C")
    await acct.create_mailbox("M")
    await acct.copy(inbox.id, [1, 2, 3], "C")
    await acct.move(inbox.id, [4, 5, 6], "M")
    await acct.rename_mailbox("C", "C2")
    await acct.rename_mailbox("M", "M2")
    gate.set()
    await store.flush_files()
    await _all_read_back(store, "C2", bodies[:3])
    await _all_read_back(store, "M2", bodies[3:])
    await _all_read_back(store, "INBOX", bodies[:3])
    assert check(store.data_dir).ok


async def test_many_appends_then_an_immediate_rename(store: SqliteMaildirStore) -> None:
    """The reported case: ~200 acknowledged small appends, then RENAME at once (no hold)."""
    acct = await store.account(ACCOUNT)
    await acct.create_mailbox("Box")
    bodies = [make_message(str(i), 200) for i in range(200)]
    for b in bodies:
        await acct.append("Box", b)
    await acct.rename_mailbox("Box", "Box2")
    await store.flush_files()
    await _all_read_back(store, "Box2", bodies)
    assert check(store.data_dir).ok


def _kill_mid_rename(data: str) -> None:
    """Child: rename Work to Done and die after the folder moved, before COMMIT."""
    import asyncio

    def hook(point: str) -> None:
        if point == "dirs_synced" and os.environ.get("ARMED") == "1":
            os._exit(9)

    async def main() -> None:
        s = SqliteMaildirStore(
            data, fault_hook=hook, search_indexer=False
        )  # its COMMITs would hit the hook
        acct = await s.account(ACCOUNT)
        os.environ["ARMED"] = "1"
        await acct.rename_mailbox("Work", "Done")

    asyncio.run(main())


@pytest.mark.parametrize("then", ["rename", "create", "nothing"])
async def test_kill_9_during_rename_then_retry_hides_nothing(tmp_path: Path, then: str) -> None:
    import multiprocessing

    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    await acct.create_mailbox("Work")
    bodies = [make_message(str(i), 100_000 if i % 2 else 300) for i in range(6)]
    for b in bodies:
        await acct.append("Work", b)
    await s.flush_files()
    await s.close()
    proc = multiprocessing.get_context("spawn").Process(target=_kill_mid_rename, args=(str(data),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        if then == "rename":
            await acct.rename_mailbox("Work", "Done")
            name = "Done"
        elif then == "create":
            await acct.create_mailbox("Done")
            name = "Work"
        else:
            name = "Work"
        await _all_read_back(s, name, bodies)
        names = {m.name for m in await acct.list_mailboxes()}
        assert name in names
        lost = data / "lost+found"
        assert not lost.exists() or list(lost.iterdir()) == []
        meta = maildir.read_meta(
            s.folder("example.org/alice", ".Done" if name == "Done" else ".Work")
        )
        assert meta is not None and meta["name"] == name
    finally:
        await s.close()
    assert check(data).ok


async def test_evict_refuses_a_folder_a_mailbox_still_uses(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    await acct.create_mailbox("Work")
    await acct.append("Work", make_message("x", 300))
    # simulate an index whose row points at another name's folder (what the old recovery did)
    conn = sqlite3.connect(store.index_path)
    conn.execute("UPDATE mailboxes SET dir = '.Done' WHERE name = 'Work'")
    conn.commit()
    conn.close()
    home = store.data_dir / "mail" / "example.org" / "alice" / "Maildir"
    os.rename(home / ".Work", home / ".Done")
    with pytest.raises(StoreError, match="belongs to mailbox"):
        await acct.create_mailbox("Done")
    assert (home / ".Done").exists()


# ---- the writer's edges (issue 10 point 4) ---------------------------------------------------


async def test_cancelled_while_staging_leaks_nothing(store: SqliteMaildirStore) -> None:
    import asyncio

    acct = await store.account(ACCOUNT)
    big = make_message("big", 600_000)  # staged in a thread
    for _ in range(5):
        task = asyncio.ensure_future(acct.append("INBOX", big))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.5)
    await store.flush_files()
    assert store._staged_fds == 0
    assert [e for e in os.listdir(store.tmp_dir) if not e.startswith("deleted-")] == []


async def test_append_racing_close_is_answered(tmp_path: Path) -> None:
    import asyncio

    s = SqliteMaildirStore(tmp_path / "data")
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    appends = [
        asyncio.ensure_future(acct.append("INBOX", make_message(str(i), 600_000))) for i in range(4)
    ]
    await asyncio.sleep(0)
    await s.close()
    done = await asyncio.wait_for(asyncio.gather(*appends, return_exceptions=True), 10)
    for r in done:
        assert not isinstance(r, BaseException) or isinstance(r, StoreError), r
    with pytest.raises(StoreError):
        await asyncio.wait_for(acct.append("INBOX", make_message("late", 300)), 5)


async def test_a_failure_after_commit_still_answers_the_caller(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("publish failed")

    monkeypatch.setattr(store.hub, "publish", boom)
    acct = await store.account(ACCOUNT)
    body = make_message("x", 300)
    r = await asyncio.wait_for(acct.append("INBOX", body), 5)
    assert await acct.read_message(r.mailbox_id, r.uid) == body


async def test_reindex_on_a_running_store_serves_the_new_sizes(store: SqliteMaildirStore) -> None:
    import asyncio

    from carteiro.store.maintenance import reindex

    acct = await store.account(ACCOUNT)
    for i in range(3):
        await acct.append("INBOX", make_message(str(i), 400))
    await store.flush_files()
    await acct.open_mailbox("INBOX")  # the listing is cached now
    first = sorted((store.data_dir / "mail").rglob("Maildir/cur/*"))[0]
    first.write_bytes(b"Subject: cut\r\n\r\nshort\r\n")  # edited by hand
    await asyncio.get_running_loop().run_in_executor(None, reindex, store.data_dir)
    _info, after = await acct.open_mailbox("INBOX")
    sizes = {m.size for m in after}
    assert len(b"Subject: cut\r\n\r\nshort\r\n") in sizes
    # RFC822.SIZE: the size on the wire (CRLF), whether the file holds the LF form or not
    assert [m.size for m in after] == [len(await acct.read_message(_info.id, m.uid)) for m in after]


def _kill_after_expunge_commit(data: str) -> None:
    """Child: expunge everything in INBOX and die right after the COMMIT, before the file
    worker removes a file."""
    import asyncio

    armed = False

    def hook(point: str) -> None:
        if point == "committed" and armed:
            os._exit(9)

    async def main() -> None:
        nonlocal armed
        # no search indexer: its own COMMIT (of what the parent left unindexed) must not be
        # the one the hook dies at
        s = SqliteMaildirStore(data, fault_hook=hook, search_indexer=False)
        acct = await s.account(ACCOUNT)
        info = await acct.get_mailbox("INBOX")
        uids = [m.uid for m in await acct.list_messages(info.id)]
        armed = True
        await acct.delete_messages(info.id, uids)

    asyncio.run(main())


async def test_kill_9_between_an_expunge_commit_and_its_unlinks(tmp_path: Path) -> None:
    """The journal (pending_unlink) is replayed: no expunged message comes back, not even
    through reindex."""
    import multiprocessing

    from carteiro.store.maintenance import reindex

    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    await acct.create_mailbox("Keep")
    for i in range(5):
        await acct.append("INBOX", make_message(str(i), 300 if i % 2 else 90_000))
    kept = make_message("kept", 300)
    await acct.append("Keep", kept)
    await s.flush_files()
    await s.close()
    proc = multiprocessing.get_context("spawn").Process(
        target=_kill_after_expunge_commit, args=(str(data),)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    home = data / "mail" / "example.org" / "alice" / "Maildir"
    assert len(os.listdir(home / "cur")) == 5  # the unlinks never happened
    s = SqliteMaildirStore(data)  # recovery replays them
    await s.close()
    assert os.listdir(home / "cur") == []
    assert check(data).ok
    reindex(data)
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        info, metas = await acct.open_mailbox("INBOX")
        assert metas == []
        info, metas = await acct.open_mailbox("Keep")
        assert [await acct.read_message(info.id, m.uid) for m in metas] == [kept]
    finally:
        await s.close()


async def test_expunge_history_is_bounded_and_old_views_compare_everything(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carteiro.mail.imap_view import MailboxView
    from carteiro.store import sqlite_maildir
    from carteiro.store.api import MessagesExpunged

    monkeypatch.setattr(sqlite_maildir, "EXPUNGED_KEEP", 10)
    acct = await store.account(ACCOUNT)
    for i in range(40):
        await acct.append("INBOX", make_message(str(i), 200))
    view = await MailboxView.open(acct, "INBOX", False)
    old = view.modseq
    info = await acct.get_mailbox("INBOX")
    for uid in range(1, 31):  # one expunge (one MODSEQ) each
        await acct.delete_messages(info.id, [uid])
    await store.write(lambda tx: store._housekeeping(tx.conn))
    delta = await acct.changes_since(info.id, old)
    assert not delta.complete  # the history no longer reaches back that far
    recent = await acct.changes_since(info.id, delta.highestmodseq - 3)
    assert recent.complete and len(recent.expunged) == 3
    # a view that last looked before the horizon still ends up right
    view.feed([MessagesExpunged(ACCOUNT, info.id, (30,), delta.highestmodseq)])
    upd = await view.sync(allow_expunge=True)
    assert len(upd.expunged) == 30 and list(view.uids) == list(range(31, 41))


async def test_delivery_ids_are_forgotten_after_their_days(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as _time

    from carteiro.store.api import Delivery

    acct = await store.account(ACCOUNT)
    first = await store.deliver([Delivery(ACCOUNT)], make_message("a", 200), "same-id")
    assert await store.deliver([Delivery(ACCOUNT)], make_message("a", 200), "same-id") == first
    later = _time.time() + 8 * 86400  # kept at least 5 days, at most 7 (whole days)
    monkeypatch.setattr(_time, "time", lambda: later)
    await store.write(lambda tx: store._housekeeping(tx.conn))
    again = await store.deliver([Delivery(ACCOUNT)], make_message("a", 200), "same-id")
    assert again[0].uid != first[0].uid
    info = await acct.get_mailbox("INBOX")
    assert len(await acct.list_messages(info.id)) == 2


async def test_recent_claims_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = SqliteMaildirStore(data)
    await s.create_account(ACCOUNT)
    acct = await s.account(ACCOUNT)
    info = await acct.get_mailbox("INBOX")
    await acct.append("INBOX", make_message("a", 200))
    assert await acct.claim_recent(info.id, 1) == 0
    await s.close()
    s = SqliteMaildirStore(data)
    try:
        acct = await s.account(ACCOUNT)
        assert await acct.claim_recent(info.id, 1) == 1  # not recent again after a restart
    finally:
        await s.close()


async def test_writes_whose_loss_costs_nothing_do_not_wait_for_the_device(
    store: SqliteMaildirStore,
) -> None:
    """A \\Recent claim commits without an fsync of its own; the next durable commit makes it
    durable too (and an append still waits for its fsync)."""
    acct = await store.account(ACCOUNT)
    r = await acct.append("INBOX", make_message("a", 200))
    before = store.fsync_calls
    assert await acct.claim_recent(r.mailbox_id, r.uid) == 0
    assert store.fsync_calls == before
    await acct.append("INBOX", make_message("b", 200))
    assert store.fsync_calls == before + 1
    assert await acct.recent_claimed(r.mailbox_id) == r.uid
