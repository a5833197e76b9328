"""Deviations found by running Dovecot imaptest's scripted tests against carteiro
(carteiro.testing.imaptest_scripts; docs/imap.md "imaptest"): each transcript failed before its
fix, and each is what Dovecot answers to the same script. Both store backends."""

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


def open_inbox(verb: str) -> str:
    """The transcript's first lines: log in, then SELECT or EXAMINE INBOX (its eight untagged
    lines are not what these tests look at)."""
    return (
        f"C: a1 {LOGIN}\nS: a1 OK <...>\nC: a2 {verb} INBOX\n"
        + "S: <...>\n" * 8
        + "S: a2 OK <...>\n"
    )


MIME = (
    b"From: user@domain.org\r\n"
    b"Mime-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="foo"\r\n'
    b"\r\n"
    b"prologue\r\n"
    b"--foo\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"aGVsbG8gd29ybGQ=\r\n"
    b"--foo\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: sub@domain.org\r\n"
    b"Subject: submsg\r\n"
    b"\r\n"
    b"inner\r\n"
    b"--foo--\r\n"
)


async def test_catenate_to_a_missing_mailbox_is_trycreate_before_any_bad_url(server):
    """imaptest catenate: APPEND CATENATE into a mailbox that does not exist answers
    NO [TRYCREATE] (RFC 9051 6.3.12, RFC 4469 5) even when one of its URLs is bad too: the
    destination is checked first, so the client learns that CREATE would help."""
    await server.deliver(b"From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n")
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 APPEND nonexistent (\\Seen) CATENATE (TEXT {{8+}}
C: hdr: 1
C:  URL "/INBOX;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER")
S: a2 NO [TRYCREATE] <...>
C: a3 APPEND nonexistent CATENATE (URL "/INBOX/;UID=1/;SECTION=1")
S: a3 NO [TRYCREATE] <...>
C: a4 APPEND INBOX CATENATE (URL "/INBOX;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER")
S: a4 NO [BADURL /INBOX;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER] <...>
""",
    )


async def test_notify_status_with_flagchange_includes_highestmodseq(server):
    """imaptest notify: NOTIFY SET STATUS sends each mailbox's STATUS at once (RFC 5465 5.1:
    MESSAGES, UIDNEXT, UIDVALIDITY); with FlagChange among the events it also carries
    HIGHESTMODSEQ, the value a client tracking flag changes needs to resync (Dovecot does the
    same)."""
    await server.deliver(b"Subject: s\r\n\r\nbody\r\n", mailbox="INBOX")
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: a2 CREATE other
S: a2 OK <...>
C: a3 NOTIFY SET STATUS (MAILBOXES other (MessageNew MessageExpunge))
S: * STATUS other (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...>)
S: a3 OK <...>
C: a4 NOTIFY SET STATUS (MAILBOXES other (MessageNew MessageExpunge FlagChange))
S: * STATUS other (MESSAGES 0 UIDNEXT 1 UIDVALIDITY <...> HIGHESTMODSEQ <...>)
S: a4 OK <...>
""",
    )


async def test_binary_of_section_text_is_the_body_section(server):
    """imaptest fetch-binary-mime: BINARY[TEXT], BINARY[n.MIME], BINARY[n.HEADER] and
    BINARY[n.HEADER.FIELDS (...)] (and their BINARY.SIZE) are answered like Dovecot does, with
    the BODY section's bytes (nothing to decode there), rather than BAD; a part number alone is
    still decoded (RFC 3516)."""
    await server.deliver(MIME)
    await play(
        server,
        f"""
{open_inbox("SELECT")}C: a3 FETCH 1 (BINARY.PEEK[1.MIME] BINARY.SIZE[1.MIME])
S: * 1 FETCH (BINARY[1.MIME] {{63}}
S: Content-Type: text/plain
S: Content-Transfer-Encoding: base64
S:
S:  BINARY.SIZE[1.MIME] 63)
S: a3 OK <...>
C: a4 FETCH 1 (BINARY.PEEK[2.HEADER.FIELDS (SUBJECT)] BINARY.SIZE[2.HEADER])
S: * 1 FETCH (BINARY[2.HEADER.FIELDS (SUBJECT)] {{19}}
S: Subject: submsg
S:
S:  BINARY.SIZE[2.HEADER] 41)
S: a4 OK <...>
C: a5 FETCH 1 (BINARY.PEEK[2.TEXT] BINARY.SIZE[TEXT])
S: * 1 FETCH (BINARY[2.TEXT] {{5}}
S: inner BINARY.SIZE[TEXT] 194)
S: a5 OK <...>
C: a6 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])
S: * 1 FETCH (BINARY[1] {{11}}
S: hello world BINARY.SIZE[1] 11)
S: a6 OK <...>
""",
    )


