"""Reads that stay on the event loop (issue 11 item 8): a message file already in the page cache,
a STORE that changes nothing and an EXPUNGE that finds nothing answer without the store's threads,
and answer exactly what the slow path would."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from carteiro.store import maildir
from carteiro.store.api import FlagOp
from carteiro.store.sqlite_maildir import SqliteMaildirStore

from .workers import ACCOUNT, make_message


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMaildirStore]:
    s = SqliteMaildirStore(tmp_path / "data")
    await s.create_account(ACCOUNT)
    yield s
    await s.close()


def test_read_cached_reads_a_small_file(tmp_path: Path) -> None:
    p = tmp_path / "m"
    p.write_bytes(b"Subject: x\r\n\r\nhello\r\n")
    got = maildir.read_cached(p)
    if got is None and p.stat().st_dev in maildir._refuse_nowait:
        pytest.skip("the test's file system refuses RWF_NOWAIT (tmpfs?)")
    assert got == b"Subject: x\r\n\r\nhello\r\n"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert maildir.read_cached(empty) == b""


def test_read_cached_declines_what_it_cannot_read_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert maildir.read_cached(tmp_path / "missing") is None
    big = tmp_path / "big"
    big.write_bytes(b"x" * (maildir.READ_CACHED_MAX + 1))
    assert maildir.read_cached(big) is None  # too big to copy on the event loop

    small = tmp_path / "small"
    small.write_bytes(b"abc")

    def would_block(*_a: Any) -> int:
        raise BlockingIOError(11, "not in the page cache")

    monkeypatch.setattr(maildir.os, "preadv", would_block)
    assert maildir.read_cached(small) is None  # the caller reads it in a thread


def test_a_file_system_without_nowait_reads_never_stops_the_others(tmp_path: Path) -> None:
    """tmpfs refuses RWF_NOWAIT (EOPNOTSUPP): its files go to the I/O threads, while files on
    other file systems are still read at once (one refusal once turned it off process-wide)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a tmpfs beside the test's file system")
    refusing = shm / f"carteiro-test-{os.getpid()}"
    refusing.write_bytes(b"on tmpfs")
    try:
        assert maildir.read_cached(refusing) is None
        assert maildir.read_cached(refusing, 8) is None  # (tried, refused again)
    finally:
        refusing.unlink()
    p = tmp_path / "m"
    p.write_bytes(b"on disk")
    assert maildir.read_cached(p) == b"on disk"


async def test_read_message_from_the_page_cache_and_from_a_thread(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await store.account(ACCOUNT)
    body = make_message("cached", 500)
    r = await acct.append("INBOX", body)
    await store.flush_files()  # the bytes now live in the file only
    assert await acct.read_message(r.mailbox_id, r.uid) == body
    monkeypatch.setattr(maildir, "read_cached", lambda *_a: None)  # as if the disk must be read
    assert await acct.read_message(r.mailbox_id, r.uid) == body


async def test_store_that_changes_nothing_needs_no_write(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await store.account(ACCOUNT)
    r = await acct.append("INBOX", make_message("a", 300), flags=["\\Seen"])
    before = await acct.get_mailbox("INBOX")
    writes = 0
    real_write = store.write

    async def counting_write(*a: Any, **k: Any) -> Any:
        nonlocal writes
        writes += 1
        return await real_write(*a, **k)

    monkeypatch.setattr(store, "write", counting_write)
    assert await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.ADD, ["\\Seen"]) == ([], [])
    assert await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.REMOVE, ["\\Flagged"]) == ([], [])
    # UNCHANGEDSINCE below the message's MODSEQ: refused for it, still no write (RFC 7162 3.1.3)
    assert await acct.set_flags(
        r.mailbox_id, [r.uid], FlagOp.ADD, ["\\Flagged"], unchangedsince=r.modseq - 1
    ) == ([], [r.uid])
    assert writes == 0
    assert (await acct.get_mailbox("INBOX")).highestmodseq == before.highestmodseq
    changed, failed = await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.ADD, ["\\Flagged"])
    assert writes == 1 and failed == [] and [m.uid for m in changed] == [r.uid]
    assert changed[0].flags == frozenset({"\\Seen", "\\Flagged"})


