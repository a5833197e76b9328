"""Transcripts for the corners of RFC 1939, 2449, 2595 and 5034 that real clients and compliance
checkers probe: deleted message numbers, exact octet counts, TOP edges, stuffing, sequencing."""

from __future__ import annotations

import base64

from pop3_harness import BOB, PASSWORD, USER, Harness, play

LOGIN = f"""
S: +OK mail.example.test POP3 server ready
C: USER {USER}
S: +OK Send your password
C: PASS {PASSWORD}
S: +OK Logged in{{...}}
"""


async def test_deleted_messages_are_invisible_until_rset(server: Harness) -> None:
    """RFC 1939 5/7: a deleted message may not be referred to; LIST/UIDL skip it; RSET undoes."""
    uids = [await server.add(b"Subject: %d\r\n\r\nbody\r\n" % i) for i in (1, 2, 3)]
    uv = (await (await server.account()).get_mailbox("INBOX")).uidvalidity
    c = await server.connect(greeting=False)
    await play(
        c,
        LOGIN
        + f"""
        C: dele 2
        S: +OK message 2 deleted
        C: STAT
        S: +OK 2 40
        C: RETR 2
        S: -ERR message 2 already deleted
        C: TOP 2 0
        S: -ERR message 2 already deleted
        C: LIST 2
        S: -ERR message 2 already deleted
        C: UIDL 2
        S: -ERR message 2 already deleted
        C: DELE 2
        S: -ERR message 2 already deleted
        C: LIST
        S: +OK 2 messages (40 octets)
        S: 1 20
        S: 3 20
        S: .
        C: UIDL
        S: +OK Unique-ID listing follows
        S: 1 {uv}.{uids[0]}
        S: 3 {uv}.{uids[2]}
        S: .
        C: RSET
        S: +OK maildrop has 3 messages (60 octets)
        C: LIST 2
        S: +OK 2 20
        C: Noop
        S: +OK
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (3 messages left)
        -- eof
        """,
    )
    assert await server.uids() == uids


async def test_octet_counts_match_what_retr_sends(server: Harness) -> None:
    """RFC 1939 11: sizes are of the message as sent (CRLF, before stuffing); a message without
    a final CRLF still ends with CRLF.CRLF, and its size counts that CRLF."""
    await server.add(b"Subject: a\r\n\r\n.dot\r\nlast line without CRLF")
    c = await server.login()
    await c.send(b"RETR 1\r\n")
    assert await c.line() == "+OK 44 octets"
    data = await c.raw_until_terminator()
    assert data == b"Subject: a\r\n\r\n..dot\r\nlast line without CRLF\r\n.\r\n"
    body = data[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
    assert len(body) == 44
    # once read, STAT and LIST give the size as sent too
    assert await c.cmd("STAT") == "+OK 1 44"
    assert await c.cmd("LIST 1") == "+OK 1 44"
    await c.send(b"LIST\r\n")
    assert await c.line() == "+OK 1 messages (44 octets)"
    assert await c.multiline() == ["1 44"]


async def test_top_edges(server: Harness) -> None:
    """RFC 1939 7 TOP: n 0 is the header and blank line; n beyond the body is the whole message;
    a message without a body is all header; stuffing applies."""
    await server.add(b"Subject: a\r\n\r\nl1\r\n.l2\r\nl3")
    await server.add(b"Subject: only a header\r\n")
    c = await server.login()
    await play(
        c,
        """
        C: TOP 1 0
        S: +OK Top of message follows
        S: Subject: a
        S:
        S: .
        C: TOP 1 2
        S: +OK Top of message follows
        S: Subject: a
        S:
        S: l1
        S: ..l2
        S: .
        C: TOP 1 99
        S: +OK Top of message follows
        S: Subject: a
        S:
        S: l1
        S: ..l2
        S: l3
        S: .
        C: TOP 2 5
        S: +OK Top of message follows
        S: Subject: only a header
        S: .
        C: TOP 1
        S: -ERR TOP needs a message number and a number of lines
        C: TOP 1 2 3
        S: -ERR TOP needs a message number and a number of lines
        C: TOP 0 1
        S: -ERR no such message, only 2 messages in maildrop
        """,
    )


async def test_argument_errors(server: Harness) -> None:
    await server.add(b"Subject: a\r\n\r\nx\r\n")
    c = await server.login()
    await play(
        c,
        """
        C: RETR
        S: -ERR RETR needs one message number
        C: RETR 1 2
        S: -ERR RETR needs one message number
        C: RETR x
        S: -ERR RETR: x is not a message number
        C: RETR 0
        S: -ERR no such message, only 1 messages in maildrop
        C: RETR 99999999999999999999
        S: -ERR no such message, only 1 messages in maildrop
        C: DELE -1
        S: -ERR DELE: -1 is not a message number
        C: LIST 1 2
        S: -ERR LIST takes at most one message number
        C: STAT 1
        S: -ERR STAT takes no arguments
        C: NOOP x
        S: -ERR NOOP takes no arguments
        C: stat
        S: +OK 1 17
        """,
    )


async def test_user_pass_sequencing(server: Harness, config) -> None:  # type: ignore[no-untyped-def]
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: NOOP
        S: -ERR NOOP is not valid before login (AUTHORIZATION state)
        C: PASS {PASSWORD}
        S: -ERR No user name given; send USER first
        C: USER {BOB}
        S: +OK Send your password
        C: user {USER}
        S: +OK Send your password
        C: pass {PASSWORD}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        C: PASS {PASSWORD}
        S: -ERR PASS is not valid after login (TRANSACTION state)
        """,
    )


async def test_failed_pass_needs_user_again(server: Harness) -> None:
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: USER {USER}
        S: +OK Send your password
        C: PASS wrong
        S: -ERR [AUTH] Authentication failed.
        C: PASS {PASSWORD}
        S: -ERR No user name given; send USER first
        """,
    )


