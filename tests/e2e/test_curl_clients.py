"""curl as the client of every protocol (libcurl's SMTP, IMAP and POP3, RFC 5092 IMAP URLs and
RFC 2384 POP URLs): what scripts and monitoring probes use against a mail server. A real
`carteiro serve`, its certificate not verified (-k), each command checked by its effect."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carteiro.testing.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("curl-e2e")]

ALICE, ALICE_PW = "alice@example.test", "alice-password"
BOB, BOB_PW = "bob@example.test", "bob-password"
CAROL, CAROL_PW = "carol@example.test", "carol-password"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (make apt-test)")
    users = {ALICE: ALICE_PW, BOB: BOB_PW, CAROL: CAROL_PW}
    with ServerProcess(tmp_path_factory.mktemp("curl"), users=users) as s:
        yield s


def curl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "-k", "--max-time", "30", *args],
        input=data,
        capture_output=True,
        timeout=60,
    )


def ok(*args: str, data: bytes | None = None) -> bytes:
    r = curl(*args, data=data)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def message(subject: str, to: str = BOB) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello from curl\r\n"
        ".a line that starts with a dot\r\n"
    ).encode()


def wait_for(what, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_smtp_submission_imap_and_pop3(srv: ServerProcess, tmp_path: Path) -> None:
    p = srv.ports
    imaps, bob = f"imaps://127.0.0.1:{p['imaps']}", f"{BOB}:{BOB_PW}"
    # submission with STARTTLS required, then implicit TLS with two recipients
    ok(
        f"smtp://127.0.0.1:{p['submission']}",
        "--ssl-reqd",
        *("-u", f"{ALICE}:{ALICE_PW}", "--mail-from", ALICE, "--mail-rcpt", BOB, "-T", "-"),
        data=message("first"),
    )
    ok(
        f"smtps://127.0.0.1:{p['submissions']}",
        *("-u", f"{ALICE}:{ALICE_PW}", "--mail-from", ALICE),
        *("--mail-rcpt", BOB, "--mail-rcpt", CAROL, "-T", "-"),
        data=message("second"),
    )

    def search() -> bytes:
        out = ok(f"{imaps}/INBOX", "-u", bob, "-X", "UID SEARCH ALL")
        return out if out.split() == [b"*", b"SEARCH", b"1", b"2"] else b""

    assert wait_for(search), "both messages reach bob's INBOX"
    # RFC 5092 URLs: a message by UID, one header field, a search in the path
    body = ok(f"{imaps}/INBOX;UID=2", "-u", bob)
    assert b"Subject: second\r\n" in body and body.endswith(
        b"hello from curl\r\n.a line that starts with a dot\r\n"
    )
    field = ok(f"{imaps}/INBOX;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)", "-u", bob)
    assert field == b"Subject: first\r\n\r\n"
    assert ok(f"{imaps}/INBOX?SUBJECT%20second", "-u", bob).split() == [b"*", b"SEARCH", b"2"]
    listing = ok(f"imap://127.0.0.1:{p['imap']}/", "--ssl-reqd", "-u", bob)
    assert b'"/" INBOX\r\n' in listing and b"\\Sent" in listing
    # APPEND (curl needs the size: a file), then STATUS says it is there
    draft = tmp_path / "draft.eml"
    draft.write_bytes(message("a draft"))
    ok(f"{imaps}/Drafts", "-u", bob, "-T", str(draft))
    status = ok(f"{imaps}/", "-u", bob, "-X", "STATUS Drafts (MESSAGES)")
    assert status == b"* STATUS Drafts (MESSAGES 1)\r\n"
    # POP3: LIST, UIDL, RETR (dot-stuffing undone by curl), TOP, DELE, then LIST again
    pop3s, carol = f"pop3s://127.0.0.1:{p['pop3s']}", f"{CAROL}:{CAROL_PW}"
    assert len(ok(f"{pop3s}/", "-u", carol).splitlines()) == 1
    assert ok(f"{pop3s}/", "-u", carol, "-X", "UIDL").split()[0] == b"1"
    retr = ok(f"pop3://127.0.0.1:{p['pop3']}/1", "--ssl-reqd", "-u", carol)
    assert retr.endswith(b"\r\n.a line that starts with a dot\r\n"), retr
    top = ok(f"{pop3s}/", "-u", carol, "-X", "TOP 1 0")
    assert b"Subject: second\r\n" in top and top.endswith(b"\r\n\r\n"), top
    assert b"hello from curl" not in top
    ok(f"{pop3s}/1", "-u", carol, "-X", "DELE", "-I")
    # an empty listing: curl prints the CRLF before the end mark (as with Dovecot's)
    assert ok(f"{pop3s}/", "-u", carol, "--login-options", "AUTH=PLAIN").strip() == b""


def test_refusals(srv: ServerProcess) -> None:
    p = srv.ports
    r = curl(f"imaps://127.0.0.1:{p['imaps']}/", "-u", f"{BOB}:wrong")
    assert r.returncode == 67, r  # CURLE_LOGIN_DENIED
    r = curl(f"pop3s://127.0.0.1:{p['pop3s']}/", "-u", f"{BOB}:wrong")
    assert r.returncode == 67, r
    # port 25 accepts for our domains only: no open relay
    r = curl(
        f"smtp://127.0.0.1:{p['smtp']}",
        *("--mail-from", "someone@remote.example", "--mail-rcpt", "x@elsewhere.example"),
        *("-T", "-"),
        data=message("relay?", "x@elsewhere.example"),
    )
    assert r.returncode == 55 and b"RCPT failed: 554" in r.stderr, r
    # submission without TLS offers no AUTH (curl then cannot log in)
    r = curl(
        f"smtp://127.0.0.1:{p['submission']}",
        *("-u", f"{ALICE}:{ALICE_PW}", "--mail-from", ALICE, "--mail-rcpt", BOB, "-T", "-"),
        data=message("plain"),
    )
    assert r.returncode != 0, r
