"""Changes made in the Maildir behind the store (mutt, another delivery agent) are found by two
stat calls and adopted into the index: flags, deletions, new files; a crash at any step of the
adoption loses nothing and adopts nothing twice."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from carteiro.store import maildir_sync
from carteiro.store.api import (
    DELETED,
    FLAGGED,
    SEEN,
    FlagOp,
    FlagsChanged,
    MessageAdded,
    MessagesExpunged,
)
from carteiro.store.maintenance import check
from carteiro.store.sqlite_account import SqliteAccountStore
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, hold_flusher, is_whole, make_message

SPAWN = multiprocessing.get_context("spawn")
SETTLE = 0.2  # seconds (maildir_sync.SETTLE_NS, shortened for the tests)


@pytest.fixture(autouse=True)
def short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maildir_sync, "SETTLE_NS", int(SETTLE * 1e9))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data")
    await s.create_account(ACCOUNT)
    try:
        yield s
    finally:
        await s.close()


def inbox_dir(store: SqliteMaildirStore) -> Path:
    return store.data_dir / "mail" / "example.org" / "alice" / "Maildir"


async def eventually(cond: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """What a client sees by polling (NOOP): a change is adopted at the latest once SETTLE has
    passed (a directory changed twice in one clock tick keeps its mtime)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError("not adopted before the deadline")
        await asyncio.sleep(0.05)


async def filled(store: SqliteMaildirStore, n: int) -> tuple[SqliteAccountStore, int]:
    acct = await store.account(ACCOUNT)
    for i in range(n):
        await acct.append("INBOX", make_message(f"m{i}"))
    await store.flush_files()
    return acct, (await acct.get_mailbox("INBOX")).id


def drop_in_new(folder: Path, name: str, data: bytes, mtime: float | None = None) -> Path:
    """What another delivery agent does: tmp/, then a rename into new/."""
    tmp = folder / "tmp" / name
    tmp.write_bytes(data)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.rename(tmp, folder / "new" / name)
    return folder / "new" / name


async def test_a_flag_set_by_a_maildir_client_is_adopted(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 3)
    sub = acct.subscribe()
    before = (await acct.get_mailbox("INBOX")).highestmodseq
    cur = inbox_dir(store) / "cur"
    name = next(n for n in os.listdir(cur) if ",U=2:" in n)
    os.rename(cur / name, cur / (name.rpartition(":2,")[0] + ":2,FS"))  # mutt marks it

    async def seen() -> bool:
        await acct.refresh(mbid)
        return any(m.flags == {FLAGGED, SEEN} for m in await acct.list_messages(mbid))

    await eventually(seen)
    info = await acct.get_mailbox("INBOX")
    assert info.highestmodseq > before
    metas = await acct.list_messages(mbid)
    assert [m.uid for m in metas] == [1, 2, 3]
    assert metas[1].flags == {FLAGGED, SEEN} and metas[1].modseq == info.highestmodseq
    events = [e for e in sub.pending() if not isinstance(e, MessageAdded)]
    assert any(isinstance(e, FlagsChanged) and e.uid == 2 for e in events)
    report = check(store.data_dir)
    assert report.ok, report


async def test_a_rename_keeps_flags_the_name_does_not_show(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 1)
    await acct.set_flags(mbid, [1], FlagOp.ADD, ["$Label"])
    await eventually(lambda: _async(lambda: "a" in os.listdir(inbox_dir(store) / "cur")[0]))
    cur = inbox_dir(store) / "cur"
    [name] = os.listdir(cur)
    os.rename(cur / name, cur / (name.rpartition(":2,")[0] + ":2,Sa"))  # mutt: +S

    async def seen() -> bool:
        await acct.refresh(mbid)
        return (await acct.list_messages(mbid))[0].flags == {SEEN, "$Label"}

    await eventually(seen)


async def _async(fn: Callable[[], bool]) -> bool:
    return fn()


