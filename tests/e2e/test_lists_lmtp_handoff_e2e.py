"""Item 8 of the lists issue end to end: carteiro A hands the lists of lists.test to a list
manager over LMTP (`[transport] "lists.test" = "lmtp:..."`). The list manager is a second carteiro,
B, whose LMTP listener feeds its own list engine (standing in for Mailman 3's LMTP runner). A post
from an outside client on A's port 25 and one from A's user reach the list member once each;
a recipient the list manager refuses comes back to the poster as a bounce (per-recipient results).
A list of A's own domain (news@example.test) is handed over by a per-address entry, as Mailman's
generated map for a shared domain does, while A's users stay local.
"""

from __future__ import annotations

import email
import email.policy
import poplib
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from email.message import Message

import pytest
from test_relay import serve_pair

from carteiro.testing.dns import ZoneServer
from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lists-lmtp-e2e")]

ALICE = ("alice@example.test", "alice-pw")  # a user of A
CAROL = ("carol@lists.test", "carol-pw")  # the list's member, on B


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def inbox(srv: ServerProcess, user: tuple[str, str]) -> list[Message]:
    p = poplib.POP3(srv.host, srv.ports["pop3"], timeout=30)
    try:
        p.stls(unverified())
        p.user(user[0])
        p.pass_(user[1])
        count, _ = p.stat()
        return [
            email.message_from_bytes(b"\r\n".join(p.retr(i)[1]), policy=email.policy.compat32)
            for i in range(1, count + 1)
        ]
    finally:
        p.quit()


def wait_for(cond: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def with_subject(msgs: list[Message], subject: str) -> list[Message]:
    return [m for m in msgs if str(m["Subject"]) == subject]


def post(frm: str, to: str, subject: str) -> bytes:
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}.{time.monotonic_ns()}@test>\r\n\r\nHello.\r\n"
    ).encode()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    root = tmp_path_factory.mktemp("lists-lmtp")
    dns_port = free_port()
    # answers for the DMARC lookups of the list engine (NXDOMAIN for the rest), no Internet
    dns = ZoneServer('_dmarc.outside.test. 60 IN TXT "v=DMARC1; p=none"\n', port=dns_port).start()
    dns_cfg = f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
    b = ServerProcess(
        root / "b",
        domains=["lists.test", "example.test"],  # B serves the lists of both
        hostname="mail.lists.test",
        users=dict([CAROL]),
        services=("smtp", "pop3", "lmtp"),
        extra_config=dns_cfg,
    )
    b.init()
    b.cli("list", "create", "dev@lists.test", "--owner", CAROL[0], "--posting", "anyone")
    b.cli("list", "members", "add", "dev@lists.test", CAROL[0])
    b.cli("list", "create", "news@example.test", "--owner", CAROL[0], "--posting", "anyone")
    b.cli("list", "members", "add", "news@example.test", CAROL[0])
    a = ServerProcess(
        root / "a",
        users=dict([ALICE]),
        services=("smtp", "submission", "pop3"),
        extra_config=dns_cfg
        + "[queue]\nretry_schedule = [1.0, 1.0, 2.0]\n"
        + f'[transport]\n"lists.test" = "lmtp:127.0.0.1:{b.ports["lmtp"]}"\n'
        + f'"news@example.test" = "lmtp:127.0.0.1:{b.ports["lmtp"]}"\n',
    )
    yield from serve_pair(a, b, dns.stop)


def test_list_posts_handed_over_lmtp_arrive_once(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    # an outside client on A's MX port, no AUTH: the hand-off domain is accepted from anyone
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30) as s:
        s.ehlo("client.outside.test")
        code, _ = s.rcpt("x@not-ours.test") if s.mail("poster@outside.test")[0] == 250 else (0, b"")
        assert code == 554  # still no open relay
        s.rset()
        refused = s.sendmail(
            "poster@outside.test",
            ["dev@lists.test"],
            post("poster@outside.test", "dev@lists.test", "from outside"),
        )
        assert refused == {}
    # A's user posts, and names an address the list manager does not know
    with smtplib.SMTP(a.host, a.ports["submission"], timeout=30) as s:
        s.starttls(context=unverified())
        s.login(*ALICE)
        refused = s.sendmail(
            ALICE[0],
            ["dev@lists.test", "nolist@lists.test"],
            post(ALICE[0], "dev@lists.test", "from alice"),
        )
        assert refused == {}  # A accepts both; only B can tell
        refused = s.sendmail(
            ALICE[0],
            ["news@example.test", ALICE[0]],
            post(ALICE[0], "news@example.test", "news"),
        )
        assert refused == {}

    def both_arrived() -> list[Message] | None:
        msgs = inbox(b, CAROL)
        ok = all(with_subject(msgs, s) for s in ("from outside", "from alice", "news"))
        return msgs if ok else None

    msgs = wait_for(both_arrived, "the posts at the member")
    assert isinstance(msgs, list)
    for subject, list_id in (
        ("from outside", "<dev.lists.test>"),
        ("from alice", "<dev.lists.test>"),
        ("news", "<news.example.test>"),
    ):
        (copy,) = with_subject(msgs, subject)  # exactly once
        assert copy["List-Id"] == list_id  # B's list engine expanded it
        received = " ".join(" ".join(str(h).split()) for h in copy.get_all("Received") or [])
        assert "with LMTP" in received  # A -> B over LMTP (RFC 3848)

    # B refused nolist@ at RCPT: A bounces that recipient alone, to the poster (RFC 3464)
    def bounce() -> list[Message]:
        return [
            m
            for m in inbox(a, ALICE)
            if m.get_content_type() == "multipart/report" and "nolist@lists.test" in str(m)
        ]

    # alice's own copy of "news" stayed on A: only the list's address was handed over
    assert len(with_subject(inbox(a, ALICE), "news")) == 1
    (dsn,) = wait_for(bounce, "the bounce for nolist@lists.test")  # type: ignore[misc]
    report = str(dsn)
    assert re.findall(r"Final-Recipient:\s*rfc822;\s*(\S+)", report, re.I) == ["nolist@lists.test"]
    assert "Action: failed" in report and "Status: 5.1.1" in report  # B's own reply
    # nothing left in A's queue
    wait_for(lambda: "empty" in a.cli("queue", "list").stdout.lower(), "A's queue to empty")
