"""Issue 10 point 3: events are wake-ups, the store's changes since a MODSEQ are the data. A
delivery by another process whose event arrives after this process's own APPEND is not lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from carteiro.mail.imap_view import AppendLog, MailboxView
from carteiro.store.api import SEEN, AppendResult, FlagOp, MessageAdded, MessageMeta
from carteiro.store.sqlite_maildir import SqliteMaildirStore

ACCT = "alice@example.test"


def msg(n: int) -> bytes:
    return f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode()


async def test_late_event_from_another_process_is_not_lost(tmp_path: Path) -> None:
    here = SqliteMaildirStore(tmp_path / "data")
    other = SqliteMaildirStore(tmp_path / "data")  # as `carteiro deliver` would open it
    try:
        await here.create_account(ACCT)
        a = await here.account(ACCT)
        b = await other.account(ACCT)
        await a.append("INBOX", msg(0))
        view = await MailboxView.open(a, "INBOX", False)
        assert list(view.uids) == [1]
        theirs = await b.append("INBOX", msg(1))  # its event has not reached us yet
        ours: AppendResult = await a.append("INBOX", msg(2))
        assert (theirs.uid, ours.uid) == (2, 3)
        view.note_appended(MessageMeta(ours.uid, frozenset(), ours.modseq, 0.0, len(msg(2))))
        view.feed([MessageAdded(ACCT, view.id, ours.uid, ours.modseq)])
        upd = await view.sync(allow_expunge=True)
        assert upd.exists == 3 and list(view.uids) == [1, 2, 3]
        # the late event changes nothing more
        view.feed([MessageAdded(ACCT, view.id, theirs.uid, theirs.modseq)])
        upd = await view.sync(allow_expunge=True)
        assert not upd and list(view.uids) == [1, 2, 3]
    finally:
        await other.close()
        await here.close()


async def test_own_appends_in_sequence_need_no_store_read(tmp_path: Path) -> None:
    store = SqliteMaildirStore(tmp_path / "data")
    try:
        await store.create_account(ACCT)
        a = await store.account(ACCT)
        view = await MailboxView.open(a, "INBOX", False)
        calls = 0
        real = a.changes_since

        async def counting(mailbox_id: int, modseq: int):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real(mailbox_id, modseq)

        a.changes_since = counting  # type: ignore[method-assign]
        for i in range(3):
            r = await a.append("INBOX", msg(i))
            view.note_appended(MessageMeta(r.uid, frozenset(), r.modseq, 0.0, len(msg(i))))
            view.feed([MessageAdded(ACCT, view.id, r.uid, r.modseq)])
        upd = await view.sync(allow_expunge=True)
        assert upd.exists == 3 and calls == 0
    finally:
        await store.close()


async def test_another_sessions_appends_need_no_store_read(tmp_path: Path) -> None:
    """The server's AppendLog, shared by its sessions: a view told (by the feed) of a message
    another session appended applies it from the log, and ends equal to the store's listing;
    a message the log does not know (a delivery) makes it ask the store."""
    store = SqliteMaildirStore(tmp_path / "data")
    try:
        await store.create_account(ACCT)
        a = await store.account(ACCT)
        log = AppendLog()
        sub = a.subscribe()
        view = await MailboxView.start(a, *(await a.open_mailbox("INBOX")), False, log)
        calls = 0
        real = a.changes_since

        async def counting(mailbox_id: int, modseq: int):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real(mailbox_id, modseq)

        a.changes_since = counting  # type: ignore[method-assign]
        for i in range(3):  # what another session's APPEND does (servers/imap/mailbox.py)
            r = await a.append("INBOX", msg(i), ["$Work"], 1_700_000_000.5 + i)
            log.add(
                a.account,
                r.mailbox_id,
                MessageMeta(
                    r.uid, frozenset({"$Work"}), r.modseq, 1_700_000_000.5 + i, len(msg(i))
                ),
            )
        await a.set_flags(view.id, [2], FlagOp.ADD, [SEEN])
        view.feed(sub.pending())
        upd = await view.sync(allow_expunge=True)
        assert upd.exists == 3 and upd.new_keywords and calls == 0
        assert view.metas == await a.list_messages(view.id)
        await a.append("INBOX", msg(9))  # not in the log
        view.feed(sub.pending())
        upd = await view.sync(allow_expunge=True)
        assert upd.exists == 4 and calls == 1
        assert view.metas == await a.list_messages(view.id)
        sub.close()
    finally:
        await store.close()


async def test_an_append_under_way_is_waited_for_then_the_store_asked(tmp_path: Path) -> None:
    """The store wakes the views at COMMIT, before the APPEND's task resumes to log what it
    appended: a view meeting such an event while an APPEND is under way waits a loop turn or
    two for the log rather than reading; if the log never gets it, it asks the store."""
    store = SqliteMaildirStore(tmp_path / "data")
    try:
        await store.create_account(ACCT)
        a = await store.account(ACCT)
        log = AppendLog()
        sub = a.subscribe()
        view = await MailboxView.start(a, *(await a.open_mailbox("INBOX")), False, log)
        calls = 0
        real = a.changes_since

        async def counting(mailbox_id: int, modseq: int):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real(mailbox_id, modseq)

        a.changes_since = counting  # type: ignore[method-assign]
        log.begin(a.account)
        r = await a.append("INBOX", msg(1))
        meta = MessageMeta(r.uid, frozenset(), r.modseq, 0.0, 0)

        async def appender_resumes() -> None:
            await asyncio.sleep(0)
            log.add(a.account, r.mailbox_id, meta)
            log.end(a.account)

        task = asyncio.ensure_future(appender_resumes())
        view.feed(sub.pending())
        upd = await view.sync(allow_expunge=True)
        await task
        assert upd.exists == 1 and calls == 0 and view.metas == [meta]
        log.begin(a.account)  # an APPEND under way, but not of this message (a delivery)
        await a.append("INBOX", msg(2))
        view.feed(sub.pending())
        upd = await view.sync(allow_expunge=True)
        assert upd.exists == 2 and calls == 1
        assert view.metas[1] == (await a.list_messages(view.id))[1]
        log.end(a.account)
        assert not log.writing(a.account)
        sub.close()
    finally:
        await store.close()
