"""Transcripts for every command and its error cases, after the examples of RFC 3501, RFC 9051
and the extension RFCs (section numbers in each test's docstring). Session 1 logs in first."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import logging

from imap_harness import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    directory,
    make_config,
    play,
    server,
    start_server,
    tls_files,
)

LOGIN = f'LOGIN {USER} "{PASSWORD}"'
MSG = (
    "From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    "Subject: afternoon meeting\r\n"
    "To: mooch@owatagu.siam.edu.example\r\n"
    "Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    "\r\n"
    "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)


async def test_select_examine(server):
    """RFC 3501 6.3.1, 6.3.2; RFC 9051 6.3.2 (CLOSED)."""
    await server.deliver(MSG.encode())
    await play(
        server,
        f"""
C: a1 {LOGIN}
S: a1 OK <...>
C: A142 SELECT INBOX
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
S: * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.
S: * 1 EXISTS
S: * 1 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: A142 OK [READ-WRITE] Select completed.
C: A932 EXAMINE blurdybloop
S: * OK [CLOSED] Previous mailbox closed.
S: A932 NO [NONEXISTENT] Mailbox doesn't exist: blurdybloop
C: A933 FETCH 1 FLAGS
S: A933 BAD No mailbox selected
C: A934 EXAMINE inbox
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
S: * OK [PERMANENTFLAGS ()] Read-only mailbox.
S: * 1 EXISTS
S: * 0 RECENT
S: * OK [UNSEEN 1] First unseen.
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: A934 OK [READ-ONLY] Examine completed.
C: A935 STORE 1 +FLAGS (\\Seen)
S: A935 NO [READ-ONLY] Mailbox is read-only
C: A936 FETCH 1 BODY[TEXT]
S: * 1 FETCH (BODY[TEXT] {{55}}
S: Hello Joe, do you think we can meet at 3:30 tomorrow?
S: )
S: A936 OK Fetch completed.
C: A937 FETCH 1 FLAGS
S: * 1 FETCH (FLAGS ())
S: A937 OK Fetch completed.
C: A938 SELECT Drafts
S: * OK [CLOSED] Previous mailbox closed.
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 0 EXISTS
S: * 0 RECENT
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 1] Predicted next UID
S: * OK [MAILBOXID (<...>)] Ok
S: A938 OK [READ-WRITE] Select completed.
C: A939 FETCH 1:* FLAGS
S: A939 BAD Invalid message sequence number
C: A940 UID FETCH 1:* FLAGS
S: A940 OK Fetch completed.
""",
    )


async def test_create_delete_rename(server):
    """RFC 3501 6.3.3-6.3.5 (intermediate levels, \\Noselect after DELETE, renaming INBOX)."""
    await server.deliver(MSG.encode())
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: A003 CREATE owatagu/
S: A003 OK [MAILBOXID (<...>)] Create completed.
C: A004 CREATE owatagu/foo/bar
S: A004 OK [MAILBOXID (<...>)] Create completed.
C: A005 CREATE owatagu
S: A005 NO [ALREADYEXISTS] Mailbox already exists: owatagu
C: A006 CREATE INBOX
S: A006 NO [ALREADYEXISTS] INBOX already exists
C: A007 LIST "" owatagu*
S: * LIST (\\HasChildren) "/" owatagu
S: * LIST (\\HasChildren) "/" owatagu/foo
S: * LIST (\\HasNoChildren) "/" owatagu/foo/bar
S: A007 OK List completed.
C: A683 DELETE owatagu/foo
S: A683 OK Delete completed.
C: A684 LIST "" owatagu/%
S: * LIST (\\Noselect \\HasChildren) "/" owatagu/foo
S: A684 OK List completed.
C: A685 DELETE owatagu/foo
S: A685 NO [CANNOT] <...>
C: A686 DELETE blurdybloop
S: A686 NO [NONEXISTENT] <...>
C: A687 DELETE INBOX
S: A687 NO [CANNOT] INBOX cannot be deleted
C: A682 RENAME owatagu sarasoop
S: A682 OK Rename completed.
C: A688 LIST "" sarasoop*
S: * LIST (\\HasChildren) "/" sarasoop
S: * LIST (\\Noselect \\HasChildren) "/" sarasoop/foo
S: * LIST (\\HasNoChildren) "/" sarasoop/foo/bar
S: A688 OK List completed.
C: A689 RENAME sarasoop Drafts
S: A689 NO [ALREADYEXISTS] <...>
C: A690 RENAME nosuch other
S: A690 NO [NONEXISTENT] <...>
C: A691 RENAME INBOX old-mail
S: A691 OK Rename completed.
C: A692 STATUS INBOX (MESSAGES)
S: * STATUS INBOX (MESSAGES 0)
S: A692 OK Status completed.
C: A693 STATUS old-mail (MESSAGES)
S: * STATUS old-mail (MESSAGES 1)
S: A693 OK Status completed.
""",
    )