async def test_a_later_store_does_not_overwrite_a_client_flag(store: SqliteMaildirStore) -> None:
    """The issue's first report: mutt sets \\Flagged, then an IMAP STORE (before any check)
    renamed the file from the index's flags and the F was lost."""
    acct, mbid = await filled(store, 1)
    cur = inbox_dir(store) / "cur"
    [name] = os.listdir(cur)
    os.rename(cur / name, cur / (name + "F"))  # nothing looked at the folder since
    await acct.set_flags(mbid, [1], FlagOp.ADD, [SEEN])

    async def both() -> bool:
        names = os.listdir(cur)
        return names[0].endswith(":2,FS") and (await acct.list_messages(mbid))[0].flags == {
            FLAGGED,
            SEEN,
        }

    await eventually(both)


async def test_a_file_deleted_by_a_client_is_expunged(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 3)
    sub = acct.subscribe()
    cur = inbox_dir(store) / "cur"
    victim = next(n for n in os.listdir(cur) if ",U=2:" in n)
    os.unlink(cur / victim)

    async def gone() -> bool:
        await acct.refresh(mbid)
        return [m.uid for m in await acct.list_messages(mbid)] == [1, 3]

    await eventually(gone)
    assert any(isinstance(e, MessagesExpunged) and e.uids == (2,) for e in sub.pending())
    delta = await acct.changes_since(mbid, 1)
    assert 2 in delta.expunged
    assert check(store.data_dir).ok


async def test_reading_a_deleted_file_expunges_it_instead_of_failing_forever(
    store: SqliteMaildirStore,
) -> None:
    acct, mbid = await filled(store, 2)
    cur = inbox_dir(store) / "cur"
    os.unlink(cur / next(n for n in os.listdir(cur) if ",U=1:" in n))
    # no refresh: the read itself finds out (FETCH answers NO [EXPUNGEISSUED] once, then EXPUNGE)
    store._stamps.clear()
    with pytest.raises(KeyError):
        await acct.read_message(mbid, 1)
    assert [m.uid for m in await acct.list_messages(mbid)] == [2]
    assert is_whole(await acct.read_message(mbid, 2))


async def test_a_file_dropped_in_new_becomes_a_message(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 1)
    sub = acct.subscribe()
    body = make_message("from procmail")
    drop_in_new(inbox_dir(store), "1700000000.M1P2.otherhost", body, mtime=1_700_000_000)
    # a client's own delivery straight into cur/ with flags (mutt saving a copy)
    folder = inbox_dir(store)
    (folder / "tmp" / "x").write_bytes(make_message("saved by mutt"))
    os.rename(folder / "tmp" / "x", folder / "cur" / "1700000001.M3P4.otherhost:2,S")

    async def arrived() -> bool:
        await acct.refresh(mbid)
        return len(await acct.list_messages(mbid)) == 3

    await eventually(arrived)
    metas = await acct.list_messages(mbid)
    assert [m.uid for m in metas] == [1, 2, 3]
    assert metas[1].internaldate == 1_700_000_000 and metas[1].size == len(body)
    assert metas[1].flags == frozenset() and metas[2].flags == {SEEN}
    assert await acct.read_message(mbid, 2) == body
    assert os.listdir(folder / "new") == []
    names = sorted(os.listdir(folder / "cur"))
    assert any(n.startswith("1700000000.M1P2.otherhost,S=") and ",U=2:2," in n for n in names)
    added = [e.uid for e in sub.pending() if isinstance(e, MessageAdded)]
    assert added == [2, 3]
    assert check(store.data_dir).ok
    # and the store's own work on it goes on as usual
    await acct.set_flags(mbid, [2], FlagOp.ADD, [DELETED])
    assert await acct.expunge(mbid) == [2]


async def test_nothing_changed_costs_no_scan(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 5)
    await acct.refresh(mbid)
    await asyncio.sleep(SETTLE * 1.5)
    await acct.refresh(mbid)  # the stamp was taken just after the store's own writes: once more
    scans = store.folder_scans
    for _ in range(20):
        await acct.refresh(mbid)
        await acct.get_mailbox("INBOX")
    assert store.folder_scans == scans


