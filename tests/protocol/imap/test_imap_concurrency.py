"""Two and three sessions on one mailbox (RFC 3501 5.2, 7.4.1; RFC 9051 5.2, 7.5.1; RFC 2177).

Each session keeps its own message numbers; another session's changes arrive as EXISTS, FETCH
FLAGS and EXPUNGE, the EXPUNGEs only where the RFC allows them (never while answering FETCH,
STORE or SEARCH by sequence number).
"""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import asyncio
import time

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

from carteiro.store.api import DELETED, FlagOp


def msg(n: int) -> bytes:
    return f"From: a@example.test\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


async def fill(server, n: int = 3) -> None:
    for i in range(1, n + 1):
        await server.deliver(msg(i))


LOGIN = f'LOGIN {USER} "{PASSWORD}"'


async def test_flags_from_another_session(server):
    await fill(server)
    await play(
        server,
        f"""
C1: a1 {LOGIN}
S1: a1 OK <...>
C1: a2 SELECT INBOX
S1: <...>
S1: <...>
S1: * 3 EXISTS
S1: * 3 RECENT
S1: * OK [UNSEEN 1] First unseen.
S1: * OK [UIDVALIDITY <...>] UIDs valid
S1: * OK [UIDNEXT 4] Predicted next UID
S1: * OK [MAILBOXID (<...>)] Ok
S1: a2 OK [READ-WRITE] Select completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b2 OK [READ-WRITE] Select completed.
C2: b3 STORE 2 +FLAGS (\\Flagged)
S2: * 2 FETCH (FLAGS (\\Flagged))
S2: b3 OK Store completed.
C1: a3 NOOP
S1: * 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))
S1: a3 OK NOOP completed.
C2: b4 NOOP
S2: b4 OK NOOP completed.
""",
    )


async def test_no_expunge_during_fetch_store_search(server):
    await fill(server, 4)
    sessions = await play(
        server,
        f"""
C1: a1 {LOGIN}
S1: a1 OK <...>
C1: a2 SELECT INBOX
S1: <...>
S1: <...>
S1: * 4 EXISTS
S1: <...>
S1: <...>
S1: <...>
S1: <...>
S1: * OK [MAILBOXID (<...>)] Ok
S1: a2 OK [READ-WRITE] Select completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b2 OK <...>
C2: b3 STORE 2 +FLAGS.SILENT (\\Deleted)
S2: b3 OK Store completed.
C2: b4 EXPUNGE
S2: * 2 EXPUNGE
S2: b4 OK Expunge completed.
# session 1 still numbers message 4 as 4; the FETCH must not carry the EXPUNGE
C1: a3 FETCH 4 (UID)
S1: * 4 FETCH (UID 4)
S1: * 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))
S1: a3 OK Fetch completed.
C1: a4 SEARCH ALL
S1: * SEARCH 1 2 3 4
S1: a4 OK Search completed.
C1: a5 STORE 3 +FLAGS (\\Seen)
S1: * 3 FETCH (FLAGS (\\Seen \\Recent))
S1: a5 OK Store completed.
C1: a6 UID FETCH 4 (FLAGS)
S1: * 4 FETCH (UID 4 FLAGS (\\Recent))
S1: * 2 EXPUNGE
S1: a6 OK Fetch completed.
""",
    )
    assert sessions


async def test_msn_fetch_of_expunged_message_says_expungeissued(server):
    await fill(server, 2)
    c1 = await server.connect(login=True)
    await c1.cmd("SELECT INBOX")
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    await acct.delete_messages(box.id, [1])  # POP3 DELE + QUIT does this
    lines = await c1.cmd("FETCH 1:2 (BODY.PEEK[TEXT])")
    assert lines[-1].startswith("t3 NO [EXPUNGEISSUED]")
    assert not any("EXPUNGE" in x.split("[")[0] for x in lines[:-1])
    lines = await c1.cmd("NOOP")
    assert lines == ["* 1 EXPUNGE", "t4 OK NOOP completed."]


