"""FETCH of metadata items (UID, FLAGS, MODSEQ...) answered from the renderings the view keeps per
message (docs/imap.md, "FETCH and SEARCH"): every answer must be what a fresh rendering would be,
after this session's STORE, another session's change, an arrival, an expunge that renumbers the
messages, a change of the items asked for, and ENABLE IMAP4rev2 (which hides \\Recent).
Session 1 logs in first."""

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


async def test_fetch_flags_with_recent_follows_every_change(server):
    """Two messages \\Recent to session 1. Its own STORE, session 2's STORE and an APPEND from
    session 2 (not selected on INBOX, so session 1 claims the new message) each show in the next
    FETCH 1:* (UID FLAGS), \\Recent kept where it belongs; an EXPUNGE renumbers the lines."""
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
C: a3 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))
S: * 2 FETCH (UID 2 FLAGS (\\Recent))
S: a3 OK Fetch completed.
C: a4 STORE 1 +FLAGS (\\Flagged)
S: * 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent))
S: a4 OK Store completed.
C: a5 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen \\Recent))
S: * 2 FETCH (UID 2 FLAGS (\\Recent))
S: a5 OK Fetch completed.
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
C2: b3 STORE 2 +FLAGS ($Work)
S2: * FLAGS <...>
S2: * OK [PERMANENTFLAGS <...>
S2: * 2 FETCH (FLAGS ($Work))
S2: b3 OK Store completed.
C2: b4 FETCH 1:* (UID FLAGS)
S2: * 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen))
S2: * 2 FETCH (UID 2 FLAGS ($Work))
S2: b4 OK Fetch completed.
C2: b5 UNSELECT
S2: b5 OK Unselect completed.
C2: b6 APPEND INBOX (\\Draft) {{5+}}
C2: hello
S2: b6 OK [APPENDUID <...> 3] Append completed.
C: a6 NOOP
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 3 EXISTS
S: * 3 RECENT
S: * 2 FETCH (UID 2 FLAGS ($Work \\Recent))
S: a6 OK NOOP completed.
C: a7 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen \\Recent))
S: * 2 FETCH (UID 2 FLAGS ($Work \\Recent))
S: * 3 FETCH (UID 3 FLAGS (\\Draft \\Recent))
S: a7 OK Fetch completed.
C: a8 STORE 1 +FLAGS.SILENT (\\Deleted)
S: a8 OK Store completed.
C: a9 EXPUNGE
S: * 1 EXPUNGE
S: a9 OK Expunge completed.
C: a10 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 2 FLAGS ($Work \\Recent))
S: * 2 FETCH (UID 3 FLAGS (\\Draft \\Recent))
S: a10 OK Fetch completed.
C: a11 FETCH 2,1 (FLAGS)
S: * 1 FETCH (FLAGS ($Work \\Recent))
S: * 2 FETCH (FLAGS (\\Draft \\Recent))
S: a11 OK Fetch completed.
C: a12 UID FETCH 3 (FLAGS)
S: * 2 FETCH (UID 3 FLAGS (\\Draft \\Recent))
S: a12 OK Fetch completed.
C: a13 ENABLE IMAP4rev2
S: * ENABLED IMAP4rev2
S: a13 OK Enabled.
C: a14 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 2 FLAGS ($Work))
S: * 2 FETCH (UID 3 FLAGS (\\Draft))
S: a14 OK Fetch completed.
""",
    )


async def test_fetch_flags_after_a_flag_change_in_the_feed_chain(server):
    """Another session's flag change that the view applies from the change feed (no store read)
    also replaces the kept rendering; a message that comes back to the same flags renders the
    same; MODSEQ, asked for, follows each change (RFC 7162 3.1.4)."""
    acct = await server.account()
    for _ in range(3):
        await acct.append("INBOX", MSG)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 3 EXISTS
S: * 3 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 4] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 FETCH 2:3 (UID FLAGS)
S: * 2 FETCH (UID 2 FLAGS (\\Recent))
S: * 3 FETCH (UID 3 FLAGS (\\Recent))
S: a3 OK Fetch completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: <...>
S2: <...>
S2: * 3 EXISTS
S2: * 0 RECENT
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: b2 OK [READ-WRITE] Select completed.
C2: b3 STORE 2 +FLAGS.SILENT (\\Answered)
S2: b3 OK Store completed.
C: a4 NOOP
S: * 2 FETCH (UID 2 FLAGS (\\Answered \\Recent))
S: a4 OK NOOP completed.
C: a5 FETCH 1:3 (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Recent))
S: * 2 FETCH (UID 2 FLAGS (\\Answered \\Recent))
S: * 3 FETCH (UID 3 FLAGS (\\Recent))
S: a5 OK Fetch completed.
C2: b4 STORE 2 -FLAGS.SILENT (\\Answered)
S2: b4 OK Store completed.
C: a6 NOOP
S: * 2 FETCH (UID 2 FLAGS (\\Recent))
S: a6 OK NOOP completed.
C: a7 FETCH 1:* (UID FLAGS MODSEQ)
S: * OK [HIGHESTMODSEQ <...>] Highest
S: * 1 FETCH (UID 1 FLAGS (\\Recent) MODSEQ (<...>))
S: * 2 FETCH (UID 2 FLAGS (\\Recent) MODSEQ (<...>))
S: * 3 FETCH (UID 3 FLAGS (\\Recent) MODSEQ (<...>))
S: a7 OK Fetch completed.
C: a8 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Recent))
S: * 2 FETCH (UID 2 FLAGS (\\Recent))
S: * 3 FETCH (UID 3 FLAGS (\\Recent))
S: a8 OK Fetch completed.
C2: b5 STORE 3 +FLAGS.SILENT (\\Seen)
S2: b5 OK Store completed.
C: a9 NOOP
S: * 3 FETCH (UID 3 FLAGS (\\Seen \\Recent) MODSEQ (<...>))
S: a9 OK NOOP completed.
C: a10 FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Recent))
S: * 2 FETCH (UID 2 FLAGS (\\Recent))
S: * 3 FETCH (UID 3 FLAGS (\\Seen \\Recent))
S: a10 OK Fetch completed.
""",
    )


