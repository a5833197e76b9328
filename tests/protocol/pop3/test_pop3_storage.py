"""A full disk or a disk quota in the UPDATE state (issue 10 point 8): QUIT answers -ERR with a
reason (RFC 1939 6: "-ERR some deleted messages not removed"; RFC 3206 SYS/TEMP: the condition is
the server's and passes), the maildrop stays intact, the server logs one WARNING line with the
account and the errno (no traceback), and the next session sees every message. The memory store's
`fail_writes_with` hook stands for the disk."""

from __future__ import annotations

import errno
import logging

import pytest
from pop3_harness import USER, Harness, play

from carteiro.store.api import StorageFull

MSG = b"From: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

pytestmark = pytest.mark.memory_only(reason="the memory store's fault hook stands for the disk")


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (StorageFull(), "ENOSPC"),
        (StorageFull("", errno.EDQUOT), "EDQUOT"),
        (OSError(errno.ENOSPC, "No space left on device"), "ENOSPC"),
    ],
)
async def test_quit_update_on_a_full_disk(server: Harness, caplog, fault, code) -> None:  # type: ignore[no-untyped-def]
    uids = [await server.add(MSG), await server.add(MSG)]
    c = await server.login()
    server.store.fail_writes_with = fault  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        await play(
            c,
            """
            C: RETR 2
            C: DELE 1
            C: QUIT
            S: +OK {...}
            S: From: bob@example.test
            S: Subject: hi
            S:
            S: hello
            S: .
            S: +OK message 1 deleted
            S: -ERR [SYS/TEMP] Insufficient storage on the server; no messages were removed. Try again later.
            -- eof
            """,
        )
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    [rec] = records
    assert rec.levelno == logging.WARNING and rec.exc_info is None, rec.getMessage()
    assert USER in rec.getMessage() and code in rec.getMessage(), rec.getMessage()
    server.store.fail_writes_with = None  # type: ignore[attr-defined]
    assert await server.uids() == uids  # the maildrop is intact
    acct = await server.account()
    metas = await acct.list_messages(await server.inbox_id())
    assert all(not m.flags for m in metas)  # nor half an UPDATE (\Seen of RETR 2)
    c = await server.login()  # the lock was released
    assert await c.cmd("STAT") == f"+OK 2 {2 * len(MSG)}"
