"""MULTIAPPEND (RFC 3502): several messages in one APPEND, all or none, APPENDUID with the UID
set (RFC 4315); the RFC's section 6 example with synchronising literals. Both stores."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    directory,
    server,
    start_server,
    tls_files,
)

M1 = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.example.net\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
M2 = (
    b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\n"
    b"From: Joe Mooch <mooch@OWaTaGu.example.net>\r\n"
    b"Subject: Re: afternoon meeting\r\n"
    b"To: foobar@blurdybloop.example.com\r\n"
    b"Message-Id: <a0434793874930@OWaTaGu.example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"3:30 is fine with me.\r\n"
)


async def test_rfc3502_example(server):
    c = await server.connect(login=True)
    assert (await c.cmd("CREATE saved-messages"))[-1].split()[1] == "OK"
    await c.send(b"A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(M1))
    assert (await c.line()).startswith("+ ")
    await c.send(M1 + b' (\\Seen) " 1-Jul-2002 22:30:00 -0400" {%d}\r\n' % len(M2))
    assert (await c.line()).startswith("+ ")
    await c.send(M2 + b"\r\n")
    tagged = await c.line()
    assert tagged.startswith("A003 OK [APPENDUID "), tagged
    uidvalidity, uids = tagged.split("[APPENDUID ", 1)[1].split("]")[0].split()
    assert uids == "1:2"
    lines = await c.cmd("SELECT saved-messages")
    assert "* 2 EXISTS" in lines
    assert f"* OK [UIDVALIDITY {uidvalidity}] UIDs valid" in lines
    lines = await c.cmd("FETCH 1:2 (FLAGS INTERNALDATE RFC822.SIZE)")
    assert lines[1] == (
        f'* 2 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE "01-Jul-2002 22:30:00 -0400" RFC822.SIZE {len(M2)})'
    )
    raw = await c.raw_response_of("f UID FETCH 1:2 BODY.PEEK[]")
    assert M1 in raw and M2 in raw
    # the same to a mailbox that does not exist: TRYCREATE, nothing appended anywhere
    await c.send(b"A004 APPEND nonesuch (\\Seen) {%d}\r\n" % len(M1))
    assert (await c.line()).startswith("+ ")
    await c.send(M1 + b" {%d}\r\n" % len(M2))
    assert (await c.line()).startswith("+ ")
    await c.send(M2 + b"\r\n")
    assert (await c.line()).startswith("A004 NO [TRYCREATE]")


async def test_all_or_none(server):
    c = await server.connect(login=True)
    # LITERAL+: the second message is empty: the whole APPEND is refused, the first not stored
    await c.send(b"a1 APPEND INBOX {%d+}\r\n" % len(M1) + M1 + b" {0+}\r\n\r\n")
    assert (await c.line()).startswith("a1 NO ")
    acct = await server.account()
    await acct.set_quota(0, 3)
    await c.send(
        b"a2 APPEND INBOX {%d+}\r\n" % len(M1) + M1 + b" {%d+}\r\n" % len(M2) + M2 + b"\r\n"
    )
    assert (await c.line()).startswith("a2 OK [APPENDUID ")
    three = b" {%d+}\r\n" % len(M2) + M2
    await c.send(b"a3 APPEND INBOX {%d+}\r\n" % len(M1) + M1 + three + three + b"\r\n")
    assert (await c.line()).startswith("a3 NO [OVERQUOTA]")
    lines = await c.cmd("STATUS INBOX (MESSAGES)")
    assert lines[0] == "* STATUS INBOX (MESSAGES 2)"
    # the selected mailbox learns every appended message
    await acct.set_quota(0, 0)
    await c.cmd("SELECT INBOX")
    await c.send(
        b"a4 APPEND INBOX {%d+}\r\n" % len(M1) + M1 + b" {%d+}\r\n" % len(M2) + M2 + b"\r\n"
    )
    lines = [await c.line() for _ in range(3)]
    assert lines[:2] == ["* 4 EXISTS", "* 4 RECENT"], lines
    assert lines[2].startswith("a4 OK [APPENDUID ") and lines[2].split()[4] == "3:4]", lines


async def test_limits_per_message_and_in_total(start_server):
    from imap_harness import make_config

    srv = await start_server(make_config(max_literal_size=2048, max_line_length=256))
    c = await srv.connect(login=True)
    body = b"Subject: x\r\n\r\n" + b"y" * 1000 + b"\r\n"
    # one message above the limit: refused before its octets are sent
    await c.send(b"a1 APPEND INBOX {%d}\r\n" % 3000)
    assert (await c.line()).startswith("a1 NO [TOOBIG]")
    # each message below it, the command above it in total (APPENDLIMIT + 16 lines): refused
    # when the total passes the limit, none stored
    await c.send(b"a2 APPEND INBOX {%d}\r\n" % len(body))
    assert (await c.line()).startswith("+ ")
    for _ in range(12):
        await c.send(body + b" {%d}\r\n" % len(body))
        answer = await c.line()
        if not answer.startswith("+ "):
            break
    assert answer.startswith("a2 NO [TOOBIG]"), answer
    lines = await c.cmd("STATUS INBOX (MESSAGES)")
    assert lines[0] == "* STATUS INBOX (MESSAGES 0)", lines
