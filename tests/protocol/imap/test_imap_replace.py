"""REPLACE and UID REPLACE (RFC 8508): the new message appended and the old one expunged in one
store transaction; APPENDUID in an untagged OK before the EXPUNGE; refusals change nothing.
After the RFC's section 3 examples. Both stores."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    directory,
    server,
    start_server,
    tls_files,
)

DRAFT = (
    b"Date: Thu, 1 Jan 2015 00:05:00 -0500 (EST)\r\n"
    b"From: Fritz Schmidt <fritz.ze@example.org>\r\n"
    b"Subject: happy new year !!\r\n"
    b"To: miss.mitzy@example.org\r\n"
    b"Message-Id: <B238822388-0100000@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Just saw the best fireworks show. Wish you were here.\r\n"
)


async def _until(c, tag):
    got = [await c.line()]
    while not got[-1].startswith(tag + " "):
        got.append(await c.line())
    return got


async def _drafts(acct):
    from carteiro.store.api import MailboxExists

    try:
        await acct.create_mailbox("Drafts")
    except MailboxExists:  # a default mailbox of new accounts
        pass


async def test_rfc8508_examples(server):
    acct = await server.account()
    await _drafts(acct)
    for i in range(5):
        await acct.append("Drafts", b"Subject: draft %d\r\n\r\nx\r\n" % i)
    uv = (await acct.get_mailbox("Drafts")).uidvalidity
    c = await server.connect(login=True)
    caps = await c.cmd("CAPABILITY")
    assert " REPLACE" in caps[0]
    await c.cmd("SELECT Drafts")
    # 3.1: REPLACE by message number into the same mailbox
    await c.send(b"A003 REPLACE 4 Drafts (\\Seen \\Draft) {%d}\r\n" % len(DRAFT))
    assert (await c.line()).startswith("+ ")
    await c.send(DRAFT + b"\r\n")
    got = await _until(c, "A003")
    got = [g for g in got if not g.endswith(" RECENT")]
    assert got == [
        f"* OK [APPENDUID {uv} 6] Replacement Message ready",
        "* 4 EXPUNGE",
        "* 5 EXISTS",
        "A003 OK Replace completed.",
    ], got
    lines = await c.cmd("UID FETCH 1:* (FLAGS)")
    assert [ln.split("UID ")[1].split()[0] for ln in lines[:-1] if "FETCH" in ln] == [
        "1",
        "2",
        "3",
        "5",
        "6",
    ], lines
    raw = await c.raw_response_of("f1 UID FETCH 6 BODY.PEEK[]")
    assert DRAFT in raw
    # UID REPLACE into another mailbox (3.2): the old one goes from the selected mailbox
    await c.cmd("CREATE Sent")
    await c.send(b"A004 UID REPLACE 5 Sent (\\Seen) {%d+}\r\n" % len(DRAFT) + DRAFT + b"\r\n")
    got = await _until(c, "A004")
    assert got[0].startswith("* OK [APPENDUID ") and got[0].endswith(
        " 1] Replacement Message ready"
    )
    assert got[1] == "* 4 EXPUNGE" and got[2] == "A004 OK Replace completed.", got
    st = await c.cmd("STATUS Sent (MESSAGES)")
    assert st[0] == "* STATUS Sent (MESSAGES 1)"


async def test_refusals_change_nothing(server):
    acct = await server.account()
    await _drafts(acct)
    await acct.append("Drafts", b"Subject: d\r\n\r\nx\r\n")
    c = await server.connect(login=True)
    await c.cmd("SELECT Drafts")
    n = len(DRAFT)
    cases = [
        (b"a1 REPLACE 2 Drafts {%d+}\r\n" % n, "a1 BAD"),  # no message 2
        (b"a2 UID REPLACE 9 Drafts {%d+}\r\n" % n, "a2 NO [NONEXISTENT]"),
        (b"a3 REPLACE 1 Nonesuch {%d+}\r\n" % n, "a3 NO [TRYCREATE]"),
    ]
    for line, want in cases:
        await c.send(line + DRAFT + b"\r\n")
        got = await c.line()
        assert got.startswith(want), (want, got)
    await c.send(b"a4 REPLACE 1 Drafts {0+}\r\n\r\n")
    assert (await c.line()).startswith("a4 NO ")
    await acct.set_quota(0, 1)  # at the limit: a replace frees as much as it takes
    await c.send(b"a5 REPLACE 1 Drafts {%d+}\r\n" % n + DRAFT + b"\r\n")
    got = await _until(c, "a5")
    assert got[-1] == "a5 OK Replace completed.", got
    await c.cmd("EXAMINE Drafts")
    await c.send(b"a6 REPLACE 1 Drafts {%d+}\r\n" % n + DRAFT + b"\r\n")
    assert (await c.line()).startswith("a6 NO [READ-ONLY]")
    st = await c.cmd("STATUS Drafts (MESSAGES UIDNEXT)")
    assert st[0] == "* STATUS Drafts (MESSAGES 1 UIDNEXT 3)", st


async def test_replace_after_another_session_expunged(server):
    acct = await server.account()
    await _drafts(acct)
    await acct.append("Drafts", b"Subject: d\r\n\r\nx\r\n")
    c = await server.connect(login=True)
    await c.cmd("SELECT Drafts")
    info = await acct.get_mailbox("Drafts")
    await acct.delete_messages(info.id, [1])  # gone behind this session's back
    await c.send(b"a1 UID REPLACE 1 Drafts {%d+}\r\n" % len(DRAFT) + DRAFT + b"\r\n")
    got = await c.line()
    while got.startswith("* "):
        got = await c.line()
    assert got.startswith("a1 NO [EXPUNGEISSUED]"), got
    st = await acct.counts(info.id)
    assert st.messages == 0
