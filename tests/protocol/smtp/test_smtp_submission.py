"""Submission and submissions roles: STARTTLS, AUTH, sender ownership, relay rules on every listener
(RFC 6409, RFC 8314, RFC 3207, RFC 4954)."""

from __future__ import annotations

import base64

import pytest
from smtp_harness import ALICE, ALICE_PW, BOB, Env, MakeEnv

from carteiro.store.api import StoreError


def plain(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


EHLO_PLAIN_SUBMISSION = """
S: 220 mail.example.test ESMTP carteiro
C: EHLO client.example.org
S: 250-mail.example.test Hello client.example.org [127.0.0.1]
S: 250-PIPELINING
S: 250-SIZE *
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-ENHANCEDSTATUSCODES
S: 250-CHUNKING
S: 250-DSN
S: 250-STARTTLS
S: 250 HELP
"""

EHLO_TLS = """
C: EHLO client.example.org
S: 250-mail.example.test Hello client.example.org [127.0.0.1]
S: 250-PIPELINING
S: 250-SIZE *
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-ENHANCEDSTATUSCODES
S: 250-CHUNKING
S: 250-DSN
S: 250-AUTH PLAIN LOGIN
S: 250 HELP
"""

STARTTLS = """
C: STARTTLS
S: 220 2.0.0 Ready to start TLS
TLS
"""


async def test_submission_refuses_auth_and_mail_before_tls(env: Env) -> None:
    await env.play(
        EHLO_PLAIN_SUBMISSION
        + f"""
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 538 5.7.11 Encryption required for requested authentication mechanism
        C: MAIL FROM:<alice@example.test>
        S: 530 5.7.0 Must issue a STARTTLS command first
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Send MAIL first
        """,
        role="submission",
    )


async def test_submission_requires_auth_before_mail(env: Env) -> None:
    await env.play(
        EHLO_PLAIN_SUBMISSION
        + STARTTLS
        + EHLO_TLS
        + """
        C: MAIL FROM:<alice@example.test>
        S: 530 5.7.0 Authentication required
        C: RCPT TO:<friend@remote.test>
        S: 503 5.5.1 Send MAIL first
        """,
        role="submission",
    )


async def test_submission_starttls_auth_plain_and_send(env: Env) -> None:
    await env.play(
        EHLO_PLAIN_SUBMISSION
        + STARTTLS
        + EHLO_TLS
        + f"""
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 235 2.7.0 Authentication successful
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 503 5.5.1 Already authenticated
        C: MAIL FROM:<bob@example.test>
        S: 553 5.7.1 <bob@example.test>: sender address is not owned by alice@example.test
        C: MAIL FROM:<alice@example.test> RET=FULL ENVID=e1
        S: 250 2.1.0 *
        C: RCPT TO:<friend@remote.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;friend@remote.test
        S: 250 2.1.5 Recipient <friend@remote.test> OK
        C: RCPT TO:<bob@example.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: From: alice@example.test
        C: Subject: hi
        C:
        C: hello
        C: .
        S: 250 2.0.0 OK id=* queued as Q1
        """,
        role="submission",
    )
    [(envelope, data)] = env.spool.queued
    assert envelope.mail_from == ALICE
    assert envelope.auth_user == ALICE
    assert envelope.ret == "FULL" and envelope.envid == "e1"
    [r] = envelope.recipients
    assert r.address == "friend@remote.test" and r.notify == ("SUCCESS", "DELAY")
    assert r.orcpt == "rfc822;friend@remote.test"
    assert data.startswith(b"Received: from client.example.org")  # no Return-Path: not final
    [local] = await env.inbox(BOB)
    assert local.startswith(b"Return-Path: <alice@example.test>\r\nReceived: ")
    head = local.split(b"\r\n\r\n")[0].decode()
    assert "(authenticated user alice@example.test)" in head
    assert "with ESMTPSA id" in head
    assert "(TLSv1." in head
    # RFC 6409 8.2, 8.3: Date and Message-ID added on submission when missing
    assert "\r\nDate: " in head and "\r\nMessage-ID: <" in head
    assert data.split(b"\r\n\r\n")[0].count(b"Message-ID:") == 1


async def test_submission_keeps_existing_date_and_message_id(env: Env) -> None:
    c = await env.connect("submissions")
    await c.play(
        f"""
        S: 220 *
        C: EHLO c.example.org
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-AUTH PLAIN LOGIN
        S: 250 HELP
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 235 *
        C: MAIL FROM:<sales@example.test>
        S: 250 *
        C: RCPT TO:<bob@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: Date: Mon, 1 Jan 2024 00:00:00 +0000
        C: Message-ID: <x@y>
        C:
        C: .
        S: 250 *
        """
    )
    [msg] = await env.inbox(BOB)
    assert msg.count(b"Message-ID:") == 1 and msg.count(b"\r\nDate:") == 1


async def test_mx_adds_no_message_id(env: Env) -> None:
    await env.play(
        """
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<bob@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: Subject: none
        C:
        C: .
        S: 250 *
        """
    )
    [msg] = await env.inbox(BOB)
    assert b"Message-ID" not in msg and b"\r\nDate:" not in msg


async def test_submissions_implicit_tls_auth_login(env: Env) -> None:
    await env.play(
        f"""
        S: 220 mail.example.test ESMTP carteiro
        {EHLO_TLS}
        C: STARTTLS
        S: 503 5.5.1 TLS already active
        C: AUTH LOGIN
        S: 334 {b64("Username:")}
        C: {b64(ALICE)}
        S: 334 {b64("Password:")}
        C: {b64("wrong")}
        S: 535 5.7.8 Authentication credentials invalid
        C: AUTH LOGIN {b64(ALICE)}
        S: 334 {b64("Password:")}
        C: *
        S: 501 5.0.0 Authentication cancelled
        C: AUTH PLAIN
        S: 334
        C: not base64!
        S: 501 5.5.2 Cannot decode base64 response
        C: AUTH CRAM-MD5
        S: 504 5.5.4 Unrecognized authentication mechanism
        C: AUTH LOGIN {b64(ALICE)}
        S: 334 {b64("Password:")}
        C: {b64(ALICE_PW)}
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice+lists@example.test>
        S: 250 2.1.0 *
        """,
        role="submissions",
    )


async def test_auth_failures_throttled_per_ip(make_env: MakeEnv) -> None:
    env = await make_env(max_failures=2)
    await env.play(
        f"""
        S: 220 *
        {EHLO_TLS}
        C: AUTH PLAIN {plain(ALICE, "bad1")}
        S: 535 5.7.8 *
        C: AUTH PLAIN {plain(ALICE, "bad2")}
        S: 535 5.7.8 *
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 454 4.7.0 Too many failed authentication attempts; try again later
        """,
        role="submissions",
    )


async def test_auth_not_offered_on_mx(env: Env) -> None:
    await env.play(
        f"""
        S: 220 *
        C: EHLO c.example.org
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-STARTTLS
        S: 250 HELP
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 502 5.5.1 AUTH not available on this port
        """
    )


@pytest.mark.parametrize("role", ["smtp", "submission", "submissions"])
async def test_never_an_open_relay(env: Env, role: str) -> None:
    c = await env.connect(role)
    await c.reply()
    if role == "submission":
        await c.cmd("EHLO c.example.org")
        assert (await c.cmd("STARTTLS"))[0].startswith("220")
        await c.starttls()
    await c.cmd("EHLO c.example.org")
    mail = await c.cmd("MAIL FROM:<spammer@example.org>")
    if role == "smtp":
        assert mail == ["250 2.1.0 Sender <spammer@example.org> OK"]
        assert await c.cmd("RCPT TO:<victim@remote.test>") == [
            "554 5.7.1 <victim@remote.test>: Relay access denied"
        ]
        # the source-route form and a percent hack are no way around it
        assert (await c.cmd("RCPT TO:<@example.test:victim@remote.test>"))[0].startswith(
            "554 5.7.1"
        )
        assert (await c.cmd("RCPT TO:<victim%remote.test@example.test>"))[0].startswith("550 5.1.1")
    else:
        assert mail == ["530 5.7.0 Authentication required"]
        assert (await c.cmd("RCPT TO:<victim@remote.test>"))[0].startswith("503")
    assert env.spool.queued == []


async def test_relay_networks_may_relay(make_env: MakeEnv) -> None:
    env = await make_env('[smtp]\nrelay_networks = ["127.0.0.0/8"]\n')
    await env.play(
        """
        S: 220 *
        C: HELO app.example.org
        S: 250 *
        C: MAIL FROM:<app@example.org>
        S: 250 *
        C: RCPT TO:<someone@remote.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: relayed
        C:
        C: .
        S: 250 2.0.0 OK id=* queued as Q1
        """
    )
    [(envelope, _)] = env.spool.queued
    assert envelope.trusted and envelope.auth_user is None


async def test_alias_to_remote_is_forwarded_from_anyone(env: Env) -> None:
    await env.play(
        """
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<team@example.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: to the team
        C:
        C: .
        S: 250 *
        """
    )
    [(envelope, data)] = env.spool.queued
    assert [r.address for r in envelope.recipients] == ["friend@remote.test"]
    assert envelope.recipients[0].orcpt == "rfc822;team@example.test"
    assert not envelope.trusted
    assert not data.startswith(b"Return-Path")
    [local] = await env.inbox(ALICE)
    assert local.startswith(b"Return-Path: <x@example.org>")


async def test_spool_refusal_is_451_and_nothing_delivered(env: Env) -> None:
    env.spool.fail = StoreError("outbound queue not available")
    await env.play(
        """
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<team@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: Subject: s
        C:
        C: .
        S: 451 4.3.0 Cannot queue mail for remote recipients now; try again later
        """
    )
    # alice's local copy was undone: all or nothing
    assert await env.inbox(ALICE) == []


async def test_vrfy_for_authenticated_users_when_enabled(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nvrfy_for_authenticated = true\nexpn_for_authenticated = true\n")
    await env.play(
        f"""
        S: 220 *
        {EHLO_TLS}
        C: VRFY bob@example.test
        S: 252 2.5.0 *
        C: EXPN sales@example.test
        S: 502 5.5.1 EXPN not available
        C: AUTH PLAIN {plain(ALICE, ALICE_PW)}
        S: 235 *
        C: VRFY <bob@example.test>
        S: 250 2.1.5 <bob@example.test>
        C: VRFY nobody@example.test
        S: 550 5.1.1 *
        C: EXPN sales@example.test
        S: 250-2.1.5 <alice@example.test>
        S: 250 2.1.5 <bob@example.test>
        """,
        role="submissions",
    )


async def test_starttls_discards_pipelined_plaintext(env: Env) -> None:
    """CVE-2011-0411 class: commands sent with STARTTLS, before the handshake, are never run."""
    await env.play(
        """
        S: 220 *
        C: EHLO c.example.org
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-STARTTLS
        S: 250 HELP
        B: STARTTLS\\r\\nRSET\\r\\nMAIL FROM:<evil@example.org>\\r\\n
        S: 220 2.0.0 Ready to start TLS
        TLS
        C: NOOP
        S: 250 2.0.0 OK
        C: MAIL FROM:<x@example.org>
        S: 503 5.5.1 Send EHLO or HELO first
        """
    )


async def test_plaintext_auth_allowed_when_configured(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nrequire_tls_for_auth = false\n")
    await env.play(
        f"""
        S: 220 *
        C: EHLO c.example.org
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-STARTTLS
        S: 250-AUTH PLAIN LOGIN
        S: 250 HELP
        C: AUTH PLAIN {plain(BOB, "bob-pw")}
        S: 235 *
        """,
        role="submission",
    )


async def test_success_dsn_for_local_delivery(env: Env) -> None:
    """RFC 3461 5.2.2: NOTIFY=SUCCESS on a recipient we deliver to earns a "delivered" report."""
    await env.play(
        """
        S: 220 *
        C: EHLO c.example.org
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
        C: MAIL FROM:<sender@example.org> ENVID=env42
        S: 250 *
        C: RCPT TO:<alice@example.test> NOTIFY=SUCCESS ORCPT=rfc822;alice@example.test
        S: 250 *
        C: RCPT TO:<bob@example.test> NOTIFY=NEVER
        S: 250 *
        C: DATA
        S: 354 *
        C: Subject: please confirm
        C:
        C: secret body
        C: .
        S: 250 2.0.0 OK id=*
        """
    )
    [(envelope, report)] = env.spool.queued
    assert envelope.mail_from == "" and [r.address for r in envelope.recipients] == [
        "sender@example.org"
    ]
    assert b"multipart/report" in report and b"Action: delivered" in report
    assert b"Final-Recipient: rfc822; alice@example.test" in report
    assert b"Original-Envelope-Id: env42" in report
    assert b"bob@example.test" not in report.split(b"\r\n\r\n", 1)[1].split(b"Subject:")[0]
    assert b"Subject: please confirm" in report and b"secret body" not in report


async def test_orcpt_of_an_expanded_alias_is_xtext(env: Env) -> None:
    # RFC 3461 4.2: ORCPT is addr-type ";" xtext; "+" and "=" in the address must be encoded.
    env.ctx.directory.add_alias("a+b=c@example.test", "friend@remote.test")
    await env.play(
        """
        S: 220 *
        C: HELO c.example.org
        S: 250 *
        C: MAIL FROM:<x@example.org>
        S: 250 *
        C: RCPT TO:<a+b=c@example.test>
        S: 250 2.1.5 *
        C: DATA
        S: 354 *
        C: Subject: x
        C:
        C: .
        S: 250 *
        """
    )
    [(envelope, _)] = env.spool.queued
    assert envelope.recipients[0].orcpt == "rfc822;a+2Bb+3Dc@example.test"