async def test_own_writes_put_the_scan_off_until_the_folder_is_quiet(
    store: SqliteMaildirStore,
) -> None:
    acct, mbid = await filled(store, 1)
    await asyncio.sleep(SETTLE * 1.5)
    await acct.refresh(mbid)
    await acct.refresh(mbid)
    scans = store.folder_scans
    for i in range(5):  # the store's own appends change cur/: no scan while it is busy
        await acct.append("INBOX", make_message(f"own{i}"))
        await store.flush_files()
        await acct.refresh(mbid)
    assert store.folder_scans == scans
    await asyncio.sleep(SETTLE * 1.5)
    await acct.refresh(mbid)  # quiet now: one scan makes sure nothing raced with them
    assert store.folder_scans == scans + 1
    await acct.refresh(mbid)
    assert store.folder_scans == scans + 1


async def test_a_message_whose_file_is_not_written_yet_is_not_missing(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct, mbid = await filled(store, 1)
    gate = hold_flusher(monkeypatch)
    try:
        await acct.append("INBOX", make_message("pending"))  # committed, its file not written
        await store.sync_folder(acct._id, mbid, force=True)
        assert [m.uid for m in await acct.list_messages(mbid)] == [1, 2]
    finally:
        gate.set()
    await store.flush_files()
    assert is_whole(await acct.read_message(mbid, 2))
    assert check(store.data_dir).ok


async def test_an_expunged_file_awaiting_its_unlink_is_not_adopted(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct, mbid = await filled(store, 2)
    monkeypatch.setattr(store.flusher, "unlink", lambda entries: None)  # the unlink waits
    monkeypatch.setattr(store, "_unlink_now", lambda paths: None)
    assert await acct.delete_messages(mbid, [1]) == [1]
    assert len(os.listdir(inbox_dir(store) / "cur")) == 2
    await store.sync_folder(acct._id, mbid, force=True)
    assert [m.uid for m in await acct.list_messages(mbid)] == [2]


async def test_check_reports_a_flag_changed_behind_the_server(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 1)
    cur = inbox_dir(store) / "cur"
    [name] = os.listdir(cur)
    os.rename(cur / name, cur / (name + "T"))
    report = check(store.data_dir)
    assert report.flag_mismatches == [(ACCOUNT, "INBOX", 1)]
    assert not report.ok
    await eventually(lambda: _refreshed(acct, mbid))
    assert check(store.data_dir).ok


async def _refreshed(acct: SqliteAccountStore, mbid: int) -> bool:
    await acct.refresh(mbid)
    return (await acct.list_messages(mbid))[0].flags == {DELETED}


async def test_another_process_sees_the_adoption(store: SqliteMaildirStore, tmp_path: Path) -> None:
    acct, mbid = await filled(store, 1)
    other = SqliteMaildirStore(store.data_dir)
    try:
        oacct = await other.account(ACCOUNT)
        sub = oacct.subscribe()
        drop_in_new(inbox_dir(store), "1700000002.M1P1.elsewhere", make_message("x"))
        await eventually(lambda: _count(acct, mbid, 2))
        deadline = time.monotonic() + 10
        while not any(isinstance(e, MessageAdded) and e.uid == 2 for e in sub.pending()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # the second process does not adopt it again
        await oacct.refresh(mbid)
        assert [m.uid for m in await oacct.list_messages(mbid)] == [1, 2]
    finally:
        await other.close()


async def _count(acct: SqliteAccountStore, mbid: int, n: int) -> bool:
    await acct.refresh(mbid)
    return len(await acct.list_messages(mbid)) == n


# ---- crash safety: a fault hook ends the process at each step of an adoption ----------------


def adopt_and_crash(data_dir: str, point: str) -> None:
    from carteiro.store.sqlite_maildir import SqliteMaildirStore

    def hook(where: str) -> None:
        if where == point:
            os._exit(86)

    async def main() -> None:
        store = SqliteMaildirStore(
            Path(data_dir), fault_hook=hook, search_indexer=False
        )  # its COMMITs would hit the hook
        acct = await store.account(ACCOUNT)
        inbox = await acct.get_mailbox("INBOX")
        await store.sync_folder(acct._id, inbox.id, force=True)
        await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "point", ["scan_listed", "scan_adopted", "dirs_synced", "committed", "none"]
)
async def test_a_crash_during_an_adoption_loses_nothing_and_adopts_once(
    tmp_path: Path, point: str
) -> None:
    data = tmp_path / "data"
    store = SqliteMaildirStore(data)
    await store.create_account(ACCOUNT)
    acct, mbid = await filled(store, 2)
    await store.close()
    folder = data / "mail" / "example.org" / "alice" / "Maildir"
    cur = folder / "cur"
    drop_in_new(folder, "1700000003.M1P1.a", make_message("new one"))
    drop_in_new(folder, "1700000004.M1P1.a", make_message("new two"))
    os.unlink(cur / next(n for n in os.listdir(cur) if ",U=1:" in n))
    keep = next(n for n in os.listdir(cur) if ",U=2:" in n)
    os.rename(cur / keep, cur / (keep + "F"))
    proc = SPAWN.Process(target=adopt_and_crash, args=(str(data), point))
    proc.start()
    proc.join(60)
    assert proc.exitcode == (0 if point == "none" else 86)
    store = SqliteMaildirStore(data)
    try:
        acct = await store.account(ACCOUNT)
        await store.sync_folder(acct._id, mbid, force=True)
        metas = await acct.list_messages(mbid)
        assert [m.uid for m in metas][:1] == [2] and len(metas) == 3
        assert metas[0].flags == {FLAGGED}
        bodies = [await acct.read_message(mbid, m.uid) for m in metas[1:]]
        assert [b.split(b"\r\n")[1] for b in bodies] == [b"Subject: new one", b"Subject: new two"]
        assert all(is_whole(b) for b in bodies)
        assert len(os.listdir(cur)) == 3 and os.listdir(folder / "new") == []
        report = check(data)
        assert report.ok, report
    finally:
        await store.close()


# ---- line ends: LF on disk, CRLF on the wire, exact bytes when there is no LF form ----------


def _file_of(store: SqliteMaildirStore, mailbox: str, uid: int) -> Path:
    folder = inbox_dir(store) if mailbox == "INBOX" else inbox_dir(store) / f".{mailbox}"
    [name] = [n for n in os.listdir(folder / "cur") if f",U={uid}:2," in n]
    return folder / "cur" / name


@pytest.mark.parametrize(
    "size", [2_000, 100_000, 400_000]
)  # inline, staged on the loop, in a thread
async def test_crlf_on_the_wire_lf_on_disk(store: SqliteMaildirStore, size: int) -> None:
    acct, mbid = await filled(store, 0)
    body = make_message("lf", size)
    r = await acct.append("INBOX", body)
    await store.flush_files()
    path = _file_of(store, "INBOX", r.uid)
    on_disk = path.read_bytes()
    assert on_disk == body.replace(b"\r\n", b"\n") and b"\r" not in on_disk
    assert f",S={len(on_disk)},W={len(body)},U={r.uid}:2," in path.name  # as Dovecot names it
    assert await acct.read_message(mbid, r.uid) == body
    [meta] = await acct.list_messages(mbid)
    assert meta.size == len(body)  # RFC822.SIZE: the CRLF size
    copied = await acct.copy(mbid, [r.uid], "Archive")
    archive = await acct.get_mailbox("Archive")
    assert await acct.read_message(archive.id, copied.pairs[0][1]) == body
    assert (await acct.list_messages(archive.id))[0].size == len(body)
    assert check(store.data_dir).ok


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: binary\r\n\r\nbare\nLF kept\r\n",  # a binary APPEND (RFC 3516) stored as sent
        b"Subject: cr\r\n\r\nbare\rCR and CR CRLF\r\r\n",  # has an LF form: a CR stays a CR
        b"Subject: no line end",
    ],
)
async def test_messages_without_an_exact_lf_form_round_trip(
    store: SqliteMaildirStore, body: bytes
) -> None:
    acct, mbid = await filled(store, 0)
    r = await acct.append("INBOX", body)
    await store.flush_files()
    assert await acct.read_message(mbid, r.uid) == body
    assert (await acct.list_messages(mbid))[0].size == len(body)
    path = _file_of(store, "INBOX", r.uid)
    if b"\n" in body.replace(b"\r\n", b""):
        assert path.read_bytes() == body and ",W=" not in path.name
    assert check(store.data_dir).ok


