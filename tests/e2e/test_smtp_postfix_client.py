"""Postfix (Debian's, a private instance) as the sending MTA of the Internet, relaying to carteiro's
SMTP port in its MX role: mandatory STARTTLS (`smtp_tls_security_level = encrypt`, Postfix's own
OpenSSL client), pipelined MAIL/RCPT/DATA (Postfix's client never sends BDAT), 8BITMIME and
SMTPUTF8 mail, a message over the SIZE carteiro's EHLO announces (Postfix bounces it without
sending it), and an unknown recipient refused at RCPT (Postfix bounces that one recipient only).
Every accepted message arrives octet for octet, with carteiro's Received: field naming ESMTPS."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

import pytest

from carteiro.testing import postfix
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postfix-e2e")]

ALICE = "alice@example.test"
BOB = "bob@example.test"


def after_trace(message: bytes) -> bytes:
    """The message as the sender gave it: without the Received: fields the MTAs put on top."""
    head, _, body = message.partition(b"\r\n\r\n")
    lines = re.split(rb"\r\n(?![ \t])", head)
    kept = [ln for ln in lines if not ln.lower().startswith((b"received:", b"return-path:"))]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def test_postfix_relays_to_carteiro_over_starttls(tmp_path: Path) -> None:
    reason = postfix.available()
    if reason is not None:
        pytest.skip(reason)
    s = ServerProcess(
        tmp_path, users={ALICE: "pw-a", BOB: "pw-b"}, services=("smtp",), trace=("smtp",)
    )
    s.init()
    config = s.data / "carteiro.toml"
    config.write_text(
        config.read_text().replace("[smtp]\n", "[smtp]\nmax_message_size = 300000\n", 1)
    )
    with (
        s,
        postfix.PostfixInstance(
            tmp_path,
            relay_domains=["example.test"],
            relay_transport=f"smtp:[127.0.0.1]:{s.ports['smtp']}",
            main_cf={
                "smtp_tls_security_level": "encrypt",  # no TLS, no delivery
                "smtp_tls_loglevel": "1",
                "smtputf8_enable": "yes",
                "message_size_limit": "200000000",
            },
        ) as pf,
    ):
        plain = (
            b"From: Carol <carol@client.test>\r\nTo: alice@example.test\r\n"
            b"Subject: plain\r\nMessage-ID: <p1@client.test>\r\n"
            b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n"
            + b"".join(b"line %d of the body\r\n" % i for i in range(5000))
        )
        eight = (
            "From: Jos\u00e9 <jose@client.test>\r\nTo: bob@example.test\r\n"
            "Subject: ol\u00e1, S\u00e3o Paulo\r\nMessage-ID: <p2@client.test>\r\n"
            "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nA\u00e7\u00e3o e cora\u00e7\u00e3o.\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", pf.smtp_port) as c:
            assert c.sendmail("carol@client.test", [ALICE, "nobody@example.test"], plain) == {}
            c.sendmail("jose@client.test", [BOB], eight, mail_options=["SMTPUTF8"])
            c.sendmail("dave@client.test", [BOB], b"Subject: big\r\n\r\n" + b"y" * 400_000)
        log = pf.wait_log(f"to=<{BOB}>")
        pf.wait_log(f"to=<{ALICE}>")
        log = pf.wait_log("to=<nobody@example.test>")
        log = pf.wait_log("from=<dave@client.test>")
        log = pf.wait_log("message size 4")  # Postfix's bounce reason for the big one
        assert "TLS connection established to 127.0.0.1" in log, log
        sent = [ln for ln in log.splitlines() if "status=sent" in ln]
        assert any(f"to=<{ALICE}>" in ln for ln in sent), log
        assert any(f"to=<{BOB}>" in ln for ln in sent), log
        nobody = next(ln for ln in log.splitlines() if "to=<nobody@example.test>" in ln)
        assert "status=bounced" in nobody and "550 5.1.1" in nobody, nobody

        big = next(ln for ln in log.splitlines() if "message size 4" in ln)
        # EHLO's SIZE 300000 (RFC 1870) is enough: Postfix bounces it without trying
        assert "dsn=5.3.4, status=bounced" in big and "size limit 300000" in big, big
        # each session: EHLO, STARTTLS, EHLO again, then the transaction
        trace = s.log()
        assert trace.count("C: STARTTLS") == trace.count("*: TLS started: TLSv1.3") >= 1, trace
        assert "C: MAIL FROM:<jose@client.test> SIZE=" in trace and "SMTPUTF8" in trace, trace

        (a,) = s.stored(ALICE)
        (b,) = s.stored(BOB)
        assert after_trace(a) == plain
        assert after_trace(b) == eight
        # carteiro's own trace field: received from Postfix over TLS (RFC 3848 ESMTPS, or UTF8SMTPS
        # for an SMTPUTF8 transaction, RFC 6531 3.7.3)
        assert re.search(rb"by mail\.example\.test \(carteiro\) with ESMTPS", a), a[:600]
        assert re.search(rb"by mail\.example\.test \(carteiro\) with UTF8SMTPS", b), b[:600]
