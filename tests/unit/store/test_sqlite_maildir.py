"""What only the durable backend promises: Maildir files others can read, check/reindex, group
commit, crash safety (kill -9 and fault injection), several processes at once, and change
notifications across processes."""

from __future__ import annotations

import asyncio
import errno
import mailbox
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from carteiro.store import listing
from carteiro.store.api import (
    DELETED,
    FLAGGED,
    SEEN,
    FlagOp,
    MailboxNotFound,
    MessageAdded,
    MessageMeta,
    StoreError,
    UidFlags,
)
from carteiro.store.flusher import FLUSH_COUNT, INLINE_BODY_MAX
from carteiro.store.maintenance import check, reindex
from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.store.writer import Tx

from .workers import (
    ACCOUNT,
    append_forever,
    crash_at,
    deliver_one,
    hold_flusher,
    is_whole,
    make_message,
    mixed_work,
)

SPAWN = multiprocessing.get_context("spawn")


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data")
    await s.create_account(ACCOUNT)
    try:
        yield s
    finally:
        await s.close()


def maildir_path(store: SqliteMaildirStore) -> Path:
    return store.data_dir / "mail" / "example.org" / "alice" / "Maildir"


def run_child(target: Callable[..., None], *args: object, timeout: float = 60) -> int:
    proc = SPAWN.Process(target=target, args=args)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError("child did not finish")
    return proc.exitcode or 0


# ---- files on disk ----------------------------------------------------------------------------


async def test_readable_by_python_mailbox(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    r1 = await acct.append("INBOX", make_message("one"), [SEEN])
    await acct.append("INBOX", make_message("two"), [FLAGGED, "$Work"])
    await acct.create_mailbox("Work/Ünï.x")
    await acct.append("Work/Ünï.x", make_message("three"))
    await store.flush_files()  # small messages' files are written just after their COMMIT
    md = mailbox.Maildir(maildir_path(store), factory=None, create=False)
    subjects = sorted(str(m["Subject"]) for m in md)
    assert subjects == ["one", "two"]
    # LF line ends on disk, as Maildir readers expect (mutt shows no ^M); CRLF on the wire
    assert all(b"\r" not in md.get_bytes(k) for k in md.iterkeys())
    assert all(is_whole(md.get_bytes(k).replace(b"\n", b"\r\n")) for k in md.iterkeys())
    folders = md.list_folders()
    assert ".Work&AC4-" not in folders
    assert "Work.&ANw-n&AO8ALg-x" in folders  # Maildir++ ".Work.<modified UTF-7 with '.' escaped>"
    sub = md.get_folder("Work.&ANw-n&AO8ALg-x")
    assert [str(m["Subject"]) for m in sub] == ["three"]
    flags = {str(m["Subject"]): m.get_flags() for m in (md.get_message(k) for k in md.iterkeys())}
    assert flags["one"] == "S" and flags["two"] == "Fa"
    # flag changes reach the file names lazily (the index is the truth)
    await acct.set_flags(r1.mailbox_id, [r1.uid], FlagOp.ADD, [DELETED, "$Work"])

    def synced() -> bool:
        md2 = mailbox.Maildir(maildir_path(store), factory=None, create=False)
        return any(md2.get_message(k).get_flags() == "STa" for k in md2.iterkeys())

    await wait_until(synced)
    assert (await acct.read_message(r1.mailbox_id, r1.uid)).startswith(b"From:")
    assert check(store.data_dir).ok


async def test_message_file_renamed_by_a_maildir_client_is_still_found(
    store: SqliteMaildirStore,
) -> None:
    acct = await store.account(ACCOUNT)
    r = await acct.append("INBOX", make_message("x"))
    await store.flush_files()
    cur = maildir_path(store) / "cur"
    [name] = os.listdir(cur)
    os.rename(cur / name, cur / (name + "RS"))  # what mutt does when it marks a message read
    assert is_whole(await acct.read_message(r.mailbox_id, r.uid))
    await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.ADD, [DELETED])
    assert await acct.expunge(r.mailbox_id) == [r.uid]
    await store.flush_files()  # the file worker removes it just after the COMMIT
    assert os.listdir(cur) == []


