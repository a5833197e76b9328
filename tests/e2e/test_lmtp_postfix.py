"""Postfix (Debian's, a private instance) delivering into carteiro over LMTP: one recipient refused
at RCPT and the others delivered, Postfix bouncing only the refused one (its bounce comes back
over LMTP too), and the per-recipient reply after DATA (a recipient whose delivery fails there
is deferred by Postfix while the other is delivered)."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from carteiro.testing import postfix
from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postfix-e2e")]

ALICE = "alice@example.test"
BOB = "bob@example.test"


def test_postfix_delivers_over_lmtp_with_per_recipient_results(tmp_path: Path) -> None:
    reason = postfix.available()
    if reason is not None:
        pytest.skip(reason)
    s = ServerProcess(
        tmp_path,
        users={ALICE: "pw-a", BOB: "pw-b"},
        services=("smtp", "lmtp"),
    )
    s.init()
    s.cli(
        "user", "add", "carol@example.test", "--delivery", "mbox", "--password-stdin", stdin="x\n"
    )
    # carol's mbox spool cannot be written: her delivery fails after DATA, hers alone
    (s.data / "mbox" / "carol@example.test").mkdir(parents=True)
    with (
        s,
        postfix.PostfixInstance(
            tmp_path,
            relay_domains=["example.test"],
            relay_transport=f"lmtp:inet:[127.0.0.1]:{s.ports['lmtp']}",
        ) as pf,
    ):
        with smtplib.SMTP("127.0.0.1", pf.smtp_port) as c:
            refused = c.sendmail(
                ALICE,
                [ALICE, "nobody@example.test", BOB, "carol@example.test"],
                b"Subject: through postfix\r\nMessage-ID: <pf1@client.test>\r\n\r\nhello\r\n",
            )
        assert refused == {}  # Postfix took them all; carteiro decides over LMTP
        log = pf.wait_log("to=<nobody@example.test>")
        pf.wait_log(f"to=<{BOB}>, relay=127.0.0.1")
        log = pf.wait_log("to=<carol@example.test>")
        lines = {
            who: next(ln for ln in log.splitlines() if f"to=<{who}>" in ln)
            for who in (ALICE, BOB, "nobody@example.test", "carol@example.test")
        }
        assert "status=sent" in lines[ALICE] and "status=sent" in lines[BOB]
        assert "status=bounced" in lines["nobody@example.test"]
        assert "550 5.1.1" in lines["nobody@example.test"]
        # her reply came after DATA, on its own: Postfix retries her alone later
        assert "status=deferred" in lines["carol@example.test"]
        assert "<carol@example.test>" in lines["carol@example.test"]
        assert "in reply to end of DATA command" in lines["carol@example.test"]
        (bob_copy,) = s.stored(BOB)
        assert b"Subject: through postfix" in bob_copy
        assert b"by mail.example.test (carteiro) with LMTP id" in bob_copy
        # Postfix's bounce for nobody comes back to alice, over LMTP as well
        pf.wait_log("sender non-delivery notification")
        deadline = time.monotonic() + 30
        while len(mine := s.stored(ALICE)) < 2 and time.monotonic() < deadline:
            pf.postfix("flush", check=False)
        subjects = sorted(m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in mine)
        assert subjects == [b"Undelivered Mail Returned to Sender", b"through postfix"]