async def test_list_lsub_subscribe(server):
    """RFC 3501 6.3.6-6.3.9, RFC 3348 CHILDREN, RFC 6154 SPECIAL-USE on new accounts."""
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: A101 LIST "" ""
S: * LIST (\\Noselect) "/" ""
S: A101 OK List completed.
C: A102 LIST "" *
S: * LIST (\\HasNoChildren) "/" INBOX
S: * LIST (\\HasNoChildren \\Archive) "/" Archive
S: * LIST (\\HasNoChildren \\Drafts) "/" Drafts
S: * LIST (\\HasNoChildren \\Junk) "/" Junk
S: * LIST (\\HasNoChildren \\Sent) "/" Sent
S: * LIST (\\HasNoChildren \\Trash) "/" Trash
S: A102 OK List completed.
C: A103 CREATE "news/comp/mail/misc"
S: A103 OK [MAILBOXID (<...>)] Create completed.
C: A104 LIST "news/" %
S: * LIST (\\HasChildren) "/" news/comp
S: A104 OK List completed.
C: A105 SUBSCRIBE news/comp/mail/misc
S: A105 OK Subscribe completed.
C: A106 LSUB "news/" "comp/mail/*"
S: * LSUB () "/" news/comp/mail/misc
S: A106 OK Lsub completed.
C: A107 LSUB "news/" "comp/%"
S: * LSUB (\\Noselect) "/" news/comp/mail
S: A107 OK Lsub completed.
C: A108 UNSUBSCRIBE news/comp/mail/misc
S: A108 OK Unsubscribe completed.
C: A109 LSUB "" news*
S: A109 OK Lsub completed.
C: A110 LIST "" inbox
S: * LIST (\\HasNoChildren) "/" INBOX
S: A110 OK List completed.
""",
    )


async def test_list_extended_status_special_use(server):
    """RFC 5258 (selection/return options), RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE."""
    await server.deliver(MSG.encode())
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: A01 CREATE Fruit/Apple
S: A01 OK [MAILBOXID (<...>)] Create completed.
C: A02 SUBSCRIBE Fruit/Apple
S: A02 OK Subscribe completed.
C: A03 LIST (SUBSCRIBED) "" "Fruit*"
S: * LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Apple
S: A03 OK List completed.
C: A04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "Fruit"
S: * LIST (\\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))
S: A04 OK List completed.
C: A05 LIST (SPECIAL-USE) "" *
S: * LIST (\\HasNoChildren \\Archive) "/" Archive
S: * LIST (\\HasNoChildren \\Drafts) "/" Drafts
S: * LIST (\\HasNoChildren \\Junk) "/" Junk
S: * LIST (\\HasNoChildren \\Sent) "/" Sent
S: * LIST (\\HasNoChildren \\Trash) "/" Trash
S: A05 OK List completed.
C: A06 LIST "" (INBOX Fruit) RETURN (CHILDREN STATUS (MESSAGES UNSEEN SIZE))
S: * LIST (\\HasNoChildren) "/" INBOX
S: * STATUS INBOX (MESSAGES 1 UNSEEN 1 SIZE {len(MSG)})
S: * LIST (\\HasChildren) "/" Fruit
S: * STATUS Fruit (MESSAGES 0 UNSEEN 0 SIZE 0)
S: A06 OK List completed.
C: A07 LIST (BOGUS) "" *
S: A07 BAD <...>
C: A08 LIST (RECURSIVEMATCH) "" *
S: A08 BAD <...>
C: A09 STATUS INBOX (UIDNEXT UIDVALIDITY MESSAGES DELETED SIZE APPENDLIMIT)
S: * STATUS INBOX (UIDNEXT 2 UIDVALIDITY <...> MESSAGES 1 DELETED 0 SIZE {len(MSG)} APPENDLIMIT 67108864)
S: A09 OK Status completed.
C: A10 STATUS nosuch (MESSAGES)
S: A10 NO [NONEXISTENT] <...>
C: A11 STATUS INBOX (BOGUS)
S: A11 BAD <...>
""",
    )


