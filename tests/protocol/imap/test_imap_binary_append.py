"""APPEND with a binary literal (RFC 3516 4.4): the message is stored exactly as sent, bare LFs
and all, and FETCH serves it so (BODY[], BINARY[], RFC822, RFC822.SIZE agree with the octets sent),
while a 7/8-bit literal is stored with CRLF line endings. Both store backends."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

import re

from imap_harness import (  # noqa: F401  (fixtures)
    directory,
    server,
    start_server,
    tls_files,
)

BARE_LF = (
    b"From: a@example.test\n"
    b"Subject: bare LF\r\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"line one\nline two\r\nline three\n"
)


def literals(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(item name, octets) of each literal in a FETCH answer."""
    out = []
    for m in re.finditer(rb"([A-Z0-9.]+(?:\[[^\]]*\])?(?:<\d+>)?) ~?\{(\d+)\}\r\n", raw):
        start = m.end()
        out.append((m.group(1), raw[start : start + int(m.group(2))]))
    return out


async def test_binary_append_keeps_bare_lf(server):
    c = await server.connect(login=True)
    await c.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(BARE_LF) + BARE_LF + b"\r\n")
    lines = (await c.raw_response("a1")).decode()
    assert "a1 OK [APPENDUID" in lines
    await c.send(b"a2 APPEND INBOX {%d+}\r\n" % len(BARE_LF) + BARE_LF + b"\r\n")
    assert "a2 OK" in (await c.raw_response("a2")).decode()
    await c.cmd("EXAMINE INBOX")
    # the metadata path (no message read) and the parsed path give the same size
    meta = (await c.raw_response_of("a3 FETCH 1:2 (RFC822.SIZE)")).decode()
    assert f"* 1 FETCH (RFC822.SIZE {len(BARE_LF)})" in meta
    crlf = BARE_LF.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert f"* 2 FETCH (RFC822.SIZE {len(crlf)})" in meta
    raw = await c.raw_response_of("a4 FETCH 1 (BODY.PEEK[] BINARY.PEEK[] RFC822.SIZE ENVELOPE)")
    assert literals(raw) == [(b"BODY[]", BARE_LF), (b"BINARY[]", BARE_LF)]
    assert b"RFC822.SIZE %d" % len(BARE_LF) in raw
    raw = await c.raw_response_of("a5 FETCH 1 (BINARY.SIZE[])")
    assert b"BINARY.SIZE[] %d" % len(BARE_LF) in raw
    raw = await c.raw_response_of("a6 FETCH 1 (RFC822 BODY.PEEK[]<0.25>)")
    assert literals(raw) == [(b"RFC822", BARE_LF), (b"BODY[]<0>", BARE_LF[:25])]
    raw = await c.raw_response_of("a7 FETCH 2 (BODY.PEEK[] BINARY.PEEK[])")
    assert literals(raw) == [(b"BODY[]", crlf), (b"BINARY[]", crlf)]
    # the store holds exactly what was sent
    acct = await server.account()
    box = await acct.get_mailbox("INBOX")
    assert await acct.read_message(box.id, 1) == BARE_LF
    assert await acct.read_message(box.id, 2) == crlf


async def test_binary_append_with_nul(server):
    """BINARY[] gives the NUL back in a literal8; BODY[] (a plain literal) shows it as 0x80."""
    data = b"Subject: nul\n\nA\x00B\n"
    c = await server.connect(login=True)
    await c.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(data) + data + b"\r\n")
    assert "a1 OK" in (await c.raw_response("a1")).decode()
    await c.cmd("EXAMINE INBOX")
    raw = await c.raw_response_of("a2 FETCH 1 (BINARY.PEEK[] BODY.PEEK[])")
    assert b"BINARY[] ~{%d}\r\n" % len(data) in raw
    assert literals(raw) == [(b"BINARY[]", data), (b"BODY[]", data.replace(b"\x00", b"\x80"))]


async def test_whole_message_items_after_the_message_was_parsed(server):
    """BODY[] and RFC822 of a message already parsed and cached (by a BODYSTRUCTURE or a header
    FETCH) come from that cache: the same stored octets as a read, bare LFs, NUL as 0x80."""
    nul = b"Subject: nul\n\nA\x00B\n"
    c = await server.connect(login=True)
    for data, kind in ((BARE_LF, b"~"), (BARE_LF, b""), (nul, b"~")):
        await c.send(b"a1 APPEND INBOX " + kind + b"{%d+}\r\n" % len(data) + data + b"\r\n")
        assert "a1 OK" in (await c.raw_response("a1")).decode()
    crlf = BARE_LF.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    await c.cmd("EXAMINE INBOX")
    before = await c.raw_response_of("a2 FETCH 1:3 (BODY.PEEK[])")
    await c.raw_response_of("a3 FETCH 1:3 (BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    after = await c.raw_response_of("a4 FETCH 1:3 (BODY.PEEK[])")
    expected = [(b"BODY[]", BARE_LF), (b"BODY[]", crlf), (b"BODY[]", nul.replace(b"\x00", b"\x80"))]
    assert literals(before) == literals(after) == expected
    raw = await c.raw_response_of("a5 FETCH 1 (RFC822 RFC822.SIZE)")
    assert literals(raw) == [(b"RFC822", BARE_LF)] and b"RFC822.SIZE %d" % len(BARE_LF) in raw
