"""The aiosmtplib transport against aiosmtpd (a real remote MX) and a scripted SMTP server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AioSMTP
from aiosmtpd.smtp import Envelope as AioEnvelope
from aiosmtpd.smtp import Session

from carteiro.net.smtp_client import SMTPClientTransport
from carteiro.net.tls import make_self_signed, server_context
from carteiro.queue.transport import Hop, RcptSpec, Transaction
from carteiro.testing.server import free_port

MESSAGE = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: t\r\n\r\nHello\r\n.dot line\r\n"


def txn(*rcpts: str, message: bytes = MESSAGE, **kw: Any) -> Transaction:
    return Transaction("alice@a.test", tuple(RcptSpec(r) for r in rcpts), message, **kw)


# ---- aiosmtpd ---------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.ehlos = 0

    async def handle_EHLO(
        self,
        server: AioSMTP,
        session: Session,
        envelope: AioEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self,
        server: AioSMTP,
        session: Session,
        envelope: AioEnvelope,
        address: str,
        options: list[str],
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: AioSMTP, session: Session, envelope: AioEnvelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued as X"


@dataclass
class Remote:
    sink: Sink
    port: int
    cert: Path


@pytest.fixture
def cert(tmp_path: Path) -> Path:
    make_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", "localhost")
    return tmp_path / "cert.pem"


@pytest.fixture
async def remote(cert: Path) -> AsyncIterator[Remote]:
    sink = Sink()
    port = free_port()
    ctx = server_context(cert, cert.with_name("key.pem"))
    ctl = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        data_size_limit=10_000,
        enable_SMTPUTF8=True,
    )
    await asyncio.to_thread(ctl.start)
    try:
        yield Remote(sink, port, cert)
    finally:
        await asyncio.to_thread(ctl.stop)


def hop(port: int, **kw: Any) -> Hop:
    return Hop(host=kw.pop("host", "localhost"), address="127.0.0.1", port=port, **kw)


async def test_delivers_with_per_recipient_results_over_tls(remote: Remote) -> None:
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(remote.port), txn("bob@b.test", "nobody@b.test", "carol@b.test"))
    assert res.session_error is None
    assert [r.code for r in res.recipients] == [250, 550, 250]
    assert res.recipients[1].status == "5.1.1"
    assert res.recipients[0].text == "queued as X"
    assert res.tls.startswith("TLS")
    (mail_from, rcpts, content) = remote.sink.messages[0]
    assert (mail_from, rcpts) == ("alice@a.test", ["bob@b.test", "carol@b.test"])
    assert content == MESSAGE  # dot-stuffed on the wire, intact at the other end
    await t.close()


async def test_connection_is_reused(remote: Remote) -> None:
    t = SMTPClientTransport("mx.a.test")
    for i in range(3):
        res = await t.send(hop(remote.port), txn(f"u{i}@b.test"))
        assert res.recipients[0].ok
    assert (t.stats.connections, t.stats.reused) == (1, 2)
    assert t.has_idle(hop(remote.port))
    await t.close()
    assert not t.has_idle(hop(remote.port))


async def test_stale_idle_connection_is_replaced(remote: Remote) -> None:
    t = SMTPClientTransport("mx.a.test")
    await t.send(hop(remote.port), txn("bob@b.test"))
    (conn,) = t._idle[hop(remote.port).key]
    conn.smtp.close()  # the server hung up while it was idle
    res = await t.send(hop(remote.port), txn("carol@b.test"))
    assert res.recipients[0].ok and t.stats.connections == 2
    await t.close()


async def test_verified_tls(remote: Remote) -> None:
    t = SMTPClientTransport("mx.a.test")
    ok = await t.send(
        hop(remote.port, tls="starttls", verify=True, cafile=str(remote.cert)), txn("b@b.test")
    )
    assert ok.recipients[0].ok and ok.tls
    bad = await t.send(hop(remote.port, tls="starttls", verify=True), txn("b@b.test"))
    assert bad.session_error is not None and bad.session_error.status == "4.7.5" and bad.try_next
    wrong_name = await t.send(
        hop(remote.port, host="other.test", tls="starttls", verify=True, cafile=str(remote.cert)),
        txn("b@b.test"),
    )
    assert wrong_name.session_error is not None and wrong_name.session_error.temporary
    await t.close()


async def test_size_limit_is_refused_before_mail(remote: Remote) -> None:
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(remote.port), txn("b@b.test", message=MESSAGE + b"x" * 20_000 + b"\r\n"))
    assert res.session_error is not None
    assert (res.session_error.code, res.session_error.status) == (552, "5.3.4")
    assert not res.try_next and remote.sink.messages == []
    await t.close()


async def test_connection_refused_says_try_next() -> None:
    t = SMTPClientTransport("mx.a.test", connect_timeout=2)
    res = await t.send(hop(free_port()), txn("b@b.test"))
    assert res.session_error is not None and res.session_error.status == "4.4.1"
    assert res.try_next and not res.remote_said
    await t.close()


# ---- a scripted server for what aiosmtpd will not do ------------------------------------------


@dataclass
class Script:
    greeting: str = "220 scripted ESMTP"
    extensions: list[str] = field(default_factory=lambda: ["8BITMIME", "PIPELINING"])
    ehlo_reply: str = ""
    mail_reply: str = "250 2.1.0 ok"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 ok"
    starttls_reply: str = "220 go ahead"
    tls: ssl.SSLContext | None = None
    commands: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0


async def _serve(
    script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    script.connections += 1

    async def say(line: str) -> None:
        writer.write(line.encode() + b"\r\n")
        await writer.drain()

    try:
        await say(script.greeting)
        if not script.greeting.startswith("220"):
            return
        while line := await reader.readline():
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            script.commands.append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                if script.ehlo_reply:
                    await say(script.ehlo_reply)
                    continue
                lines = ["scripted", *script.extensions]
                for ext in lines[:-1]:
                    writer.write(f"250-{ext}\r\n".encode())
                await say(f"250 {lines[-1]}")
            elif verb == "HELO":
                await say("250 scripted")
            elif verb == "STARTTLS":
                await say(script.starttls_reply)
                if script.starttls_reply.startswith("220") and script.tls is not None:
                    await writer.start_tls(script.tls)
            elif verb == "MAIL":
                await say(script.mail_reply)
            elif verb == "RCPT":
                addr = cmd.split("<", 1)[1].split(">", 1)[0]
                await say(script.rcpt_replies.get(addr, "250 2.1.5 ok"))
            elif verb == "DATA":
                await say("354 go")
                body = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    body += chunk
                script.bodies.append(body)
                await say(script.data_reply)
            elif verb == "RSET":
                await say("250 ok")
            elif verb == "QUIT":
                await say("221 bye")
                return
            else:
                await say("500 what")
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, int]]:
    script = Script()
    server = await asyncio.start_server(lambda r, w: _serve(script, r, w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield script, port
    finally:
        server.close()
        await server.wait_closed()


async def test_dsn_parameters_pass_to_a_dsn_server(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    script.extensions = ["DSN", "SIZE 100000", "8BITMIME"]
    t = SMTPClientTransport("mx.a.test")
    tx = Transaction(
        "alice@a.test",
        (RcptSpec("bob@b.test", ("SUCCESS", "FAILURE"), "rfc822;bob@b.test"),),
        MESSAGE,
        ret="HDRS",
        envid="ABC+2B1",
    )
    res = await t.send(hop(port), tx)
    assert res.recipients[0].ok and res.remote_dsn
    mail = next(c for c in script.commands if c.startswith("MAIL"))
    rcpt = next(c for c in script.commands if c.startswith("RCPT"))
    assert mail == f"MAIL FROM:<alice@a.test> SIZE={len(MESSAGE)} RET=HDRS ENVID=ABC+2B1"
    assert rcpt == "RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@b.test"
    await t.close()


async def test_no_dsn_parameters_to_a_server_without_dsn(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    t = SMTPClientTransport("mx.a.test")
    tx = Transaction(
        "a@a.test", (RcptSpec("b@b.test", ("SUCCESS",), "rfc822;b@b.test"),), MESSAGE, ret="FULL"
    )
    res = await t.send(hop(port), tx)
    assert res.recipients[0].ok and not res.remote_dsn
    assert "MAIL FROM:<a@a.test>" in script.commands and "RCPT TO:<b@b.test>" in script.commands
    await t.close()


async def test_8bit_needs_8bitmime(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    script.extensions = ["PIPELINING"]
    t = SMTPClientTransport("mx.a.test")
    body = "Subject: olá\r\n\r\nçà\r\n".encode()
    res = await t.send(hop(port), txn("b@b.test", message=body, body="8BITMIME"))
    assert res.session_error is not None and res.session_error.status == "5.6.3"
    assert not any(c.startswith("MAIL") for c in script.commands)
    # declared 8BITMIME but really 7-bit: sent without BODY=
    res = await t.send(hop(port), txn("b@b.test", body="8BITMIME"))
    assert res.recipients[0].ok
    assert "MAIL FROM:<alice@a.test>" in script.commands
    script.extensions = ["8BITMIME"]
    t2 = SMTPClientTransport("mx.a.test")
    res = await t2.send(hop(port), txn("b@b.test", message=body, body="8BITMIME"))
    assert res.recipients[0].ok
    assert "MAIL FROM:<alice@a.test> BODY=8BITMIME" in script.commands
    await t.close()
    await t2.close()


async def test_smtputf8_needs_the_extension(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port), txn("zoë@b.test", smtputf8=True))
    assert res.session_error is not None and res.session_error.status == "5.6.7"
    script.extensions = ["8BITMIME", "SMTPUTF8"]
    t2 = SMTPClientTransport("mx.a.test")
    res = await t2.send(hop(port), txn("zoë@b.test", smtputf8=True))
    assert res.recipients[0].ok
    assert "MAIL FROM:<alice@a.test> SMTPUTF8" in script.commands
    assert "RCPT TO:<zoë@b.test>" in script.commands
    await t.close()
    await t2.close()


async def test_requiretls_needs_tls_and_the_extension(scripted: tuple[Script, int]) -> None:
    _, port = scripted
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port), txn("b@b.test", requiretls=True))
    assert res.session_error is not None and res.session_error.status == "5.7.30"
    await t.close()


async def test_greeting_and_mail_refusals(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    t = SMTPClientTransport("mx.a.test")
    script.greeting = "554 go away"
    res = await t.send(hop(port), txn("b@b.test"))
    assert res.session_error is not None and res.session_error.code == 554
    assert res.try_next and res.remote_said
    script.greeting = "220 ok"
    script.mail_reply = "451 4.3.0 busy"
    res = await t.send(hop(port), txn("b@b.test"))
    assert res.session_error is not None and res.session_error.code == 451 and res.try_next
    script.mail_reply = "553 5.7.1 sender refused"
    res = await t.send(hop(port), txn("b@b.test"))
    assert res.session_error is not None and res.session_error.permanent and not res.try_next
    await t.close()


async def test_all_recipients_refused_sends_no_data(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    script.rcpt_replies = {"x@b.test": "550 5.1.1 no", "y@b.test": "452 4.2.2 full"}
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port), txn("x@b.test", "y@b.test"))
    assert [(r.code, r.status) for r in res.recipients] == [(550, "5.1.1"), (452, "4.2.2")]
    assert "DATA" not in script.commands and "RSET" in script.commands
    await t.close()


async def test_data_refusal_applies_to_accepted_recipients(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    script.rcpt_replies = {"x@b.test": "550 5.1.1 no"}
    script.data_reply = "554 5.7.1 spam"
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port), txn("x@b.test", "y@b.test"))
    assert [(r.code, r.text) for r in res.recipients] == [(550, "no"), (554, "spam")]
    await t.close()


async def test_ehlo_refused_falls_back_to_helo(scripted: tuple[Script, int]) -> None:
    script, port = scripted
    script.ehlo_reply = "502 5.5.1 what is EHLO"
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port), txn("b@b.test"))
    assert res.recipients[0].ok
    assert "HELO mx.a.test" in script.commands
    await t.close()


async def test_failed_opportunistic_tls_falls_back_to_plain_text(
    scripted: tuple[Script, int],
) -> None:
    script, port = scripted
    script.extensions = ["STARTTLS", "8BITMIME"]
    script.starttls_reply = "454 4.7.0 TLS not available"
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port), txn("b@b.test"))
    assert res.recipients[0].ok and res.tls == ""
    assert t.stats.tls_fallbacks == 1
    # required TLS does not fall back
    res = await t.send(hop(port, tls="starttls"), txn("b@b.test"))
    assert res.session_error is not None and res.session_error.status == "4.7.5"
    await t.close()


async def test_auth_only_over_tls(scripted: tuple[Script, int]) -> None:
    _, port = scripted
    t = SMTPClientTransport("mx.a.test")
    res = await t.send(hop(port, username="u", password="p"), txn("b@b.test"))
    assert res.session_error is not None and "without TLS" in res.session_error.text
    await t.close()