async def test_append(server):
    """RFC 3501 6.3.11, RFC 4315 APPENDUID, RFC 7888 LITERAL+, RFC 3516 literal8."""
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: A003 APPEND saved-messages (\\Seen) {{10}}
S: + OK
C: Subject: x
S: A003 NO [TRYCREATE] Mailbox doesn't exist
C: A004 APPEND Drafts (\\Seen \\Draft $Work) "05-Jan-2024 10:11:12 +0100" {{10}}
S: + OK
C: Subject: x
S: A004 OK [APPENDUID <...> 1] Append completed.
C: A005 APPEND Drafts {{10+}}
C: Subject: y
S: A005 OK [APPENDUID <...> 2] Append completed.
C: A006 APPEND Drafts ~{{10+}}
C: Subject: z
S: A006 OK [APPENDUID <...> 3] Append completed.
C: A007 APPEND Drafts {{0}}
S: + OK
C:
S: A007 NO Can't save a zero byte message
C: A008 APPEND Drafts {{99999999999}}
S: A008 NO [TOOBIG] <...>
C: A009 EXAMINE Drafts
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)
S: <...>
S: * 3 EXISTS
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: A009 OK [READ-ONLY] Examine completed.
C: A010 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)
S: * 1 FETCH (FLAGS (\\Seen \\Draft $Work \\Recent) INTERNALDATE "05-Jan-2024 10:11:12 +0100" RFC822.SIZE 10)
S: A010 OK Fetch completed.
""",
    )


FETCH_MSG = (
    "From: Terry Gray <gray@cac.washington.edu>\r\n"
    "To: imap@cac.washington.edu\r\n"
    "Cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n'
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Minutes of the meeting.\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "AAECAw==\r\n"
    "--b1--\r\n"
)


async def test_fetch_items(server):
    """RFC 3501 6.4.5 / RFC 9051 6.4.5 items, RFC 3516 BINARY, \\Seen side effect."""
    await server.deliver(FETCH_MSG.encode())
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: a1 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a1 OK [READ-WRITE] Select completed.
C: a2 FETCH 1 (ENVELOPE)
S: * 1 FETCH (ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>"))
S: a2 OK Fetch completed.
C: a3 FETCH 1 BODYSTRUCTURE
S: * 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 23 0 NIL NIL NIL NIL)("application" "octet-stream" NIL NIL NIL "base64" 8 NIL NIL NIL NIL) "mixed" ("boundary" "b1") NIL NIL NIL))
S: a3 OK Fetch completed.
C: a4 FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[1]<0.7>)
S: * 1 FETCH (BODY[HEADER.FIELDS (Subject)] {{49}}
S: Subject: IMAP4rev1 WG mtg summary and minutes
S:
S:  BODY[1]<0> {{7}}
S: Minutes)
S: a4 OK Fetch completed.
C: a5 FETCH 1 (FLAGS BINARY.SIZE[2])
S: * 1 FETCH (FLAGS (\\Recent) BINARY.SIZE[2] 4)
S: a5 OK Fetch completed.
C: a6 FETCH 1 (BODY[1.MIME])
S: * 1 FETCH (BODY[1.MIME] {{46}}
S: Content-Type: text/plain; charset=us-ascii
S:
S:  FLAGS (\\Seen \\Recent))
S: a6 OK Fetch completed.
C: a7 FETCH 1 (RFC822.SIZE UID INTERNALDATE)
S: * 1 FETCH (RFC822.SIZE {len(FETCH_MSG)} UID 1 INTERNALDATE "<...>")
S: a7 OK Fetch completed.
C: a8 UID FETCH 1 (BODY.PEEK[3])
S: * 1 FETCH (UID 1 BODY[3] "")
S: a8 OK Fetch completed.
C: a9 FETCH 2 FLAGS
S: a9 BAD Invalid message sequence number
C: a10 FETCH 1 (BOGUS)
S: a10 BAD <...>
C: a11 FETCH 1 FAST
S: * 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE "<...>" RFC822.SIZE {len(FETCH_MSG)})
S: a11 OK Fetch completed.
""",
    )