@pytest.mark.parametrize("size", [100_000, 400_000])  # read from the page cache, in a thread
async def test_a_message_given_as_a_file_is_written_in_its_lf_form(
    store: SqliteMaildirStore, tmp_path: Path, size: int
) -> None:
    """An SMTP message past smtp.memory_buffer_max comes as a spooled file: LF on disk too."""
    acct, mbid = await filled(store, 0)
    body = make_message("spooled", size)
    src = tmp_path / "spooled"
    src.write_bytes(body)
    r = await acct.append("INBOX", src)
    path = _file_of(store, "INBOX", r.uid)
    assert path.read_bytes() == body.replace(b"\r\n", b"\n") and ",W=" in path.name
    assert await acct.read_message(mbid, r.uid) == body
    assert src.read_bytes() == body  # the source is left as it was
    # a file without an LF form is hard-linked as it is
    binary = body + b"bare\nLF\r\n"
    src2 = tmp_path / "binary"
    src2.write_bytes(binary)
    r2 = await acct.append("INBOX", src2)
    path2 = _file_of(store, "INBOX", r2.uid)
    assert os.stat(path2).st_ino == os.stat(src2).st_ino and ",W=" not in path2.name
    assert await acct.read_message(mbid, r2.uid) == binary
    assert check(store.data_dir).ok


