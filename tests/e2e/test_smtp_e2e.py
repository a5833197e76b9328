"""The real `carteiro serve` driven by real SMTP clients: smtplib, aiosmtplib and swaks; the trace
option; the standalone LDA; durability across kill -9."""

from __future__ import annotations

import asyncio
import email.message
import shutil
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from carteiro.store.sqlite_maildir import SqliteMaildirStore
from carteiro.testing.server import ServerProcess

ALICE, ALICE_PW = "alice@example.test", "alice-password"
BOB, BOB_PW = "bob@example.test", "bob-password"
CAROL = "carol@example.test"

pytestmark = pytest.mark.slow


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(
        tmp_path_factory.mktemp("smtp-e2e"),
        users={ALICE: ALICE_PW, BOB: BOB_PW},
        services=("smtp", "submission", "submissions"),
        trace=["smtp"],
    )
    s.init()
    s.cli("user", "add", CAROL, "--password-stdin", "--delivery", "mbox", stdin="carol-pw\n")
    s.cli("alias", "add", "sales@example.test", ALICE)
    s.cli("alias", "add", "sales@example.test", BOB)
    with s:
        yield s


def messages(srv: ServerProcess, account: str) -> list[bytes]:
    async def read() -> list[bytes]:
        store = SqliteMaildirStore(srv.data)
        try:
            acct = await store.account(account)
            inbox = await acct.get_mailbox("INBOX")
            return [
                await acct.read_message(inbox.id, m.uid) for m in await acct.list_messages(inbox.id)
            ]
        finally:
            await store.close()

    return asyncio.run(read())


def find(srv: ServerProcess, account: str, marker: bytes) -> bytes:
    found = [m for m in messages(srv, account) if marker in m]
    assert len(found) == 1, f"{marker!r}: {len(found)} copies in {account}"
    return found[0]


def make(
    subject: str, to: str = ALICE, sender: str = "someone@example.org"
) -> email.message.EmailMessage:
    m = email.message.EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m.set_content(f"body of {subject}\n.\n..a line with dots\n")
    return m


# ---- smtplib -------------------------------------------------------------------------------------


def test_smtplib_mx_delivery(srv: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as c:
        c.ehlo("client.example.org")
        assert c.has_extn("pipelining") and c.has_extn("chunking") and not c.has_extn("auth")
        refused = c.send_message(make("smtplib-mx"), to_addrs=[ALICE, "nobody@example.test", BOB])
        assert list(refused) == ["nobody@example.test"]
    msg = find(srv, ALICE, b"Subject: smtplib-mx")
    assert msg.startswith(
        b"Return-Path: <someone@example.org>\r\nReceived: from client.example.org"
    )
    assert b"\r\n.\r\n..a line with dots\r\n" in msg
    find(srv, BOB, b"Subject: smtplib-mx")


def test_smtplib_submission_starttls_auth(srv: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as c:
        c.ehlo("laptop.example.org")
        assert not c.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            c.login(ALICE, ALICE_PW)
        c.starttls(context=insecure())
        c.ehlo("laptop.example.org")
        assert "PLAIN" in c.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login(ALICE, "wrong password")
        c.login(ALICE, ALICE_PW)
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            c.send_message(make("spoof", to=BOB, sender=BOB), from_addr=BOB, to_addrs=[BOB])
        assert e.value.smtp_code == 553
        c.send_message(make("submitted", to=BOB, sender=ALICE), from_addr=ALICE, to_addrs=[BOB])
        code, _ = c.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 250
        code, _ = c.docmd("RCPT", "TO:<friend@remote.test>")
        assert code == 250  # authenticated users may relay
    msg = find(srv, BOB, b"Subject: submitted")
    head = msg.split(b"\r\n\r\n")[0]
    assert b"with ESMTPSA id" in head and b"(authenticated user alice@example.test)" in head
    assert b"\r\nMessage-ID: <" in head and b"\r\nDate: " in head


@pytest.mark.parametrize("role", ["smtp", "submission", "submissions"])
def test_no_open_relay_with_smtplib(srv: ServerProcess, role: str) -> None:
    if role == "submissions":
        c: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", srv.ports[role], timeout=30, context=insecure()
        )
    else:
        c = smtplib.SMTP("127.0.0.1", srv.ports[role], timeout=30)
    with c:
        c.ehlo("spam.example.org")
        if role == "submission":
            c.starttls(context=insecure())
            c.ehlo("spam.example.org")
        with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused)) as e:
            c.sendmail("spam@example.org", ["victim@remote.test"], b"Subject: spam\r\n\r\nx\r\n")
        if role == "smtp":
            assert isinstance(e.value, smtplib.SMTPRecipientsRefused)
            assert e.value.recipients["victim@remote.test"][0] == 554
        else:
            assert isinstance(e.value, smtplib.SMTPSenderRefused) and e.value.smtp_code == 530