async def test_fetch_binary_literal8(server):
    """RFC 3516 4.2: BINARY[] of content with NUL comes back as a literal8."""
    await server.deliver(FETCH_MSG.encode())
    c = await server.connect(login=True)
    await c.cmd("SELECT INBOX")
    raw = await c.send(b"b1 FETCH 1 (BINARY.PEEK[2])\r\n") or await c.raw_response("b1")
    assert raw.startswith(b"* 1 FETCH (BINARY[2] ~{4}\r\n\x00\x01\x02\x03)\r\n")


async def test_store(server):
    """RFC 3501 6.4.6 (STORE, .SILENT), RFC 9051 6.4.9 (UID STORE carries UID)."""
    for _ in range(4):
        await server.deliver(MSG.encode())
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: a1 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a1 OK <...>
C: A003 STORE 2:4 +FLAGS (\\Deleted)
S: * 2 FETCH (FLAGS (\\Deleted \\Recent))
S: * 3 FETCH (FLAGS (\\Deleted \\Recent))
S: * 4 FETCH (FLAGS (\\Deleted \\Recent))
S: A003 OK Store completed.
C: A004 STORE 2 -FLAGS.SILENT (\\Deleted)
S: A004 OK Store completed.
C: A005 UID STORE 1 FLAGS ($Important \\Seen)
S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)
S: * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)] Flags permitted.
S: * 1 FETCH (UID 1 FLAGS (\\Seen $Important \\Recent))
S: A005 OK Store completed.
C: A006 STORE 1 +FLAGS (\\Recent)
S: A006 BAD <...>
C: A007 STORE 9 +FLAGS (\\Seen)
S: A007 BAD Invalid message sequence number
C: A008 UID STORE 99 +FLAGS (\\Seen)
S: A008 OK Store completed.
C: A009 EXPUNGE
S: * 3 EXPUNGE
S: * 3 EXPUNGE
S: A009 OK Expunge completed.
""",
    )


async def test_search(server):
    """RFC 3501 6.4.4 keys, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, BADCHARSET."""
    await server.deliver(MSG.encode())
    await server.deliver(FETCH_MSG.encode())
    await server.deliver(b"Subject: third\r\nFrom: smith@example.test\r\n\r\nXYZZY body\r\n")
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: a1 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a1 OK <...>
C: A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"
S: * SEARCH
S: A282 OK Search completed.
C: A283 SEARCH TEXT "string not in mailbox"
S: * SEARCH
S: A283 OK Search completed.
C: A284 SEARCH CHARSET UTF-8 TEXT {{5}}
S: + OK
C: xyzzy
S: * SEARCH 3
S: A284 OK Search completed.
C: A285 SEARCH OR SUBJECT meeting SUBJECT minutes
S: * SEARCH 1 2
S: A285 OK Search completed.
C: A286 SEARCH SENTBEFORE 1-Jan-1995 NOT BODY "meeting"
S: * SEARCH 1
S: A286 OK Search completed.
C: A287 UID SEARCH 2:* HEADER Message-Id ""
S: * SEARCH 2
S: A287 OK Search completed.
C: A288 SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN
S: * ESEARCH (TAG "A288") MIN 1 MAX 3 ALL 1:3 COUNT 3
S: A288 OK Search completed.
C: A289 UID SEARCH RETURN (COUNT) DELETED
S: * ESEARCH (TAG "A289") UID COUNT 0
S: A289 OK Search completed.
C: A290 SEARCH RETURN (SAVE) FROM smith
S: A290 OK Search completed.
C: A291 FETCH $ (UID)
S: * 3 FETCH (UID 3)
S: A291 OK Search completed.
C: A292 SEARCH CHARSET KLINGON TEXT x
S: A292 NO [BADCHARSET (UTF-8 US-ASCII)] <...>
C: A293 SEARCH (OR LARGER 100000 SMALLER 100) NOT (1:2)
S: * SEARCH 3
S: A293 OK Search completed.
C: A294 SEARCH BOGUS
S: A294 BAD <...>
""".replace("S: A291 OK Search completed.", "S: A291 OK Fetch completed."),
    )