async def test_files_of_an_older_store_are_served_as_they_are(store: SqliteMaildirStore) -> None:
    """Before the LF form, every file held the exact bytes and its name no W=: no migration."""
    acct, mbid = await filled(store, 2)
    body = make_message("old")
    r = await acct.append("INBOX", body)
    await store.flush_files()
    path = _file_of(store, "INBOX", r.uid)
    old_base = f"{path.name.split(',', 1)[0]},S={len(body)},U={r.uid}"
    os.rename(path, path.with_name(old_base + ":2,"))
    path.with_name(old_base + ":2,").write_bytes(body)  # as an older version wrote it
    with sqlite3.connect(store.data_dir / "index.sqlite") as db:
        db.execute(
            "UPDATE messages SET base = ? WHERE mailbox_id = ? AND uid = ?", (old_base, mbid, r.uid)
        )
    assert await acct.read_message(mbid, r.uid) == body
    copied = await acct.copy(mbid, [r.uid], "Archive")
    archive = await acct.get_mailbox("Archive")
    assert await acct.read_message(archive.id, copied.pairs[0][1]) == body
    assert check(store.data_dir).ok


async def test_an_lf_file_from_another_agent_is_served_with_crlf(store: SqliteMaildirStore) -> None:
    acct, mbid = await filled(store, 0)
    lf = b"Subject: procmail\n\nline one\nline two\n"
    drop_in_new(inbox_dir(store), "1700000005.M1P1.procmail", lf)
    await eventually(lambda: _count(acct, mbid, 1))
    crlf = lf.replace(b"\n", b"\r\n")
    assert await acct.read_message(mbid, 1) == crlf
    assert (await acct.list_messages(mbid))[0].size == len(crlf)
    assert ",W=" in _file_of(store, "INBOX", 1).name
    assert check(store.data_dir).ok


async def test_reindex_keeps_the_wire_sizes(store: SqliteMaildirStore) -> None:
    from carteiro.store.maintenance import reindex

    acct, mbid = await filled(store, 3)
    before = [(m.uid, m.size) for m in await acct.list_messages(mbid)]
    await asyncio.get_running_loop().run_in_executor(None, reindex, store.data_dir)
    assert [(m.uid, m.size) for m in await acct.list_messages(mbid)] == before
    for uid, size in before:
        assert len(await acct.read_message(mbid, uid)) == size
    assert check(store.data_dir).ok


async def test_a_link_dropped_into_the_maildir_is_not_a_message(
    store: SqliteMaildirStore, tmp_path: Path
) -> None:
    acct, mbid = await filled(store, 1)
    secret = tmp_path / "secret"
    secret.write_bytes(b"Subject: not mail\r\n\r\nprivate\r\n")
    os.symlink(secret, inbox_dir(store) / "new" / "1700000006.M1P1.link")
    await store.sync_folder(acct._id, mbid, force=True)
    assert [m.uid for m in await acct.list_messages(mbid)] == [1]