async def test_group_commit_batches_concurrent_appends(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    before = store.batches
    results = await asyncio.gather(
        *(acct.append("INBOX", make_message(str(i), 300)) for i in range(60))
    )
    assert sorted(r.uid for r in results) == list(range(1, 61))
    assert store.batches - before < 60  # several appends shared an fsync round and a transaction


# ---- check and reindex ------------------------------------------------------------------------


async def test_check_finds_missing_orphan_and_truncated_files(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    for i in range(3):
        r = await acct.append("INBOX", make_message(str(i)))
    assert check(store.data_dir).ok
    await store.flush_files()  # else a missing file is one still to be written from the index
    cur = maildir_path(store) / "cur"
    names_ = sorted(os.listdir(cur))
    os.unlink(cur / names_[0])
    with open(cur / names_[1], "r+b") as f:
        f.truncate(10)
    (cur / "123.stray.host:2,").write_bytes(b"hello")
    report = check(store.data_dir)
    assert not report.ok
    assert len(report.missing_files) == 1 and report.missing_files[0][:2] == (ACCOUNT, "INBOX")
    assert len(report.size_mismatches) == 1
    assert report.orphan_files == ["mail/example.org/alice/Maildir/cur/123.stray.host:2,"]
    assert r.uid == 3


async def test_reindex_keeps_uids_flags_and_uidvalidity(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    await acct.create_mailbox("Lists/Python.org")
    for i in range(5):
        await acct.append(
            "INBOX", make_message(str(i)), [SEEN] if i % 2 else [], internaldate=1_600_000_000.0 + i
        )
    await acct.append("Lists/Python.org", make_message("l"), ["$Label"])
    inbox = await acct.get_mailbox("INBOX")
    await acct.set_flags(inbox.id, [5], FlagOp.ADD, [DELETED])
    await acct.expunge(inbox.id)
    await acct.set_flags(inbox.id, [1], FlagOp.ADD, [FLAGGED])
    await wait_until(
        lambda: any("F" in n.split(":2,")[1] for n in os.listdir(maildir_path(store) / "cur"))
    )
    before = {m.uid: m for m in await acct.list_messages(inbox.id)}
    info_before = await acct.get_mailbox("INBOX")
    await store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(data / "index.sqlite") + suffix).unlink(missing_ok=True)
    report = reindex(data)
    assert report.accounts == 1 and report.messages == 5 and report.new_uidvalidity == []
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        info = await acct.get_mailbox("INBOX")
        assert info.uidvalidity == info_before.uidvalidity
        assert info.uidnext >= 6  # UID 5 was expunged: never reused
        assert info.highestmodseq > info_before.highestmodseq  # RFC 7162: never goes backwards
        after = {m.uid: m for m in await acct.list_messages(info.id)}
        assert sorted(after) == sorted(before) == [1, 2, 3, 4]
        for uid, m in before.items():
            assert after[uid].flags == m.flags and after[uid].size == m.size
            assert after[uid].internaldate == pytest.approx(m.internaldate, abs=1e-3)
        lists = await acct.get_mailbox("Lists/Python.org")
        [lm] = await acct.list_messages(lists.id)
        assert lm.flags == {"$Label"}
        assert (await acct.get_mailbox("Sent")).special_use == "\\Sent"
        assert check(data).ok
        r = await acct.append("INBOX", make_message("new"))
        assert r.uid >= 6
    finally:
        await store.close()


async def test_reindex_without_uids_gives_new_uidvalidity(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    cur = data / "mail" / "example.org" / "alice" / "Maildir" / "cur"
    (cur / "1700000000.foreign.host:2,S").write_bytes(make_message("a"))
    (cur / "1700000001.foreign.host:2,").write_bytes(make_message("b"))
    report = reindex(data, ACCOUNT)
    assert (ACCOUNT, "INBOX") in report.new_uidvalidity
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        metas = await acct.list_messages(inbox.id)
        assert [m.uid for m in metas] == [1, 2] and metas[0].flags == {SEEN}
        for m in metas:
            assert is_whole(await acct.read_message(inbox.id, m.uid))
        assert check(data).ok
    finally:
        await store.close()


# ---- crash safety -----------------------------------------------------------------------------


async def verify_consistent(data: Path) -> int:
    """Open (recovering), then: check() is clean, every message is whole, UIDs ascend."""
    store = SqliteMaildirStore(data)
    try:
        report = check(data)
        assert report.missing_files == [] and report.size_mismatches == []
        assert report.orphan_files == []  # recovery removed uncommitted links
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        metas = await acct.list_messages(inbox.id)
        uids = [m.uid for m in metas]
        assert uids == sorted(set(uids))
        assert not uids or inbox.uidnext > uids[-1]
        for m in metas:
            data_ = await acct.read_message(inbox.id, m.uid)
            assert len(data_) == m.size and is_whole(data_)
        r = await acct.append("INBOX", make_message("after"))
        assert not uids or r.uid > uids[-1]
        return len(uids)
    finally:
        await store.close()


@pytest.mark.slow
async def test_kill_9_during_appends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    rng = random.Random(7)
    total = 0
    for _round in range(4):
        proc = SPAWN.Process(target=append_forever, args=(str(data), 8))
        proc.start()
        time.sleep(0.8 + rng.random() * 1.2)  # let the child run a random while before the kill
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        count = await verify_consistent(data)
        assert count >= total  # acknowledged messages never disappear (expunges aside)
        total = count - (count // 5)
    assert total > 0


@pytest.mark.parametrize(
    ("point", "size"),
    [
        ("staged", 2 * INLINE_BODY_MAX),
        ("linked", 2 * INLINE_BODY_MAX),
        ("dirs_synced", 2 * INLINE_BODY_MAX),
        ("committed", 2 * INLINE_BODY_MAX),
        ("linked", 2000),  # small: committed with its bytes, no file before COMMIT
        ("committed", 2000),
    ],
)
async def test_crash_at_each_step(tmp_path: Path, point: str, size: int) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    assert run_child(crash_at, str(data), point, size) == 86
    count = await verify_consistent(data)
    # before COMMIT the message is gone entirely; after it, it is there entirely
    assert count == (1 if point == "committed" else 0)


# ---- small messages committed with their bytes (one fsync), files fsynced in rounds -----------


def r_date(store: SqliteMaildirStore, r: object) -> float:
    [(when,)] = _index_rows(store.data_dir, "SELECT internaldate FROM messages")
    return float(when)  # type: ignore[arg-type]


def _index_rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(data / "index.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_small_append_commits_its_bytes_then_flushes(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    rounds = store.sync_rounds
    body = make_message("small", 2000)
    r = await acct.append("INBOX", body)
    assert store.sync_rounds - rounds == 1  # COMMIT's WAL fsync only: no file round waited for
    assert _index_rows(store.data_dir, "SELECT data FROM bodies") == [(body,)]
    assert _index_rows(store.data_dir, "SELECT mailbox_id, uid FROM unsynced") == [
        (r.mailbox_id, r.uid)
    ]
    assert await acct.read_message(r.mailbox_id, r.uid) == body  # from the index at first
    cur = maildir_path(store) / "cur"
    flushed = store.flusher.rounds
    # written and fsynced in one round, at most FLUSH_AGE after the COMMIT
    await wait_until(lambda: store.flusher.rounds == flushed + 1)
    [name] = os.listdir(cur)
    assert (cur / name).read_bytes() == body.replace(b"\r\n", b"\n")  # LF on disk
    assert os.stat(cur / name).st_mtime == pytest.approx(r_date(store, r), abs=1)
    big = make_message("big", 200_000)
    await acct.append("INBOX", big)  # above INLINE_BODY_MAX: file fsynced before COMMIT
    await store.flush_files()
    assert store.flusher.rounds == flushed + 1  # nothing more for the file worker
    assert _index_rows(store.data_dir, "SELECT id FROM bodies") == []
    assert _index_rows(store.data_dir, "SELECT body_id FROM unsynced") == []
    assert store._staged_fds == 0


async def test_flush_rounds_start_by_count_and_by_age(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carteiro.store import flusher

    acct = await store.account(ACCOUNT)
    await asyncio.gather(
        *(acct.append("INBOX", make_message(str(i), 300)) for i in range(FLUSH_COUNT))
    )
    await wait_until(lambda: not _index_rows(store.data_dir, "SELECT id FROM bodies"))
    monkeypatch.setattr(flusher, "FLUSH_AGE", 0.05)
    await acct.append("INBOX", make_message("alone", 300))
    await wait_until(lambda: not _index_rows(store.data_dir, "SELECT id FROM bodies"))
    assert store._staged_fds == 0


def crash_after_small_appends(data_dir: str) -> None:
    """Append, copy, append-and-expunge, then die like kill -9 before any flush round."""
    from carteiro.store import flusher
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    # the power cut comes before any file was written: every file must come from the index
    flusher.FileFlusher._write = lambda self, item, folders: []  # type: ignore[method-assign]

    async def main() -> None:
        store = SqliteMaildirStore(Path(data_dir))
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        await acct.append("INBOX", make_message("kept", 3000))
        await acct.copy(inbox.id, [1], "Archive")
        await acct.append("INBOX", make_message("expunged", 3000))
        await acct.delete_messages(inbox.id, [2])
        os._exit(86)

    asyncio.run(main())


async def test_power_cut_before_the_flush_rewrites_files_from_the_index(tmp_path: Path) -> None:
    """A power cut may lose a file that was committed through its bytes but not yet fsynced (here:
    emptied after the crash); the next open rewrites it, copies included, and brings nothing
    expunged back."""
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    assert run_child(crash_after_small_appends, str(data)) == 86
    assert [p for p in (data / "mail").rglob("cur/*") if p.is_file()] == []
    assert len(_index_rows(data, "SELECT id FROM bodies")) == 2
    # and one file was renamed into place but its data never reached the disk
    [(base, info)] = _index_rows(
        data,
        (
            "SELECT base, info FROM messages WHERE mailbox_id ="
            " (SELECT id FROM mailboxes WHERE name = 'INBOX') AND uid = 1"
        ),
    )
    [cur] = [p for p in (data / "mail").rglob("Maildir/cur")]
    (cur / f"{base}:2,{info}").write_bytes(b"")
    (data / "tmp" / "restore-0123456789abcdef").write_bytes(b"half")  # an interrupted restore's
    assert await verify_consistent(data) == 1  # kept; "expunged" stays gone
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        archive = await acct.get_mailbox("Archive")
        [meta] = await acct.list_messages(archive.id)
        assert is_whole(await acct.read_message(archive.id, meta.uid))
    finally:
        await store.close()
    assert _index_rows(data, "SELECT id FROM bodies") == []
    assert not (data / "tmp" / "restore-0123456789abcdef").exists()


async def test_reindex_writes_committed_bytes_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    assert run_child(crash_after_small_appends, str(data)) == 86
    report = reindex(data)
    assert report.messages == 2  # INBOX and Archive, from the committed bytes
    assert await verify_consistent(data) == 1


# ---- several processes ------------------------------------------------------------------------


@pytest.mark.slow
async def test_processes_appending_and_flagging_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    await store.close()
    procs = [SPAWN.Process(target=mixed_work, args=(str(data), 60, seed)) for seed in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        metas = await acct.list_messages(inbox.id)
        assert [m.uid for m in metas] == list(range(1, 181))
        assert inbox.uidnext == 181
        assert max(m.modseq for m in metas) <= inbox.highestmodseq
        counts = await acct.counts(inbox.id)
        assert counts.messages == 180 and counts.size == sum(m.size for m in metas)
        assert any(m.flags for m in metas)
        assert check(data).ok
    finally:
        await store.close()


async def test_cross_process_notification_within_a_second(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    sub = acct.subscribe()
    proc = SPAWN.Process(target=deliver_one, args=(str(store.data_dir), "remote"))
    proc.start()
    try:
        event = await sub.next(timeout=30)  # child start-up (spawn) takes a while
        done = time.monotonic()
        assert isinstance(event, MessageAdded) and event.uid == 1
        # the delivery's commit time is the file's mtime-ish; measure from the row instead:
        await asyncio.get_running_loop().run_in_executor(None, proc.join, 30)
        assert proc.exitcode == 0
        inbox = await acct.get_mailbox("INBOX")
        assert is_whole(await acct.read_message(inbox.id, 1))
    finally:
        sub.close()
    assert done > 0


async def test_cross_process_wakeup_latency(tmp_path: Path) -> None:
    """Two stores on one data dir stand for two processes: the datagram wake-up must beat the
    polling fallback by far."""
    data = tmp_path / "data"
    a = SqliteMaildirStore(data, poll_interval=30)  # no polling: only the wake-up can deliver
    b = SqliteMaildirStore(data, poll_interval=30)
    try:
        await a.create_account(ACCOUNT)
        sub = (await a.account(ACCOUNT)).subscribe()
        acct_b = await b.account(ACCOUNT)
        for i in range(3):
            start = time.monotonic()
            r = await acct_b.append("INBOX", make_message(str(i)))
            event = await sub.next(timeout=1.0)
            assert event == MessageAdded(ACCOUNT, r.mailbox_id, r.uid, r.modseq)
            assert time.monotonic() - start < 1.0
        sub.close()
    finally:
        await a.close()
        await b.close()


async def test_maildrop_lock_is_exclusive_across_stores(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = SqliteMaildirStore(data)
    b = SqliteMaildirStore(data)
    try:
        await a.create_account(ACCOUNT)
        lock = (await a.account(ACCOUNT)).try_lock_maildrop()
        assert lock is not None
        assert (await b.account(ACCOUNT)).try_lock_maildrop() is None
        lock.release()
        lock2 = (await b.account(ACCOUNT)).try_lock_maildrop()
        assert lock2 is not None
        lock2.release()
    finally:
        await a.close()
        await b.close()


async def test_purge_removes_files(store: SqliteMaildirStore) -> None:
    acct = await store.account(ACCOUNT)
    await acct.append("INBOX", make_message("x"))
    home = store.data_dir / "mail" / "example.org" / "alice"
    await store.delete_account(ACCOUNT)
    assert home.exists()
    await store.delete_account(ACCOUNT, purge=True)
    assert not home.exists()
    await store.flush_files()  # the tombstone goes with the file worker, just after the COMMIT
    assert not any(p.name.startswith("deleted-") for p in (store.data_dir / "tmp").iterdir())
    shutil.rmtree(store.data_dir / "tmp", ignore_errors=True)


async def test_listing_cache_follows_changes_from_other_processes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = SqliteMaildirStore(data)
    b = SqliteMaildirStore(data)  # stands for another process: a's cache never sees its writes
    try:
        await a.create_account(ACCOUNT)
        acct_a, acct_b = await a.account(ACCOUNT), await b.account(ACCOUNT)
        inbox = await acct_a.get_mailbox("INBOX")
        for i in range(6):
            await acct_b.append("INBOX", make_message(str(i), 100))
        assert [m.uid for m in await acct_a.list_messages(inbox.id)] == [1, 2, 3, 4, 5, 6]
        await acct_b.set_flags(inbox.id, [2, 4], FlagOp.ADD, [DELETED])
        await acct_b.expunge(inbox.id, [2])
        await acct_b.set_flags(inbox.id, [5], FlagOp.ADD, [SEEN])
        await acct_b.append("INBOX", make_message("7", 100))
        got = await acct_a.list_messages(inbox.id)
        fresh = SqliteMaildirStore(data)
        try:
            want = await (await fresh.account(ACCOUNT)).list_messages(inbox.id)
        finally:
            await fresh.close()
        assert got == want
        assert [m.uid for m in got] == [1, 3, 4, 5, 6, 7]
        assert a.listings.refreshes >= 1
        got.clear()  # callers own their copy
        assert len(await acct_a.list_messages(inbox.id)) == 6
    finally:
        await a.close()
        await b.close()


async def test_listing_snapshot_opens_a_fresh_process_from_one_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "SNAPSHOT_MIN", 5)
    data = tmp_path / "data"
    a = SqliteMaildirStore(data)
    b = SqliteMaildirStore(data)  # stands for another process
    stores = [a, b]
    try:
        await a.create_account(ACCOUNT)
        acct_a, acct_b = await a.account(ACCOUNT), await b.account(ACCOUNT)
        inbox = await acct_a.get_mailbox("INBOX")
        for i in range(8):
            await acct_a.append("INBOX", make_message(str(i), 100), ["$Label"] if i == 3 else [])
        await acct_a.list_uids_flags(inbox.id)  # a full load of a large mailbox publishes it
        await acct_a.append("INBOX", make_message("flush", 100))  # queued after the snapshot job
        assert a.snapshots_written == 1
        await acct_b.set_flags(inbox.id, [2, 4], FlagOp.ADD, [DELETED, "$Junk"])
        await acct_b.expunge(inbox.id, [2])
        await acct_b.set_flags(inbox.id, [5], FlagOp.ADD, [SEEN])
        await acct_b.append("INBOX", make_message("new", 100), [FLAGGED])
        truth = await acct_b.changed_since(inbox.id, 0)  # straight from the rows
        assert [m.uid for m in truth] == [1, 3, 4, 5, 6, 7, 8, 9, 10]

        async def fresh() -> tuple[SqliteMaildirStore, UidFlags, list[MessageMeta]]:
            c = SqliteMaildirStore(data)
            stores.append(c)
            acct_c = await c.account(ACCOUNT)
            return c, await acct_c.list_uids_flags(inbox.id), await acct_c.list_messages(inbox.id)

        c, uf, metas = await fresh()
        assert (c.listings.snapshots_read, c.listings.loads) == (1, 0)
        assert metas == truth
        assert list(uf.uids) == [m.uid for m in truth]
        assert uf.flags == [m.flags for m in truth]
        assert list(uf.modseqs) == [m.modseq for m in truth]
        conn = sqlite3.connect(data / "index.sqlite")
        conn.execute("UPDATE listings SET count = count + 1")  # not what we wrote: ignored
        conn.commit()
        conn.close()
        d, _uf, metas = await fresh()
        assert (d.listings.snapshots_read, d.listings.loads) == (0, 1)
        assert metas == truth
    finally:
        for s in stores:
            await s.close()


async def test_listing_cache_survives_reindex_of_a_vanished_file(
    store: SqliteMaildirStore,
) -> None:
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    for i in range(4):
        await acct.append("INBOX", make_message(str(i), 100))
    assert [m.uid for m in await acct.list_messages(inbox.id)] == [1, 2, 3, 4]
    await store.flush_files()  # else reindex rewrites the file from its committed bytes
    [gone] = [n for n in os.listdir(maildir_path(store) / "cur") if ",U=2:" in n]
    os.unlink(maildir_path(store) / "cur" / gone)
    reindex(store.data_dir)  # records UID 2 as expunged: cached listings learn it by MODSEQ
    loads = store.listings.loads
    assert [m.uid for m in await acct.list_messages(inbox.id)] == [1, 3, 4]
    assert store.listings.loads == loads  # an incremental refresh, not a full reload


async def test_concurrent_appends_fail_alone_and_leave_no_staged_files(
    store: SqliteMaildirStore,
) -> None:
    acct = await store.account(ACCOUNT)
    rounds, batches = store.sync_rounds, store.batches
    results = await asyncio.gather(
        *(
            acct.append("INBOX" if i % 5 else "Missing", make_message(str(i), 300))
            for i in range(40)
        ),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 32 and sorted(r.uid for r in ok) == list(range(1, 33))
    assert all(isinstance(r, MailboxNotFound) for r in results if isinstance(r, BaseException))
    assert store.batches - batches < 40
    assert store.sync_rounds - rounds <= 2 * (store.batches - batches)  # files+dirs, then WAL
    await store.flush_files()
    assert os.listdir(store.tmp_dir) == []
    assert check(store.data_dir).ok


async def test_small_reads_run_inline_and_fall_back_to_the_pool_when_busy(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:

    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    await acct.append("INBOX", make_message("1", 100))
    await acct.list_messages(inbox.id)  # cached now: later lists of this small mailbox are quick
    seen: list[str] = []
    real = store.listing

    def listing(conn: sqlite3.Connection, mb: object, force_publish: bool = False) -> object:
        seen.append(threading.current_thread().name)
        if len(seen) == 2:
            raise sqlite3.OperationalError("database is locked")
        return real(conn, mb, force_publish)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "listing", listing)
    assert [m.uid for m in await acct.list_messages(inbox.id)] == [1]
    assert seen == [threading.current_thread().name]  # on the event loop's thread
    await acct.append("INBOX", make_message("2", 100))
    # busy: retried in the pool
    assert [m.uid for m in await acct.list_messages(inbox.id)] == [1, 2]
    assert seen[1] == seen[0] and seen[2].startswith("carteiro-store-read")


async def test_path_source_linked_inline_or_copied(
    store: SqliteMaildirStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path source without an LF form is hard-linked on the caller's thread; when it cannot be
    linked (another filesystem) it is copied in a thread instead; a missing one fails and leaves
    nothing staged. (One with an LF form is written in that form: test_maildir_sync.py.)"""
    src = tmp_path / "spool.eml"
    # a small one is read, not linked; a bare LF: no LF form, kept as given
    body = make_message("linked", 2 * INLINE_BODY_MAX) + b"bare LF\n"
    src.write_bytes(body)
    acct = await store.account(ACCOUNT)
    r1 = await acct.append("INBOX", src)
    real_link = os.link

    def no_link(a: str, b: str) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    r2 = await acct.append("INBOX", str(src))
    monkeypatch.setattr(os, "link", real_link)
    assert os.stat(src).st_nlink == 2  # linked once (r1), copied once (r2)
    assert await acct.read_message(r1.mailbox_id, r1.uid) == body
    assert await acct.read_message(r2.mailbox_id, r2.uid) == body
    with pytest.raises(FileNotFoundError):
        await acct.append("INBOX", tmp_path / "missing.eml")
    assert os.listdir(store.tmp_dir) == []
    await store.flush_files()  # r1's descriptor waits for its flush round
    assert store._staged_fds == 0


async def test_a_full_backlog_sends_small_messages_the_usual_way(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the flusher is behind, small messages get their file fsynced before COMMIT instead
    of piling up in the index; failed appends give their place back."""
    from carteiro.store import flusher

    monkeypatch.setattr(flusher, "BACKLOG_MAX", 3)
    gate = hold_flusher(monkeypatch)
    acct = await store.account(ACCOUNT)
    with pytest.raises(MailboxNotFound):
        await acct.append("Missing", make_message("no", 300))
    assert store.flusher._backlog == 0
    for i in range(6):
        await acct.append("INBOX", make_message(str(i), 300))
    assert len(_index_rows(store.data_dir, "SELECT id FROM bodies")) == 3
    assert store.flusher._backlog == 3
    gate.set()
    await store.flush_files()
    assert store.flusher._backlog == 0 and store.flusher._backlog_bytes == 0
    assert _index_rows(store.data_dir, "SELECT id FROM bodies") == []
    assert check(store.data_dir).ok


async def test_copy_move_expunge_flag_before_the_file_is_written(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a small message's file is not written yet: a copy gets a file of its own, a move
    leaves no file behind, an expunged one never gets a file, and a flag change reaches the name
    once the file exists."""

    gate = hold_flusher(monkeypatch)
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    bodies = [make_message(str(i), 500) for i in range(3)]
    for b in bodies:
        await acct.append("INBOX", b)
    assert [p for p in (store.data_dir / "mail").rglob("cur/*")] == []  # nothing written yet
    copied = await acct.copy(inbox.id, [1], "Archive")
    await acct.create_mailbox("Work")
    moved = await acct.move(inbox.id, [2], "Work")
    await acct.set_flags(inbox.id, [3], FlagOp.ADD, [DELETED])
    assert await acct.expunge(inbox.id) == [3]
    await acct.set_flags(inbox.id, [1], FlagOp.ADD, [FLAGGED])
    archive = await acct.get_mailbox("Archive")
    work = await acct.get_mailbox("Work")
    assert await acct.read_message(archive.id, copied.pairs[0][1]) == bodies[0]
    assert await acct.read_message(work.id, moved.pairs[0][1]) == bodies[1]
    gate.set()
    await store.flush_files()
    files = sorted(p for p in (store.data_dir / "mail").rglob("cur/*") if p.is_file())
    assert sorted(p.read_bytes().replace(b"\n", b"\r\n") for p in files) == sorted(
        [bodies[0], bodies[0], bodies[1]]
    )
    await wait_until(
        lambda: any(p.name.endswith(":2,F") for p in maildir_path(store).glob("cur/*"))
    )
    assert check(store.data_dir).ok
    assert _index_rows(store.data_dir, "SELECT id FROM bodies") == []
    assert _index_rows(store.data_dir, "SELECT body_id FROM unsynced") == []


async def test_a_failing_write_undoes_itself_alone_or_in_a_batch(store: SqliteMaildirStore) -> None:
    """A write alone in its group commit runs without a savepoint (its transaction is one); one
    that fails after writing leaves nothing behind either way, and the writes around it commit."""

    def failing(tx: Tx) -> None:
        tx.conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (1, 'ghost')")
        raise StoreError("refused")

    def kept(name: str) -> Callable[[Tx], None]:
        def job(tx: Tx) -> None:
            tx.conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (1, ?)", (name,))

        return job

    with pytest.raises(StoreError):
        await store.write(failing)  # alone: no savepoint
    await store.write(kept("after"))
    results = await asyncio.gather(
        store.write(kept("one")), store.write(failing), store.write(kept("two")),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[1], StoreError) and results[0] is None and results[2] is None
    names = {r[0] for r in _index_rows(store.data_dir, "SELECT name FROM subscriptions")}
    assert "ghost" not in names and {"after", "one", "two"} <= names


async def test_expunge_finds_deleted_messages_through_their_index(tmp_path: Path) -> None:
    """EXPUNGE asks the partial index of \\Deleted messages (one seek, not a scan of the
    mailbox); an index made before it existed gets it at the next open."""
    data = tmp_path / "data"
    store = SqliteMaildirStore(data, search_indexer=False)
    await store.create_account(ACCOUNT)
    await store.close()
    conn = sqlite3.connect(data / "index.sqlite")
    conn.execute("DROP INDEX messages_deleted")  # as an index of an older carteiro
    conn.close()
    store = SqliteMaildirStore(data, search_indexer=False)
    try:
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        for i in range(5):
            await acct.append("INBOX", make_message(str(i), 300))
        assert await acct.expunge(inbox.id) == []
        await acct.set_flags(inbox.id, [2, 4], FlagOp.ADD, [DELETED])
        assert await acct.expunge(inbox.id) == [2, 4]
        assert [m.uid for m in await acct.list_messages(inbox.id)] == [1, 3, 5]
        plan = _index_rows(
            data,
            "EXPLAIN QUERY PLAN SELECT 1 FROM messages INDEXED BY messages_deleted"
            " WHERE mailbox_id = 1 AND (flags & 8) != 0",
        )
        assert any("messages_deleted" in str(row) for row in plan)
    finally:
        await store.close()


@pytest.mark.parametrize("syncfs", ["counted", "unavailable"])
async def test_a_flush_round_is_one_syncfs_per_filesystem_else_an_fsync_per_file(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch, syncfs: str
) -> None:
    """The file worker makes a round durable with one syncfs per filesystem the round wrote on
    (here one, for files in two folders); where syncfs is not to be trusted (before Linux 5.8)
    it fsyncs every file and directory instead. Either way the bodies go only after it."""
    from carteiro.store import maildir

    calls: list[int] = []
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counted(fd: int) -> int:
        calls.append(fd)
        return 0

    def fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(maildir, "_SYNCFS", counted if syncfs == "counted" else None)
    monkeypatch.setattr(os, "fsync", fsync)
    acct = await store.account(ACCOUNT)
    rounds = store.flusher.rounds
    await asyncio.gather(
        *(acct.append(box, make_message(f"{box}{i}", 300)) for box in ("INBOX", "Archive") for i in range(3))
    )  # fmt: skip
    await store.flush_files()
    assert _index_rows(store.data_dir, "SELECT id FROM bodies") == []
    files = [p for p in (store.data_dir / "mail").rglob("cur/*") if p.is_file()]
    assert len(files) == 6
    if syncfs == "counted":  # one filesystem: one syncfs a round (usually one round here)
        assert len(calls) == store.flusher.rounds - rounds >= 1 and fsyncs == []
    else:
        assert calls == [] and len(fsyncs) >= 6 + 2  # the files and their two folders


async def test_a_flush_round_while_the_writer_stops_is_dropped_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The file worker's round that ends while close() stops the writer: its body-dropping job
    used to be queued behind the writer's stop and failed ("background store write failed ...
    store is closed", seen after bench/pop3.py's fill). It is done on the file worker's thread
    instead, after its files are durable; close() logs no error."""
    from carteiro.store import flusher

    monkeypatch.setattr(flusher, "FLUSH_AGE", 60.0)  # no round before close()
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    acct = await store.account(ACCOUNT)
    bodies = [make_message(str(i), 500) for i in range(5)]
    await asyncio.gather(*(acct.append("INBOX", b) for b in bodies))
    assert len(_index_rows(data, "SELECT id FROM bodies")) == 5
    stopped_join = store.writer.join

    def join_then_round() -> None:  # the worker's round lands between the writer's stop and close
        stopped_join()
        store.flusher.flush().wait()

    monkeypatch.setattr(store.writer, "join", join_then_round)
    with caplog.at_level("ERROR"):
        await store.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    assert _index_rows(data, "SELECT id FROM bodies") == []
    assert _index_rows(data, "SELECT body_id FROM unsynced") == []
    files = sorted(p.read_bytes() for p in (data / "mail").rglob("cur/*") if p.is_file())
    assert files == sorted(b.replace(b"\r\n", b"\n") for b in bodies)
