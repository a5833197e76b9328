"""LMTP transcripts (RFC 2033): LHLO, no relaying, and after the message one reply per accepted
recipient, in RCPT order (the example of RFC 2033 4.2, with a mailbox over quota standing in for
the one that fails), over TCP and over a Unix socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from smtp_harness import ALICE, BOB, CAROL, Client, Env, MakeEnv

from carteiro.net.listener import Listener
from carteiro.servers import lmtpd


async def with_lmtp(env: Env, address: str = "127.0.0.1:0") -> Listener:
    env.ctx.config.listen.lmtp = address
    (lst,) = lmtpd.listeners(env.ctx)
    await lst.start()
    env.listeners.append(lst)
    assert lst.bound is not None
    env.ports["lmtp"] = lst.bound[1]
    return lst


@pytest.fixture
async def lenv(make_env: MakeEnv) -> Env:
    env = await make_env()
    await with_lmtp(env)
    return env


LHLO = """
S: 220 mail.example.test LMTP carteiro
C: LHLO foo.edu
S: 250-mail.example.test Hello foo.edu
S: 250-PIPELINING
S: 250-SIZE 52428800
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250 ENHANCEDSTATUSCODES
"""


async def test_rfc2033_example_per_recipient_replies(lenv: Env) -> None:
    await lenv.play(
        LHLO
        + """
        C: MAIL FROM:<chris@bar.com>
        S: 250 2.1.0 Sender <chris@bar.com> OK
        C: RCPT TO:<alice@example.test>
        S: 250 2.1.5 Recipient <alice@example.test> OK
        C: RCPT TO:<nobody@example.test>
        S: 550 5.1.1 <nobody@example.test>: no such user here
        C: RCPT TO:<bob@example.test>
        S: 250 2.1.5 Recipient <bob@example.test> OK
        C: RCPT TO:<friend@remote.test>
        S: 550 5.1.2 <friend@remote.test>: not a local domain; no relaying
        C: DATA
        S: 354 *
        C: Subject: per recipient
        C:
        C: Blah blah blah...
        C: ...etc. etc. etc.
        C: .
        S: 250 2.1.5 <alice@example.test> delivered (*)
        S: 250 2.1.5 <bob@example.test> delivered (*)
        C: QUIT
        S: 221 2.0.0 Bye
        CLOSED
        """,
        role="lmtp",
    )
    for who in (ALICE, BOB):
        (msg,) = await lenv.inbox(who)
        assert msg.startswith(b"Return-Path: <chris@bar.com>\r\nReceived: from foo.edu")
        assert b"with LMTP id" in msg
        assert msg.endswith(
            b"Subject: per recipient\r\n\r\nBlah blah blah...\r\n..etc. etc. etc.\r\n"
        )


async def test_one_recipient_failing_leaves_the_others_delivered(lenv: Env) -> None:
    # carol's mbox spool cannot be written (a directory stands where her file goes): her reply
    # says so, and bob, after her, still gets his copy; the client retries only her
    spool = lenv.ctx.config.data_dir / "mbox" / CAROL
    spool.mkdir(parents=True)
    c = await lenv.connect("lmtp")
    await c.reply()
    await c.cmd("LHLO x.test")
    assert (await c.cmd("MAIL FROM:<s@x.test>"))[0].startswith("250")
    assert (await c.cmd("RCPT TO:<carol@example.test>"))[0].startswith("250")
    assert (await c.cmd("RCPT TO:<bob@example.test>"))[0].startswith("250")
    assert (await c.cmd("DATA"))[0].startswith("354")
    await c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
    first, second = (await c.reply())[0], (await c.reply())[0]
    assert first.startswith(("4", "5")) and "<carol@example.test>" in first, first
    assert second.startswith("250 2.1.5 <bob@example.test>"), second
    assert len(await lenv.inbox(BOB)) == 1


async def test_helo_and_ehlo_are_refused_and_no_auth_or_tls(lenv: Env) -> None:
    await lenv.play(
        """
        S: 220 *
        C: EHLO foo.edu
        S: 500 5.5.1 This is LMTP: send LHLO
        C: HELO foo.edu
        S: 500 5.5.1 This is LMTP: send LHLO
        C: MAIL FROM:<a@b.test>
        S: 503 5.5.1 Send EHLO or HELO first
        C: LHLO foo.edu
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250-*
        S: 250 ENHANCEDSTATUSCODES
        C: STARTTLS
        S: 502 5.5.1 STARTTLS not available over LMTP
        C: AUTH PLAIN AGFsaWNlAHg=
        S: 502 5.5.1 AUTH not available over LMTP
        """,
        role="lmtp",
    )


async def test_no_junk_command_limit_for_the_local_mta(make_env: MakeEnv) -> None:
    """The local MTA may keep one LMTP connection for thousands of messages, with RSET between
    them: the SMTP roles' junk command limit does not apply here."""
    env = await make_env("[smtp]\nmax_errors = 2\nmax_junk_commands = 3\n")
    await with_lmtp(env)
    c = await env.connect("lmtp")
    await c.reply()
    assert (await c.cmd("LHLO foo.edu"))[-1] == "250 ENHANCEDSTATUSCODES"
    for _ in range(20):
        assert await c.cmd("RSET") == ["250 2.0.0 Reset OK"]
        assert await c.cmd("NOOP") == ["250 2.0.0 OK"]
    assert (await c.cmd("MAIL FROM:<a@b.test>"))[0].startswith("250 ")


