"""On-Demand Mail Relay (RFC 2645): the user named for a held domain authenticates on the ODMR
port, says ATRN, and the connection turns around: the relay delivers the held mail to the site
over the same connection. Tried with a small client written here (fetchmail's ODMR mode cannot
be used: it only tries AUTH CRAM-MD5, which needs the plain password on the server)."""

from __future__ import annotations

import json
import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("odmr-e2e")]

ALICE = "alice@example.test"  # the relay's account that may ATRN for branch.test
PW = "alice-pw"


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def make_relay(tmp_path: Path, tls_for_auth: bool = True) -> ServerProcess:
    relay = ServerProcess(
        tmp_path, users={ALICE: PW, "eve@example.test": "eve-pw"}, services=("smtp", "odmr")
    )
    relay.init()
    if not tls_for_auth:
        cfg = relay.data / "carteiro.toml"
        cfg.write_text(
            cfg.read_text().replace("[smtp]\n", "[smtp]\nrequire_tls_for_auth = false\n")
        )
    relay.cli("domain", "add", "branch.test", "--hold", "--atrn-user", ALICE)
    relay.cli("domain", "add", "other.test", "--hold", "--atrn-user", "eve@example.test")
    return relay


def send(relay: ServerProcess, rcpts: list[str], subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.ports["smtp"]) as c:
        c.sendmail("someone@example.org", rcpts, f"Subject: {subject}\r\n\r\nbody\r\n".encode())


def held_count(relay: ServerProcess) -> int:
    return len(json.loads(run_cli(relay.data, "queue", "list", "--json").stdout))


def odmr_login(relay: ServerProcess) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", relay.ports["odmr"])
    c.ehlo("branch-gw.branch.test")
    assert c.has_extn("atrn") and c.has_extn("starttls")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    c.starttls(context=ctx)
    c.ehlo("branch-gw.branch.test")
    return c


def serve_turned_around(c: smtplib.SMTP, refuse: str = "") -> list[tuple[str, list[str], bytes]]:
    """Be the SMTP server on the turned-around connection (RFC 2645 5)."""
    f, sock = c.file, c.sock
    assert f is not None and sock is not None
    got: list[tuple[str, list[str], bytes]] = []
    sock.sendall(b"220 branch-gw.branch.test ESMTP ready\r\n")
    sender, rcpts = "", list[str]()
    while True:
        line = f.readline().decode()
        verb = line[:4].upper()
        if verb == "EHLO":
            sock.sendall(b"250-branch-gw.branch.test\r\n250 8BITMIME\r\n")
        elif verb == "MAIL":
            sender, rcpts = line.split("<", 1)[1].split(">")[0], []
            sock.sendall(b"250 2.1.0 ok\r\n")
        elif verb == "RCPT":
            addr = line.split("<", 1)[1].split(">")[0]
            if addr == refuse:
                sock.sendall(b"550 5.1.1 no such user\r\n")
            else:
                rcpts.append(addr)
                sock.sendall(b"250 2.1.5 ok\r\n")
        elif verb == "DATA":
            sock.sendall(b"354 go ahead\r\n")
            data = b""
            while (chunk := f.readline()) != b".\r\n":
                data += chunk
            got.append((sender, rcpts, data))
            sock.sendall(b"250 2.0.0 queued\r\n")
        elif verb == "QUIT":
            sock.sendall(b"221 2.0.0 bye\r\n")
            return got
        elif verb == "RSET":
            sock.sendall(b"250 2.0.0 ok\r\n")
        else:
            raise AssertionError(f"unexpected {line!r}")


def test_atrn_with_a_small_client(tmp_path: Path) -> None:
    relay = make_relay(tmp_path)
    with relay:
        send(relay, ["bob@branch.test", "carol@branch.test", "gone@branch.test"], "one")
        send(relay, ["dave@branch.test"], "two")
        send(relay, ["x@other.test"], "eve's")
        # TURN is never offered: anyone could claim a domain
        with smtplib.SMTP("127.0.0.1", relay.ports["odmr"]) as c:
            c.ehlo("x")
            assert c.docmd("TURN")[0] == 502
            assert c.docmd("ATRN")[0] == 530  # AUTH first
            assert c.docmd("MAIL FROM:<a@b.test>")[0] == 502
        c = odmr_login(relay)
        try:
            c.login(ALICE, PW)
            assert c.docmd("ATRN", "other.test")[0] == 450  # eve's domain, not alice's
            code, text = c.docmd("ATRN", "branch.test")
            assert code == 250 and b"reversing" in text
            got = serve_turned_around(c, refuse="gone@branch.test")
        finally:
            c.close()
        assert sorted((s, tuple(r)) for s, r, _ in got) == [
            ("someone@example.org", ("bob@branch.test", "carol@branch.test")),
            ("someone@example.org", ("dave@branch.test",)),
        ]
        assert all(b"Subject: " in data for _, _, data in got)
        # delivered ones are gone; the refused one bounced (a DSN to someone@example.org is
        # queued); eve's stays held
        wait_for(
            lambda: "gone@branch.test" not in run_cli(relay.data, "mailq").stdout,
            what="the refused recipient to be bounced",
        )
        out = run_cli(relay.data, "mailq").stdout
        assert "bob@branch.test" not in out and "dave@branch.test" not in out
        assert "x@other.test" in out
        # nothing more for branch.test
        c = odmr_login(relay)
        try:
            c.login(ALICE, PW)
            assert c.docmd("ATRN")[0] == 453
        finally:
            c.close()
