"""Compliance transcripts for deviations found while checking the server against RFC 3501,
RFC 9051 and the advertised extensions (section numbers in each docstring). Each failed before
its fix. Session 1 logs in first."""

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
PLAIN = b"From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n"


async def test_no_empty_fetch_response_for_unknown_cte(server):
    """RFC 9051 7.5.2 / 9: msg-att holds at least one item, so a message whose only item is a
    BINARY of an undecodable part gets no "* n FETCH ()"; the tagged NO [UNKNOWN-CTE] (RFC 3516
    4.3) says why."""
    await server.deliver(
        b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: x-weird\r\n\r\nzzz\r\n"
    )
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 EXAMINE INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 1 EXISTS
S: * 1 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-ONLY] Examine completed.
C: a3 FETCH 1 (BINARY.PEEK[1])
S: a3 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding x-weird
C: a4 FETCH 1 (BINARY.SIZE[1] UID)
S: * 1 FETCH (UID 1)
S: a4 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding x-weird
""",
    )


async def test_bad_select_leaves_the_mailbox_selected(server):
    """A BAD command has no effect: SELECT with a QRESYNC parameter before ENABLE QRESYNC
    (RFC 7162 3.2.5) neither closes the selected mailbox nor sends [CLOSED] (RFC 9051 6.3.2,
    RFC 7162 3.2.11 are about a SELECT that is executed)."""
    await server.deliver(PLAIN)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 1 EXISTS
S: * 1 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 SELECT INBOX (QRESYNC (1 1))
S: a3 BAD QRESYNC parameter needs ENABLE QRESYNC first
C: a4 FETCH 1 UID
S: * 1 FETCH (UID 1)
S: a4 OK Fetch completed.
""",
    )


async def test_condstore_enabling_items_answered(server):
    """STATUS HIGHESTMODSEQ (RFC 7162 3.1.6, also via LIST-STATUS) and SEARCH MODSEQ (3.1.5)
    are answered and enable CONDSTORE: the SELECT after them reports HIGHESTMODSEQ."""
    await server.deliver(PLAIN)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 STATUS INBOX (MESSAGES HIGHESTMODSEQ)
S: * STATUS INBOX (MESSAGES 1 HIGHESTMODSEQ <...>)
S: a2 OK Status completed.
C: a3 LIST "" INBOX RETURN (STATUS (HIGHESTMODSEQ))
S: * LIST (<...>) "/" INBOX
S: * STATUS INBOX (HIGHESTMODSEQ <...>)
S: a3 OK List completed.
C: a4 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 1 EXISTS
S: * 1 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * OK [HIGHESTMODSEQ <...>] Highest
S: * OK [MAILBOXID (<...>)] Ok
S: a4 OK [READ-WRITE] Select completed.
C: a5 SEARCH NOT MODSEQ 1
S: * SEARCH
S: a5 OK Search completed.
C: a6 SEARCH MODSEQ 1
S: * SEARCH 1 (MODSEQ <...>)
S: a6 OK Search completed.
""",
    )


async def test_status_recent_of_the_selected_mailbox_after_delivery(server):
    """RFC 3501 6.3.10: what SELECT met and a delivery announced by NOOP are \\Recent here;
    STATUS on the selected mailbox agrees with the RECENT response."""
    c = await server.connect(login=True)
    await server.deliver(PLAIN)
    assert (await c.cmd("SELECT INBOX"))[-1].endswith("Select completed.")
    await server.deliver(PLAIN)
    lines = await c.cmd("NOOP")
    assert lines[:2] == ["* 2 EXISTS", "* 2 RECENT"], lines
    lines = await c.cmd("STATUS INBOX (MESSAGES RECENT)")
    assert lines[0] == "* STATUS INBOX (MESSAGES 2 RECENT 2)", lines


async def test_failed_search_save_empties_saved_result(server):
    """RFC 5182 2.1: if a SEARCH with the SAVE result option fails (NO or BAD), "$" becomes the
    empty set, even when the failure is a syntax error in the search keys."""
    await server.deliver(PLAIN)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 1 EXISTS
S: * 1 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 SEARCH RETURN (SAVE) ALL
S: a3 OK Search completed.
C: a4 FETCH $ UID
S: * 1 FETCH (UID 1)
S: a4 OK Fetch completed.
C: a5 UID SEARCH RETURN (SAVE) NOSUCHKEY
S: a5 BAD <...>
C: a6 FETCH $ UID
S: a6 OK Fetch completed.
C: a7 SEARCH RETURN (SAVE) ALL
S: a7 OK Search completed.
C: a8 SEARCH RETURN (SAVE) BEFORE 99-Foo-2020
S: a8 BAD <...>
C: a9 UID FETCH $ UID
S: a9 OK Fetch completed.
""",
    )