async def test_copy_move_uid_expunge(server):
    """RFC 4315 COPYUID and UID EXPUNGE, RFC 6851 MOVE."""
    for _ in range(3):
        await server.deliver(MSG.encode())
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: a1 SELECT INBOX
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a1 OK <...>
C: A003 COPY 2:3 Archive
S: A003 OK [COPYUID <...> 2:3 1:2] Copy completed.
C: A004 COPY 1 nosuch
S: A004 NO [TRYCREATE] Mailbox doesn't exist
C: A005 UID COPY 100:200 Archive
S: A005 OK Copy completed.
C: A006 MOVE 1 Trash
S: * OK [COPYUID <...> 1 1] Moved UIDs.
S: * 1 EXPUNGE
S: A006 OK Move completed.
C: A007 STORE 1:2 +FLAGS.SILENT (\\Deleted)
S: A007 OK Store completed.
C: A008 UID EXPUNGE 3
S: * 2 EXPUNGE
S: A008 OK Expunge completed.
C: A009 UID MOVE 2 Junk
S: * OK [COPYUID <...> 2 1] Moved UIDs.
S: * 1 EXPUNGE
S: A009 OK Move completed.
C: A010 CHECK
S: A010 OK Check completed.
C: A011 CLOSE
S: A011 OK Close completed.
C: A012 CHECK
S: A012 BAD No mailbox selected
""",
    )


async def test_enable_rev2_namespace_id_unselect(server):
    """RFC 5161 ENABLE, RFC 9051 (ESEARCH answers, no RECENT, UTF-8 names), RFC 2342, RFC 2971,
    RFC 3691 UNSELECT, RFC 6855 UTF8=ACCEPT."""
    await server.deliver(MSG.encode())
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: a1 ID ("name" "sodr" "version" "19.34")
S: * ID ("name" "carteiro" "version" "<...>")
S: a1 OK ID completed.
C: a2 NAMESPACE
S: * NAMESPACE (("" "/")) NIL NIL
S: a2 OK Namespace completed.
C: a3 CREATE "Entw&APw-rfe"
S: a3 OK [MAILBOXID (<...>)] Create completed.
C: a4 ENABLE IMAP4rev2 X-UNKNOWN
S: * ENABLED IMAP4rev2
S: a4 OK Enabled.
C: a5 LIST "" "Entw*"
S: * LIST (\\HasNoChildren) "/" "Entwürfe"
S: a5 OK List completed.
C: a6 SELECT INBOX
S: * FLAGS <...>
S: * OK [PERMANENTFLAGS <...>
S: * 1 EXISTS
S: * OK [UIDVALIDITY <...>] UIDs valid
S: * OK [UIDNEXT 2] Predicted next UID
S: * LIST () "/" INBOX
S: * OK [MAILBOXID (<...>)] Ok
S: a6 OK [READ-WRITE] Select completed.
C: a7 SEARCH ALL
S: * ESEARCH (TAG "a7") ALL 1
S: a7 OK Search completed.
C: a8 UNSELECT
S: a8 OK Unselect completed.
C: a9 FETCH 1 FLAGS
S: a9 BAD No mailbox selected
C: a10 LOGOUT
S: * BYE Logging out
S: a10 OK Logout completed.
""",
    )


