"""Mailing lists end to end, as the issue asks: two carteiro servers and a DNS server in this
process. A (lists.test on 127.0.0.4) hosts the lists; B (b.test on 127.0.0.5) is an outside
domain whose users subscribe, post and bounce, with real SMTP (smtplib), POP3 (poplib) and HTTPS
(urllib) clients. _dmarc.b.test says p=reject, _dmarc.c.test p=none.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import poplib
import re
import smtplib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message

import pytest
from test_relay import need_addresses, serve_pair

from carteiro.testing.dns import ZoneServer
from carteiro.testing.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lists-e2e")]

A_IP, B_IP, OUTSIDE_IP = "127.0.0.4", "127.0.0.5", "127.0.0.6"
ALICE = ("alice@lists.test", "alice-pw")  # owner of the lists, a local member
BOB = ("bob@b.test", "bob-pw")  # an outside member (p=reject domain)


def wait_for(cond: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


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


def find(
    srv: ServerProcess, user: tuple[str, str], pred: Callable[[Message], bool]
) -> list[Message]:
    return [m for m in inbox(srv, user) if pred(m)]


def wait_message(
    srv: ServerProcess, user: tuple[str, str], pred: Callable[[Message], bool], what: str
) -> Message:
    found = wait_for(lambda: find(srv, user, pred), what=what)
    assert isinstance(found, list)
    return found[0]


def submit(srv: ServerProcess, user: tuple[str, str], rcpt: str, text: str) -> None:
    with smtplib.SMTP(srv.host, srv.ports["submission"], timeout=30) as s:
        s.starttls(context=unverified())
        s.login(*user)
        assert s.sendmail(user[0], [rcpt], text.encode()) == {}


def mail(frm: str, to: str, subject: str, body: str = "Hello.", extra: str = "") -> str:
    mid = f"<{re.sub(r'[^A-Za-z0-9]', '.', subject)}.{time.monotonic_ns()}@test>"
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n{extra}\r\n"
        f"{body}\r\n"
    )


def subject_is(s: str) -> Callable[[Message], bool]:
    return lambda m: str(m["Subject"]) == s


def members(a: ServerProcess, ml: str) -> str:
    return a.cli("list", "members", "list", ml).stdout


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    need_addresses(A_IP, B_IP)
    root = tmp_path_factory.mktemp("lists")
    dns_port = free_port()
    zone = f"""