# ---- aiosmtplib ----------------------------------------------------------------------------------


async def test_aiosmtplib_submission_starttls(srv: ServerProcess) -> None:
    await aiosmtplib.send(
        make("aiosmtplib-starttls", to=BOB, sender=ALICE),
        hostname="127.0.0.1",
        port=srv.ports["submission"],
        start_tls=True,
        tls_context=insecure(),
        username=ALICE,
        password=ALICE_PW,
        timeout=30,
    )
    await asyncio.to_thread(find, srv, BOB, b"Subject: aiosmtplib-starttls")


async def test_aiosmtplib_submissions_implicit_tls(srv: ServerProcess) -> None:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=srv.ports["submissions"],
        use_tls=True,
        tls_context=insecure(),
        timeout=30,
    )
    async with client:
        await client.login(BOB, BOB_PW)
        errors, _ = await client.send_message(
            make("aiosmtplib-implicit", to="sales@example.test", sender=BOB),
            sender=BOB,
            recipients=["sales@example.test"],
        )
        assert errors == {}
    await asyncio.to_thread(find, srv, ALICE, b"Subject: aiosmtplib-implicit")
    await asyncio.to_thread(find, srv, BOB, b"Subject: aiosmtplib-implicit")


# ---- swaks (Debian's /usr/bin/swaks) -------------------------------------------------------------

swaks_missing = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")


def swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--timeout", "30", *args], capture_output=True, text=True, timeout=60
    )


