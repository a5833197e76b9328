"""MIME structure as IMAP shows it (issue 11 part 1.5): BODYSTRUCTURE, BODY[n], BINARY[n],
ENVELOPE and SEARCH BODY on messages that exposed defects. Each transcript starts with the
message selected (SELECT's own answer is not the subject here)."""

# ruff: noqa: F811  (pytest fixtures imported from imap_harness)

from __future__ import annotations

from imap_harness import (  # noqa: F401  (fixtures)
    directory,
    server,
    start_server,
    tls_files,
)


async def converse(srv, message: bytes, script: str, enable: str = "") -> None:  # type: ignore[no-untyped-def]
    """Deliver `message`, log in, (ENABLE `enable`,) SELECT INBOX, then play `script`: each
    "C:" line is sent, and the "S:" lines after it must be exactly the server's answer up to
    the tagged line (literals inline, as in the RFC examples)."""
    await srv.deliver(message)
    client = await srv.connect(login=True)
    try:
        if enable:
            assert (await client.cmd(f"ENABLE {enable}"))[-1].split()[1] == "OK"
        assert (await client.cmd("SELECT INBOX"))[-1].split()[1] == "OK"
        steps: list[tuple[str, list[str]]] = []
        for raw in script.strip("\n").splitlines():
            who, text = raw[:2], raw[3:]
            if who == "C:":
                steps.append((text, []))
            else:
                assert who == "S:", raw
                steps[-1][1].append(text)
        for command, expected in steps:
            tag = command.split()[0]
            await client.send(command.encode() + b"\r\n")
            got = (await client.raw_response(tag)).decode("utf-8", "replace")
            assert got == "".join(line + "\r\n" for line in expected), command
    finally:
        client.close()


DIGEST = (
    b"From: list@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="__--__--"\r\n'
    b"\r\n"
    b"--__--__--\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"first\r\n"
    b"--__--__--\r\n"
    b"\r\n"
    b"second\r\n"
    b"--__--__----\r\n"
)


async def test_mailman_digest_boundary(server):  # type: ignore[no-untyped-def]
    """RFC 2046 5.1.1: a boundary may end in "--"; its close delimiter adds another "--"."""
    await converse(
        server,
        DIGEST,
        """
C: a1 FETCH 1 (BODY BODY.PEEK[2])
S: * 1 FETCH (BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 0) "mixed") BODY[2] {6}
S: second)
S: a1 OK Fetch completed.
C: a2 SEARCH BODY second
S: * SEARCH 1
S: a2 OK Search completed.
""",
    )


HEADER_ONLY_PART = (
    b"From: a@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"--b--\r\n"
)


async def test_mime_of_a_part_without_body(server):  # type: ignore[no-untyped-def]
    """RFC 2046 5.1.1: the CRLF before "--b--" belongs to the boundary, not to 1.MIME."""
    await converse(
        server,
        HEADER_ONLY_PART,
        """
C: a1 FETCH 1 (BODY.PEEK[1.MIME] BODY.PEEK[1])
S: * 1 FETCH (BODY[1.MIME] {26}
S: Content-Type: text/plain
S:  BODY[1] "")
S: a1 OK Fetch completed.
""",
    )


RFC2231_BOUNDARY = (
    b"From: a@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary*=us-ascii'en'b%20c\r\n"
    b"\r\n"
    b"--b c\r\n"
    b"\r\n"
    b"one\r\n"
    b"--b c\r\n"
    b"\r\n"
    b"two\r\n"
    b"--b c--\r\n"
)


async def test_rfc2231_boundary(server):  # type: ignore[no-untyped-def]
    """RFC 2231 4: an encoded `boundary*` parameter names the boundary."""
    await converse(
        server,
        RFC2231_BOUNDARY,
        """
C: a1 FETCH 1 (BODY BODY.PEEK[2])
S: * 1 FETCH (BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "mixed") BODY[2] {3}
S: two)
S: a1 OK Fetch completed.
""",
    )


async def test_envelope_joins_repeated_address_fields(server):  # type: ignore[no-untyped-def]
    """Two To fields: ENVELOPE lists both recipients (a reply-all must reach both)."""
    await converse(
        server,
        b"From: a@x.test\r\nTo: b@x.test\r\nTo: c@x.test\r\nSubject: s\r\n\r\nbody\r\n",
        """
C: a1 FETCH 1 ENVELOPE
S: * 1 FETCH (ENVELOPE (NIL "s" ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) ((NIL NIL "b" "x.test")(NIL NIL "c" "x.test")) NIL NIL NIL NIL))
S: a1 OK Fetch completed.
""",
    )


async def test_invalid_content_type(server):  # type: ignore[no-untyped-def]
    """RFC 2045 5.2: an invalid Content-Type is text/plain; charset=us-ascii."""
    await converse(
        server,
        b"From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: image\r\n\r\nhello\r\n",
        """
C: a1 FETCH 1 BODYSTRUCTURE
S: * 1 FETCH (BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL))
S: a1 OK Fetch completed.
""",
    )


