"""SORT and THREAD (RFC 5256) with SORT=DISPLAY (RFC 5957) over both stores, on a corpus with
tricky subjects (Re:/Fwd:/[list] tags, encoded words, (fwd) trailers, [fwd: ...] wrappers) and
broken References (missing parents, loops, duplicate Message-IDs). The sqlite store answers from
its index once the messages are indexed and by reading them before: both give these answers."""

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

from carteiro.servers.imap import sortfields

LOGIN = f'LOGIN {USER} "{PASSWORD}"'


def msg(subject: str, date: str, frm: str, extra: str = "", to: str = "bob@example.test") -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n{extra}\r\nbody\r\n"
    ).encode()


# seq: subject / Date / From / threading headers
CORPUS = [
    # 1
    msg("Meeting", "Mon, 1 Jan 2024 10:00:00 +0000", "Zoe <zoe@example.test>",
        "Message-ID: <m1@x>\r\n"),
    # 2: a reply with list tag and Re:, one hour later
    msg("[team] Re: Meeting", "Mon, 1 Jan 2024 11:00:00 +0000", "adam@example.test",
        "Message-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\nReferences: <m1@x>\r\n"),
    # 3: encoded subject, earliest Date (but in +0200: 09:30 UTC)
    msg("=?utf-8?q?=C3=9Cber_Alles?=", "Mon, 1 Jan 2024 11:30:00 +0200",
        "=?utf-8?q?J=C3=B6rg?= <joerg@example.test>", "Message-ID: <m3@x>\r\n"),
    # 4: reply to a parent we do not have (References name a missing <m0@x> first)
    msg("Re: Meeting (fwd)", "Mon, 1 Jan 2024 12:00:00 +0000", "carl@example.test",
        "Message-ID: <m4@x>\r\nReferences: <m0@x> <m2@x>\r\n"),
    # 5: forwarded wrapper, no Message-ID; no Date (sorts by INTERNALDATE)
    msg("[fwd: Re: Über alles]", "", "dora@example.test"),
    # 6: a loop: claims to answer m7 which answers m6
    msg("loop a", "Tue, 2 Jan 2024 10:00:00 +0000", "eve@example.test",
        "Message-ID: <m6@x>\r\nReferences: <m7@x>\r\n"),
    # 7
    msg("Re: loop a", "Tue, 2 Jan 2024 11:00:00 +0000", "fred@example.test",
        "Message-ID: <m7@x>\r\nReferences: <m6@x>\r\n"),
    # 8: duplicate Message-ID of m1, same base subject as 1 (merged by subject)
    msg("Fwd: meeting", "Wed, 3 Jan 2024 10:00:00 +0000", "Zoe <zoe@example.test>",
        "Message-ID: <m1@x>\r\n"),
]  # fmt: skip
INTERNAL = 1_700_000_000  # 14-Nov-2023 UTC, before every Date: above


async def fill(server) -> None:  # type: ignore[no-untyped-def]
    acct = await server.account()
    for i, data in enumerate(CORPUS):
        await acct.append("INBOX", data.replace(b"Date: \r\n", b""), (), INTERNAL + i)


async def test_sort_every_key(server):
    await fill(server)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 8 EXISTS