async def test_exists_before_fetch_of_new_message(server):
    await fill(server, 1)
    c1 = await server.connect(login=True)
    await c1.cmd("SELECT INBOX")
    c2 = await server.connect(login=True)
    await c2.cmd("APPEND INBOX {12+}\r\nSubject: x\r\n")
    lines = await c1.cmd("FETCH 1:* (UID)")
    # the new message is only numbered once announced: "*" was 1 when the command began
    assert lines == ["* 1 FETCH (UID 1)", "* 2 EXISTS", "* 2 RECENT", "t3 OK Fetch completed."]
    lines = await c1.cmd("FETCH 2 (UID FLAGS)")
    assert lines == ["* 2 FETCH (UID 2 FLAGS (\\Recent))", "t4 OK Fetch completed."]


async def _idle_wakes(server, action) -> float:  # type: ignore[no-untyped-def]
    c1 = await server.connect(login=True)
    await c1.cmd("SELECT INBOX")
    await c1.send(b"i1 IDLE\r\n")
    assert await c1.line() == "+ idling"
    start = time.monotonic()
    await action()
    line = await c1.line(timeout=1.0)
    elapsed = time.monotonic() - start
    await c1.send(b"DONE\r\n")
    rest = [await c1.line()]
    while not rest[-1].startswith("i1 "):
        rest.append(await c1.line())
    assert rest[-1] == "i1 OK Idle completed."
    return elapsed if line else 99.0


async def test_idle_woken_by_delivery(server):
    await fill(server, 1)

    async def deliver() -> None:
        await server.deliver(msg(9))

    assert await _idle_wakes(server, deliver) < 1.0


async def test_idle_woken_by_other_session_and_pop3_deletion(server):
    await fill(server, 2)
    c2 = await server.connect(login=True)
    await c2.cmd("SELECT INBOX")

    async def other_session() -> None:
        await c2.cmd("STORE 1 +FLAGS (\\Answered)")

    assert await _idle_wakes(server, other_session) < 1.0
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")

    async def pop3_delete() -> None:
        await acct.delete_messages(box.id, [2])

    assert await _idle_wakes(server, pop3_delete) < 1.0


async def test_three_sessions_see_each_other(server):
    await fill(server, 3)
    c1, c2, c3 = [await server.connect(login=True) for _ in range(3)]
    for c in (c1, c2, c3):
        await c.cmd("SELECT INBOX")
    await c1.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    await c2.cmd("APPEND INBOX {12+}\r\nSubject: y\r\n")
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    await acct.set_flags(box.id, [3], FlagOp.ADD, ["$Work"])
    await c1.cmd("EXPUNGE")
    # session 3 hears everything at its next NOOP, in a consistent order
    lines = await c3.cmd("NOOP")
    assert lines[0] == "* 1 EXPUNGE"
    assert "* 3 EXISTS" in lines
    assert any(x.startswith("* FLAGS (") and "$Work" in x for x in lines)
    assert "* 2 FETCH (UID 3 FLAGS ($Work))" in lines
    assert lines[-1] == "t3 OK NOOP completed."
    # and its numbering now matches the server's
    lines = await c3.cmd("FETCH 1:* (UID)")
    assert lines[:-1] == ["* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)"]


async def test_many_concurrent_sessions_store_and_expunge(server):
    await fill(server, 20)

    async def worker(k: int) -> None:
        c = await server.connect(login=True)
        await c.cmd("SELECT INBOX")
        for _ in range(5):
            await c.cmd(f"STORE {k} +FLAGS (\\Seen)")
            await c.cmd("NOOP")
        await c.cmd("LOGOUT")

    await asyncio.gather(*(worker(k) for k in range(1, 11)))
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    await acct.set_flags(box.id, list(range(1, 21, 2)), FlagOp.ADD, [DELETED])
    c = await server.connect(login=True)
    await c.cmd("SELECT INBOX")
    lines = await c.cmd("EXPUNGE")
    assert lines.count("* 1 EXPUNGE") == 1 and len(lines) == 11
    lines = await c.cmd("UID SEARCH SEEN")
    assert lines[0] == "* SEARCH 2 4 6 8 10"