async def test_capa_before_and_after_stls(server: Harness) -> None:
    c = await server.connect("pop3", greeting=False)
    await play(
        c,
        """
        S: +OK mail.example.test POP3 server ready
        C: CAPA
        S: +OK Capability list follows
        S: CAPA
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: STLS
        S: IMPLEMENTATION carteiro
        S: .
        C: STLS
        S: +OK Begin TLS negotiation
        -- starttls
        C: CAPA
        S: +OK Capability list follows
        S: CAPA
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: USER
        S: SASL PLAIN LOGIN
        S: IMPLEMENTATION carteiro
        S: .
        C: STLS
        S: -ERR Command not permitted when TLS active
        """,
    )


async def test_auth_login(server: Harness) -> None:
    """draft-murchison-sasl-login over RFC 5034 (Outlook): with and without an initial response."""

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: AUTH LOGIN
        S: + VXNlcm5hbWU6
        C: {b64(USER)}
        S: + UGFzc3dvcmQ6
        C: *
        S: -ERR Authentication cancelled
        C: auth login
        S: + VXNlcm5hbWU6
        C: {b64(USER)}
        S: + UGFzc3dvcmQ6
        C: {b64("wrong")}
        S: -ERR [AUTH] Authentication failed.
        C: AUTH LOGIN {b64(USER)}
        S: + UGFzc3dvcmQ6
        C: {b64(PASSWORD)}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        """,
    )


async def test_auth_plain_empty_initial_response_and_bad_base64(server: Harness) -> None:
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: AUTH PLAIN =
        S: -ERR {{...}}
        C: AUTH PLAIN
        S: +{{...}}
        C: !!!notbase64
        S: -ERR Invalid base64 in the SASL response; authentication aborted
        C: AUTH PLAIN !!!
        S: -ERR Invalid base64 in the initial response
        C: AUTH CRAM-MD5
        S: -ERR Unsupported authentication mechanism
        C: AUTH PLAIN {token}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        """,
    )


async def test_drop_after_dele_deletes_nothing_and_unlocks(server: Harness) -> None:
    """RFC 1939 6: no QUIT, no UPDATE; the maildrop lock goes with the connection."""
    await server.add(b"Subject: a\r\n\r\nx\r\n")
    c = await server.login()
    await play(
        c,
        """
        C: DELE 1
        S: +OK message 1 deleted
        -- drop
        """,
    )
    c = await server.login()
    assert await c.cmd("STAT") == "+OK 1 17"


async def test_command_line_of_255_octets_is_accepted(server: Harness) -> None:
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: USER {"u" * 248}
        S: +OK Send your password
        """,
    )


async def test_quit_in_authorization_after_user(server: Harness) -> None:
    await server.add(b"Subject: a\r\n\r\nx\r\n")
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: USER {USER}
        S: +OK Send your password
        C: QUIT
        S: +OK mail.example.test POP3 server signing off
        -- eof
        """,
    )
    assert len(await server.uids()) == 1


async def test_auth_login_needs_tls_on_pop3(server: Harness) -> None:
    c = await server.connect("pop3", greeting=False)
    await play(
        c,
        """
        S: +OK mail.example.test POP3 server ready
        C: AUTH
        S: +OK Supported mechanisms follow
        S: .
        C: AUTH LOGIN
        S: -ERR [AUTH] Plaintext authentication disallowed on non-secure connections.
        """,
    )