async def test_response_text_is_7bit_before_utf8(server):
    """RFC 3501 9 / RFC 9051 9: resp-text is TEXT-CHAR (7-bit) unless UTF-8 is enabled; a
    mailbox name quoted in a tagged NO is written in modified UTF-7, as the client sent it."""
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT &AOk-t&AOk-
S: a2 NO [NONEXISTENT] Mailbox doesn't exist: &AOk-t&AOk-
C: a3 CREATE &AOk-
S: a3 OK [MAILBOXID (<...>)] Create completed.
C: a4 CREATE &AOk-
S: a4 NO [ALREADYEXISTS] Mailbox already exists: &AOk-
C: a5 ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S: a5 OK Enabled.
C: a6 CREATE "é"
S: a6 NO [ALREADYEXISTS] Mailbox already exists: é
""",
    )


async def test_list_recursivematch_childinfo_on_subscribed_parent(server):
    """RFC 5258 3.5 and its example 8 ("Vegetable"): with RECURSIVEMATCH, a listed subscribed
    mailbox with a subscribed child that the pattern does not reach carries CHILDINFO."""
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 CREATE Vegetable/Broccoli
S: a2 OK [MAILBOXID (<...>)] Create completed.
C: a3 SUBSCRIBE Vegetable
S: a3 OK Subscribe completed.
C: a4 SUBSCRIBE Vegetable/Broccoli
S: a4 OK Subscribe completed.
C: a5 LIST (SUBSCRIBED RECURSIVEMATCH) "" Veg%
S: * LIST (\\HasChildren \\Subscribed) "/" Vegetable ("CHILDINFO" ("SUBSCRIBED"))
S: a5 OK List completed.
C: a6 LIST (SUBSCRIBED RECURSIVEMATCH) "" Veg*
S: * LIST (\\HasChildren \\Subscribed) "/" Vegetable
S: * LIST (\\HasNoChildren \\Subscribed) "/" Vegetable/Broccoli
S: a6 OK List completed.
""",
    )


async def test_within_older_and_younger(server):
    """RFC 5032 (WITHIN, advertised): OLDER n matches an INTERNALDATE at least n seconds ago,
    YOUNGER n one less than n seconds ago; a zero interval is a syntax error (nz-number)."""
    import time

    acct = await server.store.account(USER)
    now = time.time()
    await acct.append("INBOX", PLAIN, internaldate=now - 3 * 86400)  # three days old
    await acct.append("INBOX", PLAIN, internaldate=now - 3600)  # an hour old
    await acct.append("INBOX", PLAIN)  # new
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK [CAPABILITY <...> WITHIN <...>] Logged in
C: a2 EXAMINE INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 3 EXISTS
S: * 3 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 4] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-ONLY] Examine completed.
C: a3 SEARCH YOUNGER 7200
S: * SEARCH 2 3
S: a3 OK Search completed.
C: a4 SEARCH OLDER 86400
S: * SEARCH 1
S: a4 OK Search completed.
C: a5 UID SEARCH NOT YOUNGER 60
S: * SEARCH 1 2
S: a5 OK Search completed.
C: a6 SEARCH YOUNGER 0
S: a6 BAD <...>
""",
    )


async def test_8bit_atom_before_utf8_accept_gets_a_reason(server):
    """A raw 8-bit mailbox name before ENABLE UTF8=ACCEPT is a syntax error (RFC 3501 9: an
    atom is 7-bit); the BAD says why rather than "extra arguments"."""
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 CREATE Café
S: a2 BAD CREATE: Unexpected octet 0xc3: 8-bit text needs ENABLE UTF8=ACCEPT first (a mailbox name: modified UTF-7)
""",
    )