async def test_partial_with_origin_only_runs_to_the_end(server):
    """imaptest fetch-binary-mime-base64/-qp: FETCH BINARY.PEEK[1]<6> (an origin without a
    count, which Dovecot accepts) returns the octets from the origin to the end, named
    BINARY[1]<6>; BODY[]<n> too."""
    await server.deliver(MIME)
    await play(
        server,
        f"""
{open_inbox("EXAMINE")}C: a3 FETCH 1 (BINARY.PEEK[1]<6>)
S: * 1 FETCH (BINARY[1]<6> {{5}}
S: world)
S: a3 OK <...>
C: a4 FETCH 1 (BODY.PEEK[2.TEXT]<2>)
S: * 1 FETCH (BODY[2.TEXT]<2> {{3}}
S: ner)
S: a4 OK <...>
""",
    )


async def test_sort_return_after_the_charset(server):
    """imaptest sort-partial: ESORT's RETURN options are also taken after the charset
    ("SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 1:2) ALL"), where Dovecot parses them, besides
    RFC 5267's place right after SORT; a bad PARTIAL range there is still BAD."""
    for n in range(3):
        await server.deliver(b"Subject: s%d\r\n\r\nbody\r\n" % n)
    await play(
        server,
        f"""
{open_inbox("EXAMINE")}C: a3 SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 1:2) ALL
S: * ESEARCH (TAG "a3") PARTIAL (1:2 1:2)
S: a3 OK <...>
C: a4 SORT (REVERSE ARRIVAL) US-ASCII RETURN (COUNT MIN) ALL
S: * ESEARCH (TAG "a4") MIN 3 COUNT 3
S: a4 OK <...>
C: a5 SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 1:*) ALL
S: a5 BAD <...>
""",
    )


# search-intdate.mbox's From_ lines (EET to EEST and back), APPENDed with their zones as imaptest does
INTDATES = [
    "24-Mar-2007 23:00:00 +0200",
    "25-Mar-2007 00:00:00 +0200",
    "25-Mar-2007 01:00:00 +0200",
    "25-Mar-2007 02:00:00 +0200",
    "25-Mar-2007 04:00:00 +0300",
    "25-Mar-2007 23:00:00 +0300",
    "26-Mar-2007 00:00:00 +0300",
    "27-Oct-2007 23:00:00 +0300",
    "28-Oct-2007 00:00:00 +0300",
    "28-Oct-2007 03:00:00 +0300",
    "28-Oct-2007 03:00:00 +0200",
    "28-Oct-2007 23:00:00 +0200",
    "29-Oct-2007 00:00:00 +0200",
]


async def test_search_intdate_uses_the_append_zone(server):
    """imaptest search-intdate: BEFORE/ON/SINCE take INTERNALDATE's date in the zone it was
    APPENDed with (RFC 3501 6.4.4 "disregarding time and timezone"), and FETCH shows it back in
    that zone; carteiro compared UTC days and showed +0000."""
    c = await server.connect(login=True)
    msg = b"Subject: intdate\r\n\r\nx\r\n"
    for i, d in enumerate(INTDATES):
        await c.send(f'p{i} APPEND INBOX () "{d}" {{{len(msg)}+}}\r\n'.encode() + msg + b"\r\n")
        assert (await c.raw_response(f"p{i}")).split(b"\r\n")[-2].split()[1] == b"OK"
    c.close()
    await play(
        server,
        open_inbox("EXAMINE")
        + """
C: b1 FETCH 5 INTERNALDATE
S: * 5 FETCH (INTERNALDATE "25-Mar-2007 04:00:00 +0300")
S: b1 OK <...>
C: b2 SEARCH BEFORE 25-Mar-2007
S: * SEARCH 1
S: b2 OK <...>
C: b3 SEARCH 1:7 ON 25-Mar-2007
S: * SEARCH 2 3 4 5 6
S: b3 OK <...>
C: b4 SEARCH 1:7 SINCE 26-Mar-2007
S: * SEARCH 7
S: b4 OK <...>
C: b5 SEARCH 8:* ON 28-Oct-2007
S: * SEARCH 9 10 11 12
S: b5 OK <...>
C: b6 SEARCH 8:* BEFORE 28-Oct-2007
S: * SEARCH 8
S: b6 OK <...>
C: b7 SEARCH 8:* SINCE 29-Oct-2007
S: * SEARCH 13
S: b7 OK <...>
""",
    )
