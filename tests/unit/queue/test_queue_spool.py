"""The durable spool: enqueue, reopen, crash leftovers, group commit, signing hook."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from queue_fakes import MESSAGE, FakeClock, env

from carteiro.queue.api import Envelope, QueuedRecipient
from carteiro.queue.spool import FileSpool, NewMessage, new_queue_id


async def open_spool(root: Path, **kw: object) -> FileSpool:
    s = FileSpool(root, clock=FakeClock(), **kw)  # type: ignore[arg-type]
    await s.open()
    return s


async def test_enqueue_is_durable_across_reopen(tmp_path: Path) -> None:
    s = await open_spool(tmp_path)
    e = Envelope(
        "alice@a.test",
        (
            QueuedRecipient("bob@b.test", ("SUCCESS", "FAILURE"), "rfc822;bob@b.test"),
            QueuedRecipient("c@c.test"),
        ),
        ret="HDRS",
        envid="E1",
        body="8BITMIME",
        smtputf8=True,
        auth_user="alice@a.test",
    )
    qid = await s.enqueue(e, MESSAGE)
    await s.close()
    s2 = await open_spool(tmp_path)
    m = s2.messages[qid]
    assert m.envelope() == e
    assert m.size == len(MESSAGE)
    assert [r.state for r in m.recipients] == ["pending", "pending"]
    assert m.inline and not (tmp_path / "msg" / qid).exists()  # small: kept in the index
    assert await s2.read(m) == MESSAGE
    await s2.close()


async def test_big_messages_are_files(tmp_path: Path) -> None:
    s = await open_spool(tmp_path, inline_max=10)
    qid = await s.enqueue(env("bob@b.test"), MESSAGE)
    assert (tmp_path / "msg" / qid).read_bytes() == MESSAGE
    await s.close()
    s2 = await open_spool(tmp_path, inline_max=10)
    m = s2.messages[qid]
    assert not m.inline and await s2.read(m) == MESSAGE
    await s2.remove(m)
    assert not (tmp_path / "msg" / qid).exists()
    await s2.close()


async def test_enqueue_from_a_file_links_it(tmp_path: Path) -> None:
    src = tmp_path / "incoming"
    src.write_bytes(MESSAGE)
    s = await open_spool(tmp_path / "q", inline_max=0)
    qid = await s.enqueue(env("bob@b.test"), src)
    assert os.stat(src).st_ino == os.stat(s.path(qid)).st_ino
    s2 = await open_spool(tmp_path / "q2")
    small = await s2.enqueue(env("bob@b.test"), src)
    assert not (tmp_path / "q2" / "msg" / small).exists()
    await s2.close()
    assert src.read_bytes() == MESSAGE  # untouched
    await s.close()


async def test_unacknowledged_files_are_removed_at_open(tmp_path: Path) -> None:
    s = await open_spool(tmp_path, inline_max=0)
    qid = await s.enqueue(env("bob@b.test"), MESSAGE)
    await s.close()
    (tmp_path / "msg" / "ORPHAN").write_bytes(b"half written")  # a crash before the commit
    os.unlink(tmp_path / "msg" / qid)  # and a row whose file someone removed
    s2 = await open_spool(tmp_path, inline_max=0)
    assert s2.messages == {}
    assert os.listdir(tmp_path / "msg") == []
    await s2.close()


async def test_concurrent_enqueues_share_commits(tmp_path: Path) -> None:
    s = await open_spool(tmp_path)
    ids = await asyncio.gather(*(s.enqueue(env(f"u{i}@b.test"), MESSAGE) for i in range(50)))
    assert len(set(ids)) == 50
    batches, ops = s.commit_stats
    assert ops == 50 and batches < 50
    await s.close()
    s2 = await open_spool(tmp_path)
    assert set(s2.messages) == set(ids)
    await s2.close()


async def test_record_saves_states_and_new_messages_together(tmp_path: Path) -> None:
    s = await open_spool(tmp_path)
    qid = await s.enqueue(env("bob@b.test", "carol@b.test"), MESSAGE)
    m = s.messages[qid]
    r = m.recipients[0].copy()
    r.state, r.attempts, r.last_code, r.last_status, r.last_text = "failed", 1, 550, "5.1.1", "no"
    (dsn,) = await s.record(
        m, [r], [NewMessage(env("alice@a.test", sender=""), b"Subject: x\r\n\r\nb\r\n")]
    )
    assert m.recipients[0].state == "failed"
    assert dsn.origin == "dsn" and dsn.mail_from == ""
    await s.close()
    s2 = await open_spool(tmp_path)
    m2 = s2.messages[qid]
    assert [x.state for x in m2.recipients] == ["failed", "pending"]
    assert m2.recipients[0].last_error == "550 5.1.1 no"
    assert s2.messages[dsn.id].origin == "dsn"
    await s2.remove(m2)
    assert qid not in s2.messages and not s2.path(qid).exists()
    await s2.close()


async def test_signer_only_for_trusted_senders(tmp_path: Path) -> None:
    calls: list[bytes] = []

    def signer(data: bytes) -> bytes:
        calls.append(data)
        return b"DKIM-Signature: v=1; fake\r\n"

    s = await open_spool(tmp_path, signer=signer)
    stranger = await s.enqueue(env("bob@b.test"), MESSAGE)
    user = await s.enqueue(env("bob@b.test", auth_user="alice@a.test"), MESSAGE)
    trusted = await s.enqueue(env("bob@b.test", trusted=True), MESSAGE)
    assert s.messages[stranger].prefix == b""
    assert s.messages[user].prefix == b"DKIM-Signature: v=1; fake\r\n"
    assert (await s.read(s.messages[trusted])).startswith(b"DKIM-Signature")
    assert calls == [MESSAGE, MESSAGE]
    await s.close()


async def test_a_message_the_signer_would_not_sign_skips_the_signing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer's `signs` says no (the author's domain has no key): the small message is queued on the
    event loop, unsigned, without a thread hop; when it says yes, the signer runs as before."""
    calls: list[bytes] = []
    hops: list[object] = []

    verdict = {"sign": False}

    class Signer:
        def __call__(self, data: bytes) -> bytes:
            calls.append(data)
            return b"DKIM-Signature: v=1; fake\r\n"

        def signs(self, data: bytes) -> bool:
            return verdict["sign"]

    real_to_thread = asyncio.to_thread

    async def counting_to_thread(fn: object, *args: object) -> object:
        hops.append(fn)
        return await real_to_thread(fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("carteiro.queue.spool.asyncio.to_thread", counting_to_thread)
    s = await open_spool(tmp_path, signer=Signer())
    foreign = await s.enqueue(env("bob@b.test", trusted=True), MESSAGE)
    assert s.messages[foreign].prefix == b"" and calls == [] and hops == []
    verdict["sign"] = True
    ours = await s.enqueue(env("bob@b.test", trusted=True), MESSAGE)
    assert s.messages[ours].prefix == b"DKIM-Signature: v=1; fake\r\n"
    assert calls == [MESSAGE] and len(hops) == 1
    await s.close()


async def test_enqueue_needs_a_recipient(tmp_path: Path) -> None:
    s = await open_spool(tmp_path)
    with pytest.raises(ValueError):
        await s.enqueue(Envelope("a@a.test", ()), MESSAGE)
    await s.close()


def test_queue_ids_are_unique_and_time_ordered() -> None:
    ids = [new_queue_id(1_700_000_000.0 + i) for i in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100
    assert len({new_queue_id(1.0) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("inline_max", [10, 1 << 20])
async def test_a_dedupe_key_queues_a_message_once(tmp_path: Path, inline_max: int) -> None:
    """Issue 10: a retried SMTP transaction (same key) is not queued twice, across restarts too;
    the temp file of the refused copy does not stay behind."""
    s = await open_spool(tmp_path, inline_max=inline_max)
    first = await s.enqueue(env("bob@b.test"), MESSAGE, dedupe_key="k1")
    assert await s.enqueue(env("bob@b.test"), MESSAGE, dedupe_key="k1") == first
    other = await s.enqueue(env("bob@b.test"), MESSAGE, dedupe_key="k2")
    plain = await s.enqueue(env("bob@b.test"), MESSAGE)
    assert len({first, other, plain}) == 3
    await s.close()
    s2 = await open_spool(tmp_path, inline_max=inline_max)
    assert await s2.enqueue(env("bob@b.test"), MESSAGE, dedupe_key="k1") == first
    assert sorted(s2.messages) == sorted([first, other, plain])
    files = sorted(os.listdir(tmp_path / "msg")) if (tmp_path / "msg").exists() else []
    assert files == ([] if inline_max > 100 else sorted([first, other, plain]))
    await s2.close()


OLD_SCHEMA = """
CREATE TABLE messages (
    id TEXT PRIMARY KEY, mail_from TEXT NOT NULL, ret TEXT, envid TEXT,
    body TEXT NOT NULL DEFAULT '7BIT', smtputf8 INTEGER NOT NULL DEFAULT 0,
    requiretls INTEGER NOT NULL DEFAULT 0, auth_user TEXT, size INTEGER NOT NULL,
    arrival REAL NOT NULL, held INTEGER NOT NULL DEFAULT 0, prefix BLOB NOT NULL DEFAULT x'',
    origin TEXT NOT NULL DEFAULT '', inline INTEGER NOT NULL DEFAULT 0
);
"""


async def test_a_spool_whose_messages_table_has_rowids_still_works(tmp_path: Path) -> None:
    """New spools get `messages` WITHOUT ROWID (one b-tree less to write per enqueue); a spool
    made before (a rowid table, and no verp column) is used as it is."""
    import sqlite3

    old = sqlite3.connect(tmp_path / "queue.sqlite")
    old.executescript(OLD_SCHEMA)
    old.close()
    s = await open_spool(tmp_path)
    a = await s.enqueue(env("bob@b.test"), MESSAGE)
    await s.close()
    s = await open_spool(tmp_path)
    assert s.messages[a].recipients[0].address == "bob@b.test"
    await s.remove(s.messages[a])
    await s.close()
    db = sqlite3.connect(tmp_path / "queue.sqlite")
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'messages'").fetchone()
    assert (
        "WITHOUT ROWID" not in sql
        and db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    )
    db.close()

    fresh = tmp_path / "fresh"
    s = await open_spool(fresh)
    await s.enqueue(env("bob@b.test"), MESSAGE)
    await s.close()
    db = sqlite3.connect(fresh / "queue.sqlite")
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'messages'").fetchone()
    assert "WITHOUT ROWID" in sql
    db.close()