S: * 8 RECENT
S: * OK [UNSEEN 1] <...>
S: * OK [UIDVALIDITY <...>
S: * OK [UIDNEXT 9] <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 SORT (SUBJECT) UTF-8 ALL
S: * SORT 6 7 1 2 4 8 3 5
S: a3 OK Sort completed.
C: a4 SORT (DATE) UTF-8 ALL
S: * SORT 5 3 1 2 4 6 7 8
S: a4 OK Sort completed.
C: a5 SORT (REVERSE ARRIVAL) UTF-8 ALL
S: * SORT 8 7 6 5 4 3 2 1
S: a5 OK Sort completed.
C: a6 SORT (FROM) UTF-8 ALL
S: * SORT 2 4 5 6 7 3 1 8
S: a6 OK Sort completed.
C: a7 SORT (DISPLAYFROM) UTF-8 ALL
S: * SORT 2 4 5 6 7 3 1 8
S: a7 OK Sort completed.
C: a8 SORT (SUBJECT REVERSE DATE) UTF-8 ALL
S: * SORT 7 6 8 4 2 1 3 5
S: a8 OK Sort completed.
C: a9 UID SORT (SIZE) US-ASCII SINCE 1-Jan-2000 FROM zoe
S: * SORT 1 8
S: a9 OK Sort completed.
C: b1 SORT (TO CC REVERSE SUBJECT) UTF-8 NOT FROM zoe
S: * SORT 3 5 2 4 6 7
S: b1 OK Sort completed.
C: b2 SORT (SUBJECT) UTF-8 TEXT "not in mailbox"
S: * SORT
S: b2 OK Sort completed.
C: b3 SORT (BOGUS) UTF-8 ALL
S: b3 BAD <...>
C: b4 SORT (DATE) KOI9-R ALL
S: b4 NO [BADCHARSET <...>
C: b5 SORT (REVERSE ARRIVAL) UTF-8 MODSEQ 1
S: * OK [HIGHESTMODSEQ <...>
S: * SORT 8 7 6 5 4 3 2 1 (MODSEQ <...>)
S: b5 OK Sort completed.
""",
    )


async def test_thread_both_algorithms(server):
    await fill(server)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 8 EXISTS
S: * 8 RECENT
S: * OK [UNSEEN 1] <...>
S: * OK [UIDVALIDITY <...>
S: * OK [UIDNEXT 9] <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 THREAD ORDEREDSUBJECT UTF-8 ALL
S: * THREAD (5 3)(1 (2)(4)(8))(6 7)
S: a3 OK Thread completed.
C: a4 THREAD REFERENCES UTF-8 ALL
S: * THREAD (3 5)(1 (2 4)(8))(7 6)
S: a4 OK Thread completed.
C: a5 UID THREAD REFERENCES UTF-8 FROM zoe
S: * THREAD (1 8)
S: a5 OK Thread completed.
C: a6 THREAD REFERENCES UTF-8 SUBJECT "nothing"
S: * THREAD
S: a6 OK Thread completed.
C: a7 THREAD NONSENSE UTF-8 ALL
S: a7 BAD <...>
""",
    )


NEW = msg(
    "Re: Meeting",
    "Sun, 31 Dec 2023 10:00:00 +0000",
    "bob@example.test",
    "Message-ID: <m9@x>\r\nReferences: <m1@x> <m2@x>\r\n",
)


async def test_answers_follow_a_new_message_and_an_expunge(server, monkeypatch):
    """What the server keeps between SORT/THREAD commands (sortfields.SortCache, taken here by
    8 messages as by a big mailbox): a message another session appends lands in its place in
    the kept order and in its thread, an expunged one leaves both, a flag change keeps the
    answer; answers in sequence numbers follow the renumbering."""
    monkeypatch.setattr(sortfields, "KEEP_MIN", 0)
    monkeypatch.setattr(sortfields, "READ_MAX", 0)
    await fill(server)
    append = [f"C2: b2 APPEND INBOX {{{len(NEW)}+}}"]
    append += [f"C2: {line}" for line in NEW.decode().split("\r\n")]
    append.append("S2: b2 OK <...>")
    appended = "\n".join(append)
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 8 EXISTS
S: * 8 RECENT
S: * OK [UNSEEN 1] <...>
S: * OK [UIDVALIDITY <...>
S: * OK [UIDNEXT 9] <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a2 OK [READ-WRITE] Select completed.
C: a3 SORT (DATE) UTF-8 ALL
S: * SORT 5 3 1 2 4 6 7 8
S: a3 OK Sort completed.
C: a4 THREAD REFERENCES UTF-8 ALL
S: * THREAD (3 5)(1 (2 4)(8))(7 6)
S: a4 OK Thread completed.
C: a5 SORT (SUBJECT) UTF-8 NOT FROM zoe
S: * SORT 6 7 2 4 3 5
S: a5 OK Sort completed.
C2: b1 {LOGIN}
S2: b1 OK <...>
{appended}
C: a6 NOOP
S: * 9 EXISTS
S: * 9 RECENT
S: a6 OK NOOP completed.
C: a7 SORT (DATE) UTF-8 ALL
S: * SORT 5 9 3 1 2 4 6 7 8
S: a7 OK Sort completed.
C: a8 UID SORT (REVERSE DATE) UTF-8 ALL
S: * SORT 8 7 6 4 2 1 3 9 5
S: a8 OK Sort completed.
C: a9 THREAD REFERENCES UTF-8 ALL
S: * THREAD (3 5)(1 (2 (9)(4))(8))(7 6)
S: a9 OK Thread completed.
C: c1 UID SORT RETURN (MIN MAX ALL) (DATE) UTF-8 ALL
S: * ESEARCH (TAG "c1") UID MIN 5 MAX 8 ALL 5,9,3,1:2,4,6:8
S: c1 OK Sort completed.
C: b1 SORT (SUBJECT) UTF-8 NOT FROM zoe
S: * SORT 6 7 2 4 9 3 5
S: b1 OK Sort completed.
C: b2 STORE 3 +FLAGS.SILENT (\\Deleted)
S: b2 OK <...>
C: b3 SORT (DATE) UTF-8 ALL
S: * SORT 5 9 3 1 2 4 6 7 8
S: b3 OK Sort completed.
C: b4 EXPUNGE
S: * 3 EXPUNGE
S: b4 OK <...>
C: b5 SORT (DATE) UTF-8 ALL
S: * SORT 4 8 1 2 3 5 6 7
S: b5 OK Sort completed.
C: b6 UID SORT (DATE) UTF-8 ALL
S: * SORT 5 9 1 2 4 6 7 8
S: b6 OK Sort completed.
C: c2 SORT RETURN (COUNT MIN ALL) (DATE) UTF-8 ALL
S: * ESEARCH (TAG "c2") MIN 4 ALL 4,8,1:3,5:7 COUNT 8
S: c2 OK Sort completed.
C: b7 THREAD REFERENCES UTF-8 ALL
S: * THREAD (4)(1 (2 (8)(3))(7))(6 5)
S: b7 OK Thread completed.
C: b8 SORT (SUBJECT) UTF-8 NOT FROM zoe
S: * SORT 5 6 2 3 8 4
S: b8 OK Sort completed.
""",
    )