async def test_status_of_the_selected_mailbox_after_other_sessions_changes(server):
    """STATUS on the selected mailbox (answered from its view when that is exactly at the store's
    HIGHESTMODSEQ): another session's \\Seen, APPEND and EXPUNGE are announced first, and the
    numbers are the store's; a STATUS of another mailbox is unaffected."""
    acct = await server.account()
    for _ in range(3):
        await acct.append("INBOX", MSG)
    await acct.create_mailbox("Other")
    await acct.append("Other", MSG, ["\\Seen"])
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 3 EXISTS
S: * 3 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 4] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 STATUS INBOX (MESSAGES UNSEEN UIDNEXT)
S: * STATUS INBOX (MESSAGES 3 UNSEEN 3 UIDNEXT 4)
S: a3 OK Status completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: <...>
S2: <...>
S2: * 3 EXISTS
S2: * 0 RECENT
S2: <...>
S2: <...>
S2: <...>
S2: <...>
S2: b2 OK [READ-WRITE] Select completed.
C2: b3 STORE 1:2 +FLAGS.SILENT (\\Seen)
S2: b3 OK Store completed.
C2: b4 STORE 1 +FLAGS.SILENT (\\Deleted)
S2: b4 OK Store completed.
C2: b5 EXPUNGE
S2: * 1 EXPUNGE
S2: b5 OK Expunge completed.
C2: b6 APPEND INBOX {{5+}}
C2: hello
S2: * 3 EXISTS
S2: * 1 RECENT
S2: b6 OK [APPENDUID <...> 4] Append completed.
C: a4 STATUS INBOX (UNSEEN MESSAGES UIDNEXT RECENT)
S: * 1 EXPUNGE
S: * 3 EXISTS
S: * 2 RECENT
S: * 1 FETCH (UID 2 FLAGS (\\Seen \\Recent))
S: * STATUS INBOX (UNSEEN 2 MESSAGES 3 UIDNEXT 5 RECENT 2)
S: a4 OK Status completed.
C: a5 FETCH 2 (FLAGS)
S: * 2 FETCH (FLAGS (\\Recent))
S: a5 OK Fetch completed.
C: a6 STATUS Other (MESSAGES UNSEEN)
S: * STATUS Other (MESSAGES 1 UNSEEN 0)
S: a6 OK Status completed.
C: a7 STATUS INBOX (MESSAGES UNSEEN DELETED SIZE)
S: * STATUS INBOX (MESSAGES 3 UNSEEN 2 DELETED 0 SIZE <...>)
S: a7 OK Status completed.
""",
    )
