"""CATENATE (RFC 4469) after its example (a draft rebuilt from parts of an earlier draft and new
text), IMAP URLs (RFC 5092: absolute and server-relative, UIDVALIDITY, SECTION, PARTIAL), and
every refusal: bad syntax, another user, a missing mailbox or message, a changed UIDVALIDITY,
URLAUTH, too big. Both store backends."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import pytest
from imap_harness import (  # noqa: F401  (fixtures)
    BOB,
    USER,
    directory,
    make_config,
    server,
    start_server,
    tls_files,
)

from carteiro.proto.imap.url import UrlError, parse_message_url

BOUNDARY = b"------------030308070208000400050907"
DRAFT = (
    b"From: Alice <alice@example.test>\r\n"
    b"Subject: draft\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="' + BOUNDARY + b'"\r\n'
    b"\r\n"
    b"--" + BOUNDARY + b"\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"First draft of the text.\r\n"
    b"--" + BOUNDARY + b"\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgcICQ==\r\n"
    b"--" + BOUNDARY + b"--\r\n"
)


async def _append(c, line: bytes) -> str:
    await c.send(line)
    return (await c.raw_response("a1")).decode()


def lit(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


async def _fetch(c, uid: int, item: str) -> bytes:
    raw = await c.raw_response_of(f"f{uid} UID FETCH {uid} ({item})")
    start = raw.index(b"}\r\n") + 3
    size = int(raw[raw.index(b"{") + 1 : raw.index(b"}")])
    return raw[start : start + size]


async def test_catenate_rebuilds_a_draft(server):
    acct = await server.account()
    r = await acct.append("Drafts", DRAFT)
    uv = r.uidvalidity
    c = await server.connect(login=True)
    assert "CATENATE" in " ".join(await c.cmd("CAPABILITY"))
    base = f"/Drafts;UIDVALIDITY={uv}/;UID={r.uid}"
    new_text = b"The second draft of the text.\r\n"
    line = (
        b'a1 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "'
        + f"{base}/;section=HEADER".encode()
        + b'" TEXT '
        + lit(b"--" + BOUNDARY + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
        + b" TEXT "
        + lit(new_text)
        + b" TEXT "
        + lit(b"--" + BOUNDARY + b"\r\n")
        + b' URL "'
        + f"{base}/;section=2.MIME".encode()
        + b'" URL "'
        + f"imap://{USER.replace('@', '%40')}@mail.example.test{base}/;SECTION=2".encode()
        + b'" TEXT '
        + lit(b"\r\n--" + BOUNDARY + b"--\r\n")
        + b")\r\n"
    )
    out = await _append(c, line)
    assert f"a1 OK [APPENDUID {uv} 2]" in out, out
    await c.cmd("EXAMINE Drafts")
    header = DRAFT[: DRAFT.index(b"\r\n\r\n") + 4]
    want = (
        header
        + b"--"
        + BOUNDARY
        + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + new_text
        + b"--"
        + BOUNDARY
        + b"\r\n"
        + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b"AAECAwQFBgcICQ=="
        + b"\r\n--"
        + BOUNDARY
        + b"--\r\n"
    )
    assert await _fetch(c, 2, "BODY.PEEK[]") == want
    assert await _fetch(c, 2, "BINARY.PEEK[2]") == bytes(range(10))
    flags = " ".join(await c.cmd("UID FETCH 2 (FLAGS)"))
    assert "\\Seen" in flags and "\\Draft" in flags and "$MDNSent" in flags


async def test_catenate_partial_and_whole_message(server):
    acct = await server.account()
    r = await acct.append("INBOX", DRAFT)
    c = await server.connect(login=True)
    await c.cmd("SELECT INBOX")
    line = (
        b'a1 APPEND Drafts CATENATE (URL "/INBOX/;UID=1/;PARTIAL=0.20" TEXT '
        + lit(b"|")
        + b' URL "/inbox/;UID=1")\r\n'
    )
    assert "a1 OK [APPENDUID" in await _append(c, line)
    await c.cmd("EXAMINE Drafts")
    assert await _fetch(c, 1, "BODY.PEEK[]") == DRAFT[:20] + b"|" + DRAFT
    assert r.uid == 1


@pytest.mark.parametrize(
    "url",
    [
        "/INBOX/;UID=7",  # no such message
        "/Nowhere/;UID=1",  # no such mailbox
        "/INBOX;UIDVALIDITY=1/;UID=1",  # UIDVALIDITY changed
        f"imap://{BOB.replace('@', '%40')}@mail.example.test/INBOX/;UID=1",  # another user
        "/INBOX/;UID=1/;URLAUTH=anonymous:internal:91354a473744909de610943775f92038",
        "INBOX/;UID=1",  # neither absolute nor from the root
        "/INBOX/;UID=1/;SECTION=9.FOO",
    ],
)
async def test_catenate_bad_urls_refuse_the_append(server, url):
    acct = await server.account()
    await acct.append("INBOX", DRAFT)
    bob = await server.account(BOB)
    await bob.append("INBOX", DRAFT)
    c = await server.connect(login=True)
    line = b"a1 APPEND Drafts CATENATE (TEXT " + lit(b"x") + b' URL "' + url.encode() + b'")\r\n'
    out = await _append(c, line)
    assert out.startswith("a1 NO [BADURL "), out
    info = await acct.get_mailbox("Drafts")
    assert (await acct.counts(info.id)).messages == 0


async def test_catenate_too_big(start_server):
    srv = await start_server(make_config(max_literal_size=4096))
    acct = await srv.account()
    await acct.append("INBOX", DRAFT + b"x" * 3000)
    c = await srv.connect(login=True)
    line = b'a1 APPEND Drafts CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")\r\n'
    assert (await _append(c, line)).startswith("a1 NO [TOOBIG]")


def test_url_grammar():
    u = parse_message_url(
        "imap://a%40b.example@h:143/Box%20%C3%A9/sub;UIDVALIDITY=9/;UID=3/;SECTION=HEADER.FIELDS%20(FROM)"
    )
    assert (u.user, u.mailbox, u.uidvalidity, u.uid) == ("a@b.example", "Box é/sub", 9, 3)
    assert u.section is not None and u.section.fields == ("FROM",)
    for bad in [
        "",
        "/",
        "/INBOX/;UID=",
        "/INBOX/;UID=01",
        "/INBOX/;PARTIAL=1/;UID=1",
        "/%FF/;UID=1",
        "/INBOX/;UID=1/;PARTIAL=1.",
        "/INBOX;FOO=1/;UID=1",
        "imap:///INBOX/;UID=1",
    ]:
        with pytest.raises(UrlError):
            parse_message_url(bad)