async def test_states_and_syntax_errors(server):
    """RFC 9051 6: commands outside their state; BAD for syntax; unknown commands."""
    await play(
        server,
        f"""
C: a1 SELECT INBOX
S: a1 BAD Command not allowed before authentication
C: a2 FROB
S: a2 BAD Unknown command FROB
C: a3 LOGIN
S: a3 BAD <...>
C: a4 {LOGIN}
S: a4 OK <...>
C: a5 LOGIN x y
S: a5 BAD Command not allowed in this state
C: a6 STARTTLS
S: a6 BAD Command not allowed in this state
C: a7 EXPUNGE
S: a7 BAD No mailbox selected
C: a8 SELECT INBOX (QRESYNC (1 1))
S: a8 BAD QRESYNC parameter needs ENABLE QRESYNC first
""",
    )


async def test_authenticate_plain(server):
    """RFC 9051 6.2.2, RFC 4616 PLAIN, RFC 4959 SASL-IR, RFC 5530 codes."""
    import base64

    good = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    bad = base64.b64encode(f"\0{USER}\0wrong".encode()).decode()
    await play(
        server,
        f"""
C: a1 AUTHENTICATE PLAIN {bad}
S: a1 NO [AUTHENTICATIONFAILED] Authentication failed.
C: a2 AUTHENTICATE PLAIN
S: +<...>
C: *
S: a2 BAD Authentication cancelled
C: a3 AUTHENTICATE CRAM-MD5
S: a3 NO Unsupported authentication mechanism
C: a4 AUTHENTICATE PLAIN
S: +<...>
C: {good}
S: a4 OK [CAPABILITY <...>] Logged in
""",
    )
    await play(
        server,
        f"""
C: b1 AUTHENTICATE PLAIN {good}
S: b1 OK [CAPABILITY <...>] Logged in
""",
    )


async def test_logindisabled_without_tls(start_server):
    """RFC 9051 6.2.3 LOGINDISABLED, 6.2.1 STARTTLS; RFC 8314 implicit TLS."""
    srv = await start_server(make_config(allow_plaintext_auth=False))
    c = await srv.connect(greeting=False)
    greeting = await c.line()
    assert "LOGINDISABLED" in greeting and "STARTTLS" in greeting and "AUTH=PLAIN" not in greeting
    lines = await c.cmd(LOGIN)
    assert lines[-1].startswith("t1 NO [PRIVACYREQUIRED]")
    lines = await c.cmd("AUTHENTICATE PLAIN AGFiYwBkZWY=")
    assert lines[-1].startswith("t2 NO [PRIVACYREQUIRED]")
    # plaintext pipelined after STARTTLS is discarded, never run after the handshake
    await c.send(b"t3 STARTTLS\r\nt4 CAPABILITY\r\n")
    assert await c.line() == "t3 OK Begin TLS negotiation now."
    await c.starttls()
    c.n = 4
    lines = await c.cmd("CAPABILITY")
    assert lines[0].startswith("* CAPABILITY") and "AUTH=PLAIN" in lines[0]
    assert "STARTTLS" not in lines[0] and "LOGINDISABLED" not in lines[0]
    assert lines[-1].startswith("t5 OK")
    assert (await c.cmd(LOGIN))[-1].startswith("t6 OK")
    t = await srv.connect(tls=True, greeting=False)
    greeting = await t.line()
    assert "AUTH=PLAIN" in greeting and "STARTTLS" not in greeting
    assert (await t.cmd(LOGIN))[-1].startswith("t1 OK")


