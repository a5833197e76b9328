"""Transcripts: the RFC 1939 examples (sections 4-7 and 10) and every command and state change,
against the real server over TLS (APOP in the RFC's session is replaced by USER/PASS)."""

from __future__ import annotations

from pop3_harness import PASSWORD, USER, Harness, play

# RFC 1939 10: a maildrop with two messages of 120 and 200 octets.
M1 = (
    b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: one\r\n\r\n"
    b".a line that starts with a dot\r\n"
    b"Regards from Bob, 2024\r\n"
)
M2 = (
    b"From: carol@example.test\r\nTo: alice@example.test\r\nSubject: two\r\n\r\n"
    b"Line one of message two.\r\n"
    b"Line two.\r\n"
    b".\r\n"
    b"..two dots\r\n" + b"y" * 80 + b"\r\n"
)
assert (len(M1), len(M2)) == (120, 200)

LOGIN = f"""
S: +OK mail.example.test POP3 server ready
C: USER {USER}
S: +OK Send your password
C: PASS {PASSWORD}
S: +OK Logged in; maildrop has 2 messages (320 octets)
"""

RETR_1 = """
S: +OK 120 octets
S: From: bob@example.test
S: To: alice@example.test
S: Subject: one
S:
S: ..a line that starts with a dot
S: Regards from Bob, 2024
S: .
"""

RETR_2 = f"""
S: +OK 200 octets
S: From: carol@example.test
S: To: alice@example.test
S: Subject: two
S:
S: Line one of message two.
S: Line two.
S: ..
S: ...two dots
S: {"y" * 80}
S: .
"""


async def maildrop(server: Harness) -> list[int]:
    return [await server.add(M1), await server.add(M2)]


async def test_rfc1939_section_10_example_session(server: Harness) -> None:
    await maildrop(server)
    c = await server.connect(greeting=False)
    await play(
        c,
        LOGIN
        + """
        C: STAT
        S: +OK 2 320
        C: LIST
        S: +OK 2 messages (320 octets)
        S: 1 120
        S: 2 200
        S: .
        C: RETR 1
        """
        + RETR_1
        + """
        C: DELE 1
        S: +OK message 1 deleted
        C: RETR 2
        """
        + RETR_2
        + """
        C: DELE 2
        S: +OK message 2 deleted
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (maildrop empty)
        -- eof
        """,
    )
    assert await server.uids() == []


async def test_stat_list_and_their_errors(server: Harness) -> None:
    """RFC 1939 5 STAT and LIST examples, including "-ERR no such message"."""
    await maildrop(server)
    c = await server.connect(greeting=False)
    await play(
        c,
        LOGIN
        + """
        C: LIST 2
        S: +OK 2 200
        C: LIST 3
        S: -ERR no such message, only 2 messages in maildrop
        C: LIST 0
        S: -ERR no such message, only 2 messages in maildrop
        C: LIST two
        S: -ERR LIST: two is not a message number
        C: DELE 1
        S: +OK message 1 deleted
        C: STAT
        S: +OK 1 200
        C: LIST
        S: +OK 1 messages (200 octets)
        S: 2 200
        S: .
        C: LIST 1
        S: -ERR message 1 already deleted
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (1 messages left)
        -- eof
        """,
    )


async def test_dele_twice_noop_rset(server: Harness) -> None:
    """RFC 1939 5 DELE ("already deleted"), NOOP, RSET; RSET after DELE deletes nothing."""
    uids = await maildrop(server)
    c = await server.connect(greeting=False)
    await play(
        c,
        LOGIN
        + """
        C: DELE 1
        S: +OK message 1 deleted
        C: DELE 1
        S: -ERR message 1 already deleted
        C: RETR 1
        S: -ERR message 1 already deleted
        C: NOOP
        S: +OK
        C: RSET
        S: +OK maildrop has 2 messages (320 octets)
        C: RETR 1
        """
        + RETR_1
        + """
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (2 messages left)
        -- eof
        """,
    )
    assert await server.uids() == uids


async def test_top_and_uidl(server: Harness) -> None:
    """RFC 1939 7 TOP and UIDL examples; UIDL is UIDVALIDITY.UID."""
    uids = await maildrop(server)
    acct = await server.account()
    uv = (await acct.get_mailbox("INBOX")).uidvalidity
    c = await server.connect(greeting=False)
    await play(
        c,
        LOGIN
        + f"""
        C: TOP 1 1
        S: +OK Top of message follows
        S: From: bob@example.test
        S: To: alice@example.test
        S: Subject: one
        S:
        S: ..a line that starts with a dot
        S: .
        C: TOP 2 0
        S: +OK Top of message follows
        S: From: carol@example.test
        S: To: alice@example.test
        S: Subject: two
        S:
        S: .
        C: TOP 100 3
        S: -ERR no such message, only 2 messages in maildrop
        C: TOP 1 -1
        S: -ERR TOP: -1 is not a number of lines
        C: UIDL
        S: +OK Unique-ID listing follows
        S: 1 {uv}.{uids[0]}
        S: 2 {uv}.{uids[1]}
        S: .
        C: UIDL 2
        S: +OK 2 {uv}.{uids[1]}
        C: UIDL 3
        S: -ERR no such message, only 2 messages in maildrop
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (2 messages left)
        """,
    )


async def test_authorization_state(server: Harness) -> None:
    """RFC 1939 4, 7: USER/PASS, failures return to AUTHORIZATION, QUIT there has no UPDATE."""
    await maildrop(server)
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: STAT
        S: -ERR STAT is not valid before login (AUTHORIZATION state)
        C: PASS {PASSWORD}
        S: -ERR No user name given; send USER first
        C: USER {USER}
        S: +OK Send your password
        C: PASS not the password
        S: -ERR [AUTH] Authentication failed.
        C: USER nobody@example.test
        S: +OK Send your password
        C: PASS whatever
        S: -ERR [AUTH] Authentication failed.
        C: APOP {USER} c4c9334bac560ecc979e58001b3e22fb
        S: -ERR APOP is not supported; use USER/PASS or AUTH over TLS
        C: QUIT
        S: +OK mail.example.test POP3 server signing off
        -- eof
        """,
    )
    assert len(await server.uids()) == 2


async def test_transaction_state_refuses_authorization_commands(server: Harness) -> None:
    await maildrop(server)
    c = await server.connect(greeting=False)
    await play(
        c,
        LOGIN
        + f"""
        C: USER {USER}
        S: -ERR USER is not valid after login (TRANSACTION state)
        C: AUTH PLAIN
        S: -ERR AUTH is not valid after login (TRANSACTION state)
        C: STLS
        S: -ERR STLS is not valid after login (TRANSACTION state)
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
        C: XYZZY
        S: -ERR Unknown command: XYZZY
        """,
    )


async def test_auth_plain(server: Harness) -> None:
    """RFC 5034 4 with and without an initial response; "*" cancels."""
    import base64

    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: AUTH
        S: +OK Supported mechanisms follow
        S: PLAIN
        S: LOGIN
        S: .
        C: AUTH PLAIN
        S: +{{...}}
        C: *
        S: -ERR Authentication cancelled
        C: AUTH PLAIN
        S: +{{...}}
        C: {token}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        C: QUIT
        S: +OK mail.example.test POP3 server signing off (maildrop empty)
        """,
    )
    c = await server.connect(greeting=False)
    await play(
        c,
        f"""
        S: +OK mail.example.test POP3 server ready
        C: AUTH PLAIN {token}
        S: +OK Logged in; maildrop has 0 messages (0 octets)
        """,
    )