async def test_part_cut_by_the_nesting_limit(server):  # type: ignore[no-untyped-def]
    """The innermost message/rfc822 part past the nesting limit (100 levels, as Dovecot) is
    shown as application/octet-stream: it has no envelope for the message/rfc822 grammar."""
    nested = b"MIME-Version: 1.0\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 105 + b"x\r\n"
    await server.deliver(nested)
    client = await server.connect(login=True)
    try:
        assert (await client.cmd("SELECT INBOX"))[-1].split()[1] == "OK"
        lines = await client.cmd("FETCH 1 BODY", tag="a1")
        assert lines[-1] == "a1 OK Fetch completed."
        body = lines[0]
        assert body.count('("message" "rfc822" NIL NIL NIL "7bit"') == 99
        assert body.count('("application" "octet-stream" NIL NIL NIL "7bit" ') == 1
        assert '"rfc822" NIL NIL NIL "7bit" 0)' not in body  # no message/rfc822 without envelope
    finally:
        client.close()


async def test_bare_cr_in_a_header(server):  # type: ignore[no-untyped-def]
    """A bare CR in Subject reads as a blank in ENVELOPE and SEARCH."""
    await converse(
        server,
        b"From: a@x.test\r\nSubject: Bare\rCR\r\n\r\nbody\r\n",
        """
C: a1 FETCH 1 ENVELOPE
S: * 1 FETCH (ENVELOPE (NIL "Bare CR" ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) ((NIL NIL "a" "x.test")) NIL NIL NIL NIL NIL))
S: a1 OK Fetch completed.
C: a2 SEARCH SUBJECT "Bare CR"
S: * SEARCH 1
S: a2 OK Search completed.
""",
    )


async def test_binary_of_a_part_that_does_not_exist(server):  # type: ignore[no-untyped-def]
    """A part the message does not have: BINARY[n] is empty, as BODY[n] is (and as Dovecot
    answers both), not NIL; BINARY.SIZE[n] 0."""
    await converse(
        server,
        b"From: a@x.test\r\nSubject: one part\r\n\r\nbody\r\n",
        """
C: a1 FETCH 1 (BODY.PEEK[3] BINARY.PEEK[3] BINARY.SIZE[3] BINARY.PEEK[1.2])
S: * 1 FETCH (BODY[3] "" BINARY[3] "" BINARY.SIZE[3] 0 BINARY[1.2] "")
S: a1 OK Fetch completed.
""",
    )


async def test_binary_of_a_listed_empty_part(server):  # type: ignore[no-untyped-def]
    """RFC 3516 4.2: BINARY[1] of the empty part BODYSTRUCTURE lists is empty, not NIL."""
    await converse(
        server,
        b"From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        b"\r\nno parts\r\n",
        """
C: a1 FETCH 1 (BODY BINARY.PEEK[1] BINARY.SIZE[1])
S: * 1 FETCH (BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed") BINARY[1] "" BINARY.SIZE[1] 0)
S: a1 OK Fetch completed.
""",
    )


async def test_binary_of_base64_text(server):  # type: ignore[no-untyped-def]
    """RFC 3516 4.2, RFC 9051 7.5.2: BINARY of base64 text has CRLF line ends."""
    await converse(
        server,
        b"From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nb25lCnR3bwo=\r\n",
        """
C: a1 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])
S: * 1 FETCH (BINARY.SIZE[1] 10 BINARY[1] {10}
S: one
S: two
S: )
S: a1 OK Fetch completed.
""",
    )


GLOBAL = (
    b"From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: message/global\r\n\r\n"
    b"From: b@x.test\r\nSubject: inner\r\n\r\nline\r\n"
    b"--b--\r\n"
)


async def test_message_global_in_imap4rev1(server):  # type: ignore[no-untyped-def]
    """RFC 3501 9 (media-basic, media-message): in IMAP4rev1 message/global is a basic body."""
    await converse(
        server,
        GLOBAL,
        """
C: a1 FETCH 1 (BODY BODYSTRUCTURE)
S: * 1 FETCH (BODY (("message" "global" NIL NIL NIL "7bit" 38) "mixed") BODYSTRUCTURE (("message" "global" NIL NIL NIL "7bit" 38 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL))
S: a1 OK Fetch completed.
C: a2 FETCH 1 BODY.PEEK[1.1]
S: * 1 FETCH (BODY[1.1] {4}
S: line)
S: a2 OK Fetch completed.
""",
    )


async def test_message_global_in_imap4rev2(server):  # type: ignore[no-untyped-def]
    """RFC 9051 7.5.2: media-message is "MESSAGE" ("RFC822" / "GLOBAL"): envelope, body, lines."""
    await converse(
        server,
        GLOBAL,
        """
C: a1 FETCH 1 BODY
S: * 1 FETCH (BODY (("message" "global" NIL NIL NIL "7bit" 38 (NIL "inner" ((NIL NIL "b" "x.test")) ((NIL NIL "b" "x.test")) ((NIL NIL "b" "x.test")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 0) 3) "mixed"))
S: a1 OK Fetch completed.
""",
        enable="IMAP4rev2",
    )