@swaks_missing
def test_swaks_pipelined_mx(srv: ServerProcess) -> None:
    r = swaks(
        "--server", f"127.0.0.1:{srv.ports['smtp']}", "--pipeline",
        "--from", "swaks@example.org", "--to", f"{ALICE},{BOB}",
        "--header", "Subject: swaks-pipelined",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 OK id=" in r.stdout
    find(srv, ALICE, b"Subject: swaks-pipelined")


@swaks_missing
def test_swaks_submissions_auth_login(srv: ServerProcess) -> None:
    r = swaks(
        "--server", f"127.0.0.1:{srv.ports['submissions']}", "--tls-on-connect",
        "--auth", "LOGIN", "--auth-user", ALICE, "--auth-password", ALICE_PW,
        "--from", ALICE, "--to", BOB, "--header", "Subject: swaks-submissions",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0" in r.stdout
    find(srv, BOB, b"Subject: swaks-submissions")


@swaks_missing
def test_swaks_starttls_auth_plain_on_submission(srv: ServerProcess) -> None:
    r = swaks(
        "--server", f"127.0.0.1:{srv.ports['submission']}", "--tls",
        "--auth", "PLAIN", "--auth-user", BOB, "--auth-password", BOB_PW,
        "--from", BOB, "--to", CAROL, "--header", "Subject: swaks-to-mbox",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    mbox = (srv.data / "mbox" / CAROL).read_bytes()
    assert b"Subject: swaks-to-mbox\n" in mbox and b"\r" not in mbox


@swaks_missing
def test_swaks_relay_denied(srv: ServerProcess) -> None:
    r = swaks(
        "--server", f"127.0.0.1:{srv.ports['smtp']}",
        "--from", "spam@example.org", "--to", "victim@remote.test",
    )  # fmt: skip
    assert r.returncode != 0
    assert "554 5.7.1 <victim@remote.test>: Relay access denied" in r.stdout


# ---- trace, LDA, durability ----------------------------------------------------------------------


def test_trace_prints_sessions_with_masked_secrets(srv: ServerProcess) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", srv.ports["submissions"], timeout=30, context=insecure()
    ) as c:
        c.ehlo("trace.example.org")
        c.login(BOB, BOB_PW)
        c.noop()
    log = srv.log()
    lines = [line for line in log.splitlines() if " C: ehlo trace.example.org" in line]
    assert lines, log[-2000:]
    sid = lines[-1].split(" C: ")[0].split()[-1]  # "... carteiro.trace: smtp-7 C: ehlo ..."
    assert sid.startswith("smtp-")
    session = [line for line in log.splitlines() if f" {sid} " in line]
    assert any(" S: 235 2.7.0 Authentication successful" in line for line in session)
    assert any(" C: AUTH PLAIN <secret masked>" in line for line in session)
    assert BOB_PW not in log
    assert "Ym9i" not in log  # no base64 credentials either


def lda(
    srv: ServerProcess, to: str, message: bytes, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "carteiro", "deliver", "--to", to, *extra, "--data", str(srv.data)],
        input=message,
        capture_output=True,
        timeout=120,
    )


def test_standalone_lda(srv: ServerProcess) -> None:
    r = lda(srv, ALICE, b"Subject: lda-one\n\nfrom another MTA\n", "--from", "x@example.org")
    assert r.returncode == 0, r.stderr
    msg = find(srv, ALICE, b"Subject: lda-one")
    assert msg == b"Return-Path: <x@example.org>\r\nSubject: lda-one\r\n\r\nfrom another MTA\r\n"
    r = lda(srv, "nobody@example.test", b"Subject: x\n\n")
    assert r.returncode == 67, r.stderr
    r = lda(
        srv,
        CAROL,
        b"From bounce@example.org Mon Jan  1 00:00:00 2024\nSubject: lda-mbox\n\nFrom me\n",
    )
    assert r.returncode == 0, r.stderr
    mbox = (srv.data / "mbox" / CAROL).read_bytes()
    assert b"From bounce@example.org " in mbox
    assert b"Return-Path: <bounce@example.org>\nSubject: lda-mbox\n\n>From me\n\n" in mbox


def test_lda_temporary_failure_when_mailbox_locked(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path, services=())
    s.init()
    cfg = s.data / "carteiro.toml"
    cfg.write_text(cfg.read_text().replace("[smtp]\n", "[smtp]\nmbox_lock_timeout = 0.5\n", 1))
    s.cli("user", "add", CAROL, "--password-stdin", "--delivery", "mbox", stdin="pw\n")
    (s.data / "mbox").mkdir()
    (s.data / "mbox" / f"{CAROL}.lock").write_text("12345\n")  # another writer holds it
    r = lda(s, CAROL, b"Subject: x\n\ny\n")
    assert r.returncode == 75, r.stderr
    assert b"locked" in r.stderr
    (s.data / "mbox" / f"{CAROL}.lock").unlink()
    assert lda(s, CAROL, b"Subject: x\n\ny\n").returncode == 0


def test_acknowledged_means_durable_across_kill_9(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path, users={ALICE: ALICE_PW}, services=("smtp",))
    s.start()
    try:
        with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=30) as c:
            for i in range(5):
                c.sendmail("x@example.org", [ALICE], f"Subject: durable-{i}\r\n\r\nx\r\n".encode())
        s.kill()  # no clean shutdown: what was acknowledged must be on disk
    finally:
        s.stop()
    got = messages(s, ALICE)
    assert sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in got) == [
        f"durable-{i}".encode() for i in range(5)
    ]


def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Four clients send without pause (small messages: committed with their bytes, files written
    after; and 100 KB ones: files fsynced before COMMIT) while the server is killed with SIGKILL.
    After a restart every acknowledged message is there, whole, once; the Maildir files of all of
    them exist; check() is clean."""
    import random
    import threading
    import time

    from carteiro.store.maintenance import check

    s = ServerProcess(tmp_path, users={ALICE: ALICE_PW}, services=("smtp",))
    s.start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", s.ports["smtp"], timeout=10) as c:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    tag = f"k{k}-{i}"
                    pad = "y" * (100_000 if i % 7 == 3 else 200)
                    c.sendmail(
                        "x@example.org", [ALICE], f"Subject: {tag}\r\n\r\n{pad}\r\n".encode()
                    )
                    with lock:
                        acked.append(tag)
        except (OSError, smtplib.SMTPException):
            return  # the server died under us: only what was acknowledged counts

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0 + random.random())
    s.kill()
    stop.set()
    for t in threads:
        t.join(30)
    s.stop()
    assert len(acked) > 10
    got = messages(s, ALICE)  # opening the store recovers: files rewritten from their bytes
    tags = [m.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in got]
    assert len(tags) == len(set(tags))
    assert set(acked) <= set(tags)
    for m in got:
        assert m.endswith(b"y\r\n") and len(m) > 200
    report = check(s.data)
    assert report.missing_files == [] and report.size_mismatches == [] and report.orphan_files == []
    files = [p for p in (s.data / "mail").rglob("Maildir/cur/*") if p.is_file()]
    assert len(files) == len(got)
