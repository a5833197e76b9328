"""\\Recent (RFC 3501 2.3.2, 6.3.1, 6.3.2, 6.3.10): a message is recent to the first session told
of it, whatever the server did meanwhile. SELECT takes what it sees, EXAMINE and STATUS only look;
the claims live in the store, so a restart changes nothing. Session 1 logs in first."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    play,
    server,
    start_server,
    tls_files,
)

LOGIN = f'LOGIN {USER} "{PASSWORD}"'
MSG = b"From: a@example.test\r\nSubject: hello\r\n\r\nhi\r\n"


async def test_recent_to_the_first_select_not_the_second(server):
    """Mail delivered before any session met the mailbox is \\Recent to the first SELECT (FETCH
    FLAGS, SEARCH RECENT/NEW), not to the second; a later arrival goes to the first session that
    is told of it, and only one (RFC 3501 2.3.2)."""
    acct = await server.account()
    await acct.append("INBOX", MSG, ["\\Seen"])
    await acct.append("INBOX", MSG)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 2 EXISTS
S: * 2 RECENT
S: * OK [UNSEEN 2] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 3] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 FETCH 1:* FLAGS
S: * 1 FETCH (FLAGS (\\Seen \\Recent))
S: * 2 FETCH (FLAGS (\\Recent))
S: a3 OK Fetch completed.
C: a4 SEARCH RECENT
S: * SEARCH 1 2
S: a4 OK Search completed.
C: a5 SEARCH NEW
S: * SEARCH 2
S: a5 OK Search completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: * FLAGS <...>
S2: * OK [PERMANENTFLAGS <...>
S2: * 2 EXISTS
S2: * 0 RECENT
S2: * OK [UNSEEN 2] First unseen.
S2: * OK [UIDVALIDITY <...>] UIDs valid
S2: * OK [UIDNEXT 3] Predicted next UID
S2: * OK [MAILBOXID (<...>)] Ok
S2: b2 OK [READ-WRITE] Select completed.
C2: b3 FETCH 1:* FLAGS
S2: * 1 FETCH (FLAGS (\\Seen))
S2: * 2 FETCH (FLAGS ())
S2: b3 OK Fetch completed.
C2: b4 SEARCH RECENT
S2: * SEARCH
S2: b4 OK Search completed.
C2: b5 SEARCH OLD
S2: * SEARCH 1 2
S2: b5 OK Search completed.
C3: c1 {LOGIN}
S3: c1 OK <...>
C3: c2 APPEND INBOX {{10+}}
C3: Subject: x
S3: c2 OK [APPENDUID <...> 3] Append completed.
C: a6 NOOP
S: * 3 EXISTS
S: * 3 RECENT
S: a6 OK NOOP completed.
C2: b6 NOOP
S2: * 3 EXISTS
S2: * 0 RECENT
S2: b6 OK NOOP completed.
C: a7 UID SEARCH NEW
S: * SEARCH 2 3
S: a7 OK Search completed.
C2: b7 UID FETCH 3 FLAGS
S2: * 3 FETCH (UID 3 FLAGS ())
S2: b7 OK Fetch completed.
""",
    )


async def test_examine_and_status_report_recent_without_taking_it(server):
    """RFC 3501 6.3.2: EXAMINE MUST NOT cause messages to lose \\Recent; it reports them (the
    RECENT response, FETCH FLAGS, SEARCH RECENT) and leaves them to the next SELECT. RFC 3501
    6.3.10: STATUS RECENT counts the messages no session has taken yet."""
    acct = await server.account()
    await acct.append("INBOX", MSG)
    await acct.append("INBOX", MSG)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 STATUS INBOX (MESSAGES RECENT)
S: * STATUS INBOX (MESSAGES 2 RECENT 2)
S: a2 OK Status completed.
C: a3 EXAMINE INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 2 EXISTS
S: * 2 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 3] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a3 OK [READ-ONLY] Examine completed.
C: a4 FETCH 1 FLAGS
S: * 1 FETCH (FLAGS (\\Recent))
S: a4 OK Fetch completed.
C: a5 SEARCH RECENT
S: * SEARCH 1 2
S: a5 OK Search completed.
C: a6 STATUS INBOX (RECENT)
S: * STATUS INBOX (RECENT 2)
S: a6 OK Status completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 STATUS INBOX (RECENT)
S2: * STATUS INBOX (RECENT 2)
S2: b2 OK Status completed.
C2: b3 SELECT INBOX
S2: * FLAGS <...>
S2: * OK [PERMANENTFLAGS <...>
S2: * 2 EXISTS
S2: * 2 RECENT
S2: <...>
S2: <...>
S2: <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b3 OK [READ-WRITE] Select completed.
C: a7 STATUS INBOX (RECENT)
S: * STATUS INBOX (RECENT 0)
S: a7 OK Status completed.
C: a8 EXAMINE INBOX
S: * OK [CLOSED] Previous mailbox closed.
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 2 EXISTS
S: * 0 RECENT
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a8 OK [READ-ONLY] Examine completed.
C3: c1 {LOGIN}
S3: c1 OK <...>
C3: c2 APPEND INBOX {{10+}}
C3: Subject: x
S3: c2 OK [APPENDUID <...> 3] Append completed.
C: a9 NOOP
S: * 3 EXISTS
S: * 1 RECENT
S: a9 OK NOOP completed.
C: a10 FETCH 3 FLAGS
S: * 3 FETCH (FLAGS (\\Recent))
S: a10 OK Fetch completed.
C3: c3 STATUS INBOX (RECENT)
S3: * STATUS INBOX (RECENT 1)
S3: c3 OK Status completed.
C2: b4 NOOP
S2: * 3 EXISTS
S2: * 3 RECENT
S2: b4 OK NOOP completed.
C3: c4 STATUS INBOX (RECENT)
S3: * STATUS INBOX (RECENT 0)
S3: c4 OK Status completed.
""",
    )


async def test_recent_survives_a_restart(start_server):
    """The claims are the store's: a new server over the same data (a restart) hands out as
    \\Recent exactly what no session was handed before it, no more and no less."""
    srv = await start_server()
    await srv.deliver(MSG)
    await play(srv, f"C: a1 {LOGIN}\nS: a1 OK <...>\nC: a2 SELECT INBOX\n" + _tail(1, 1))
    await srv.deliver(MSG)  # after the only session met the mailbox: nobody was told of it
    srv = await start_server(restart=srv)
    await play(
        srv,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
{_tail(2, 1)}
C: a3 FETCH 1:* FLAGS
S: * 1 FETCH (FLAGS ())
S: * 2 FETCH (FLAGS (\\Recent))
S: a3 OK Fetch completed.
""",
    )
    srv = await start_server(restart=srv)
    await play(
        srv,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 STATUS INBOX (MESSAGES RECENT)
S: * STATUS INBOX (MESSAGES 2 RECENT 0)
S: a2 OK Status completed.
C: a3 EXAMINE INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 2 EXISTS
S: * 0 RECENT
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a3 OK [READ-ONLY] Examine completed.
""",
    )


def _tail(exists: int, recent: int) -> str:
    return f"""\
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * {exists} EXISTS
S: * {recent} RECENT
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed."""