async def test_trace_masks_secrets(start_server, caplog):
    """`--trace imap` logs the transcript without passwords or SASL responses."""
    import base64

    cfg = make_config()
    cfg.log.trace = ["imap"]
    srv = await start_server(cfg)
    c = await srv.connect()
    ir = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    with caplog.at_level(logging.INFO, logger="carteiro.trace"):
        await c.cmd(LOGIN)
        await c.cmd("LOGOUT")
        c2 = await srv.connect()
        await c2.cmd(f"AUTHENTICATE PLAIN {ir}")
        c3 = await srv.connect()
        await c3.send(b"x1 AUTHENTICATE PLAIN\r\n")
        assert await c3.line() == "+ "
        await c3.send(ir.encode() + b"\r\n")
        await c3.line()
        await c3.cmd("LOGIN alice {5}\r\nabcde")
    text = caplog.text
    assert "C: t1 LOGIN " + USER in text and "<secret masked>" in text
    assert PASSWORD not in text and ir not in text and "abcde" not in text
    assert "S: t1 OK" in text


async def test_bad_login_counts_per_ip(start_server):
    """Failures are delayed and counted per IP (the throttle shared with SMTP and POP3)."""
    srv = await start_server()
    srv.ctx.throttle.max_failures = 3
    c = await srv.connect()
    for i in range(3):
        lines = await c.cmd(f'LOGIN {USER} "wrong{i}"')
        assert "[AUTHENTICATIONFAILED]" in lines[-1]
    lines = await c.cmd(LOGIN)
    assert lines[-1].startswith("t4 NO [UNAVAILABLE]")


async def test_utf8_accept(server):
    """RFC 6855: after ENABLE UTF8=ACCEPT names are UTF-8 and SEARCH takes no CHARSET."""
    await play(
        server,
        f"""
C: a0 {LOGIN}
S: a0 OK <...>
C: a1 ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S: a1 OK Enabled.
C: a2 CREATE "Größe/Ärger"
S: a2 OK [MAILBOXID (<...>)] Create completed.
C: a3 LIST "" "Gr*"
S: * LIST (\\HasChildren) "/" "Größe"
S: * LIST (\\HasNoChildren) "/" "Größe/Ärger"
S: a3 OK List completed.
C: a4 SELECT "Größe/Ärger"
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: <...>
S: * OK [MAILBOXID (<...>)] Ok
S: a4 OK [READ-WRITE] Select completed.
C: a5 SEARCH CHARSET UTF-8 ALL
S: a5 BAD CHARSET is not allowed after ENABLE UTF8=ACCEPT
C: a6 ENABLE UTF8=ACCEPT
S: * ENABLED
S: a6 OK Enabled.
""",
    )


async def test_literal_minus(start_server):
    """RFC 7888: with LITERAL- a non-synchronising literal over 4096 octets ends the session."""
    srv = await start_server(make_config(literal_plus=False))
    c = await srv.connect(greeting=False)
    assert "LITERAL-" in await c.line()
    assert (await c.cmd(LOGIN))[-1].startswith("t1 OK")
    lines = await c.cmd("APPEND Drafts {10+}\r\nSubject: x")
    assert lines[-1].startswith("t2 OK [APPENDUID")
    await c.send(b"t3 APPEND Drafts {5000+}\r\n")
    assert (await c.line()).startswith("t3 BAD [TOOBIG]")
    assert (await c.line()).startswith("* BYE")
    assert await c.eof()


async def test_endless_line_says_bye(server):
    """A line that goes on past max_discard_line (16 x max_line, at least 1 MiB) without LF
    cannot be skipped forever: * BYE [TOOBIG] and close, as Dovecot does."""
    c = await server.connect()
    await c.send(b"t1 NOOP " + b"x" * (1024 * 1024 - 7))  # one octet over the bound, no LF
    assert await c.line() == "* BYE [TOOBIG] Line too long"
    assert await c.eof()


async def test_binary_unknown_cte(server):
    """RFC 3516 4.3: BINARY of a part whose encoding cannot be undone is NO [UNKNOWN-CTE]."""
    await server.deliver(
        b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    )
    c = await server.connect(login=True)
    await c.cmd("SELECT INBOX")
    lines = await c.cmd("FETCH 1 (BINARY.PEEK[1])")
    assert lines[-1].startswith("t3 NO [UNKNOWN-CTE]")
    lines = await c.cmd("FETCH 1 (BINARY.SIZE[1] BODY.PEEK[1])")
    assert lines[-1].startswith("t4 NO [UNKNOWN-CTE]")
