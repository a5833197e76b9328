"""Transcripts for each command and extension of the MX role (RFC 5321 4.1, the ESMTP extensions)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from smtp_harness import ALICE, BOB, Env, MakeEnv

EHLO = """
S: 220 mail.example.test ESMTP carteiro
C: EHLO client.example.org
S: 250-mail.example.test Hello client.example.org [127.0.0.1]
S: 250-PIPELINING
S: 250-SIZE 52428800
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-ENHANCEDSTATUSCODES
S: 250-CHUNKING
S: 250-DSN
S: 250-STARTTLS
S: 250 HELP
"""


async def test_ehlo_lists_extensions_no_auth_on_mx(env: Env) -> None:
    await env.play(EHLO + "C: QUIT\nS: 221 2.0.0 Bye\nCLOSED")


async def test_helo_then_simple_transaction(env: Env) -> None:
    await env.play(
        """
        S: 220 *
        C: HELO client.example.org
        S: 250 mail.example.test Hello client.example.org [127.0.0.1]
        C: MAIL FROM:<someone@example.org>
        S: 250 2.1.0 Sender <someone@example.org> OK
        C: RCPT TO:<alice@example.test>
        S: 250 2.1.5 Recipient <alice@example.test> OK
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: Subject: hello
        C:
        C: ..leading dot
        C: body
        C: .
        S: 250 2.0.0 OK id=*
        C: QUIT
        S: 221 2.0.0 Bye
        """
    )
    [msg] = await env.inbox(ALICE)
    assert msg.startswith(
        b"Return-Path: <someone@example.org>\r\nReceived: from client.example.org"
    )
    assert b"by mail.example.test (carteiro) with SMTP id " in msg
    assert msg.endswith(b"Subject: hello\r\n\r\n.leading dot\r\nbody\r\n")


async def test_esmtp_with_params_and_received_header(env: Env) -> None:
    await env.play(
        EHLO
        + """
        C: MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef
        S: 250 2.1.0 *
        C: RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: x
        C:
        C: hi
        C: .
        S: 250 2.0.0 OK id=*
        """
    )
    [msg] = await env.inbox(BOB)
    head = msg.split(b"\r\n\r\n")[0].decode()
    assert "by mail.example.test (carteiro) with ESMTP id " in head
    assert "for <bob@example.test>;" in head
    assert "from client.example.org ([127.0.0.1])" in head


async def test_rset_noop_help_vrfy_expn_turn(env: Env) -> None:
    await env.play(
        EHLO
        + """
        C: NOOP
        S: 250 2.0.0 OK
        C: NOOP anything
        S: 250 2.0.0 OK
        C: HELP
        S: 214 2.0.0 Commands: *
        C: VRFY alice
        S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
        C: VRFY nobody@example.test
        S: 252 2.5.0 *
        C: EXPN sales
        S: 502 5.5.1 EXPN not available
        C: TURN
        S: 502 5.5.1 TURN is unsafe and not offered; use ETRN, or ATRN on the ODMR port
        C: ETRN example.test
        S: 502 5.5.1 ETRN not available on this port
        C: MAIL FROM:<a@example.org>
        S: 250 2.1.0 *
        C: RSET
        S: 250 2.0.0 Reset OK
        C: RCPT TO:<alice@example.test>
        S: 503 5.5.1 Send MAIL first
        C: RSET extra
        S: 501 5.5.4 RSET takes no arguments
        C: XYZZY
        S: 500 5.5.2 Command unrecognized
        C: QUIT
        S: 221 2.0.0 Bye
        CLOSED
        """
    )


async def test_sequence_errors(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_errors = 50\n")
    await env.play(
        """
        S: 220 *
        C: MAIL FROM:<a@example.org>
        S: 503 5.5.1 Send EHLO or HELO first
        C: EHLO
        S: 501 5.5.4 Syntax: EHLO domain-or-address-literal
        C: EHLO [192.0.2.1]
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 HELP
        C: DATA
        S: 503 5.5.1 Send MAIL first
        C: MAIL FROM:<a@example.org>
        S: 250 2.1.0 *
        C: MAIL FROM:<a@example.org>
        S: 503 5.5.1 Sender already specified
        C: DATA
        S: 554 5.5.1 No valid recipients
        C: RCPT TO:<nobody@example.test>
        S: 550 5.1.1 <nobody@example.test>: no such user here
        C: DATA
        S: 554 5.5.1 No valid recipients
        C: MAIL FROM:<a@example.org> FOO=BAR
        S: 555 5.5.4 FOO parameter not recognized
        C: RSET
        S: 250 2.0.0 Reset OK
        C: MAIL FROM:<a@example.org> FOO=BAR
        S: 555 5.5.4 FOO parameter not recognized
        C: MAIL FROM:<a@example.org> SIZE=99999999999
        S: 552 5.3.4 Message size exceeds fixed maximum message size
        C: MAIL FROM:<not an address>
        S: 501 5.1.7 Bad sender address syntax*
        C: MAIL FROM:a@example.org
        S: 250 2.1.0 Sender <a@example.org> OK
        C: RCPT TO:<bad@@example.test>
        S: 501 5.1.3 Bad recipient address syntax*
        C: RCPT TO:<>
        S: 501 5.1.3 Empty recipient address
        C: RCPT TO:<alice@example.test> NOTIFY=NEVER,SUCCESS
        S: 501 5.5.4 NOTIFY is NEVER or SUCCESS,FAILURE,DELAY
        C: QUIT
        S: 221 *
        """
    )


async def test_null_sender_source_route_and_postmaster(env: Env, make_env: MakeEnv) -> None:
    env.ctx.directory.add_alias("postmaster@example.test", ALICE)
    await env.play(
        """
        S: 220 *
        C: EHLO client.example.org
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 HELP
        C: MAIL FROM:<>
        S: 250 2.1.0 Sender <> OK
        C: RCPT TO:<Postmaster>
        S: 250 2.1.5 Recipient <postmaster@example.test> OK
        C: RCPT TO:<@relay.example.org:bob@example.test>
        S: 250 2.1.5 Recipient <bob@example.test> OK
        C: DATA
        S: 354 *
        C: Subject: bounce
        C:
        C: .
        S: 250 2.0.0 *
        """
    )
    [msg] = await env.inbox(ALICE)
    assert msg.startswith(b"Return-Path: <>\r\n")
    assert b"\tfor <" not in msg  # two recipients: no "for" clause (RFC 5321 4.4 privacy)
    assert len(await env.inbox(BOB)) == 1


async def test_aliases_catch_all_plus_addressing(env: Env) -> None:
    await env.play(
        """
        S: 220 *
        C: HELO client.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<sales@example.test>
        S: 250 2.1.5 *
        C: RCPT TO:<Alice+news@Example.TEST>
        S: 250 2.1.5 *
        C: RCPT TO:<anyone@other.test>
        S: 250 2.1.5 *
        C: RCPT TO:<loop1@example.test>
        S: 550 5.4.6 *
        C: DATA
        S: 354 *
        C: Subject: s
        C:
        C: .
        S: 250 *
        """
    )
    # sales -> alice, bob; alice+news -> alice (once); catch-all other.test -> bob (once)
    assert len(await env.inbox(ALICE)) == 1
    assert len(await env.inbox(BOB)) == 1


async def test_too_many_recipients(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_recipients = 2\n")
    await env.play(
        """
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: RCPT TO:<bob@example.test>
        S: 250 *
        C: RCPT TO:<sales@example.test>
        S: 452 4.5.3 Too many recipients
        """
    )


async def test_errors_per_session_then_421(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_errors = 3\n")
    await env.play(
        """
        S: 220 *
        C: FOO
        S: 500 5.5.2 *
        C: BAR
        S: 500 5.5.2 *
        C: BAZ
        S: 500 5.5.2 *
        S: 421 4.7.0 Too many errors; closing connection
        CLOSED
        """
    )


async def test_junk_commands_past_the_limit_count_as_errors(
    make_env: MakeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """NOOP, RSET, HELP, HELO/EHLO, ... are never refused, so alone they could hold a session for
    ever: past max_junk_commands each counts as an error, after its reply (Postfix's
    smtpd_junk_command_limit)."""
    caplog.set_level(logging.INFO, logger="carteiro.smtp")
    env = await make_env("[smtp]\nmax_errors = 3\nmax_junk_commands = 4\n")
    await env.play(
        EHLO
        + """
        C: NOOP
        S: 250 2.0.0 OK
        C: RSET
        S: 250 2.0.0 Reset OK
        C: HELP
        S: 214 *
        C: NOOP
        S: 250 2.0.0 OK
        C: NOOP
        S: 250 2.0.0 OK
        C: NOOP
        S: 250 2.0.0 OK
        S: 421 4.7.0 Too many errors; closing connection
        CLOSED
        """
    )
    # one line for the operator, as Postfix's "too many errors after NOOP"
    assert "smtp [127.0.0.1]: too many errors after NOOP; closing" in caplog.text


async def test_junk_limit_zero_is_off(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_errors = 2\nmax_junk_commands = 0\n")
    c = await env.connect()
    await c.reply()
    for _ in range(30):
        assert await c.cmd("NOOP") == ["250 2.0.0 OK"]


async def test_client_4xx_count_as_errors(make_env: MakeEnv) -> None:
    """A refusal the client brought on itself counts whether it is 4xx or 5xx: a client that
    repeats what gets 459 (or a rate limit's 451 4.7.1) is closed like one repeating a 5xx."""
    env = await make_env("[smtp]\nmax_errors = 3\n")
    env.ctx.held = _NoHeldMail()  # type: ignore[assignment]
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.example")
    for _ in range(2):
        assert (await c.cmd("ETRN unheld.test"))[0].startswith("459 4.7.1 ")
    assert (await c.cmd("ETRN unheld.test"))[0].startswith("459 4.7.1 ")
    assert await c.reply() == ["421 4.7.0 Too many errors; closing connection"]
    assert await c.closed()


async def test_too_many_recipients_is_no_error(make_env: MakeEnv) -> None:
    """452 4.5.3 asks for the rest of the recipients in another transaction (RFC 5321
    4.5.3.1.10): a bulk sender pipelining many meets it often, and must not be cut off."""
    env = await make_env("[smtp]\nmax_errors = 2\nmax_recipients = 1\n")
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.example")
    assert (await c.cmd("MAIL FROM:<someone@example.org>"))[0].startswith("250 ")
    assert (await c.cmd(f"RCPT TO:<{ALICE}>"))[0].startswith("250 ")
    for _ in range(5):
        assert await c.cmd(f"RCPT TO:<{BOB}>") == ["452 4.5.3 Too many recipients"]
    assert await c.cmd("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
    await c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert (await c.reply())[0].startswith("250 2.0.0 OK")
    assert len(await env.inbox(ALICE)) == 1


async def test_delivered_mail_starts_the_error_count_again(make_env: MakeEnv) -> None:
    """Errors count towards max_errors until a message is accepted (Postfix's hard limit is of
    errors "without delivering mail"): a client sending many messages over one connection,
    some of them to unknown recipients, is not closed for the sum of them."""
    env = await make_env("[smtp]\nmax_errors = 3\n")
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.example")
    for _ in range(3):
        assert (await c.cmd("MAIL FROM:<someone@example.org>"))[0].startswith("250 ")
        for _ in range(2):
            assert (await c.cmd("RCPT TO:<nobody@example.test>"))[0].startswith("550 ")
        assert (await c.cmd(f"RCPT TO:<{ALICE}>"))[0].startswith("250 ")
        assert await c.cmd("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
        await c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert (await c.reply())[0].startswith("250 2.0.0 OK")
    assert len(await env.inbox(ALICE)) == 3
    # and without a delivery in between, the count goes on to the limit
    for _ in range(2):
        assert (await c.cmd("XYZZY"))[0].startswith("500 ")
    assert (await c.cmd("XYZZY"))[0].startswith("500 ")
    assert await c.reply() == ["421 4.7.0 Too many errors; closing connection"]


async def test_line_too_long(env: Env) -> None:
    await env.play(
        f"""
        S: 220 *
        C: NOOP {"x" * 5000}
        S: 500 5.5.2 Line too long
        C: NOOP
        S: 250 2.0.0 OK
        """
    )


async def test_endless_line_closes(env: Env) -> None:
    """A line that goes on past max_discard_line (1 MiB) without LF: 500, then 421 and close."""
    c = await env.connect()
    assert (await c.line()).startswith("220 ")
    await c.send(b"NOOP " + b"x" * (1024 * 1024 - 4))  # one octet over the bound, no LF
    assert await c.line() == "500 5.5.2 Line too long"
    assert await c.line() == "421 4.7.0 Line too long; closing connection"
    assert await c.closed()


async def test_http_request_closes(env: Env) -> None:
    await env.play(
        """
        S: 220 *
        C: GET / HTTP/1.1
        S: 421 4.7.0 This is an SMTP server; closing connection
        CLOSED
        """
    )


async def test_smtputf8(env: Env) -> None:
    env.ctx.directory.add_alias("jösé@example.test", BOB)
    await env.play(
        """
        S: 220 *
        C: EHLO client.example.org
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 HELP
        C: MAIL FROM:<élise@example.org>
        S: 553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<jösé@example.test>
        S: 553 5.6.7 *
        C: RSET
        S: 250 *
        C: MAIL FROM:<élise@example.org> SMTPUTF8
        S: 250 2.1.0 Sender <élise@example.org> OK
        C: RCPT TO:<jösé@example.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: olá
        C:
        C: .
        S: 250 *
        """
    )
    [msg] = await env.inbox(BOB)
    assert b"with UTF8SMTP id" in msg
    assert "Return-Path: <élise@example.org>".encode() in msg


async def test_size_enforced_while_reading(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_message_size = 2000\n")
    big = "\n".join(["C: " + "y" * 100] * 30)
    await env.play(
        f"""
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        {big}
        C: .
        S: 552 5.3.4 Message size exceeds fixed maximum message size
        C: NOOP
        S: 250 2.0.0 OK
        """.replace("\n        " + "C: y", "\nC: y")
    )
    assert await env.inbox(ALICE) == []


async def test_shutdown_says_421_to_idle_sessions(env: Env) -> None:
    c = await env.play("S: 220 *\nC: HELO c.example.org\nS: 250 *")
    env.ctx.shutdown.set()
    assert await c.reply() == ["421 4.3.2 Service shutting down; try again later"]
    assert await c.closed()


async def test_idle_timeout(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nidle_timeout = 0.2\n")
    await env.play(
        """
        S: 220 *
        S: 421 4.4.2 Timeout waiting for input; closing connection
        CLOSED
        """
    )


async def test_plus_folder_delivery(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nplus_folder_delivery = true\n")
    await (await env.store.account(ALICE)).create_mailbox("Lists")
    await env.play(
        """
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<alice+Lists@example.test>
        S: 250 *
        C: RCPT TO:<bob+nosuchfolder@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: Subject: to a folder
        C:
        C: .
        S: 250 *
        """
    )
    assert len(await env.inbox(ALICE, "Lists")) == 1 and await env.inbox(ALICE) == []
    assert len(await env.inbox(BOB)) == 1


async def test_connections_per_client_ip(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_connections_per_ip = 2\n")
    first = await env.play("S: 220 *")
    second = await env.play("S: 220 *")
    third = await env.connect()
    assert await third.reply() == ["421 4.7.0 Too many connections from your address"]
    assert await third.closed()
    await first.play("C: QUIT\nS: 221 *\nCLOSED")
    await second.play("C: NOOP\nS: 250 *")


async def test_replies_stay_within_512_octets(env: Env) -> None:
    """RFC 5321 4.5.3.1.5: a long EHLO name (an address literal has no length limit) or path
    echoed back never makes a reply line longer than 512 octets with its CRLF."""
    c = await env.play("S: 220 *")
    literal = "[x-tag:" + "1" * 900 + "]"  # a General-address-literal (RFC 5321 4.1.3)
    for line in await c.cmd(f"EHLO {literal}"):
        assert len(line.encode()) + 2 <= 512
    assert (await c.cmd("MAIL FROM:<a@example.org>"))[0].startswith("250 ")
    longest = f"{'a' * 64}@{'d' * 63}.{'e' * 63}.{'f' * 56}.test"  # 254: 256 with "<>"
    assert len(longest) == 254
    reply = await c.cmd(f"RCPT TO:<{longest}>")
    assert reply[0] == f"554 5.7.1 <{longest}>: Relay access denied"
    reply = await c.cmd(f"RCPT TO:<{longest}x>")  # 255 octets
    assert reply[0].startswith("501 5.1.3") and "too long" in reply[0]
    # a local part over 64 octets is taken (SRS, VERP): here an unknown user of ours
    reply = await c.cmd(f"RCPT TO:<{'a' * 65}@example.test>")
    assert reply[0].startswith("550 5.1.1"), reply


async def test_postmaster_accepted_without_an_alias(env: Env) -> None:
    # RFC 5321 4.5.1: "postmaster" (any case, with or without our domain) MUST be accepted.
    # With no postmaster alias the message goes to the first account of the directory.
    await env.play(
        EHLO
        + """
        C: MAIL FROM:<>
        S: 250 2.1.0 *
        C: RCPT TO:<Postmaster>
        S: 250 2.1.5 Recipient <postmaster@example.test> OK
        C: RCPT TO:<POSTMASTER@EXAMPLE.TEST>
        S: 250 2.1.5 *
        C: RCPT TO:<@relay.example.org:PostMaster@example.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: to the postmaster
        C:
        C: .
        S: 250 2.0.0 *
        """
    )
    [msg] = await env.inbox(ALICE)
    assert b"Subject: to the postmaster" in msg


async def test_quoted_local_parts_and_escapes(env: Env) -> None:
    # RFC 5321 4.1.2: Quoted-string local parts, with quoted-pairs; a quoted form of a plain
    # dot-string names the same mailbox (RFC 5322 3.4.1).
    await env.play(
        EHLO
        + r"""
        C: MAIL FROM:<"john doe"@example.org>
        S: 250 2.1.0 Sender <"john doe"@example.org> OK
        C: RSET
        S: 250 2.0.0 *
        C: MAIL FROM:<"a\"b>c\\d"@example.org>
        S: 250 2.1.0 *
        C: RCPT TO:<"alice"@example.test>
        S: 250 2.1.5 Recipient <alice@example.test> OK
        C: RCPT TO:<"john doe"@example.test>
        S: 550 5.1.1 *
        C: RCPT TO:<"unterminated@example.test>
        S: 501 *
        """
    )


async def test_address_literals(env: Env) -> None:
    # RFC 5321 4.1.3: IPv4 literals are four numbers 0-255; IPv6 ones carry the "IPv6:" tag;
    # anything else needs a standardized tag. Bad literals are syntax errors (501).
    await env.play(
        """
        S: 220 *
        C: HELO [999.1.1.1]
        S: 501 5.5.4 *
        C: HELO [foo]
        S: 501 5.5.4 *
        C: HELO [IPv6:zz::1]
        S: 501 5.5.4 *
        C: HELO [IPv6:2001:db8::1]
        S: 250 mail.example.test Hello [IPv6:2001:db8::1] [127.0.0.1]
        C: HELO [127.0.0.1]
        S: 250 mail.example.test Hello [127.0.0.1] [127.0.0.1]
        C: MAIL FROM:<x@[999.1.1.1]>
        S: 501 5.1.7 *
        C: MAIL FROM:<x@[IPv6:2001:db8::1]>
        S: 250 2.1.0 *
        C: RCPT TO:<alice@[IPv6:::1]>
        S: 554 5.7.1 *
        C: RCPT TO:<alice@[300.0.0.1]>
        S: 501 5.1.3 *
        """
    )


async def test_binarymime_refused_when_not_offered(env: Env) -> None:
    # RFC 3030 3: BODY=BINARYMIME only where BINARYMIME is advertised; it is not (docs/smtp.md),
    # so it is a parameter value we do not implement: 555 (RFC 5321 4.1.1.11).
    await env.play(
        EHLO
        + """
        C: MAIL FROM:<a@example.org> BODY=BINARYMIME
        S: 555 5.5.4 *
        C: MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=0
        S: 250 2.1.0 *
        """
    )


async def test_idle_timeout_counts_from_the_last_read(make_env: MakeEnv) -> None:
    """One lazy timer per session (not one per read): commands push the expiry on, silence
    still ends the session with 421 (RFC 5321 4.5.3.2.7)."""
    env = await make_env("[smtp]\nidle_timeout = 0.4\n")
    c = await env.play("S: 220 *\nC: HELO c.example.org\nS: 250 *")
    for _ in range(6):  # 0.9 s of commands, more than twice the timeout
        await asyncio.sleep(0.15)
        await c.send(b"NOOP\r\n")
        assert await c.reply() == ["250 2.0.0 OK"]
    t = time.monotonic()
    assert await c.reply() == ["421 4.4.2 Timeout waiting for input; closing connection"]
    assert await c.closed()
    assert 0.3 <= time.monotonic() - t < 5


class _NoHeldMail:
    """ETRN is offered on the MX role when held mail exists; the node asked for here is never
    held, so nothing of it is called."""

    async def etrn(self, node: str, subdomains: bool) -> int:
        raise AssertionError("a domain we do not hold was flushed")


async def test_etrn_refusal_enhanced_code_matches_its_class(make_env: MakeEnv) -> None:
    """RFC 1985 5 gives 459 for a node not allowed; its enhanced code must be of the same class
    (RFC 3463 2: 4.X.X is a transient failure). It said 459 5.7.1 (found against Postfix)."""
    env = await make_env()
    env.ctx.held = _NoHeldMail()  # type: ignore[assignment]
    c = await env.connect()
    await c.reply()
    assert "250-ETRN" in await c.cmd("EHLO client.example")
    assert await c.cmd("ETRN unheld.test") == [
        "459 4.7.1 Node unheld.test not allowed: not a held domain here"
    ]


async def test_message_pipelined_after_refused_data_is_not_run_as_commands(
    env: Env,
) -> None:
    """A client that sends the message with DATA (against RFC 2920 3.1) after a recipient it
    did not know was refused: the message's lines arrive where commands belong. Its first header
    line ends the session (as Postfix does), so commands inside the message never run."""
    c = await env.connect()
    await c.reply()
    await c.cmd("EHLO client.example")
    await c.send(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n"
        b"Subject: hi\r\n\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n"
    )
    assert (await c.reply())[0].startswith("250 2.1.0")
    assert (await c.reply())[0].startswith("550 5.1.1")
    assert (await c.reply())[0].startswith("554 5.5.1")
    assert (await c.reply())[0].startswith("421 4.7.0")
    assert await c.closed()
    assert await env.inbox(ALICE) == []


async def test_long_verp_and_srs_addresses_reach_us(env: Env) -> None:
    """RFC 5321 4.5.3.1: local parts over 64 octets in the envelope are taken (an SRS sender of a
    forwarder; a list's VERP bounce address LIST-bounces+member=domain@ names a member)."""
    c = await env.play(EHLO)
    srs = "SRS0=HHH=TT=" + "forwarded-from.example.org=" + "a.very.long.local.part.indeed"
    assert len(srs) > 64
    assert (await c.cmd(f"MAIL FROM:<{srs}@forwarder.example>"))[0].startswith("250 ")
    # ours but unknown: refused as any unknown user, not as a malformed address
    verp = "nolist-bounces+" + "firstname.middlename.lastname=department.example.org"
    assert len(verp) > 64
    assert (await c.cmd(f"RCPT TO:<{verp}@example.test>"))[0].startswith("550 5.1.1")