async def test_expunge_that_finds_nothing_needs_no_write(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await store.account(ACCOUNT)
    r1 = await acct.append("INBOX", make_message("a", 300))
    r2 = await acct.append("INBOX", make_message("b", 300))
    await acct.open_mailbox("INBOX")  # a selected mailbox: its listing is cached and small
    writes = 0
    real_write = store.write

    async def counting_write(*a: Any, **k: Any) -> Any:
        nonlocal writes
        writes += 1
        return await real_write(*a, **k)

    monkeypatch.setattr(store, "write", counting_write)
    assert await acct.expunge(r1.mailbox_id) == []
    assert writes == 0
    await acct.set_flags(r1.mailbox_id, [r2.uid], FlagOp.ADD, ["\\Deleted"])
    assert await acct.expunge(r1.mailbox_id) == [r2.uid]
    assert [m.uid for m in await acct.list_messages(r1.mailbox_id)] == [r1.uid]


async def test_store_known_to_change_goes_straight_to_the_writer(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the mailbox's listing cached, a STORE the listing says will change a flag does not
    pay for the read that could have skipped the writer."""
    acct = await store.account(ACCOUNT)
    r = await acct.append("INBOX", make_message("a", 300))
    await acct.open_mailbox("INBOX")  # caches the listing: the message has no flags
    quick = 0
    real_quick = store.read_quick

    async def counting_quick(*a: Any, **k: Any) -> Any:
        nonlocal quick
        quick += 1
        return await real_quick(*a, **k)

    monkeypatch.setattr(store, "read_quick", counting_quick)
    changed, _ = await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.ADD, ["\\Flagged"])
    assert [m.uid for m in changed] == [r.uid] and quick == 0


async def test_a_store_remembers_what_it_committed_as_the_next_hint(
    store: SqliteMaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Toggling a flag (as +FLAGS then -FLAGS): each STORE is known to change, even though the
    cached listing is from before the first one, so none pays for the no-change read."""
    acct = await store.account(ACCOUNT)
    r = await acct.append("INBOX", make_message("a", 300))
    await acct.open_mailbox("INBOX")
    quick = 0
    real_quick = store.read_quick

    async def counting_quick(*a: Any, **k: Any) -> Any:
        nonlocal quick
        quick += 1
        return await real_quick(*a, **k)

    monkeypatch.setattr(store, "read_quick", counting_quick)
    for op in (FlagOp.ADD, FlagOp.REMOVE, FlagOp.ADD, FlagOp.REMOVE):
        changed, _ = await acct.set_flags(r.mailbox_id, [r.uid], op, ["\\Deleted"])
        assert [m.uid for m in changed] == [r.uid]
    assert quick == 0
    # and a STORE that then changes nothing is still answered without the writer
    assert await acct.set_flags(r.mailbox_id, [r.uid], FlagOp.REMOVE, ["\\Deleted"]) == ([], [])
    assert quick == 1


def test_read_cached_reuses_its_buffer_without_leaking_octets(tmp_path: Path) -> None:
    """One buffer per thread serves every read: a short file after a long one is exactly its own
    octets, and a file the size of the limit still reads whole."""
    long, short, limit = tmp_path / "long", tmp_path / "short", tmp_path / "limit"
    long.write_bytes(b"L" * 9000)
    short.write_bytes(b"s\r\n")
    limit.write_bytes(b"m" * maildir.READ_CACHED_MAX)
    got = [maildir.read_cached(p) for p in (long, short, limit, short)]
    if got[0] is None and long.stat().st_dev in maildir._refuse_nowait:
        pytest.skip("the test's file system refuses RWF_NOWAIT (tmpfs?)")
    assert got == [b"L" * 9000, b"s\r\n", b"m" * maildir.READ_CACHED_MAX, b"s\r\n"]


def test_read_cached_of_a_known_size_makes_no_fstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size from the file's name (S=) replaces the fstat; a file of another size (changed
    behind the store) is left to the caller's thread, which reads it whole."""
    p = tmp_path / "m"
    p.write_bytes(b"Subject: x\r\n\r\nhello\r\n")
    if maildir.read_cached(p) is None:
        pytest.skip("the test's file system refuses RWF_NOWAIT (tmpfs?)")

    def no_fstat(*_a: Any) -> Any:
        raise AssertionError("fstat called")

    with monkeypatch.context() as mp:  # (os is everyone's: undone before pytest goes on)
        mp.setattr(maildir.os, "fstat", no_fstat)
        got = [maildir.read_cached(p, n) for n in (21, 20, 22, maildir.READ_CACHED_MAX + 1)]
        missing = maildir.read_cached(tmp_path / "missing", 3)
    # longer than its name says, shorter, too big: the caller's thread reads it
    assert got == [b"Subject: x\r\n\r\nhello\r\n", None, None, None]
    assert missing is None


def test_name_size_is_the_s_field() -> None:
    assert maildir.name_size(maildir.make_base("1.M2P3Q4Rt.h", 120, 7)) == 120
    assert maildir.name_size(maildir.make_base("1.M2P3Q4Rt.h", 120, 7, 110)) == 110
    assert maildir.name_size("1.M2P3.h,S=99") == 99
    assert maildir.name_size("1.M2P3.h") is None  # another program's name
    assert maildir.name_size("1.M2P3.h,S=,U=4") is None
    assert maildir.name_size("1.M2P3.h,S=-1,U=4") is None
    for base in ("1.M2P3Q4Rt.h,S=5,W=7,U=9", "x,S=0,U=1"):
        assert maildir.name_size(base) == maildir.parse_name(base + ":2,S").size


# Messages of every line-end shape: the usual, a bare CR, no final CRLF, an empty body, all
# header, a bare LF (kept exactly: no LF form), no CRLF at all (kept exactly), empty.
SHAPES = [
    make_message("usual", 600),
    b"Subject: cr\r\n\r\nbare\rCR\r\n.dot\r\n",
    b"Subject: no end\r\n\r\nlast line",
    b"Subject: empty body\r\n\r\n",
    b"Subject: header only\r\nX: y\r\n",
    b"Subject: lf\r\n\r\nbare\nLF\r\n",
    b"Subject: no crlf\n\nlf only\n",
    b"",
    b"\r\n",
]


async def test_read_wire_marks_lf_form_files_and_reads_what_read_message_does(
    store: SqliteMaildirStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_wire (POP3's read-ahead): the same octets as read_message and read_messages on every
    road; marked (no bare LF) exactly when the message's file is in LF form, so never a message
    with a bare LF; unmarked when the bytes come from the index or a thread."""
    acct = await store.account(ACCOUNT)
    inbox = await acct.get_mailbox("INBOX")
    uids = [(await acct.append("INBOX", m)).uid for m in SHAPES]
    unflushed = await acct.read_wire(inbox.id, uids)  # (bytes maybe still in the index)
    await store.flush_files()
    got = await acct.read_wire(inbox.id, [*uids, 999])
    assert isinstance(got[-1], KeyError)
    for uid, shape, one, early in zip(uids, SHAPES, got, unflushed, strict=False):
        assert isinstance(one, tuple) and isinstance(early, tuple)
        data, marked = one
        assert data == shape == early[0] == await acct.read_message(inbox.id, uid)
        [file] = (tmp_path / "data").rglob(f"cur/*,U={uid}:2,*")
        if file.stat().st_dev in maildir._refuse_nowait:
            pytest.skip("the test's file system refuses RWF_NOWAIT (tmpfs?)")
        assert marked == maildir.is_lf_form(file.name)
        if marked:
            assert data.count(b"\n") == data.count(b"\r\n")
    marks = [one[1] for one in got[:-1] if isinstance(one, tuple)]
    assert marks == [True, True, True, True, True, False, False, False, True]
    assert await acct.read_messages(inbox.id, uids) == SHAPES
    monkeypatch.setattr(maildir, "read_cached", lambda *_a: None)  # as if the disk must be read
    assert await acct.read_wire(inbox.id, uids) == [(m, False) for m in SHAPES]
