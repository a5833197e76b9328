"""ESORT, CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267): SORT RETURN (...) answered by ESEARCH,
PARTIAL windows (4.4), and live results (UPDATE) kept current with ADDTO/REMOVEFROM as mail
arrives, flags change (this session's or another's) and messages are expunged; NOUPDATE,
CANCELUPDATE and the per-session limit. Transcripts in the shape of the RFC's examples, on both
stores."""

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

from carteiro.servers.imap import contexts

LOGIN = f'LOGIN {USER} "{PASSWORD}"'
INTERNAL = 1_700_000_000


def msg(subject: str, date: str) -> bytes:
    return (
        f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\n\r\nbody\r\n"
    ).encode()


# DATE order: 2 3 1 4 5
CORPUS = [
    msg("b", "Wed, 3 Jan 2024 00:00:00 +0000"),
    msg("a", "Mon, 1 Jan 2024 00:00:00 +0000"),
    msg("c", "Tue, 2 Jan 2024 00:00:00 +0000"),
    msg("a", "Thu, 4 Jan 2024 00:00:00 +0000"),
    msg("d", "Fri, 5 Jan 2024 00:00:00 +0000"),
]

SELECT = f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 5 EXISTS
S: * 5 RECENT
S: * OK [UNSEEN 1] <...>
S: * OK [UIDVALIDITY <...>
S: * OK [UIDNEXT 6] <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
"""

OTHER = f"""
C2: b1 {LOGIN}
S2: b1 OK <...>
C2: b2 SELECT INBOX
S2: * FLAGS <...>
S2: * OK [PERMANENTFLAGS <...>
S2: * 5 EXISTS
S2: * 0 RECENT
S2: * OK [UNSEEN 1] <...>
S2: * OK [UIDVALIDITY <...>
S2: * OK [UIDNEXT 6] <...>
S2: * OK [MAILBOXID (<...>)] Ok
S2: b2 OK [READ-WRITE] Select completed.
"""


async def fill(server) -> None:  # type: ignore[no-untyped-def]
    acct = await server.account()
    for i, data in enumerate(CORPUS):
        await acct.append("INBOX", data, (), INTERNAL + i)


async def test_esort_return_options(server):
    """RFC 5267 3: SORT RETURN gives an ESEARCH response; MIN/MAX are the first and last in
    the sort order, ALL keeps that order (ranges only for ascending runs, 3.2)."""
    await fill(server)
    await play(
        server,
        SELECT
        + """
C: a3 SORT RETURN (MIN COUNT) (DATE) UTF-8 SINCE 1-Feb-1994
S: * ESEARCH (TAG "a3") MIN 2 COUNT 5
S: a3 OK Sort completed.
C: a4 SORT RETURN (ALL) (DATE) UTF-8 ALL
S: * ESEARCH (TAG "a4") ALL 2:3,1,4:5
S: a4 OK Sort completed.
C: c1 UID SORT RETURN (PARTIAL 1:2 MAX) (DATE) UTF-8 ALL
S: * ESEARCH (TAG "c1") UID MAX 5 PARTIAL (1:2 2:3)
S: c1 OK Sort completed.
C: c2 SORT RETURN (COUNT UPDATE) (DATE) UTF-8 ALL
S: * ESEARCH (TAG "c2") COUNT 5
S: c2 OK Sort completed.
C: a5 SORT RETURN () (REVERSE DATE) UTF-8 ALL
S: * ESEARCH (TAG "a5") ALL 5,4,1,3,2
S: a5 OK Sort completed.
C: a6 UID SORT RETURN (MIN MAX) (SUBJECT) UTF-8 ALL
S: * ESEARCH (TAG "a6") UID MIN 2 MAX 5
S: a6 OK Sort completed.
C: a7 SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT "nothing like it"
S: * ESEARCH (TAG "a7") COUNT 0
S: a7 OK Sort completed.
C: a8 SORT RETURN (MAX) (DATE) UTF-8 SUBJECT "nothing like it"
S: * ESEARCH (TAG "a8")
S: a8 OK Sort completed.
C: a9 SORT RETURN (BOGUS) (DATE) UTF-8 ALL
S: a9 BAD <...>
C: b1 SORT RETURN (MIN) (DATE) UTF-8 MODSEQ 1
S: * OK [HIGHESTMODSEQ <...>
S: * ESEARCH (TAG "b1") MIN 2 MODSEQ <...>
S: b1 OK Sort completed.
C: b2 SORT (DATE) UTF-8 ALL
S: * SORT 2 3 1 4 5
S: b2 OK Sort completed.
C: b3 SORT RETURN (SAVE) (REVERSE DATE) UTF-8 SUBJECT a
S: b3 OK Sort completed.
C: b4 UID SEARCH $
S: * SEARCH 2 4
S: b4 OK Search completed.
""",
    )


async def test_partial_windows(server):
    """RFC 5267 4.4: PARTIAL low:high returns that window of the result (in sort order for
    SORT), NIL when it is past the end; PARTIAL with ALL, a zero or a bad range is BAD."""
    await fill(server)
    await play(
        server,
        SELECT
        + """
C: a3 SEARCH RETURN (PARTIAL 2:4) ALL
S: * ESEARCH (TAG "a3") PARTIAL (2:4 2:4)
S: a3 OK Search completed.
C: a4 UID SORT RETURN (PARTIAL 2:3 COUNT) (DATE) UTF-8 ALL
S: * ESEARCH (TAG "a4") UID PARTIAL (2:3 3,1) COUNT 5
S: a4 OK Sort completed.
C: a5 SEARCH RETURN (PARTIAL 6:9) ALL
S: * ESEARCH (TAG "a5") PARTIAL (6:9 NIL)
S: a5 OK Search completed.
C: a6 SORT RETURN (PARTIAL 5:4) (REVERSE DATE) UTF-8 ALL
S: * ESEARCH (TAG "a6") PARTIAL (4:5 3,2)
S: a6 OK Sort completed.
C: a7 SEARCH RETURN (PARTIAL 1:2 ALL) ALL
S: a7 BAD <...>
C: a8 SEARCH RETURN (PARTIAL 0:2) ALL
S: a8 BAD <...>
C: a9 SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL
S: a9 BAD <...>
C: b1 SEARCH RETURN (PARTIAL -1:-2) ALL
S: b1 BAD <...>
C: b2 SEARCH RETURN (CONTEXT) UNSEEN
S: * ESEARCH (TAG "b2") ALL 1:5
S: b2 OK Search completed.
""",
    )


async def test_search_context_updates(server):
    """RFC 5267 4.3: a live SEARCH result follows another session's flag change, this
    session's own STORE, a delivery (after its EXISTS) and an expunge (before its EXPUNGE)."""
    await fill(server)
    await play(
        server,
        SELECT
        + OTHER
        + """
C: a3 SEARCH RETURN (UPDATE) UNSEEN
S: * ESEARCH (TAG "a3") ALL 1:5
S: a3 OK Search completed.
C2: b3 STORE 2 +FLAGS.SILENT (\\Seen)
S2: b3 OK Store completed.
C: a4 NOOP
S: * 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))
S: * ESEARCH (TAG "a3") REMOVEFROM (0 2)
S: a4 OK <...>
C: a5 STORE 3:4 +FLAGS (\\Seen)
S: * 3 FETCH (FLAGS (\\Seen \\Recent))
S: * 4 FETCH (FLAGS (\\Seen \\Recent))
S: * ESEARCH (TAG "a3") REMOVEFROM (0 3:4)
S: a5 OK Store completed.
C: a6 STORE 2 -FLAGS (\\Seen)
S: * 2 FETCH (FLAGS (\\Recent))
S: * ESEARCH (TAG "a3") ADDTO (0 2)
S: a6 OK Store completed.
C2: b4 STORE 1 +FLAGS.SILENT (\\Deleted)
S2: * 2 FETCH (UID 2 FLAGS ())
S2: * 3 FETCH (UID 3 FLAGS (\\Seen))
S2: * 4 FETCH (UID 4 FLAGS (\\Seen))
S2: b4 OK Store completed.
C2: b5 EXPUNGE
S2: * 1 EXPUNGE
S2: b5 OK <...>
C: a7 NOOP
S: * ESEARCH (TAG "a3") REMOVEFROM (0 1)
S: * 1 EXPUNGE
S: a7 OK <...>
C: a8 UID SEARCH RETURN (COUNT UPDATE) UNSEEN
S: * ESEARCH (TAG "a8") UID COUNT 2
S: a8 OK Search completed.
""",
    )


async def test_search_context_delivery(server):
    await fill(server)
    sessions = await play(
        server,
        SELECT
        + """
C: a3 UID SEARCH RETURN (UPDATE) UNSEEN SUBJECT new
S: * ESEARCH (TAG "a3") UID
S: a3 OK Search completed.
C: a4 SEARCH RETURN (UPDATE) UNSEEN
S: * ESEARCH (TAG "a4") ALL 1:5
S: a4 OK Search completed.
""",
    )
    await server.deliver(msg("new", "Sat, 6 Jan 2024 00:00:00 +0000"))
    client = sessions[1]
    await client.send(b"a5 NOOP\r\n")
    got = [await client.line() for _ in range(5)]
    assert got == [
        "* 6 EXISTS",
        "* 6 RECENT",
        '* ESEARCH (TAG "a3") UID ADDTO (0 6)',
        '* ESEARCH (TAG "a4") ADDTO (0 6)',
        "a5 OK NOOP completed.",
    ], got


def append(session: int, tag: str, data: bytes) -> str:
    """Transcript lines of an APPEND INBOX (LITERAL+) by a logged-in session."""
    lines = [f"C{session}: {tag} APPEND INBOX {{{len(data)}+}}"]
    lines += [f"C{session}: {line}" for line in data.decode().split("\r\n")]
    lines.append(f"S{session}: {tag} OK <...>")
    return "\n".join(lines) + "\n"


async def test_sort_context_positions(server):
    """CONTEXT=SORT: ADDTO and REMOVEFROM say where in the sorted result each change is (a
    PARTIAL window can follow them), REVERSE DATE as in RFC 5267's examples."""
    await fill(server)
    script = (
        SELECT
        + OTHER
        + f"""
C: a3 SORT RETURN (PARTIAL 1:3 UPDATE) (REVERSE DATE) UTF-8 UNDELETED
S: * ESEARCH (TAG "a3") PARTIAL (1:3 5,4,1)
S: a3 OK Sort completed.
C: a4 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNDELETED
S: * ESEARCH (TAG "a4") UID ALL 2,4,1,3,5
S: a4 OK Sort completed.
C3: c1 {LOGIN}
S3: c1 OK <...>
"""
        # Date 3 Jan 12:00 lands between 4 (4 Jan) and 1 (3 Jan 00:00): third in REVERSE DATE
        + append(3, "c2", msg("b", "Wed, 3 Jan 2024 12:00:00 +0000"))
        + """
C: a5 NOOP
S: * 6 EXISTS
S: * 6 RECENT
S: * ESEARCH (TAG "a3") ADDTO (3 6)
S: * ESEARCH (TAG "a4") UID ADDTO (4 6)
S: a5 OK NOOP completed.
C2: b3 STORE 4 +FLAGS.SILENT (\\Deleted)
S2: * 6 EXISTS
S2: <...>
S2: b3 OK Store completed.
C: a6 NOOP
S: * 4 FETCH (UID 4 FLAGS (\\Deleted \\Recent))
S: * ESEARCH (TAG "a3") REMOVEFROM (2 4)
S: * ESEARCH (TAG "a4") UID REMOVEFROM (2 4)
S: a6 OK <...>
C2: b4 STORE 5 +FLAGS.SILENT (\\Deleted)
S2: b4 OK Store completed.
C2: b5 UID EXPUNGE 5
S2: * 5 EXPUNGE
S2: b5 OK <...>
C: a7 NOOP
S: * ESEARCH (TAG "a3") REMOVEFROM (1 5)
S: * ESEARCH (TAG "a4") UID REMOVEFROM (5 5)
S: * 5 EXPUNGE
S: a7 OK <...>
C: a8 STORE 1:2 +FLAGS (\\Deleted)
S: * 1 FETCH (FLAGS (\\Deleted \\Recent))
S: * 2 FETCH (FLAGS (\\Deleted \\Recent))
S: * ESEARCH (TAG "a3") REMOVEFROM (2 1 3 2)
S: * ESEARCH (TAG "a4") UID REMOVEFROM (1 2,1)
S: a8 OK Store completed.
C: a9 STORE 1 -FLAGS (\\Deleted)
S: * 1 FETCH (FLAGS (\\Recent))
S: * ESEARCH (TAG "a3") ADDTO (2 1)
S: * ESEARCH (TAG "a4") UID ADDTO (1 1)
S: a9 OK Store completed.
C: b1 SORT RETURN (ALL) (REVERSE DATE) UTF-8 UNDELETED
S: * ESEARCH (TAG "b1") ALL 5,1,3
S: b1 OK Sort completed.
"""
    )
    await play(server, script)


async def test_noupdate_cancelupdate_and_limits(server):
    """RFC 5267 4.3.1: a search that cannot be kept current gets NOUPDATE and its answer;
    4.3.5: CANCELUPDATE stops a context, an unknown tag is refused; a context's tag cannot be
    reused while it lives; at most 10 live contexts; SELECT ends them all."""
    await fill(server)
    script = (
        SELECT
        + OTHER
        + """
C: a3 SEARCH RETURN (UPDATE) 1:3
S: * NO [NOUPDATE "a3"] <...>
S: * ESEARCH (TAG "a3") ALL 1:3
S: a3 OK Search completed.
C: a4 SEARCH RETURN (UPDATE COUNT) YOUNGER 100
S: * NO [NOUPDATE "a4"] <...>
S: * ESEARCH (TAG "a4") COUNT 0
S: a4 OK Search completed.
C: a5 SEARCH RETURN (UPDATE) UNSEEN
S: * ESEARCH (TAG "a5") ALL 1:5
S: a5 OK Search completed.
C: a5 SEARCH RETURN (UPDATE) SEEN
S: a5 BAD <...>
C: a6 CANCELUPDATE "zz"
S: a6 NO <...>
C: a7 CANCELUPDATE "a5"
S: a7 OK <...>
C: a8 STORE 1 +FLAGS (\\Seen)
S: * 1 FETCH (FLAGS (\\Seen \\Recent))
S: a8 OK Store completed.
"""
    )
    for n in range(10):
        script += f"""C: c{n} SEARCH RETURN (COUNT UPDATE) SEEN
S: * ESEARCH (TAG "c{n}") COUNT 1
S: c{n} OK Search completed.
"""
    script += """C: d1 SEARCH RETURN (COUNT UPDATE) SEEN
S: * NO [NOUPDATE "d1"] <...>
S: * ESEARCH (TAG "d1") COUNT 1
S: d1 OK Search completed.
C: d2 CANCELUPDATE "c0" "c1"
S: d2 OK <...>
C: d3 SEARCH RETURN (COUNT UPDATE) SEEN
S: * ESEARCH (TAG "d3") COUNT 1
S: d3 OK Search completed.
C: d4 SELECT INBOX
S: * OK [CLOSED] <...>
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 5 EXISTS
S: * 0 RECENT
S: * OK [UNSEEN 2] <...>
S: * OK [UIDVALIDITY <...>
S: * OK [UIDNEXT 6] <...>
S: * OK [MAILBOXID (<...>)] Ok
S: d4 OK [READ-WRITE] Select completed.
C: d5 STORE 2 +FLAGS (\\Seen)
S: * 2 FETCH (FLAGS (\\Seen))
S: d5 OK Store completed.
C: d6 CANCELUPDATE "d3"
S: d6 NO <...>
"""
    await play(server, script)


async def test_updates_during_idle(server):
    """RFC 5267 4.3 with RFC 2177: in IDLE the context's update follows the change at once."""
    await fill(server)
    await play(
        server,
        SELECT
        + OTHER
        + """
C: a3 SEARCH RETURN (UPDATE) FLAGGED
S: * ESEARCH (TAG "a3")
S: a3 OK Search completed.
C: a4 IDLE
S: + idling
C2: b3 STORE 4 +FLAGS.SILENT (\\Flagged)
S2: b3 OK Store completed.
S: * 4 FETCH (UID 4 FLAGS (\\Flagged \\Recent))
S: * ESEARCH (TAG "a3") ADDTO (0 4)
C: DONE
S: a4 OK <...>
""",
    )


async def test_noupdate_past_the_member_limit(server, monkeypatch):
    """Kept results cost memory per message: past MAX_MEMBERS in all, NOUPDATE."""
    monkeypatch.setattr(contexts, "MAX_MEMBERS", 6)
    await fill(server)
    await play(
        server,
        SELECT
        + """
C: a3 SEARCH RETURN (COUNT UPDATE) ALL
S: * ESEARCH (TAG "a3") COUNT 5
S: a3 OK Search completed.
C: a4 SORT RETURN (COUNT UPDATE) (DATE) UTF-8 SUBJECT a
S: * NO [NOUPDATE "a4"] Updated results too large <...>
S: * ESEARCH (TAG "a4") COUNT 2
S: a4 OK Sort completed.
C: a5 SORT RETURN (COUNT UPDATE) (DATE) UTF-8 SUBJECT d
S: * ESEARCH (TAG "a5") COUNT 1
S: a5 OK Sort completed.
""",
    )