lists.test.       60 IN MX 10 mx.lists.test.
mx.lists.test.    60 IN A {A_IP}
b.test.           60 IN MX 10 mx.b.test.
mx.b.test.        60 IN A {B_IP}
_dmarc.b.test.    60 IN TXT "v=DMARC1; p=reject"
_dmarc.c.test.    60 IN TXT "v=DMARC1; p=none"
"""
    dns = ZoneServer(zone, port=dns_port).start()
    b = ServerProcess(
        root / "b",
        domains=["b.test"],
        hostname="mx.b.test",
        users=dict([BOB]),
        host=B_IP,
        services=("smtp", "submission", "pop3"),
    )
    b.init()
    common = (
        f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        f"[queue]\nremote_port = {b.ports['smtp']}\nretry_schedule = [1.0, 1.0, 2.0]\n"
        "connect_timeout = 5.0\n"
    )
    a = ServerProcess(
        root / "a",
        domains=["lists.test"],
        hostname="mx.lists.test",
        users=dict([ALICE]),
        host=A_IP,
        services=("smtp", "submission", "pop3", "imap", "web"),
        # mail from 127.0.0.6 (an "outside" client) is checked, so it carries our results
        extra_config=common + '[mailauth]\nignore_networks = ["127.0.0.1/32", "::1/128"]\n',
    )
    a.init()
    # B sends to A's port (both would be 25 on the Internet)
    (b.data / "carteiro.toml").write_text(
        (b.data / "carteiro.toml").read_text()
        + f'\n[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n'
        f"[queue]\nremote_port = {a.ports['smtp']}\nretry_schedule = [1.0, 1.0, 2.0]\n"
    )
    yield from serve_pair(a, b, dns.stop)


def test_subscribe_from_outside_with_confirmation_then_post(
    net: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = net
    a.cli("list", "create", "dev@lists.test", "--owner", ALICE[0], "--description", "Dev talk")
    a.cli("list", "members", "add", "dev@lists.test", ALICE[0])
    submit(b, BOB, "dev-join@lists.test", mail(BOB[0], "dev-join@lists.test", "join please"))
    ask = wait_message(
        b, BOB, lambda m: str(m["Subject"]).startswith("confirm "), "the confirmation request"
    )
    token = str(ask["Subject"]).split()[1]
    assert ask["Reply-To"] == f"dev-confirm+{token}@lists.test"
    assert ask["Auto-Submitted"] == "auto-generated"
    assert BOB[0] not in members(a, "dev@lists.test")  # nothing before the token comes back
    submit(b, BOB, str(ask["Reply-To"]), mail(BOB[0], str(ask["Reply-To"]), f"Re: confirm {token}"))
    wait_for(lambda: BOB[0] in members(a, "dev@lists.test"), what="bob to be subscribed")
    wait_message(b, BOB, subject_is("Welcome to dev@lists.test"), "the welcome message")
    # the token works once
    submit(b, BOB, str(ask["Reply-To"]), mail(BOB[0], str(ask["Reply-To"]), "again"))
    wait_message(b, BOB, subject_is("Re: again"), "the answer to a spent token")

    a.cli("list", "set", "dev@lists.test", "archive", f"{ALICE[0]}:Lists/dev")
    submit(a, ALICE, "dev@lists.test", mail(ALICE[0], "dev@lists.test", "first post"))
    got = wait_message(b, BOB, subject_is("first post"), "bob's copy of the post")
    mine = wait_message(a, ALICE, subject_is("first post"), "alice's copy")
    assert got["List-Id"] == '"Dev talk" <dev.lists.test>'  # RFC 2919
    assert got["List-Post"] == "<mailto:dev@lists.test>"  # RFC 2369
    assert got["List-Help"] == "<mailto:dev-request@lists.test?subject=help>"
    assert got["List-Subscribe"] == "<mailto:dev-join@lists.test>"
    assert got["List-Owner"] == "<mailto:dev-owner@lists.test>"
    assert got["Precedence"] == "list"
    unsub = " ".join(str(got["List-Unsubscribe"]).split())
    assert re.fullmatch(
        r"<https://mx\.lists\.test:\d+/lists/unsubscribe/[\w.-]+>, <mailto:dev-leave@lists\.test>",
        unsub,
    )
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058
    # VERP: each member's copy has its own envelope sender
    assert got["Return-Path"] == "<dev-bounces+bob=b.test@lists.test>"
    assert mine["Return-Path"] == "<dev-bounces+alice=lists.test@lists.test>"
    # every member once: count after the queue is empty
    wait_for(lambda: a.cli("queue", "list", "--json").stdout.strip() == "[]", what="A's queue")
    assert len(find(b, BOB, subject_is("first post"))) == 1
    assert len(find(a, ALICE, subject_is("first post"))) == 1
    # the archive: a mailbox of the owner's choice, read over IMAP (imaplib, STARTTLS)
    with imaplib.IMAP4(a.host, a.ports["imap"], timeout=30) as imap:
        imap.starttls(unverified())
        imap.login(*ALICE)
        typ, data = imap.select('"Lists/dev"', readonly=True)
        assert typ == "OK" and data == [b"1"]
        typ, fetched = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT LIST-ID)])")
        head = fetched[0][1]  # type: ignore[index]
        assert b"Subject: first post" in head and b"List-Id:" in head


def test_nonmember_post_is_held_and_approved_by_reply(
    net: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = net
    a.cli("list", "create", "mod@lists.test", "--owner", ALICE[0])
    a.cli("list", "members", "add", "mod@lists.test", BOB[0])
    # a stranger (no member) posts straight to A's MX
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30) as s:
        s.sendmail(
            "dave@c.test",
            ["mod@lists.test"],
            mail("dave@c.test", "mod@lists.test", "from a stranger").encode(),
        )
    notice = wait_message(
        a, ALICE, lambda m: "moderator request" in str(m["Subject"]), "the moderator's notice"
    )
    confirm = str(notice["Reply-To"])
    assert confirm.startswith("mod-confirm+")
    assert "from a stranger" in notice.as_string()  # the held post is attached
    assert not find(b, BOB, subject_is("from a stranger"))
    submit(
        a,
        ALICE,
        confirm,
        mail(ALICE[0], confirm, f"Re: {notice['Subject']}", "approve\r\n\r\n> quoted"),
    )
    got = wait_message(b, BOB, subject_is("from a stranger"), "the approved post")
    assert got["List-Id"] == "<mod.lists.test>"

    # and with the command line
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30) as s:
        s.sendmail(
            "dave@c.test",
            ["mod@lists.test"],
            mail("dave@c.test", "mod@lists.test", "second stranger").encode(),
        )
    held = wait_for(
        lambda: [
            ln
            for ln in a.cli("list", "moderate", "mod@lists.test").stdout.splitlines()
            if "second stranger" in ln
        ],
        what="the held post in `list moderate`",
    )
    assert isinstance(held, list)
    a.cli("list", "moderate", "mod@lists.test", "approve", held[0].split()[0])
    wait_message(b, BOB, subject_is("second stranger"), "the post approved with the CLI")


def test_bouncing_member_is_disabled_after_the_threshold(
    net: tuple[ServerProcess, ServerProcess],
) -> None:
    a, _b = net
    a.cli("list", "create", "bnc@lists.test", "--owner", ALICE[0])
    a.cli("list", "set", "bnc@lists.test", "bounce_threshold", "1")
    a.cli("list", "members", "add", "bnc@lists.test", BOB[0], "nobody@b.test")
    submit(a, ALICE, "bnc@lists.test", mail(ALICE[0], "bnc@lists.test", "to a bouncer"))
    # B refuses nobody@ (550 5.1.1); A's DSN goes to the VERP address, the score reaches 1,
    # a probe goes out, bounces too, and delivery to nobody@ stops
    wait_for(
        lambda: "nobody@b.test  regular (disabled: bounce)" in members(a, "bnc@lists.test"),
        what="nobody@b.test disabled by bounces",
    )
    assert "bob@b.test  regular\n" in members(a, "bnc@lists.test")
    wait_message(
        a, ALICE, subject_is("bnc: delivery to nobody@b.test disabled"), "the owner's notice"
    )


def test_one_click_unsubscribe_over_https_is_idempotent(
    net: tuple[ServerProcess, ServerProcess],
) -> None:
    a, _b = net
    a.cli("list", "create", "oc@lists.test", "--owner", "owner@lists.test")
    a.cli("list", "members", "add", "oc@lists.test", ALICE[0])
    submit(a, ALICE, "oc@lists.test", mail(ALICE[0], "oc@lists.test", "one-click"))
    got = wait_message(a, ALICE, subject_is("one-click"), "alice's copy")
    url = re.search(r"<(https://[^>]+)>", str(got["List-Unsubscribe"]))
    assert url is not None
    # mx.lists.test is not in this machine's resolver: connect to the listener's address
    path = url.group(1).split("/", 3)[3]
    local = f"https://{A_IP}:{a.ports['web']}/{path}"
    # RFC 8058 3.2: a GET (a link checker) must not unsubscribe
    with urllib.request.urlopen(local, context=unverified(), timeout=30) as r:
        assert r.status == 200 and b"<form" in r.read()
    assert ALICE[0] in members(a, "oc@lists.test")
    # the POST a receiver's one-click button makes (RFC 8058 3.2), with curl on the URL as
    # written in the header (--resolve stands in for DNS), then again with urllib
    port = a.ports["web"]
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-k",
            "--resolve",
            f"mx.lists.test:{port}:{A_IP}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data",
            "List-Unsubscribe=One-Click",
            "-w",
            "%{http_code}",
            url.group(1),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == b"You are unsubscribed.\n200"
    req = urllib.request.Request(
        local,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, context=unverified(), timeout=30) as r:
        assert r.status == 200  # idempotent
        assert r.read().strip() == b"You were not subscribed (any more)."
    assert ALICE[0] not in members(a, "oc@lists.test")
    forged = local[: local.rindex(".") + 1] + "AAAAAAAAAAAAAAAA"
    req = urllib.request.Request(forged, data=b"List-Unsubscribe=One-Click")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=unverified(), timeout=30)
    assert e.value.code == 404


def test_dmarc_reject_poster_is_rewritten_and_none_is_not(
    net: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = net
    a.cli("list", "create", "dm@lists.test", "--owner", ALICE[0], "--posting", "anyone")
    a.cli("list", "members", "add", "dm@lists.test", ALICE[0])
    submit(b, BOB, "dm@lists.test", mail("Bob <bob@b.test>", "dm@lists.test", "strict poster"))
    got = wait_message(a, ALICE, subject_is("strict poster"), "the p=reject post")
    assert got["From"] == "Bob via dm <dm@lists.test>"
    assert got["Reply-To"] == "Bob <bob@b.test>"
    assert "d=lists.test" in str(got["DKIM-Signature"])  # aligned with the new From
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30) as s:
        s.sendmail(
            "carol@c.test",
            ["dm@lists.test"],
            mail("Carol <carol@c.test>", "dm@lists.test", "relaxed poster").encode(),
        )
    got = wait_message(a, ALICE, subject_is("relaxed poster"), "the p=none post")
    assert got["From"] == "Carol <carol@c.test>"
    assert got["Reply-To"] is None
    assert got["DKIM-Signature"] is None  # never signed for a stranger's From


def test_a_post_that_loops_back_is_refused(net: tuple[ServerProcess, ServerProcess]) -> None:
    a, _b = net
    a.cli("list", "create", "loop@lists.test", "--owner", ALICE[0], "--posting", "anyone")
    text = mail("x@c.test", "loop@lists.test", "looping", extra="List-Id: <loop.lists.test>\r\n")
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("x@c.test", ["loop@lists.test"], text.encode())
        assert e.value.smtp_code == 550
        assert b"5.4.6" in e.value.smtp_error
        # another list's List-Id is no loop
        other = mail("x@c.test", "loop@lists.test", "nested", extra="List-Id: <up.other.test>\r\n")
        s.sendmail("x@c.test", ["loop@lists.test"], other.encode())
    # the same with swaks, as an operator would try it
    done = subprocess.run(
        [
            "swaks",
            "--server",
            f"{a.host}:{a.ports['smtp']}",
            "--from",
            "x@c.test",
            "--to",
            "loop@lists.test",
            "--header",
            "List-Id: <loop.lists.test>",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "<** 550 5.4.6 Mail loop" in done.stdout


def test_local_delivery_agent_hands_list_mail_to_the_list(
    net: tuple[ServerProcess, ServerProcess],
) -> None:
    a, _b = net
    a.cli("list", "create", "lda@lists.test", "--owner", ALICE[0], "--posting", "anyone")
    a.cli("list", "members", "add", "lda@lists.test", ALICE[0])
    text = mail("x@c.test", "lda@lists.test", "through the LDA").replace("\r\n", "\n")
    a.cli("deliver", "--to", "lda@lists.test", "--from", "x@c.test", stdin=text)
    got = wait_message(a, ALICE, subject_is("through the LDA"), "the post handed over by the LDA")
    assert got["List-Id"] == "<lda.lists.test>"
    # RCPT: a list's addresses are known, a made-up role is an unknown user like any other
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30) as s:
        s.ehlo()
        s.mail("x@c.test")
        assert s.rcpt("lda-request@lists.test")[0] == 250
        assert s.rcpt("lda-bounces+x=c.test@lists.test")[0] == 250
        assert s.rcpt("lda-nonsense@lists.test")[0] == 550


def test_list_copy_is_arc_sealed(net: tuple[ServerProcess, ServerProcess]) -> None:
    """RFC 8617: A checked the post (its Authentication-Results), so each copy carries the
    list's ARC set, first hop (cv=none), that a receiver verifies with dkimpy."""
    import dkim

    from carteiro.mailauth.dkim import key_path, txt_record

    a, _b = net
    a.cli("list", "create", "arc@lists.test", "--owner", ALICE[0], "--posting", "anyone")
    a.cli("list", "members", "add", "arc@lists.test", ALICE[0])
    with smtplib.SMTP(a.host, a.ports["smtp"], timeout=30, source_address=(OUTSIDE_IP, 0)) as s:
        post = mail("Carol <carol@c.test>", "arc@lists.test", "sealed post")
        assert s.sendmail("carol@c.test", ["arc@lists.test"], post.encode()) == {}
    got = wait_message(a, ALICE, subject_is("sealed post"), "the sealed post")
    assert "cv=none" in str(got["ARC-Seal"]) and "d=lists.test" in str(got["ARC-Seal"])
    assert "mx.lists.test" in str(got["ARC-Authentication-Results"])
    record = txt_record(key_path(a.data, "lists.test", "carteiro")).encode()

    def keys(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"carteiro._domainkey.lists.test."
        return record

    raw = got.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    cv, results, why = dkim.arc_verify(raw, dnsfunc=keys)
    assert (cv, len(results)) == (b"pass", 1), why
    # changed in transit after the list sealed it: the chain no longer validates
    cv, _, _ = dkim.arc_verify(raw.replace(b"Hello.", b"Hellp."), dnsfunc=keys)
    assert cv == b"fail"
