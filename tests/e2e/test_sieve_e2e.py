"""Sieve end to end on the real `carteiro serve`: a script uploaded with sievelib over
ManageSieve files mail into a folder it creates (seen over IMAP) and answers once per sender,
never to a list; redirects leave through the queue with a fresh envelope (to an aiosmtpd sink
as the remote MX), and two accounts redirecting to each other do not loop."""

from __future__ import annotations

import email
import imaplib
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sieve-e2e")]

ALICE, BOB = ("alice@example.test", "alice-pw"), ("bob@example.test", "bob-pw")


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 OK"

    def to(self, rcpt: str) -> list[tuple[str, list[str], bytes]]:
        return [g for g in self.got if rcpt in g[1]]


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Sink]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    s = ServerProcess(
        tmp_path_factory.mktemp("sieve-e2e"),
        users=dict([ALICE, BOB]),
        services=("smtp", "imap", "sieve"),
        extra_config=f'[transport]\n"remote.test" = "127.0.0.1:{port}"\n',
    )
    try:
        with s:
            yield s, sink
    finally:
        controller.stop()


def send(s: ServerProcess, sender: str, rcpt: str, subject: str, extra: str = "") -> None:
    msg = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n{extra}"
        f"Message-ID: <{subject.replace(' ', '.')}.{time.monotonic_ns()}@remote.test>\r\n\r\n"
        f"Body of {subject}.\r\n"
    )
    with smtplib.SMTP(s.host, s.ports["smtp"], timeout=30) as c:
        c.sendmail(sender, [rcpt], msg.encode())


def imap(s: ServerProcess, who: tuple[str, str]) -> imaplib.IMAP4:
    c = imaplib.IMAP4(s.host, s.ports["imap"], timeout=30)
    c.starttls(unverified())
    c.login(*who)
    return c


def messages(s: ServerProcess, who: tuple[str, str], box: str = "INBOX") -> list[bytes]:
    c = imap(s, who)
    try:
        typ, count = c.select(f'"{box}"', readonly=True)
        if typ != "OK" or not int(count[0] or 0):
            return []
        _, data = c.fetch("1:*", "(BODY.PEEK[])")
        return [d[1] for d in data if isinstance(d, tuple)]
    finally:
        c.logout()


def upload(s: ServerProcess, who: tuple[str, str], script: str) -> None:
    """With sievelib over ManageSieve (STARTTLS, PLAIN), as a webmail does."""
    import sievelib.managesieve as ms

    orig, ctx = ms.ssllib.create_default_context, unverified()
    ms.ssllib.create_default_context = lambda *a, **k: ctx  # type: ignore[assignment]
    try:
        c = ms.Client(s.host, s.ports["sieve"])
        assert c.connect(who[0], who[1], starttls=True, authmech="PLAIN")
        assert c.putscript("main", script), c.errmsg
        assert c.setactive("main")
        c.logout()
    finally:
        ms.ssllib.create_default_context = orig  # type: ignore[assignment]


def test_vacation_and_fileinto_create(world: tuple[ServerProcess, Sink]) -> None:
    s, sink = world
    upload(
        s,
        ALICE,
        'require ["vacation", "fileinto", "mailbox"];\n'
        'if header :contains "subject" "project" { fileinto :create "Projects/2026"; stop; }\n'
        'vacation :days 7 :subject "Away" "I am away until Monday.";\n',
    )
    send(s, "joe@remote.test", ALICE[0], "lunch")
    wait_for(lambda: len(sink.to("joe@remote.test")) == 1, what="the vacation reply")
    mail_from, _, data = sink.to("joe@remote.test")[0]
    reply = email.message_from_bytes(data)
    assert mail_from == "<>"  # RFC 3834 3.3: from the null reverse-path
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["Subject"] == "Away" and reply["To"] == "joe@remote.test"
    assert "I am away until Monday." in reply.get_payload(decode=True).decode()
    # not twice within :days; never to a list; then a new sender gets one (the marker)
    send(s, "joe@remote.test", ALICE[0], "lunch again")
    send(s, "kim@remote.test", ALICE[0], "list post", "List-Id: <l.remote.test>\r\n")
    send(s, "ann@remote.test", ALICE[0], "hello")
    wait_for(lambda: len(sink.to("ann@remote.test")) == 1, what="the marker reply")
    assert len(sink.to("joe@remote.test")) == 1 and not sink.to("kim@remote.test")
    # fileinto :create: the new folder and the message show up over IMAP
    send(s, "joe@remote.test", ALICE[0], "project plan")
    c = imap(s, ALICE)
    try:
        wait_for(lambda: b"Projects/2026" in b"".join(c.list()[1] or []), what="the folder")
    finally:
        c.logout()
    wait_for(lambda: len(messages(s, ALICE, "Projects/2026")) == 1, what="the filed message")
    assert b"Subject: project plan" in messages(s, ALICE, "Projects/2026")[0]
    assert len(messages(s, ALICE)) == 4  # lunch, lunch again, list post, hello: kept


def test_redirects_fresh_envelope_and_no_loop(world: tuple[ServerProcess, Sink]) -> None:
    s, sink = world
    s.cli(
        "sieve",
        "put",
        BOB[0],
        "-",
        "--name",
        "fwd",
        "--activate",
        stdin='redirect "alice@example.test";\n',
    )
    upload(
        s,
        ALICE,
        'require "copy";\nredirect :copy "friend@remote.test";\nredirect "bob@example.test";\n',
    )
    send(s, "zed@remote.test", ALICE[0], "ping pong")
    # to the remote friend: a fresh envelope from alice, marked as redirected by her
    wait_for(lambda: len(sink.to("friend@remote.test")) == 1, what="the remote redirect")
    mail_from, rcpts, data = sink.to("friend@remote.test")[0]
    assert (mail_from, rcpts) == (ALICE[0], ["friend@remote.test"])
    assert b"X-Sieve-Redirected-From: alice@example.test" in data
    # alice -> bob -> alice: alice keeps it with a note, once; bob keeps nothing
    wait_for(
        lambda: any(b"ping pong" in m and b"mail loop" in m for m in messages(s, ALICE)),
        what="the looped message kept",
    )
    assert not [m for m in messages(s, BOB) if b"ping pong" in m]
    pings = [m for m in messages(s, ALICE) if b"Subject: ping pong" in m]
    assert len(pings) == 1  # only the copy that came back and stopped
    assert len(sink.to("friend@remote.test")) == 1  # the second visit redirects no further


def test_the_lda_runs_the_script_too(world: tuple[ServerProcess, Sink]) -> None:
    """`carteiro deliver` (another MTA's LDA) files through the same script, and its vacation
    reply reaches the running server's queue through the control socket."""
    s, sink = world
    upload(
        s,
        BOB,
        'require ["vacation", "fileinto", "mailbox"];\n'
        'if header :contains "subject" "invoice" { fileinto :create "Bills"; }\n'
        'vacation :days 1 "Bob is out.";\n',
    )
    msg = (
        b"From: shop@remote.test\r\nTo: bob@example.test\r\nSubject: invoice 42\r\n"
        b"Message-ID: <inv42@remote.test>\r\n\r\nPay me.\r\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "carteiro", "deliver", "--to", BOB[0], "--from", "shop@remote.test",
         "--data", str(s.data)],
        input=msg, capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(messages(s, BOB, "Bills")) == 1
    wait_for(lambda: len(sink.to("shop@remote.test")) == 1, what="the LDA's vacation reply")
    assert b"Bob is out." in sink.to("shop@remote.test")[0][2]