async def test_too_big_gets_one_reply_per_recipient(make_env: MakeEnv) -> None:
    env = await make_env("[smtp]\nmax_message_size = 100\n")
    await with_lmtp(env)
    c = await env.connect("lmtp")
    await c.reply()
    await c.cmd("LHLO x.test")
    await c.cmd("MAIL FROM:<s@x.test>")
    await c.cmd("RCPT TO:<alice@example.test>")
    await c.cmd("RCPT TO:<bob@example.test>")
    await c.cmd("DATA")
    await c.send(b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n")
    assert (await c.reply())[0].startswith("552 5.3.4")
    assert (await c.reply())[0].startswith("552 5.3.4")
    assert (await c.cmd("NOOP"))[0].startswith("250")


async def test_unix_socket(make_env: MakeEnv, tmp_path: Path) -> None:
    env = await make_env()
    path = tmp_path / "lmtp.sock"
    await with_lmtp(env, f"unix:{path}")
    assert (path.stat().st_mode & 0o777) == 0o666
    r, w = await asyncio.open_unix_connection(str(path))
    c = Client(r, w)
    env.clients.append(c)
    await c.play(
        LHLO.replace("C: LHLO foo.edu", "C: LHLO local").replace("Hello foo.edu", "Hello local")
        + """
        C: MAIL FROM:<>
        S: 250 *
        C: RCPT TO:<alice@example.test>
        S: 250 *
        C: DATA
        S: 354 *
        C: Subject: unix
        C:
        C: hi
        C: .
        S: 250 2.1.5 <alice@example.test> delivered (*)
        """
    )
    assert len(await env.inbox(ALICE)) == 1


# ---- the queue's LMTP client against this server -------------------------------------------


async def test_lmtp_client_transport_gets_per_recipient_results(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    from carteiro.net.lmtp_client import LMTPClientTransport
    from carteiro.queue.transport import Hop, RcptSpec
    from carteiro.queue.transport import Transaction as Txn

    env = await make_env()
    await with_lmtp(env)
    port = env.ports["lmtp"]
    path = tmp_path / "l.sock"
    await with_lmtp(env, f"unix:{path}")
    client = LMTPClientTransport("queue.test")
    txn = Txn(
        mail_from="list-bounces@lists.test",
        recipients=(RcptSpec(ALICE), RcptSpec("nobody@example.test"), RcptSpec(BOB)),
        message=b"Subject: via the LMTP transport\r\n\r\n.leading dot\r\nend",
    )
    for hop in (
        Hop("127.0.0.1", "127.0.0.1", port, "none", protocol="lmtp"),
        Hop("localhost", f"unix:{path}", 0, "none", protocol="lmtp"),
    ):
        res = await client.send(hop, txn)
        assert res.session_error is None
        codes = [(r.code, r.status) for r in res.recipients]
        assert codes == [(250, "2.1.5"), (550, "5.1.1"), (250, "2.1.5")]
    for who in (ALICE, BOB):
        msgs = await env.inbox(who)
        assert len(msgs) == 2
        assert all(m.endswith(b"\r\n\r\n.leading dot\r\nend\r\n") for m in msgs)
    # nobody listening: a temporary session error, another hop may do better
    res = await client.send(Hop("x", f"unix:{tmp_path / 'none.sock'}", 0, protocol="lmtp"), txn)
    assert res.session_error is not None and res.session_error.code == 451 and res.try_next
